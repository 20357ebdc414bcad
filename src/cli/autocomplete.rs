//! `cutover autocomplete`: look at and convert Outlook autocomplete caches.

use std::io::Write;
use std::path::PathBuf;

use clap::{Subcommand, ValueEnum};
use serde::Serialize;

use super::{ExitCode, Output};
use crate::connectors::autocomplete::carry_over::write_if_changed;
use crate::connectors::autocomplete::entry::filetime_to_rfc3339;
use crate::connectors::autocomplete::{
    self as library, tags, AddressMap, AutocompleteError, AutocompleteFile, ConvertTarget, Entry,
};

#[derive(Debug, clap::Args)]
#[command(about = "Outlook autocomplete caches (.nk2 and Stream_Autocomplete .dat)")]
pub struct Args {
    #[command(subcommand)]
    pub command: Action,
}

#[derive(Debug, Subcommand)]
pub enum Action {
    /// List each file's entries: display name, address, type and weight.
    Show {
        /// .nk2 or Stream_Autocomplete files.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Merge one or more caches and write them in another format.
    Convert {
        /// .nk2 and Stream_Autocomplete files, merged in this order.
        #[arg(required = true, value_name = "IN")]
        inputs: Vec<PathBuf>,
        #[arg(long, value_enum)]
        to: Format,
        /// File to write (replaced atomically).
        #[arg(short = 'o', long = "output", value_name = "OUT")]
        output: PathBuf,
        /// CSV mapping legacyExchangeDN or display name to SMTP, to rewrite EX entries.
        #[arg(long, value_name = "CSV")]
        address_map: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Outlook 2003/2007 .nk2 (import into newer Outlook with `outlook.exe /importnk2`).
    Nk2,
    /// Outlook 2010+ Stream_Autocomplete stream.
    Dat,
    /// Outlook contacts import CSV.
    Csv,
    /// vCard 4.0.
    Vcard,
}

pub fn run(args: &Args, output: &mut Output<'_>) -> ExitCode {
    let result = match &args.command {
        Action::Show { files, json } => show(files, *json, output),
        Action::Convert {
            inputs,
            to,
            output: destination,
            address_map,
        } => convert(inputs, *to, destination, address_map.as_ref(), output),
    };
    match result {
        Ok(code) => code,
        Err(err) => report(&err, output),
    }
}

#[derive(Serialize)]
struct ShownFile {
    path: String,
    format: &'static str,
    major_version: u32,
    minor_version: u32,
    last_written: Option<String>,
    rows: Vec<Entry>,
}

fn shown(path: &std::path::Path, file: &AutocompleteFile) -> ShownFile {
    ShownFile {
        path: path.display().to_string(),
        format: if file.major_version == tags::MAJOR_NK2 {
            "nk2"
        } else {
            "stream"
        },
        major_version: file.major_version,
        minor_version: file.minor_version,
        last_written: filetime_to_rfc3339(file.last_written_filetime()),
        rows: file.rows.iter().map(|row| row.entry()).collect(),
    }
}

fn show(
    files: &[PathBuf],
    json: bool,
    output: &mut Output<'_>,
) -> Result<ExitCode, AutocompleteError> {
    let mut shown_files = Vec::with_capacity(files.len());
    let mut worst = ExitCode::Ok;
    for path in files {
        match library::read_file(path) {
            Ok(file) => shown_files.push(shown(path, &file)),
            Err(err) => worst = worst_of(worst, report(&err, output)),
        }
    }
    let written = if json {
        serde_json::to_writer_pretty(&mut *output.out, &shown_files)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(output.out))
    } else {
        shown_files
            .iter()
            .enumerate()
            .try_for_each(|(index, file)| {
                if index > 0 {
                    writeln!(output.out)?;
                }
                write_table(output.out, file)
            })
    };
    if written.is_err() {
        return Ok(ExitCode::Usage);
    }
    Ok(worst)
}

fn write_table(out: &mut dyn Write, file: &ShownFile) -> std::io::Result<()> {
    let kind = if file.format == "nk2" {
        ".nk2"
    } else {
        "stream"
    };
    let written = file
        .last_written
        .as_deref()
        .map(|at| format!(", last written {at}"))
        .unwrap_or_default();
    writeln!(
        out,
        "{}: {kind} v{}.{}, {} rows{written}",
        file.path,
        file.major_version,
        file.minor_version,
        file.rows.len()
    )?;
    let header = ["#", "DISPLAY NAME", "ADDRESS", "TYPE", "WEIGHT"];
    let cells: Vec<[String; 5]> = file
        .rows
        .iter()
        .enumerate()
        .map(|(index, entry)| {
            [
                (index + 1).to_string(),
                entry.display_name.clone(),
                entry.email_address.clone(),
                entry.address_type.clone(),
                entry.weight.to_string(),
            ]
        })
        .collect();
    let mut widths = header.map(|title| title.chars().count());
    for row in &cells {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 5]| {
        let [number, name, address, kind, weight] = cells;
        let [w0, w1, w2, w3, w4] = widths;
        format!("{number:>w0$}  {name:<w1$}  {address:<w2$}  {kind:<w3$}  {weight:>w4$}")
            .trim_end()
            .to_owned()
    };
    writeln!(out, "{}", line(header))?;
    for row in &cells {
        writeln!(
            out,
            "{}",
            line([&row[0], &row[1], &row[2], &row[3], &row[4]])
        )?;
    }
    Ok(())
}

fn convert(
    inputs: &[PathBuf],
    format: Format,
    destination: &std::path::Path,
    address_map: Option<&PathBuf>,
    output: &mut Output<'_>,
) -> Result<ExitCode, AutocompleteError> {
    let map = address_map
        .map(|path| AddressMap::from_path(path))
        .transpose()?;
    let target = match format {
        Format::Nk2 => ConvertTarget::Nk2,
        Format::Dat => ConvertTarget::Dat,
        Format::Csv => ConvertTarget::Csv,
        Format::Vcard => ConvertTarget::VCard,
    };
    let conversion = library::convert(inputs, target, map.as_ref(), destination)?;
    write_if_changed(destination, &conversion.bytes)?;
    let mut lines = Vec::new();
    for entry in &conversion.resolved {
        lines.push(format!(
            "resolved EX {} ({}) -> {}",
            entry.display_name, entry.legacy_dn, entry.smtp
        ));
    }
    let fate = match format {
        Format::Nk2 | Format::Dat => "kept as EX",
        Format::Csv | Format::Vcard => "left out",
    };
    for entry in &conversion.unresolved {
        lines.push(format!(
            "warning: unresolved EX entry {} ({}), {fate}: {}",
            entry.display_name, entry.legacy_dn, entry.reason
        ));
    }
    for entry in &conversion.left_out {
        lines.push(format!(
            "warning: left out {} <{}> ({}): no SMTP address",
            entry.display_name, entry.email_address, entry.address_type
        ));
    }
    let io = lines
        .iter()
        .try_for_each(|line| writeln!(output.err, "{line}"))
        .and_then(|()| {
            writeln!(
                output.out,
                "wrote {} entries to {}",
                written_entries(&conversion, format),
                destination.display()
            )
        });
    Ok(if io.is_err() {
        ExitCode::Usage
    } else {
        ExitCode::Ok
    })
}

fn written_entries(conversion: &library::Conversion, format: Format) -> usize {
    match format {
        Format::Nk2 | Format::Dat => conversion.entries,
        Format::Csv | Format::Vcard => conversion
            .entries
            .saturating_sub(conversion.left_out.len() + conversion.unresolved.len()),
    }
}

fn worst_of(a: ExitCode, b: ExitCode) -> ExitCode {
    if a as i32 >= b as i32 {
        a
    } else {
        b
    }
}

/// Prints an error with its causes and help, returning the exit code it deserves: bad input
/// is a failure, anything that stopped the command from running at all is a usage error.
fn report(err: &AutocompleteError, output: &mut Output<'_>) -> ExitCode {
    let mut text = format!("error: {err}\n");
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(&format!("  caused by: {cause}\n"));
        source = cause.source();
    }
    if let Some(help) = miette::Diagnostic::help(err) {
        text.push_str(&format!("  help: {help}\n"));
    }
    let _ = output.err.write_all(text.as_bytes());
    match err {
        AutocompleteError::Corrupt { .. }
        | AutocompleteError::AddressMap { .. }
        | AutocompleteError::Encode { .. } => ExitCode::Failure,
        _ => ExitCode::Usage,
    }
}
