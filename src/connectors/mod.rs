//! Connectors know protocols and file formats, not the DAG.
pub mod autocomplete;
pub mod folder_filter;
pub mod imap;
pub mod mail;
pub mod mailflow;
pub mod net;
pub mod oauth;
pub mod pop3;
