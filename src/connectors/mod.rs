//! Connectors know protocols and file formats, not the DAG.
pub mod autocomplete;
pub mod azure_blob;
pub mod dns;
pub mod folder_filter;
pub mod graph;
pub mod http;
pub mod imap;
pub mod mail;
pub mod mailflow;
pub mod net;
pub mod oauth;
pub mod pop3;
pub mod pst;
pub mod pst_mapping;
pub mod send_rate;
pub mod tls;
