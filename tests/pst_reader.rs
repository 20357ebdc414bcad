//! The PST reader and converter on writer-made files (always) and the real fixtures (when
//! `CUTOVER_REAL_FIXTURES` is set): structure, default folders by role, conversion to
//! RFC 5322, flags, determinism, contacts and calendar, autocomplete, corrupt files.

mod pst_fixtures;

use std::path::Path;

use cutover::connectors::autocomplete;
use cutover::connectors::mail::identity::Identity;
use cutover::connectors::mail::{Flag, RawMessage};
use cutover::connectors::pst::{
    calendar_ics, contacts_csv, contacts_vcard, ConvertOptions, CryptMethod, FolderRole, Format,
    PstError, PstFile,
};
use pst_fixtures::pst_writer;

fn folder_nid(file: &PstFile, path: &str) -> u32 {
    file.folders()
        .iter()
        .find(|f| f.path.join("/") == path)
        .unwrap_or_else(|| panic!("no folder {path}"))
        .nid
}

fn message_by_subject(file: &PstFile, folder: &str, subject: &str) -> u32 {
    file.messages(folder_nid(file, folder))
        .messages
        .into_iter()
        .find(|m| m.subject == subject)
        .unwrap_or_else(|| panic!("no message {subject:?} in {folder}"))
        .nid
}

#[test]
fn every_format_and_encoding_reads_the_same_store() {
    let dir = tempfile::tempdir().unwrap();
    for (path, (ansi, crypt)) in pst_fixtures::twins(dir.path()).iter().zip(
        [false, true]
            .into_iter()
            .flat_map(|a| [0u8, 1, 2].into_iter().map(move |c| (a, c))),
    ) {
        let file = PstFile::open(path).unwrap();
        let store = file.store();
        assert_eq!(
            store.format,
            if ansi { Format::Ansi } else { Format::Unicode }
        );
        assert_eq!(store.version, if ansi { 14 } else { 23 });
        assert_eq!(
            store.crypt,
            [CryptMethod::None, CryptMethod::Permute, CryptMethod::Cyclic][crypt as usize]
        );
        assert_eq!(store.display_name, "cmachado@as.pt");
        assert!(store.has_password, "PidTagPstPassword is reported");
        // Default folders by entry id, whatever their Portuguese names.
        let role = |r: FolderRole| file.folder_with_role(r).map(|f| f.path.join("/"));
        assert_eq!(role(FolderRole::Inbox).as_deref(), Some("Caixa de Entrada"));
        assert_eq!(
            role(FolderRole::SentItems).as_deref(),
            Some("Itens enviados")
        );
        assert_eq!(
            role(FolderRole::DeletedItems).as_deref(),
            Some("Itens eliminados")
        );
        assert_eq!(role(FolderRole::Drafts).as_deref(), Some("Rascunhos"));
        assert_eq!(role(FolderRole::Junk).as_deref(), Some("E-mail de Lixo"));
        assert_eq!(role(FolderRole::Calendar).as_deref(), Some("Calendário"));
        assert_eq!(role(FolderRole::Contacts).as_deref(), Some("Contactos"));
        let child = file
            .folders()
            .iter()
            .find(|f| f.path.last().is_some_and(|n| n.starts_with("Child")))
            .unwrap();
        assert_eq!(
            child.target_path,
            vec!["INBOX", "Top Folder", "Child Folder With Space at the End "]
        );
        let inbox = file.folder_with_role(FolderRole::Inbox).unwrap();
        assert_eq!((inbox.message_count, inbox.associated_count), (4, 1));
        // Associated messages are never listed as mail.
        assert_eq!(file.messages(inbox.nid).messages.len(), 4);
        assert_eq!(
            file.autocomplete_stream().unwrap().as_deref(),
            Some(&b"autocomplete stream bytes"[..])
        );
    }
}

#[test]
fn received_mail_keeps_its_headers_and_gets_a_rebuilt_body() {
    let dir = tempfile::tempdir().unwrap();
    let path = pst_fixtures::write_to(dir.path(), "s.pst", &pst_fixtures::sample(false, 2));
    let file = PstFile::open(&path).unwrap();
    let nid = message_by_subject(&file, "Caixa de Entrada", "Teste 23:34");
    let message = file.message(nid).unwrap();
    let text = String::from_utf8_lossy(&message.bytes).into_owned();
    assert!(
        text.starts_with("Return-Path: <abcd@as.pt>\r\nReceived: from mx.as.pt\r\n\tby machbox")
    );
    assert!(text.contains("Message-ID: <teste-2334@as.pt>\r\n"));
    assert!(!text.contains("iso-8859-1"), "the old Content-Type is gone");
    assert_eq!(text.matches("MIME-Version: 1.0").count(), 1);
    assert!(text.contains("Content-Type: multipart/mixed"));
    assert!(text.contains("Content-Type: multipart/related"));
    assert!(
        text.contains("Content-ID: <logo@x>"),
        "inline image keeps its Content-ID"
    );
    assert!(text.contains("filename=\"relatorio.pdf\""));
    assert!(message.flags.contains(Flag::Seen));
    assert!(!message.flags.contains(Flag::Flagged));
    let internal = message.internal_date.unwrap();
    assert_eq!(
        internal
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64,
        pst_fixtures::T0 + 60,
        "INTERNALDATE is the delivery time"
    );
    // The 20 kB attachment spans a data tree (XBLOCK): its bytes come back whole.
    let item = file.item(nid).unwrap();
    let pdf = item
        .attachments
        .iter()
        .find_map(|a| match a.props.get(0x3701) {
            Some(cutover::connectors::pst::PropValue::Binary(b)) if b.len() == 20_000 => Some(b),
            _ => None,
        });
    assert_eq!(pdf.unwrap(), &pst_fixtures::pseudo_image(20_000, 1));
}

#[test]
fn mail_without_transport_headers_is_built_from_properties() {
    let dir = tempfile::tempdir().unwrap();
    let path = pst_fixtures::write_to(dir.path(), "s.pst", &pst_fixtures::sample(false, 1));
    let file = PstFile::open(&path).unwrap();
    let nid = message_by_subject(&file, "Caixa de Entrada", "RE: Relatório");
    let options = ConvertOptions::with_ex_map([(
        "/O=Org/OU=Admin/cn=Recipients/cn=rui".to_owned(),
        "rui@as.pt".to_owned(),
    )]);
    let message = file.message_with(nid, &options).unwrap();
    let raw = RawMessage::new(message.bytes.clone());
    assert_eq!(
        raw.subject().as_deref(),
        Some("RE: Relatório"),
        "no \\x01 prefix"
    );
    let from = String::from_utf8_lossy(&raw.header("From").unwrap()).into_owned();
    assert!(from.contains("ana@as.pt"), "{from}");
    let cc = String::from_utf8_lossy(&raw.header("Cc").unwrap()).into_owned();
    assert!(
        cc.contains("rui@as.pt"),
        "EX recipient resolved through the map: {cc}"
    );
    assert!(
        String::from_utf8_lossy(&raw.header("In-Reply-To").unwrap()).contains("teste-2334@as.pt")
    );
    assert!(
        message.flags.contains(Flag::Flagged),
        "follow-up flag → \\Flagged"
    );
    assert!(!message.flags.contains(Flag::Seen));
    let text = String::from_utf8_lossy(&message.bytes);
    assert!(
        text.contains("Content-Type: text/rtf"),
        "plain RTF is kept as text/rtf"
    );
    // Without the map the EX address is not invented: the name stays, as an empty group.
    let bare = file.message(nid).unwrap();
    let cc =
        String::from_utf8_lossy(&RawMessage::new(bare.bytes).header("Cc").unwrap()).into_owned();
    assert!(cc.contains("Rui") && !cc.contains('@'), "{cc}");
}

#[test]
fn drafts_nesting_and_messages_without_subnodes() {
    let dir = tempfile::tempdir().unwrap();
    let path = pst_fixtures::write_to(dir.path(), "s.pst", &pst_fixtures::sample(true, 1));
    let file = PstFile::open(&path).unwrap();
    let draft = file
        .message(message_by_subject(&file, "Rascunhos", "rascunho"))
        .unwrap();
    assert!(draft.flags.contains(Flag::Draft) && draft.flags.contains(Flag::Seen));
    let text = String::from_utf8_lossy(&draft.bytes).into_owned();
    assert!(text.contains("Message-ID: <") && text.contains("@pst.cutover.invalid>"));
    // Four levels of message/rfc822.
    let nested = file
        .message(message_by_subject(&file, "Caixa de Entrada", "level 1"))
        .unwrap();
    let text = String::from_utf8_lossy(&nested.bytes).into_owned();
    assert_eq!(text.matches("Content-Type: message/rfc822").count(), 3);
    for level in 1..=4 {
        assert!(
            text.contains(&format!("Subject: level {level}")),
            "level {level}"
        );
    }
    assert!(text.contains("filename=\"deep.txt\""));
    // No sub-node tree: no recipients, no attachments, no error.
    let bare = file
        .item(message_by_subject(&file, "Caixa de Entrada", "sem anexos"))
        .unwrap();
    assert!(bare.recipients.is_empty() && bare.attachments.is_empty() && bare.problems.is_empty());
}

#[test]
fn the_same_pst_gives_the_same_bytes_every_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = pst_fixtures::write_to(dir.path(), "s.pst", &pst_fixtures::sample(false, 2));
    let convert_all = || {
        let file = PstFile::open(&path).unwrap();
        let mut out = Vec::new();
        for folder in file.folders() {
            for nid in file.message_nids(folder.nid) {
                out.push(file.message(nid).unwrap().bytes);
            }
        }
        out
    };
    let first = convert_all();
    assert_eq!(first.len(), 11);
    assert_eq!(first, convert_all());
}

/// Attachment data over 256 KiB is left in the file when a message is converted and written
/// out block by block: the message's exact size is known before its first byte, the pieces
/// add up to the bytes of the whole conversion, and each large attachment's part is byte for
/// byte what mail-builder writes for the same data held in memory — also inside an embedded
/// message. A large text file is base64 too (choosing 7-bit would need its data read twice).
#[test]
fn large_attachments_are_written_block_by_block_as_mail_builder_would() {
    use mail_builder::headers::content_type::ContentType;
    use mail_builder::mime::{BodyPart, MimePart};

    let dir = tempfile::tempdir().unwrap();
    let mut spec = pst_fixtures::sample(false, 1);
    let mut big = pst_fixtures::mail_with_attachment("big", pst_fixtures::T0, 1_000_003, 7);
    let notes: Vec<u8> = b"line of notes\r\n".repeat(20_000);
    big.attachments
        .push(pst_fixtures::file("notes.txt", &notes, "text/plain"));
    big.attachments.push(pst_fixtures::embedded(
        pst_fixtures::mail_with_attachment("inner", pst_fixtures::T0 - 5, 400_001, 9),
        "inner",
    ));
    spec.folders.push(pst_writer::FolderSpec {
        name: "Big".into(),
        container_class: Some("IPF.Note".into()),
        messages: vec![
            big,
            pst_fixtures::mail_with_attachments("many", pst_fixtures::T0 + 1, 8, 200_000),
        ],
        ..pst_writer::FolderSpec::default()
    });
    let path = pst_fixtures::write_to(dir.path(), "big.pst", &spec);
    let file = PstFile::open(&path).unwrap();
    let nid = message_by_subject(&file, "Big", "big");

    let whole = file.message(nid).unwrap().bytes;
    let mut stream = file
        .message_stream(nid, &ConvertOptions::default())
        .unwrap();
    assert_eq!(
        stream.size(),
        whole.len() as u64,
        "size known before the first piece"
    );
    let mut pieces = Vec::new();
    let mut piece = Vec::new();
    // An odd piece size: pieces end mid-line and mid-block.
    while stream.next_piece(&file, &mut piece, 1_001).unwrap() {
        assert!(!piece.is_empty() && piece.len() <= 1_001);
        pieces.extend_from_slice(&piece);
    }
    assert!(stream.is_done());
    assert!(
        pieces == whole,
        "streamed bytes differ from the whole conversion"
    );

    let part = |name: &str, mime: &'static str, data: Vec<u8>| {
        let mut out = Vec::new();
        MimePart::new(ContentType::new(mime), BodyPart::Binary(data.into()))
            .attachment(name.to_owned())
            .write_part(&mut out);
        out
    };
    let contains = |needle: &[u8]| whole.windows(needle.len()).any(|w| w == needle);
    for (name, mime, data) in [
        (
            "big.pdf",
            "application/pdf",
            pst_fixtures::pseudo_image(1_000_003, 7),
        ),
        (
            "inner.pdf",
            "application/pdf",
            pst_fixtures::pseudo_image(400_001, 9),
        ),
    ] {
        assert!(
            contains(&part(name, mime, data)),
            "{name}: not the part mail-builder writes"
        );
    }
    // mail-builder would pick 7bit for this text held in memory; streamed, it is base64.
    let mut encoded = b"Content-Transfer-Encoding: base64\r\n\r\n".to_vec();
    encodify::base64::MIME.encode_append(&notes, &mut encoded);
    assert!(contains(&encoded), "notes.txt: not its data in MIME base64");
    assert!(whole.len() > 1_800_000, "{} bytes", whole.len());

    // Many attachments, each under 256 KiB: those past the first 512 KiB a message holds
    // are streamed too, and every part is still mail-builder's.
    let nid = message_by_subject(&file, "Big", "many");
    let whole = file.message(nid).unwrap().bytes;
    let mut stream = file
        .message_stream(nid, &ConvertOptions::default())
        .unwrap();
    assert_eq!(stream.size(), whole.len() as u64);
    let mut pieces = Vec::new();
    while stream.next_piece(&file, &mut piece, 65_536).unwrap() {
        pieces.extend_from_slice(&piece);
    }
    assert!(
        pieces == whole,
        "streamed bytes differ from the whole conversion"
    );
    let contains = |needle: &[u8]| whole.windows(needle.len()).any(|w| w == needle);
    assert!(contains(&part(
        "many.pdf",
        "application/pdf",
        pst_fixtures::pseudo_image(200_000, 0)
    )));
    for i in 1..8u32 {
        let name = format!("photo {i}.jpg");
        let expected = part(&name, "image/jpeg", pst_fixtures::pseudo_image(200_000, i));
        assert!(
            contains(&expected),
            "{name}: not the part mail-builder writes"
        );
    }
}

/// The cheap header section carries the same identity (Message-ID, Date, Subject) as the
/// full conversion, so a source adapter can list identities without converting bodies.
#[test]
fn header_section_has_the_identity_of_the_full_message() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = pst_fixtures::twins(dir.path());
    files.extend(pst_fixtures::real_psts());
    let mut checked = 0;
    for path in files {
        let file = PstFile::open(&path).unwrap();
        for folder in file.folders() {
            for nid in file.message_nids(folder.nid) {
                let full = file.message(nid).unwrap().bytes;
                let head = file.header_section(nid).unwrap();
                assert_eq!(
                    Identity::of_message(&head),
                    Identity::of_message(&full),
                    "{} node {nid:#x}",
                    path.display()
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 66, "{checked}");
}

#[test]
fn contacts_lists_and_calendar_export() {
    let dir = tempfile::tempdir().unwrap();
    let path = pst_fixtures::write_to(dir.path(), "s.pst", &pst_fixtures::sample(false, 1));
    let file = PstFile::open(&path).unwrap();
    let (contacts, lists, problems) = file.contacts();
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(contacts.len(), 1);
    assert_eq!(lists.len(), 1);
    assert_eq!(lists[0].members.len(), 3);
    let (events, problems) = file.events();
    assert!(problems.is_empty(), "{problems:?}");
    insta::assert_snapshot!(
        "synthetic_vcard",
        String::from_utf8(contacts_vcard(&contacts, &lists)).unwrap()
    );
    insta::assert_snapshot!(
        "synthetic_csv",
        String::from_utf8(contacts_csv(&contacts)).unwrap()
    );
    insta::assert_snapshot!(
        "synthetic_ics",
        String::from_utf8(calendar_ics(&events)).unwrap()
    );
}

#[test]
fn real_fixtures_contacts_calendar_and_autocomplete() {
    let Some(folder) = pst_fixtures::real_folder() else {
        eprintln!("CUTOVER_REAL_FIXTURES unset: the writer-made twin is checked by contacts_lists_and_calendar_export");
        return;
    };
    let file = PstFile::open(folder.join("java-libpst_dist-list.pst")).unwrap();
    let (contacts, lists, _) = file.contacts();
    let (events, _) = file.events();
    assert_eq!((contacts.len(), lists.len(), events.len()), (1, 1, 1));
    let members: Vec<&str> = lists[0]
        .members
        .iter()
        .map(|m| m.address.as_str())
        .collect();
    assert_eq!(members.len(), 3);
    for expected in ["contact1@", "dist1@", "dist2@rjohnson.id.au"] {
        assert!(
            members
                .iter()
                .any(|m| m.starts_with(expected) || m == &expected),
            "{members:?}"
        );
    }
    insta::assert_snapshot!(
        "real_dist_list_vcard",
        String::from_utf8(contacts_vcard(&contacts, &lists)).unwrap()
    );
    insta::assert_snapshot!(
        "real_dist_list_csv",
        String::from_utf8(contacts_csv(&contacts)).unwrap()
    );
    insta::assert_snapshot!(
        "real_dist_list_ics",
        String::from_utf8(calendar_ics(&events)).unwrap()
    );

    let unsent = PstFile::open(folder.join("process-pst_unsent_email.pst")).unwrap();
    assert_eq!(unsent.contacts().0.len(), 2);
    let stream = unsent
        .autocomplete_stream()
        .unwrap()
        .expect("the Inbox FAI holds a stream");
    let extracted = std::fs::read(folder.join(
        "process-pst_unsent_email_IPM.Configuration.Autocomplete_PR_ROAMING_BINARYSTREAM.bin",
    ))
    .unwrap();
    assert_eq!(stream, extracted, "byte-identical to the extracted stream");
    let parsed = autocomplete::format::parse(&stream).expect("the autocomplete parser reads it");
    assert_eq!(parsed.rows.len(), 2);

    let portuguese = PstFile::open(folder.join("pstconv_outlook.pst")).unwrap();
    let inbox = portuguese.folder_with_role(FolderRole::Inbox).unwrap();
    assert_eq!(inbox.path, vec!["Caixa de Entrada"]);
    let body_found = portuguese.message_nids(inbox.nid).into_iter().any(|nid| {
        let m = portuguese.message(nid).unwrap();
        let t = String::from_utf8_lossy(&m.bytes).into_owned();
        t.contains("abcd@as.pt") && t.contains("Teste 23:34")
    });
    assert!(
        body_found,
        "the message from abcd@as.pt with body 'Teste 23:34'"
    );
    let libyal = PstFile::open(folder.join("libyal-testdata_outlook.pst")).unwrap();
    assert!(
        libyal.folders().iter().any(|f| f.path == ["收件箱"]),
        "CJK folder name"
    );
}

// ---- corrupt files ------------------------------------------------------------------------

fn sample_bytes() -> Vec<u8> {
    pst_writer::write(&pst_fixtures::sample(false, 1))
}

fn open_bytes(dir: &Path, name: &str, bytes: &[u8]) -> Result<PstFile, PstError> {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    PstFile::open(&path)
}

/// Offset of the NBT root page, from the header (Unicode: BREFNBT.ib at 224).
fn nbt_root(bytes: &[u8]) -> usize {
    u64::from_le_bytes(bytes[224..232].try_into().unwrap()) as usize
}

#[test]
fn corrupt_files_name_file_offset_and_structure() {
    let dir = tempfile::tempdir().unwrap();
    let good = sample_bytes();

    let err = open_bytes(dir.path(), "truncated.pst", &good[..good.len() / 2])
        .err()
        .expect("truncated");
    let text = err.to_string();
    assert!(
        text.contains("truncated.pst") && text.contains("truncated?"),
        "{text}"
    );
    assert!(err.offset().is_some());

    let mut bad_magic = good.clone();
    bad_magic[0] = b'X';
    let err = open_bytes(dir.path(), "magic.pst", &bad_magic)
        .err()
        .expect("bad magic");
    assert_eq!(err.structure(), Some("header"));
    assert_eq!(err.offset(), Some(0));
    assert!(
        err.to_string().contains("magic.pst: header at byte 0x0"),
        "{err}"
    );

    let mut header_crc = good.clone();
    header_crc[200] ^= 0xFF;
    let err = open_bytes(dir.path(), "hcrc.pst", &header_crc)
        .err()
        .expect("header CRC");
    assert!(err.to_string().contains("dwCRCPartial"), "{err}");

    let root = nbt_root(&good);
    let mut broken_page = good.clone();
    broken_page[root + 3] ^= 0x55;
    let err = open_bytes(dir.path(), "page.pst", &broken_page)
        .err()
        .expect("broken NBT page");
    let text = err.to_string();
    assert!(text.contains(&format!("NBT page at {root:#x}")), "{text}");
    assert!(text.contains("CRC"), "{text}");
    assert_eq!(err.offset(), Some(root as u64));

    // A data block with a flipped byte: its CRC no longer matches. The first block written
    // is the store's property context, right after the 0x4400 header area.
    let mut bad_block = good.clone();
    bad_block[0x4400 + 20] ^= 0x01;
    let err = open_bytes(dir.path(), "block.pst", &bad_block)
        .err()
        .expect("bad block CRC");
    let text = err.to_string();
    assert!(
        text.contains("block.pst: block 0x") && text.contains("at byte 0x4400"),
        "{text}"
    );
    assert!(text.contains("CRC"), "{text}");
}

/// A data tree naming one block twice (which would let a tiny file describe gigabytes of
/// attachment) is damage: the attachment is not read, and the message says what it lacks.
#[test]
fn a_data_tree_naming_a_block_twice_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = pst_fixtures::sample(false, 0);
    spec.folders = vec![pst_writer::FolderSpec {
        name: "Twice".into(),
        container_class: Some("IPF.Note".into()),
        messages: vec![pst_fixtures::mail_with_attachment(
            "twice",
            pst_fixtures::T0,
            100_000,
            4,
        )],
        ..pst_writer::FolderSpec::default()
    }];
    let mut bytes = pst_writer::write(&spec);
    // The attachment's XBLOCK: btype 1, level 1, 13 leaves, 100,000 bytes (MS-PST 2.2.2.8.3.2.1).
    let leaves = 100_000usize.div_ceil(8176);
    let mut head = vec![0x01u8, 0x01];
    head.extend_from_slice(&(leaves as u16).to_le_bytes());
    head.extend_from_slice(&100_000u32.to_le_bytes());
    let x = bytes
        .windows(head.len())
        .position(|w| w == head.as_slice())
        .expect("the XBLOCK is in the file");
    let first: [u8; 8] = bytes[x + 8..x + 16].try_into().unwrap();
    bytes[x + 16..x + 24].copy_from_slice(&first);
    // Its trailer's CRC (MS-PST 5.3: CRC-32 without inversions) made to match again.
    let size = 8 + 8 * leaves;
    let trailer = x + (size + 16).div_ceil(64) * 64 - 16;
    let mut crc = crc32fast::Hasher::new_with_initial(0xFFFF_FFFF);
    crc.update(&bytes[x..x + size]);
    bytes[trailer + 4..trailer + 8].copy_from_slice(&(!crc.finalize()).to_le_bytes());
    let file = open_bytes(dir.path(), "twice.pst", &bytes).unwrap();
    let nid = message_by_subject(&file, "Twice", "twice");
    let message = file.message(nid).unwrap();
    assert!(
        message
            .notes
            .iter()
            .any(|n| n.contains("twice.pdf") && n.contains("appears twice")),
        "{:?}",
        message.notes
    );
    assert!(message.bytes.len() < 10_000, "the attachment was not read");
}

#[test]
fn one_bad_message_is_a_problem_not_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let path = pst_fixtures::write_to(dir.path(), "s.pst", &pst_fixtures::sample(false, 0));
    let mut bytes = std::fs::read(&path).unwrap();
    let file = PstFile::open(&path).unwrap();
    let inbox = file.folder_with_role(FolderRole::Inbox).unwrap().nid;
    let victim = file.message_nids(inbox)[1];
    let victim_offset = file.message_block_offset(victim).unwrap();
    drop(file);
    bytes[victim_offset as usize + 2] ^= 0xFF; // inside the message's HN header
    std::fs::write(&path, &bytes).unwrap();
    let file = PstFile::open(&path).unwrap();
    let listing = file.messages(inbox);
    assert_eq!(listing.messages.len(), 3);
    assert_eq!(listing.problems.len(), 1);
    let problem = &listing.problems[0];
    assert_eq!(problem.folder, "Caixa de Entrada");
    assert_eq!(problem.nid, victim);
    assert!(problem.reason.contains("CRC"), "{}", problem.reason);
}
