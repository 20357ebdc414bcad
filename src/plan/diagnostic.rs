//! Plan diagnostics: one type for every problem validation finds, rendered by miette for
//! humans and flattened to file/line/column for JSON and GitHub annotations.

use std::fmt;
use std::sync::Arc;

use miette::{LabeledSpan, NamedSource, SourceSpan};
use serde::Serialize;

use super::yaml::ByteSpan;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One problem in a plan.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanDiagnostic {
    /// Stable code, `cutover::plan::<kind>`.
    pub code: &'static str,
    pub severity: Severity,
    pub message: String,
    /// The primary label first; it decides the reported line and column.
    pub labels: Vec<Label>,
    pub help: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Label {
    pub span: ByteSpan,
    pub text: String,
}

impl PlanDiagnostic {
    pub fn error(code: &'static str, message: impl Into<String>) -> Self {
        PlanDiagnostic {
            code,
            severity: Severity::Error,
            message: message.into(),
            labels: Vec::new(),
            help: None,
        }
    }

    pub fn warning(code: &'static str, message: impl Into<String>) -> Self {
        PlanDiagnostic {
            severity: Severity::Warning,
            ..Self::error(code, message)
        }
    }

    pub fn label(mut self, span: ByteSpan, text: impl Into<String>) -> Self {
        self.labels.push(Label {
            span,
            text: text.into(),
        });
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Byte offset the diagnostic is reported at.
    pub fn offset(&self) -> usize {
        self.labels.first().map_or(0, |l| l.span.start)
    }
}

/// Every diagnostic of one plan file, with the source they point into.
#[derive(Debug, Clone)]
pub struct FileReport {
    pub file: String,
    pub source: Arc<String>,
    pub diagnostics: Vec<PlanDiagnostic>,
}

impl FileReport {
    pub fn errors(&self) -> usize {
        self.count(Severity::Error)
    }

    pub fn warnings(&self) -> usize {
        self.count(Severity::Warning)
    }

    fn count(&self, severity: Severity) -> usize {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == severity)
            .count()
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        line_col(&self.source, offset)
    }

    /// The diagnostics as miette reports, ready for a handler to render. A diagnostic whose
    /// snippet would be huge (a label over thousands of lines, a megabyte-long line) gets a
    /// bounded excerpt of the source instead ([`super::snippet`]).
    pub fn miette_reports(&self) -> impl Iterator<Item = Rendered<'_>> {
        self.diagnostics.iter().map(move |d| {
            if super::snippet::needs_excerpt(&self.source, &d.labels) {
                let (excerpt, labels) =
                    super::snippet::Excerpt::new(&self.file, &self.source, &d.labels);
                Rendered {
                    diagnostic: d,
                    source: Source::Excerpt(excerpt),
                    labels: Some(labels),
                }
            } else {
                Rendered {
                    diagnostic: d,
                    source: Source::Whole(NamedSource::new(self.file.clone(), self.source.clone())),
                    labels: None,
                }
            }
        })
    }

    /// Flat, machine-readable form of each diagnostic.
    pub fn flat(&self) -> Vec<FlatDiagnostic> {
        self.diagnostics
            .iter()
            .map(|d| {
                let (line, column) = self.line_col(d.offset());
                FlatDiagnostic {
                    file: self.file.clone(),
                    line,
                    column,
                    code: d.code,
                    severity: d.severity,
                    message: d.message.clone(),
                    help: d.help.clone(),
                }
            })
            .collect()
    }
}

/// A diagnostic in the JSON report and GitHub annotations.
#[derive(Debug, Clone, Serialize)]
pub struct FlatDiagnostic {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub code: &'static str,
    pub severity: Severity,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
}

pub fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let offset = floor_char_boundary(source, offset.min(source.len()));
    let before = &source[..offset];
    let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// A diagnostic paired with its source for miette.
pub struct Rendered<'a> {
    diagnostic: &'a PlanDiagnostic,
    source: Source,
    /// The labels moved into an excerpt, when the source is one.
    labels: Option<Vec<Label>>,
}

enum Source {
    Whole(NamedSource<Arc<String>>),
    Excerpt(super::snippet::Excerpt),
}

impl Rendered<'_> {
    fn labels(&self) -> &[Label] {
        self.labels.as_deref().unwrap_or(&self.diagnostic.labels)
    }
}

impl fmt::Debug for Rendered<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.diagnostic, f)
    }
}

impl fmt::Display for Rendered<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.diagnostic.message)
    }
}

impl std::error::Error for Rendered<'_> {}

impl miette::Diagnostic for Rendered<'_> {
    fn code<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        Some(Box::new(self.diagnostic.code))
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.diagnostic.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
    }

    fn help<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        self.diagnostic
            .help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        if Rendered::labels(self).is_empty() {
            None
        } else {
            match &self.source {
                Source::Whole(source) => Some(source),
                Source::Excerpt(excerpt) => Some(excerpt),
            }
        }
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        if Rendered::labels(self).is_empty() {
            return None;
        }
        Some(Box::new(Rendered::labels(self).iter().enumerate().map(
            |(i, l)| {
                let span = SourceSpan::new(l.span.start.into(), l.span.len());
                let text = (!l.text.is_empty()).then(|| l.text.clone());
                if i == 0 {
                    LabeledSpan::new_primary_with_span(text, span)
                } else {
                    LabeledSpan::new_with_span(text, span)
                }
            },
        )))
    }
}

/// "did you mean `x`?" for a misspelt name among `known`.
pub fn did_you_mean<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    known
        .into_iter()
        .map(|k| (strsim::jaro_winkler(name, k), k))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k)
}

/// `a`, `b`, `c` for help texts.
pub fn list_names<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    let names: Vec<String> = names.into_iter().map(|n| format!("`{n}`")).collect();
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}
