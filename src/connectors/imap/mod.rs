//! IMAP client (see client.rs).
