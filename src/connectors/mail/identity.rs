//! What tells one message from another across a copy, whatever the target does to its bytes.
//!
//! A copy must recognize, at the target, the messages an earlier (crashed, or overlapping)
//! run already stored there — and must never mistake a *different* message for one of them.
//! Two facts decide the design:
//!
//! * **Exchange rewrites MIME.** A message appended to Exchange Online is stored as MAPI
//!   properties and served back as newly generated MIME: other boundaries, other transfer
//!   encodings, other header order and folding, another size. A digest of the bytes (or of the
//!   first body bytes, or a size class) would not survive that round trip, so a resumed copy
//!   into Microsoft 365 would store the mail again. What survives is semantic: the
//!   Message-ID (`PR_INTERNET_MESSAGE_ID`), the `Date:` to the second (`PR_CLIENT_SUBMIT_TIME`)
//!   and the subject's text (`PR_SUBJECT`, possibly re-encoded).
//! * **Message-IDs are not unique.** Mailing-list copies, a message and its edited draft,
//!   broken senders reusing one id: distinct messages share Message-IDs in real mailboxes.
//!
//! So an [`Identity`] is a digest of three header fields: the normalized Message-ID, the
//! `Date:` as an instant (seconds since the epoch, so a re-rendered zone or format compares
//! equal), and the subject decoded from RFC 2047 with whitespace runs collapsed. Messages that
//! share a Message-ID but were sent at another second or under another subject are different
//! identities. Messages that agree on all three (true duplicates, or list copies of one post)
//! share an identity, and are handled by counting: a target folder must hold as many copies
//! of an identity as the source has, so a second copy is still copied — the identity is a
//! *multiset* key, never a set key ([`IdentityCounts`]).
//!
//! Known limits, accepted: a message without `Date:` to which a target adds one, or without a
//! Message-ID to which a target adds one, is not recognized at that target after a crash (it
//! may then be stored twice). Both are rare in real mail, and no field that every target keeps
//! tells such messages apart better.

use std::collections::HashMap;
use std::fmt;

use sha2::{Digest, Sha256};

use super::date::parse_rfc5322;
use super::encoding::decode_rfc2047;
use super::message::{header_fields, normalize_message_id};

/// See the module documentation. Cheap to copy and hash; its [`Display`](fmt::Display) form
/// (hex) is what errors and traces show, never the fields it was made from.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity([u8; 16]);

impl Identity {
    /// The identity of a message from its header section: `bytes` may be a whole message or
    /// only its header fields (an IMAP `HEADER.FIELDS` fetch, a POP3 `TOP n 0`). Only the
    /// first `Message-ID`, `Date` and `Subject` fields count.
    pub fn of_message(bytes: &[u8]) -> Identity {
        let (mut message_id, mut date, mut subject) = (None, None, None);
        for field in header_fields(bytes) {
            let name = field.name;
            if message_id.is_none() && name.eq_ignore_ascii_case(b"Message-ID") {
                message_id = Some(normalize_message_id(&field.value).unwrap_or_default());
            } else if date.is_none() && name.eq_ignore_ascii_case(b"Date") {
                let text = String::from_utf8_lossy(&field.value).trim().to_owned();
                date = Some(match parse_rfc5322(&text) {
                    Some(t) => match t.duration_since(std::time::UNIX_EPOCH) {
                        Ok(d) => d.as_secs().to_string(),
                        Err(e) => format!("-{}", e.duration().as_secs()),
                    },
                    // Unparsable: the text itself, which a byte-preserving target keeps.
                    None => format!("raw:{text}"),
                });
            } else if subject.is_none() && name.eq_ignore_ascii_case(b"Subject") {
                let decoded = decode_rfc2047(&field.value);
                subject = Some(decoded.split_whitespace().collect::<Vec<_>>().join(" "));
            }
            if message_id.is_some() && date.is_some() && subject.is_some() {
                break;
            }
        }
        let mut h = Sha256::new();
        for part in [message_id, date, subject] {
            // Absent and empty are told apart: a tag byte before each part.
            match part {
                Some(p) => {
                    h.update([1]);
                    h.update((p.len() as u64).to_le_bytes());
                    h.update(p.as_bytes());
                }
                None => h.update([0]),
            }
        }
        let digest = h.finalize();
        let mut out = [0u8; 16];
        out.copy_from_slice(&digest[..16]);
        Identity(out)
    }

    /// The digest, for storing an identity (a checkpoint value).
    pub fn to_bytes(self) -> [u8; 16] {
        self.0
    }

    /// An identity stored with [`to_bytes`](Self::to_bytes); `None` for anything else.
    pub fn from_bytes(bytes: &[u8]) -> Option<Identity> {
        bytes.try_into().ok().map(Identity)
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&super::encoding::hex(&self.0))
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({self})")
    }
}

/// How many messages of each [`Identity`] a folder holds: the multiset a copy compares against.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentityCounts(HashMap<Identity, u32>);

impl IdentityCounts {
    pub fn new() -> Self {
        Self::default()
    }

    /// Copies of `identity` held.
    pub fn get(&self, identity: &Identity) -> u32 {
        self.0.get(identity).copied().unwrap_or(0)
    }

    /// One more copy of `identity`.
    pub fn add(&mut self, identity: Identity) {
        *self.0.entry(identity).or_default() += 1;
    }

    /// Messages counted, copies included.
    pub fn total(&self) -> u64 {
        self.0.values().map(|&n| u64::from(n)).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Each identity with its count, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&Identity, u32)> + '_ {
        self.0.iter().map(|(i, &n)| (i, n))
    }
}

impl FromIterator<Identity> for IdentityCounts {
    fn from_iter<T: IntoIterator<Item = Identity>>(iter: T) -> Self {
        let mut counts = IdentityCounts::new();
        for i in iter {
            counts.add(i);
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(text: &str) -> Identity {
        Identity::of_message(text.as_bytes())
    }

    #[test]
    fn survives_what_exchange_does_to_a_message() {
        let original = "Message-ID: <A1@Example.COM>\r\nDate: Mon, 1 Jan 2024 10:00:00 +0100\r\n\
                        Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=  aus\r\n Berlin\r\n\r\nbody";
        // Re-rendered: zone, folding, encoding, header order and body all differ.
        let rewritten = "Subject: =?iso-8859-1?q?Gr=FC=DFe_aus_Berlin?=\r\nDate: Mon, 01 Jan 2024 \
                         09:00:00 +0000\r\nMessage-ID: <A1@example.com>\r\nContent-Type: text/html\r\n\r\n<p>body</p>";
        assert_eq!(id(original), id(rewritten));
    }

    #[test]
    fn one_message_id_with_another_date_or_subject_is_another_message() {
        let a = id(
            "Message-ID: <same@x>\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\nSubject: a\r\n\r\n",
        );
        let b = id(
            "Message-ID: <same@x>\r\nDate: Mon, 1 Jan 2024 10:00:01 +0000\r\nSubject: a\r\n\r\n",
        );
        let c = id(
            "Message-ID: <same@x>\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\nSubject: b\r\n\r\n",
        );
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_ne!(b, c);
    }

    #[test]
    fn a_header_fetch_and_the_whole_message_agree() {
        let whole = "Received: x\r\nSubject: Hi\r\nMessage-ID: <1@x>\r\nDate: Tue, 2 Jan 2024 \
                     08:00:00 +0000\r\n\r\nSubject: not a header\r\n";
        let fields =
            "Message-ID: <1@x>\r\nSubject: Hi\r\nDate: Tue, 2 Jan 2024 08:00:00 +0000\r\n\r\n";
        assert_eq!(id(whole), id(fields));
    }

    #[test]
    fn absent_and_empty_fields_differ() {
        assert_ne!(id("Subject: \r\n\r\n"), id("\r\n"));
        assert_ne!(id("Date: nonsense\r\n\r\n"), id("\r\n"));
    }

    #[test]
    fn counts_are_a_multiset() {
        let x = id("Message-ID: <x@y>\r\n\r\n");
        let counts: IdentityCounts = [x, x, id("\r\n")].into_iter().collect();
        assert_eq!(counts.get(&x), 2);
        assert_eq!(counts.total(), 3);
    }
}
