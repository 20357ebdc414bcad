//! `cutover pst`: look inside an Outlook PST and export its data without a plan, or upload it
//! to Microsoft's PST Import Service (`upload`, in `pst_upload.rs`).

use std::path::PathBuf;

use clap::Subcommand;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{ExitCode, Output};
use crate::ops::pst::{self as library, ExportFormat, ExportProgress, PstOpsError, PstReport};

#[derive(Debug, clap::Args)]
#[command(about = "Outlook data files (.pst): show, export, upload")]
pub struct Args {
    #[command(subcommand)]
    pub command: Action,
}

#[derive(Debug, Subcommand)]
pub enum Action {
    /// Store, folder tree with message counts, contacts and calendar counts, problems.
    Show {
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Write the mail as a Maildir++ tree, mbox files or .eml files, with contacts.vcf,
    /// contacts.csv and calendar.ics beside it.
    Export {
        #[arg(value_name = "FILE")]
        file: PathBuf,
        #[arg(long, value_enum)]
        to: ExportFormat,
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        /// Print no progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// Upload one file to a container SAS URL (Microsoft's PST Import Service), resumably:
    /// run the same command again after an interruption and only missing blocks are sent.
    Upload(super::pst_upload::Args),
}

pub fn run(args: &Args, output: &mut Output<'_>) -> ExitCode {
    match &args.command {
        Action::Upload(upload) => super::pst_upload::run(upload, output),
        Action::Show { file, json } => match library::show(file) {
            Ok(report) => {
                let written = if *json {
                    serde_json::to_writer_pretty(&mut *output.out, &report)
                        .map_err(std::io::Error::from)
                        .and_then(|()| writeln!(output.out))
                } else {
                    output.out.write_all(render_report(&report).as_bytes())
                };
                match written {
                    Err(_) => ExitCode::Usage,
                    Ok(()) if report.problems.is_empty() => ExitCode::Ok,
                    Ok(()) => ExitCode::Failure,
                }
            }
            Err(err) => report_error(&err, output),
        },
        Action::Export {
            file,
            to,
            dir,
            quiet,
        } => {
            let mut bar = Bar::new(*quiet);
            let result = library::export(file, *to, dir, &mut bar);
            bar.finish();
            match result {
                Ok(summary) => {
                    let mut text = format!(
                        "wrote {} messages to {} ({} already there); {} contacts, {} distribution lists, {} calendar items; {} items that are not mail\n",
                        summary.messages_written,
                        dir.display(),
                        summary.messages_present,
                        summary.contacts,
                        summary.distribution_lists,
                        summary.events,
                        summary.not_mail,
                    );
                    for note in &summary.notes {
                        text.push_str(&format!("note: {note}\n"));
                    }
                    for problem in &summary.problems {
                        text.push_str(&format!(
                            "problem: {} (node {:#x}): {}\n",
                            problem.folder, problem.nid, problem.reason
                        ));
                    }
                    if output.out.write_all(text.as_bytes()).is_err() {
                        return ExitCode::Usage;
                    }
                    if summary.problems.is_empty() {
                        ExitCode::Ok
                    } else {
                        ExitCode::Failure
                    }
                }
                Err(PstOpsError::Interrupted) => {
                    let _ = writeln!(output.err, "interrupted; run the export again to finish");
                    ExitCode::Interrupted
                }
                Err(err) => report_error(&err, output),
            }
        }
    }
}

/// The human form of `pst show`.
pub fn render_report(report: &PstReport) -> String {
    let store = &report.store;
    let mut out = format!(
        "{}: {:?} PST (wVer {}), encoding {:?}, store {:?}{}\n",
        report.path,
        store.format,
        store.version,
        store.crypt,
        store.display_name,
        if store.has_password {
            ", password-protected (read anyway: the password does not encrypt)"
        } else {
            ""
        }
    );
    out.push_str(&format!(
        "{} messages, {} contacts, {} distribution lists, {} calendar items{}\n",
        report.messages,
        report.contacts,
        report.distribution_lists,
        report.events,
        if report.has_autocomplete {
            ", autocomplete stream present"
        } else {
            ""
        }
    ));
    let width = report
        .folders
        .iter()
        .map(|f| f.path.chars().count())
        .max()
        .unwrap_or(0)
        .max(6);
    out.push_str(&format!(
        "\n{:<width$}  {:>8}  {:>5}  {:<14}  TARGET\n",
        "FOLDER", "MESSAGES", "FAI", "ROLE"
    ));
    for folder in &report.folders {
        let role = folder
            .role
            .and_then(|r| {
                serde_json::to_value(r)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
            })
            .unwrap_or_default();
        let target = if folder.in_ipm_subtree {
            folder.target.clone()
        } else {
            "(outside the IPM subtree: not migrated)".into()
        };
        out.push_str(
            format!(
                "{:<width$}  {:>8}  {:>5}  {:<14}  {}",
                folder.path, folder.messages, folder.associated, role, target
            )
            .trim_end(),
        );
        out.push('\n');
    }
    if !report.problems.is_empty() {
        out.push_str(&format!("\n{} problems:\n", report.problems.len()));
        for p in &report.problems {
            out.push_str(&format!(
                "  {} (node {:#x}): {}\n",
                p.folder, p.nid, p.reason
            ));
        }
    }
    out
}

fn report_error(err: &PstOpsError, output: &mut Output<'_>) -> ExitCode {
    let _ = writeln!(output.err, "error: {err}");
    match err {
        PstOpsError::Pst(crate::connectors::pst::PstError::Io { .. }) => ExitCode::Usage,
        PstOpsError::Write { .. } => ExitCode::Usage,
        _ => ExitCode::Failure,
    }
}

/// An indicatif bar on a terminal; Ctrl-C stops the export between two messages.
struct Bar {
    bar: Option<ProgressBar>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Bar {
    fn new(quiet: bool) -> Bar {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        // Only the first handler wins; a second call in the same process returns an error.
        let _ = ctrlc::set_handler(move || flag.store(true, std::sync::atomic::Ordering::SeqCst));
        let bar = (!quiet && std::io::IsTerminal::is_terminal(&std::io::stderr())).then(|| {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "export [{bar:30}] {pos}/{len} msgs  {per_sec}  ETA {eta}  {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar
        });
        Bar { bar, stop }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl ExportProgress for Bar {
    fn start(&mut self, total: u64) {
        if let Some(bar) = &self.bar {
            bar.set_length(total);
        }
    }

    fn message(&mut self, folder: &str) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
            bar.set_message(folder.to_owned());
        }
    }

    fn cancelled(&self) -> bool {
        self.stop.load(std::sync::atomic::Ordering::SeqCst)
    }
}
