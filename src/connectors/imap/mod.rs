//! IMAP: a small client of our own ([`client`]), the wire syntax it needs ([`proto`]) and the
//! pure folder-name mapping from a source server's names to the target's ([`folders`]).
//!
//! Why our own client instead of `async-imap`: that crate works against Dovecot, but its
//! `append` drops the `APPENDUID` response (RFC 4315), which is what lets a resumed copy
//! checkpoint the exact target UID; it also buffers whole FETCH responses and surfaces `NO`
//! response codes only as text. What a migration needs is a narrow slice of IMAP (LOGIN /
//! AUTHENTICATE, LIST with SPECIAL-USE, EXAMINE/SELECT, streamed UID FETCH, APPEND with
//! LITERAL+ and APPENDUID, CREATE, LOGOUT), small enough to own outright on tokio +
//! tokio-rustls, sharing transport, TLS policy and error type with the POP3 client.

pub mod client;
pub mod folders;
mod proto;

pub use super::net::detect_throttle;
pub use client::{AppendUid, FetchedMessage, ImapClient, Mailbox, MailboxStatus, PORTS};
