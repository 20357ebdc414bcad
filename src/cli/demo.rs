//! `cutover demo init`: writes the sample corpus the demo plan (`plans/demo.yaml`) reads, so
//! the whole pipeline can run on a fresh machine with no server.

use std::path::PathBuf;

use super::{ExitCode, Output};
use crate::connectors::mail::corpus::{self, CorpusSpec};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: DemoCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum DemoCommand {
    /// Write the demo mailboxes (mbox files) into a folder.
    Init {
        /// Folder for the mbox files (default: `plans/demo`).
        #[arg(long, default_value = "plans/demo")]
        dir: PathBuf,
        /// Messages per mailbox.
        #[arg(long, default_value_t = 40)]
        messages: usize,
    },
}

/// The demo users and the seed of each one's mailbox: fixed, so every machine gets the same bytes.
pub const DEMO_MAILBOXES: [(&str, u64); 2] = [("ana.mbox", 1), ("ben.mbox", 2)];

pub fn run(args: &Args, output: &mut Output<'_>) -> ExitCode {
    match &args.command {
        DemoCommand::Init { dir, messages } => {
            if let Err(e) = std::fs::create_dir_all(dir) {
                let _ = writeln!(output.err, "error: cannot create {}: {e}", dir.display());
                return ExitCode::Usage;
            }
            for (file, seed) in DEMO_MAILBOXES {
                let path = dir.join(file);
                let spec = CorpusSpec {
                    attachment_size: 24 * 1024,
                    ..CorpusSpec::new(seed, *messages)
                };
                match corpus::write_mbox(&spec, &path) {
                    Ok(summary) => {
                        let _ = writeln!(
                            output.out,
                            "wrote {} ({} messages, {} bytes)",
                            path.display(),
                            summary.messages,
                            summary.bytes
                        );
                    }
                    Err(e) => {
                        let _ = writeln!(output.err, "error: {e}");
                        return ExitCode::Failure;
                    }
                }
            }
            ExitCode::Ok
        }
    }
}
