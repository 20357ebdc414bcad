//! cutover: declarative mail-migration plans.
//!
//! The binary is a thin shell over this library: every command's work lives here so it can be
//! tested without a process. See `docs/architecture.md` for the code map.
pub mod cli;
pub mod connectors;
pub mod engine;
pub mod files;
pub mod graph;
pub mod live;
pub mod ops;
pub mod plan;
pub mod redact;
pub mod runners;
pub mod secrets;
pub mod state;
pub mod time;
pub mod trace;
