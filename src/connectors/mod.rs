//! Connectors know protocols and file formats, not the DAG.
pub mod autocomplete;
pub mod mail;
