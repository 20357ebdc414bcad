//! Helpers shared by integration tests: run a command in-process and capture its output.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

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

/// Every file below `dir`, recursively (none when it cannot be read).
pub fn files_below(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_below(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// A copy of the demo plan and its mailboxes in a temp dir (the real one writes into the repo).
pub fn demo_copy() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("demo")).unwrap();
    for mbox in ["ana.mbox", "ben.mbox"] {
        std::fs::copy(
            Path::new("plans/demo").join(mbox),
            dir.path().join("demo").join(mbox),
        )
        .unwrap();
    }
    let plan = std::fs::read_to_string("plans/demo.yaml")
        .unwrap()
        .replace("../demo-out", "demo-out");
    assert!(plan.contains("path: demo-out") && plan.contains("output_dir: demo-out"));
    let path = dir.path().join("demo.yaml");
    std::fs::write(&path, plan).unwrap();
    (dir, path)
}

pub mod apply_process;
pub mod cancel_after;
pub mod child;
#[allow(unused_imports)]
pub use cancel_after::CancelAfter;
#[allow(unused_imports)]
pub use child::*;
