//! What a plan means for Microsoft's PST Import Service (`kind: pst, via: import-service`):
//! where each PST is uploaded, where the mapping CSV goes, and the runbook gate after the
//! uploads, whose instructions walk the consultant through the portal.
//!
//! The graph adds that gate (`manual.pst-import`) by itself: after every upload step, before
//! the verify step of each user with an uploaded PST. A plan may declare `manual.pst-import`
//! itself to replace the instructions or add edges; the generated edges stay.

use std::path::PathBuf;

use crate::connectors::pst_mapping;
use crate::graph::user_slug;
use crate::plan::model::{Migration, Plan, PstVia, Source, User};

/// The gate's id (`manual.pst-import` as a step).
pub const GATE: &str = "pst-import";

/// Whether `source` is a PST source uploaded to the import service.
pub fn is_import_source(source: Option<&Source>) -> bool {
    matches!(
        source,
        Some(Source::Pst {
            via: PstVia::ImportService,
            ..
        })
    )
}

/// The plan's PST uploads in plan order: `(user index, migration index)`.
pub fn uploads(plan: &Plan) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for (ui, user) in plan.users.iter().enumerate() {
        for (mi, migration) in user.migrate.iter().enumerate() {
            if is_import_source(plan.sources.get(&migration.from)) {
                out.push((ui, mi));
            }
        }
    }
    out
}

/// The blob a PST is uploaded as, inside the SAS URL's container:
/// `<plan name>/<user>/<file name>`, or `<plan name>/<user>/<entry name>/<file name>` for a
/// named entry (two PSTs of one user may share a file name). The file name keeps its case:
/// it becomes the mapping CSV's `Name`. `None` without a `file:`.
pub fn blob_name(plan: &Plan, user: &User, migration: &Migration) -> Option<String> {
    let file = migration
        .file
        .as_ref()?
        .file_name()?
        .to_string_lossy()
        .into_owned();
    let mut name = format!("{}/{}/", plan.name, user_slug(&user.email));
    if let Some(entry) = &migration.name {
        name.push_str(entry);
        name.push('/');
    }
    name.push_str(&file);
    Some(name)
}

/// The mapping files' stem: `<plan name>-pst-import`.
pub fn csv_stem(plan: &Plan) -> String {
    format!("{}-pst-import", plan.name)
}

/// The mapping files, relative to the plan file's folder (in `settings.output_dir`).
pub fn csv_paths(plan: &Plan) -> Vec<PathBuf> {
    pst_mapping::file_names(&csv_stem(plan), uploads(plan).len())
        .into_iter()
        .map(|name| plan.settings.output_dir.join(name))
        .collect()
}

/// The generated gate's instructions: the portal steps, with the mapping file(s).
pub fn gate_instructions(plan: &Plan) -> String {
    let files = csv_paths(plan);
    let count = uploads(plan).len();
    let mapping = if files.len() == 1 {
        format!("the mapping file {}", files[0].display())
    } else {
        format!(
            "one import job per mapping file ({}; at most 500 PSTs per job)",
            files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    format!(
        "Microsoft's PST Import Service takes over the {count} uploaded PST file{s}. Create the import job in the Microsoft Purview portal (you need the Mailbox Import Export role):
1. Data lifecycle management → Import → New import job; name it (lowercase letters, digits, hyphens).
2. Choose \"Upload your data\"; tick \"I'm done uploading my files\" and \"I have access to the mapping file\".
3. Select {mapping}, then Validate; fix and re-run `cutover apply` if it reports errors.
4. Accept the terms and submit. When the job shows \"Analysis completed\", choose whether to filter the data, then start the import.
5. Approve this gate once the job shows \"Completed\" (Microsoft imports in hours to days).",
        s = if count == 1 { "" } else { "s" },
    )
}
