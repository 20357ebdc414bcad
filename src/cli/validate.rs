//! `cutover validate FILE…`: schema and semantic checks, every problem in one run.

use std::path::PathBuf;

use clap::ValueEnum;
use miette::{GraphicalReportHandler, GraphicalTheme};
use serde::Serialize;

use super::{ExitCode, Output};
use crate::plan::{self, diagnostic::FlatDiagnostic, FileReport, Options};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Plan files to check.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Output format: `human` (annotated source), `json` (one report), `github` (Actions annotations).
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
    /// Report inline literal secrets as warnings instead of errors.
    #[arg(long)]
    pub allow_inline_secrets: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Human,
    Json,
    Github,
}

#[derive(Serialize)]
struct JsonReport {
    valid: bool,
    files: Vec<JsonFile>,
}

#[derive(Serialize)]
struct JsonFile {
    file: String,
    valid: bool,
    errors: usize,
    warnings: usize,
    diagnostics: Vec<FlatDiagnostic>,
}

pub fn run(args: &Args, output: &mut Output<'_>) -> ExitCode {
    let options = Options {
        allow_inline_secrets: args.allow_inline_secrets,
    };
    let mut reports = Vec::new();
    let mut unreadable = false;
    for file in &args.files {
        match plan::load_file(file, options) {
            Ok(loaded) => {
                // Valid is not the same as runnable: say which steps this build cannot do.
                let warnings = crate::ops::unsupported_warnings(&loaded);
                let mut report = loaded.report;
                report.diagnostics.extend(warnings);
                report.diagnostics.sort_by_key(|d| d.offset());
                reports.push(report);
            }
            Err(e) => {
                unreadable = true;
                let _ = writeln!(output.err, "error: cannot read {}: {e}", file.display());
            }
        }
    }
    let valid = reports.iter().all(|r| r.errors() == 0);
    match args.format {
        Format::Human => {
            for report in &reports {
                render_human(report, output);
            }
        }
        Format::Json => {
            let json = JsonReport {
                valid: valid && !unreadable,
                files: reports
                    .iter()
                    .map(|r| JsonFile {
                        file: r.file.clone(),
                        valid: r.errors() == 0,
                        errors: r.errors(),
                        warnings: r.warnings(),
                        diagnostics: r.flat(),
                    })
                    .collect(),
            };
            let _ = writeln!(
                output.out,
                "{}",
                serde_json::to_string_pretty(&json).unwrap_or_default()
            );
        }
        Format::Github => {
            for report in &reports {
                for d in report.flat() {
                    let level = match d.severity {
                        plan::Severity::Error => "error",
                        plan::Severity::Warning => "warning",
                    };
                    let mut message = d.message.clone();
                    if let Some(help) = &d.help {
                        message.push_str(" — ");
                        message.push_str(help);
                    }
                    let _ = writeln!(
                        output.out,
                        "::{level} file={},line={},col={},title={}::{}",
                        escape_property(&d.file),
                        d.line,
                        d.column,
                        escape_property(d.code),
                        escape_data(&message)
                    );
                }
            }
        }
    }
    if unreadable {
        ExitCode::Usage
    } else if valid {
        ExitCode::Ok
    } else {
        ExitCode::Failure
    }
}

/// Annotated source for each diagnostic, then one summary line per file.
pub fn render_human(report: &FileReport, output: &mut Output<'_>) {
    let _ = write!(output.err, "{}", render_diagnostics(report, output.color));
    let summary = match (report.errors(), report.warnings()) {
        (0, 0) => format!("{}: valid", report.file),
        (0, w) => format!("{}: valid, {w} warning{}", report.file, plural(w)),
        (e, 0) => format!("{}: {e} error{}", report.file, plural(e)),
        (e, w) => format!(
            "{}: {e} error{}, {w} warning{}",
            report.file,
            plural(e),
            plural(w)
        ),
    };
    let _ = writeln!(output.out, "{summary}");
}

/// The miette rendering of every diagnostic of a report.
pub fn render_diagnostics(report: &FileReport, color: bool) -> String {
    let theme = if color {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    let handler = GraphicalReportHandler::new_themed(theme)
        .with_width(100)
        .with_links(false);
    let mut text = String::new();
    for rendered in report.miette_reports() {
        let _ = handler.render_report(&mut text, &rendered);
        text.push('\n');
    }
    text
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// GitHub workflow-command escaping for the message part.
fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// GitHub workflow-command escaping for property values.
fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}
