//! Helpers of the benchmarks.

pub mod delay_proxy;
