//! Step runners: what binds the engine's step kinds to connectors. The engine walks steps and
//! knows no protocol; connectors know protocols and formats and no DAG; this module reads the
//! plan and puts the two together.
//!
//! [`runners_for`] builds a runner for every step of a plan. Anything this build cannot do
//! gets an [`Unsupported`](crate::engine::Unsupported) runner naming it, so a plan mixing
//! supported and unsupported steps still runs what it can.

pub mod autocomplete;
pub mod local;
mod m365;
pub mod remote;
pub mod skipped;
mod tally;

pub use local::runners_for;
