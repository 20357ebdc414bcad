//! Real servers started by the integration tests themselves (see `docs`/design: a test that
//! needs a server and cannot start it fails, it never skips).
#![allow(dead_code)]

pub mod azurite;
pub mod dovecot;
pub mod fake_imap;
pub mod fault_proxy;
pub mod graph_fake;
pub mod http_proxy;
pub mod knot;
pub mod mailbox;
pub mod random_file;
pub mod remote;
pub mod token_endpoint;
