//! `cutover rollback dns FILE`: restores the DNS records the cutover replaced.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::time::Duration;

use super::{open_workspace, report_ops_error, ExitCode, Output, StateArgs};
use crate::ops::rollback::{self, RollbackOutcome};

/// What to roll back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum What {
    /// The DNS records `dns.lower-ttl` and `dns.cutover` changed.
    Dns,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to roll back.
    #[arg(value_enum)]
    pub what: What,
    /// The plan file.
    pub file: PathBuf,
    #[command(flatten)]
    pub state: StateArgs,
    /// Do not ask (required when not run from a terminal). With `provider: manual` it
    /// means: the records were already changed at the DNS host, check them now.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// How long to wait for a running apply's lock, e.g. `30s` (default: do not wait).
    #[arg(long, value_parser = super::apply::parse_timeout, default_value = "0s")]
    pub lock_timeout: Duration,
}

pub fn run(args: &Args, output: &mut Output<'_>) -> ExitCode {
    let What::Dns = args.what;
    let ws = match open_workspace(&args.file, &args.state, output) {
        Ok(ws) => ws,
        Err(code) => return code,
    };
    let preview = match rollback::preview_dns(&ws) {
        Ok(p) => p,
        Err(e) => return report_ops_error(&e, output),
    };
    if preview.is_empty() {
        let _ = writeln!(
            output.out,
            "Nothing to roll back: the state records no DNS change, or the zones already publish the records cutover replaced."
        );
        return ExitCode::Ok;
    }
    let _ = writeln!(output.out, "Rollback restores:");
    for line in &preview.changes {
        let _ = writeln!(output.out, "  {line}");
    }
    let question = match &preview.instructions {
        Some(instructions) => {
            let _ = writeln!(output.out, "\n{instructions}");
            "Type 'done' once the DNS host shows these records: "
        }
        None => "\nRestore these records? Only 'yes' will be accepted: ",
    };
    if !args.yes && !ask(question, output) {
        let _ = writeln!(output.err, "Rollback cancelled.");
        return ExitCode::Usage;
    }
    let interrupt = super::interrupt::Interrupt::working();
    let cancel = interrupt.cancel_token();
    let _ = writeln!(
        output.err,
        "checking every authoritative server until all publish the restored records…"
    );
    match rollback::rollback_dns(&ws, args.lock_timeout, &cancel) {
        Ok(RollbackOutcome::Restored(zones)) => {
            for (zone, report) in &zones {
                let _ = writeln!(
                    output.out,
                    "{}:",
                    crate::connectors::dns::rrset::shown_name(zone)
                );
                for server in &report.servers {
                    let _ = writeln!(output.out, "  {}", server.line());
                }
            }
            let _ = writeln!(
                output.out,
                "Rolled back. dns.lower-ttl and dns.cutover are reset: the next apply cuts over again."
            );
            ExitCode::Ok
        }
        Ok(RollbackOutcome::Interrupted) => {
            let _ = writeln!(output.err, "interrupted; run the rollback again");
            ExitCode::Interrupted
        }
        Err(e) => report_ops_error(&e, output),
    }
}

fn ask(question: &str, output: &mut Output<'_>) -> bool {
    if !std::io::stdin().is_terminal() {
        let _ = writeln!(
            output.err,
            "error: rollback asks for confirmation; not running from a terminal, so pass --yes"
        );
        return false;
    }
    let _ = write!(output.err, "{question}");
    let _ = output.err.flush();
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    matches!(answer.trim(), "yes" | "done")
}
