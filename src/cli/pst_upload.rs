//! `cutover pst upload FILE --sas-env VAR`: the plan's PST upload on its own, for one-off
//! jobs and the benchmark. The SAS URL comes from an environment variable or a file, never
//! from the command line, where `ps` would show it to every user of the machine.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use super::progress::ProgressMode;
use super::render::human_bytes;
use super::{ExitCode, Output};
use crate::connectors::azure_blob::upload::hex;
use crate::connectors::azure_blob::{
    StagedBlock, UploadObserver, UploadOutcome, UploadReport, UploadSettings, UploadStart,
};
use crate::ops::pst_upload::{upload, UploadJob, UploadJobError, Uploaded};
use crate::plan::model::{EnvSecret, FileSecret, SecretRef};
use crate::redact::redact;

const MIB: u64 = 1024 * 1024;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The file to upload.
    pub file: PathBuf,
    /// Environment variable holding the container SAS URL (the portal's network-upload URL).
    #[arg(long, value_name = "VAR", required_unless_present = "sas_file")]
    pub sas_env: Option<String>,
    /// File holding the container SAS URL, instead of `--sas-env`.
    #[arg(long, value_name = "FILE", conflicts_with = "sas_env")]
    pub sas_file: Option<PathBuf>,
    /// The blob's name in the container (default: the file's name); `/` makes folders.
    #[arg(long, value_name = "BLOB")]
    pub name: Option<String>,
    /// Blocks in flight at once.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=32))]
    pub concurrency: u32,
    /// Block size in MiB.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub block_mib: u32,
    /// Cap on upload bandwidth, in megabits per second.
    #[arg(long, value_name = "MBPS")]
    pub max_upload_mbps: Option<f64>,
    /// Progress display.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,
    /// Also send each block's MD5 for the service to check (a second MD5 pass over the file).
    #[arg(long)]
    pub block_md5: bool,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &Args, output: &mut Output<'_>) -> ExitCode {
    let reference = match (&args.sas_env, &args.sas_file) {
        (Some(var), _) => SecretRef::Env(EnvSecret { env: var.clone() }),
        (None, Some(file)) => SecretRef::File(FileSecret { file: file.clone() }),
        (None, None) => {
            let _ = writeln!(output.err, "error: give --sas-env VAR or --sas-file FILE");
            return ExitCode::Usage;
        }
    };
    if let Some(mbps) = args.max_upload_mbps {
        if !(mbps.is_finite() && mbps > 0.0) {
            let _ = writeln!(output.err, "error: --max-upload-mbps must be above 0");
            return ExitCode::Usage;
        }
    }
    let job = UploadJob {
        file: args.file.clone(),
        sas: reference,
        blob_name: args.name.clone(),
        settings: UploadSettings {
            block_size: u64::from(args.block_mib) * MIB,
            concurrency: args.concurrency as usize,
            max_upload_mbps: args.max_upload_mbps,
            block_md5: args.block_md5,
            ..UploadSettings::default()
        },
    };
    // First Ctrl-C: stop, keeping what the service acknowledged; second: exit at once.
    let interrupt = super::interrupt::Interrupt::working();
    let cancel = interrupt.cancel_token();
    let bars = match args.progress {
        ProgressMode::Bar => true,
        ProgressMode::Plain => false,
        ProgressMode::Auto => std::io::stderr().is_terminal(),
    };
    let display = Arc::new(Display::new(bars));
    let result = upload(&job, display.clone(), &cancel);
    display.finish();
    match result {
        Ok(Uploaded {
            outcome: UploadOutcome::Complete(report),
            blob,
        }) => {
            print_report(&report, &blob, args, "complete", output);
            ExitCode::Ok
        }
        Ok(Uploaded {
            outcome: UploadOutcome::Interrupted(report),
            blob,
        }) => {
            print_report(&report, &blob, args, "interrupted", output);
            let _ = writeln!(
                output.err,
                "interrupted: run the same command again to resume"
            );
            ExitCode::Interrupted
        }
        Err(UploadJobError::Sas(e)) => {
            let _ = writeln!(output.err, "error: SAS URL: {e}");
            ExitCode::Usage
        }
        Err(UploadJobError::Upload { message, transient }) => {
            let _ = writeln!(output.err, "error: {message}");
            if transient {
                let _ = writeln!(
                    output.err,
                    "the blocks the service acknowledged are kept: run the same command again to resume"
                );
            }
            ExitCode::Failure
        }
    }
}

fn print_report(
    report: &UploadReport,
    blob: &str,
    args: &Args,
    outcome: &str,
    output: &mut Output<'_>,
) {
    let seconds = report.elapsed.as_secs_f64();
    let rate = report.bytes_sent as f64 / MIB as f64 / seconds.max(1e-9);
    if args.json {
        let json = serde_json::json!({
            "outcome": outcome,
            "blob": blob,
            "size": report.size,
            "block_size": report.block_size,
            "blocks": report.blocks,
            "blocks_reused": report.blocks_reused,
            "bytes_reused": report.bytes_reused,
            "blocks_staged": report.blocks_staged,
            "bytes_sent": report.bytes_sent,
            "bytes_resent": report.bytes_resent,
            "retries": report.retries,
            "final_concurrency": report.final_concurrency,
            "already_complete": report.already_complete,
            "md5": report.md5.map(|m| hex(&m)),
            "seconds": seconds,
            "mib_per_second": rate,
        });
        let _ = writeln!(output.out, "{json}");
        return;
    }
    if report.already_complete {
        let _ = writeln!(
            output.out,
            "{} is already uploaded to {} (length and MD5 match); nothing sent",
            args.file.display(),
            blob
        );
        return;
    }
    let _ = writeln!(
        output.out,
        "{}: {} to {}",
        args.file.display(),
        if outcome == "complete" {
            "uploaded"
        } else {
            "partly uploaded"
        },
        blob
    );
    let _ = writeln!(
        output.out,
        "  {} sent in {seconds:.1} s ({rate:.1} MiB/s); {} blocks of {} MiB: {} sent now, {} already there; {} resent after failures ({} retries); concurrency {}",
        human_bytes(report.bytes_sent),
        report.blocks,
        report.block_size / MIB,
        report.blocks_staged,
        report.blocks_reused,
        human_bytes(report.bytes_resent),
        report.retries,
        report.final_concurrency,
    );
    if let Some(md5) = report.md5 {
        let _ = writeln!(
            output.out,
            "  verified: length {} and Content-MD5 {} match the file",
            report.size,
            hex(&md5)
        );
    }
}

/// The upload's progress on the terminal: a bar (bytes, rate, ETA), or a plain line every
/// ten seconds; retries and concurrency changes as lines. Writes to the process's stderr
/// itself, since the upload calls it from its own threads.
struct Display {
    bar: Option<ProgressBar>,
    plain: Mutex<Plain>,
}

struct Plain {
    start_bytes: u64,
    total: u64,
    sent: u64,
    started: Instant,
    printed: Instant,
}

impl Display {
    fn new(bars: bool) -> Display {
        let bar = bars.then(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {bytes}/{total_bytes}  {bytes_per_sec}  ETA {eta}  {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_prefix("upload");
            bar
        });
        let now = Instant::now();
        Display {
            bar,
            plain: Mutex::new(Plain {
                start_bytes: 0,
                total: 0,
                sent: 0,
                started: now,
                printed: now,
            }),
        }
    }

    fn line(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => eprintln!("{text}"),
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    fn plain(&self) -> std::sync::MutexGuard<'_, Plain> {
        self.plain
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl UploadObserver for Display {
    fn started(&self, start: &UploadStart) {
        let mut plain = self.plain();
        plain.start_bytes = start.present_bytes;
        plain.total = start.size;
        if let Some(bar) = &self.bar {
            bar.set_length(start.size);
            bar.set_position(start.present_bytes);
            bar.reset_eta();
        }
        drop(plain);
        if start.already_complete {
            return;
        }
        let resumed = if start.present_blocks > 0 {
            format!(
                "; {} of {} blocks already at the service, not sent again",
                start.present_blocks, start.blocks
            )
        } else {
            String::new()
        };
        self.line(&format!(
            "uploading {} in {} blocks of {} MiB{resumed}",
            human_bytes(start.size),
            start.blocks,
            start.block_size / MIB
        ));
    }

    fn sent(&self, bytes: u64) {
        let mut plain = self.plain();
        plain.sent = bytes;
        let position = (plain.start_bytes + bytes).min(plain.total);
        if let Some(bar) = &self.bar {
            bar.set_position(position);
            return;
        }
        if plain.printed.elapsed() < Duration::from_secs(10) {
            return;
        }
        plain.printed = Instant::now();
        let rate = bytes as f64 / plain.started.elapsed().as_secs_f64().max(0.001);
        let line = format!(
            "{} of {} ({:.0} %), {}/s",
            human_bytes(position),
            human_bytes(plain.total),
            100.0 * position as f64 / plain.total.max(1) as f64,
            human_bytes(rate as u64)
        );
        drop(plain);
        self.line(&line);
    }

    fn staged(&self, _block: &StagedBlock) -> Result<(), String> {
        Ok(())
    }

    fn retrying(&self, index: u32, attempt: u32, delay: Duration, error: &str) {
        self.line(&format!(
            "block {index}: attempt {attempt} failed, again in {:.1} s: {}",
            delay.as_secs_f64(),
            redact(error)
        ));
    }

    fn concurrency_lowered(&self, now: usize) {
        self.line(&format!(
            "blocks keep failing: now {now} block{} at a time",
            if now == 1 { "" } else { "s" }
        ));
    }
}
