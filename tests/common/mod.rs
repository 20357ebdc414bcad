//! Helpers shared by integration tests: run a command in-process and capture its output.
#![allow(dead_code)]

use clap::Parser;
use cutover::cli::{self, Cli, ExitCode, Output};

pub struct Captured {
    pub code: ExitCode,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cutover <args>` in-process, without colour.
pub fn run(args: &[&str]) -> Captured {
    let cli = Cli::try_parse_from(std::iter::once("cutover").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("bad test command line {args:?}: {e}"));
    let mut out = Vec::new();
    let mut err = Vec::new();
    let code = {
        let mut output = Output {
            out: &mut out,
            err: &mut err,
            color: false,
            verbosity: cli.verbosity(),
        };
        cli::run(cli, &mut output)
    };
    Captured {
        code,
        stdout: String::from_utf8(out).expect("stdout is UTF-8"),
        stderr: String::from_utf8(err).expect("stderr is UTF-8"),
    }
}

pub mod apply_process;
pub mod cancel_after;
pub mod child;
#[allow(unused_imports)]
pub use cancel_after::CancelAfter;
#[allow(unused_imports)]
pub use child::*;
