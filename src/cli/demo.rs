//! `cutover demo init`: writes the sample corpus the demo plan (`plans/demo.yaml`) reads, so
//! the whole pipeline can run on a fresh machine with no server.

use std::path::PathBuf;

use super::{ExitCode, Output};
use crate::connectors::autocomplete::{AutocompleteFile, Entry, Row};
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
    /// Write the sample Outlook caches the seed plan (`plans/acme-to-m365.yaml`) names:
    /// made by cutover's own writer, shaped like the caches consultants collect.
    SeedSamples {
        /// Folder for the caches (default: `plans/acme/autocomplete`).
        #[arg(long, default_value = "plans/acme/autocomplete")]
        dir: PathBuf,
    },
}

/// The seed scenario's caches: Alice's Outlook 2007 `.nk2` and Bob's Outlook 2010 stream,
/// with an entry for an old Exchange (EX) address among them.
fn seed_samples() -> Vec<(&'static str, AutocompleteFile)> {
    let smtp = |name: &str, address: &str, weight: i32| Entry {
        display_name: name.into(),
        address_type: "SMTP".into(),
        email_address: address.into(),
        smtp_address: Some(address.into()),
        weight,
    };
    let ex = |name: &str, legacy_dn: &str, weight: i32| Entry {
        display_name: name.into(),
        address_type: "EX".into(),
        email_address: legacy_dn.into(),
        smtp_address: None,
        weight,
    };
    let file = |major: u32, minor: u32, entries: &[Entry]| {
        let mut file = AutocompleteFile::new(major, minor);
        file.rows = entries.iter().map(Row::from_entry).collect();
        // 2024-03-01T09:00:00Z as a FILETIME: fixed, so the samples never change.
        file.footer = ((1_709_283_600u64 + 11_644_473_600) * 10_000_000).to_le_bytes();
        file
    };
    vec![
        (
            "alice.nk2",
            file(10, 1, &[
                smtp("Priya Shah (Shah Accountants)", "priya@shah-accountants.example", 2400),
                ex("Bob Patel", "/o=ACME/ou=Exchange Administrative Group (FYDIBOHF23SPDLT)/cn=Recipients/cn=bob", 1800),
                smtp("Carol White", "carol@acme.co.uk", 1200),
                smtp("Orders", "orders@supplier.example", 300),
            ]),
        ),
        (
            "Stream_Autocomplete_0_5A3F6E1B9C2D4E8F0A1B2C3D4E5F6A7B.dat",
            file(12, 0, &[
                smtp("Alice Smith", "alice@acme.co.uk", 3100),
                smtp("Reception Printer", "scan@acme.co.uk", 900),
                smtp("Courier Desk", "desk@courier.example", 150),
            ]),
        ),
    ]
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
        DemoCommand::SeedSamples { dir } => {
            if let Err(e) = std::fs::create_dir_all(dir) {
                let _ = writeln!(output.err, "error: cannot create {}: {e}", dir.display());
                return ExitCode::Usage;
            }
            for (name, file) in seed_samples() {
                let path = dir.join(name);
                let written = file
                    .to_bytes()
                    .map_err(|e| e.to_string())
                    .and_then(|bytes| std::fs::write(&path, bytes).map_err(|e| e.to_string()));
                match written {
                    Ok(()) => {
                        let _ = writeln!(
                            output.out,
                            "wrote {} ({} entries)",
                            path.display(),
                            file.rows.len()
                        );
                    }
                    Err(e) => {
                        let _ = writeln!(output.err, "error: cannot write {}: {e}", path.display());
                        return ExitCode::Failure;
                    }
                }
            }
            ExitCode::Ok
        }
    }
}
