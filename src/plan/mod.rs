//! The plan: model (serde + schemars), loading YAML with spans, and validation that reports
//! every problem as a miette diagnostic on the exact span.

pub mod countries;
pub mod diagnostic;
pub mod model;
pub mod pst_import;
pub mod schema_check;
pub mod snippet;
pub mod validate;
pub mod yaml;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use diagnostic::{FileReport, PlanDiagnostic, Severity};
pub use model::Plan;
pub use validate::Options;

use crate::graph::StepGraph;

pub const YAML_SYNTAX: &str = "cutover::plan::yaml-syntax";
pub const NOT_A_PLAN: &str = "cutover::plan::not-a-plan";

/// A plan file after loading: its diagnostics, and the typed plan and step graph when the
/// file is structurally sound (they may still carry semantic errors: check `report.errors()`).
#[derive(Debug)]
pub struct Loaded {
    pub report: FileReport,
    pub plan: Option<Plan>,
    pub graph: Option<StepGraph>,
    /// The plan file's folder: relative paths in the plan resolve against it.
    pub base_dir: PathBuf,
}

impl Loaded {
    /// The plan and its graph, when the plan has no error.
    pub fn valid(&self) -> Option<(&Plan, &StepGraph)> {
        if self.report.errors() > 0 {
            return None;
        }
        Some((self.plan.as_ref()?, self.graph.as_ref()?))
    }
}

/// Reads and validates a plan file. Only failing to read the file is an `Err`; everything
/// wrong with its content is a diagnostic.
pub fn load_file(path: &Path, options: Options) -> std::io::Result<Loaded> {
    let bytes = std::fs::read(path)?;
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let name = path.display().to_string();
    match String::from_utf8(bytes) {
        Ok(source) => Ok(load_str(source, &name, &base_dir, options)),
        Err(e) => {
            let offset = e.utf8_error().valid_up_to();
            let source = String::from_utf8_lossy(e.as_bytes()).into_owned();
            let diagnostic = PlanDiagnostic::error(
                YAML_SYNTAX,
                format!("the file is not UTF-8 text (invalid byte at offset {offset})"),
            )
            .label(offset..offset, "invalid UTF-8")
            .help("save the plan as UTF-8");
            Ok(Loaded {
                report: FileReport {
                    file: name,
                    source: Arc::new(source),
                    diagnostics: vec![diagnostic],
                },
                plan: None,
                graph: None,
                base_dir,
            })
        }
    }
}

/// Validates plan text. `file` names it in diagnostics; `base_dir` resolves relative paths.
pub fn load_str(mut source: String, file: &str, base_dir: &Path, options: Options) -> Loaded {
    let mut diagnostics = Vec::new();
    let mut plan = None;
    let mut graph = None;
    match yaml::parse(&source) {
        Err(e) => {
            let at = e.offset.min(source.len());
            diagnostics.push(
                PlanDiagnostic::error(YAML_SYNTAX, format!("YAML syntax error: {}", e.message))
                    .label(at..at, "here")
                    .help("check indentation, `:` after keys, and matching quotes and brackets"),
            );
        }
        Ok(root) if root.as_map().is_none() => {
            diagnostics.push(
                PlanDiagnostic::error(
                    NOT_A_PLAN,
                    format!("a plan is a mapping, this file holds {}", root.kind_name()),
                )
                .label(
                    root.span.clone(),
                    "expected `version:`, `name:`, `domain:` …",
                )
                .help("start from an example in plans/, or run `cutover schema` for the format"),
            );
        }
        Ok(root) => {
            let schema = model::json_schema();
            let findings = schema_check::check(&root, &schema);
            let structurally_sound = findings.diagnostics.is_empty();
            diagnostics.extend(findings.diagnostics);
            validate::check_tree(&root, base_dir, &mut diagnostics);
            for (path, span) in &findings.inline_secrets {
                diagnostics.push(validate::inline_secret(span.clone(), path, options));
            }
            if structurally_sound {
                match serde_json::from_value::<Plan>(root.to_json()) {
                    Ok(typed) => {
                        graph = Some(validate::check_graph(&typed, &root, &mut diagnostics));
                        plan = Some(typed);
                    }
                    Err(e) => diagnostics.push(
                        PlanDiagnostic::error(
                            NOT_A_PLAN,
                            format!("the plan could not be read: {e}"),
                        )
                        .label(root.span.start..root.span.start, "")
                        .help(
                            "this is a cutover bug if the plan passed the schema; please report it",
                        ),
                    ),
                }
            }
            mask_secrets(&mut source, &findings.inline_secrets);
        }
    }
    diagnostics.sort_by_key(|d| d.offset());
    Loaded {
        report: FileReport {
            file: file.to_string(),
            source: Arc::new(source),
            diagnostics,
        },
        plan,
        graph,
        base_dir: base_dir.to_path_buf(),
    }
}

/// Overwrites inline secrets in the source kept for rendering, byte for byte, so no snippet
/// ever shows one and every span stays valid.
fn mask_secrets(source: &mut String, secrets: &[(String, yaml::ByteSpan)]) {
    if secrets.is_empty() {
        return;
    }
    let mut bytes = std::mem::take(source).into_bytes();
    for (_, span) in secrets {
        if let Some(slice) = bytes.get_mut(span.clone()) {
            slice.fill(b'*');
        }
    }
    // Whole characters were replaced by ASCII, so the text is still UTF-8.
    *source = String::from_utf8_lossy(&bytes).into_owned();
}
