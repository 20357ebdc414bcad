//! No server answer makes the IMAP or POP3 client panic or read without bound: arbitrary
//! bytes, and text shaped like real responses (tags the client uses, literals whose length
//! is right or wrong, `NIL`, `BYE`, continuations, unbalanced parentheses), replayed as the
//! server's side of a whole session. The same entry points are the fuzz targets
//! (`fuzz/fuzz_targets/imap_responses.rs`, `pop3_responses.rs`).

use cutover::connectors::{imap, pop3};
use proptest::prelude::*;

/// One IMAP response line (with CRLF), shaped like what a server sends, or broken.
fn imap_line() -> impl Strategy<Value = String> {
    let tag = (1u32..14).prop_map(|n| format!("C{n}"));
    let status = prop_oneof!["OK", "NO", "BAD", "ok", "BYE", "PREAUTH"];
    let code = prop_oneof![
        Just(String::new()),
        Just("[APPENDUID 7 3:5] ".to_string()),
        Just("[UIDVALIDITY 42] ".to_string()),
        Just("[THROTTLED] ".to_string()),
        Just("[CAPABILITY IMAP4rev1 LITERAL+ MULTIAPPEND UIDPLUS SASL-IR AUTH=PLAIN] ".to_string()),
        Just("[HIGHESTMODSEQ 99999999999999999999] ".to_string()),
    ];
    let text = "[ -~]{0,20}";
    let literal = (0usize..40, 0usize..40)
        .prop_map(|(said, sent)| format!("{{{said}}}\r\n{}", "x".repeat(sent)));
    let fetch_item = prop_oneof![
        (0u32..10).prop_map(|u| format!("UID {u}")),
        Just("FLAGS (\\Seen $Label1 \\Recent)".to_string()),
        Just("INTERNALDATE \"17-Jul-1996 02:44:25 -0700\"".to_string()),
        Just("INTERNALDATE \"garbage\"".to_string()),
        Just("RFC822.SIZE 4294967296".to_string()),
        Just("BODY[] NIL".to_string()),
        Just("BODY[HEADER.FIELDS (MESSAGE-ID DATE SUBJECT)] NIL".to_string()),
        literal.clone().prop_map(|l| format!("BODY[] {l}")),
        Just("((((".to_string()),
        Just("))".to_string()),
    ];
    prop_oneof![
        (tag.clone(), status.clone(), code.clone(), text)
            .prop_map(|(t, s, c, x)| format!("{t} {s} {c}{x}\r\n")),
        (status, code, "[ -~]{0,10}").prop_map(|(s, c, x)| format!("* {s} {c}{x}\r\n")),
        (tag, literal.clone()).prop_map(|(t, l)| format!("{t} NO no such mailbox {l}\r\n")),
        (1u32..5, prop::collection::vec(fetch_item, 0..6))
            .prop_map(|(n, items)| format!("* {n} FETCH ({})\r\n", items.join(" "))),
        Just("* LIST (\\HasNoChildren \\Sent) \"/\" \"Sent\"\r\n".to_string()),
        literal.prop_map(|l| format!("* LIST () \"/\" {l}\r\n")),
        Just("* LIST (\\Noselect) NIL INBOX\r\n".to_string()),
        Just("* SEARCH 1 2 x 4294967296 (MODSEQ 5)\r\n".to_string()),
        (0u32..100).prop_map(|n| format!("* {n} EXISTS\r\n")),
        "[ -~]{0,12}".prop_map(|x| format!("+ {x}\r\n")),
        Just("* CAPABILITY IMAP4rev1 LITERAL+ MULTIAPPEND UIDPLUS CONDSTORE APPENDLIMIT=10 SPECIAL-USE LIST-EXTENDED\r\n".to_string()),
        "[ -~]{0,30}".prop_map(|x| format!("{x}\r\n")),
    ]
}

/// One POP3 answer, shaped like what a server sends, or broken.
fn pop3_line() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,20}".prop_map(|x| format!("+OK {x}\r\n")),
        "[ -~]{0,20}".prop_map(|x| format!("-ERR {x}\r\n")),
        Just("-ERR [SYS/TEMP] busy\r\n".to_string()),
        Just(".\r\n".to_string()),
        Just("..stuffed\r\n".to_string()),
        (0u32..5, 0u64..5000).prop_map(|(n, s)| format!("{n} {s}\r\n")),
        (0u32..5, "[!-~]{0,80}").prop_map(|(n, u)| format!("{n} {u}\r\n")),
        Just("+OK 2 320\r\n".to_string()),
        Just("+ eyJzdGF0dXMiOiI0MDAifQ==\r\n".to_string()),
        "[ -~]{0,30}".prop_map(|x| format!("{x}\r\n")),
        "[ -~]{0,30}".prop_map(|x| x.to_string()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn imap_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        imap::client::replay_session(&bytes);
    }

    #[test]
    fn imap_response_shaped(lines in prop::collection::vec(imap_line(), 0..40)) {
        let mut server = String::from("* OK ready\r\n");
        server.push_str(&lines.concat());
        imap::client::replay_session(server.as_bytes());
    }

    #[test]
    fn pop3_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        pop3::replay_session(&bytes);
    }

    #[test]
    fn pop3_answer_shaped(lines in prop::collection::vec(pop3_line(), 0..40)) {
        pop3::replay_session(lines.concat().as_bytes());
    }
}

/// Well-formed sessions get all the way through: the replays really drive the clients past
/// the login (what the shaped cases build on).
#[test]
fn well_formed_sessions_replay_to_the_end() {
    let imap_server = "* OK ready\r\n\
        * CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR LITERAL+\r\nC1 OK done\r\n\
        C2 OK logged in\r\n\
        * CAPABILITY IMAP4rev1 LITERAL+\r\nC3 OK done\r\n\
        * LIST () \"/\" INBOX\r\nC4 OK listed\r\n\
        * 1 EXISTS\r\nC5 OK [READ-ONLY] examined\r\n\
        C6 OK [READ-ONLY] examined\r\n\
        * 1 FETCH (UID 1 RFC822.SIZE 5 BODY[HEADER.FIELDS (MESSAGE-ID DATE SUBJECT)] {2}\r\n\r\n)\r\nC7 OK\r\n\
        * 1 FETCH (UID 1 BODY[] {5}\r\nhello)\r\nC8 OK\r\n\
        * 1 FETCH (UID 1 BODY[] {5}\r\nhello)\r\nC9 OK\r\n\
        C10 OK [APPENDUID 1 2] ok\r\nC11 OK [APPENDUID 1 3] ok\r\n\
        C12 OK created\r\n\
        * SEARCH 1\r\nC13 OK\r\n\
        * BYE bye\r\nC14 OK\r\n";
    assert_eq!(imap::client::replay_session(imap_server.as_bytes()), 8);
    // CAPA is asked again after the login (servers may offer more then).
    let pop3_server = "+OK ready\r\n+OK\r\nUSER\r\nUIDL\r\n.\r\n+OK\r\n+OK\r\n\
        +OK\r\nUSER\r\nUIDL\r\n.\r\n\
        +OK 1 5\r\n+OK\r\n1 5\r\n.\r\n+OK\r\n1 abc\r\n.\r\n\
        +OK\r\nhello\r\n.\r\n+OK\r\nhello\r\n.\r\n+OK\r\n+OK bye\r\n";
    assert_eq!(pop3::replay_session(pop3_server.as_bytes()), 7);
}
