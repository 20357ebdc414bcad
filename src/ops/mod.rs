//! What the commands do, as library calls — one file per command, as in cargo's `ops/`.
//! The CLI files only parse arguments and print; rendering of plans, reports and numbers
//! lives in `crate::cli`. Shared here: opening a plan with its state ([`Workspace`]) and the
//! errors every command may meet.

mod apply;
mod approve;
mod plan;
pub mod pst;
pub mod pst_upload;
pub mod report;
pub mod rollback;
mod status;
mod unlock;
mod unsupported;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use apply::{apply, lock, ApplyLock, ApplyOutcome, ApplyRequest};
pub use approve::{approve, current_user};
pub use plan::{load_saved_plan, plan, save_plan, Action, PlanRow, PlanView, SavedPlan};
pub use report::{build_report, outcome_text, Report, StepReport, UserReport};
pub use status::{status, StatusRow, INTERRUPTED, INTERRUPTED_NOTE};
pub use unlock::{unlock, UnlockRefused, Unlocked};
pub use unsupported::{unsupported_steps, unsupported_warnings, UNSUPPORTED_STEP};

use crate::engine::Runners;
use crate::graph::{Selection, StepGraph};
use crate::plan::{self as plan_file, FileReport, Loaded, Options, Plan};
use crate::state::{self, SqliteStore, StateError};

#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a valid plan ({} errors); run `cutover validate` for details", .0.file, .0.errors())]
    InvalidPlan(Box<FileReport>),
    #[error("{0}")]
    Selection(String),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("saved plan {path} is stale: {reason}; run `cutover plan --out` again")]
    StalePlan { path: PathBuf, reason: String },
    #[error("saved plan {path} cannot be read: {reason}")]
    BadSavedPlan { path: PathBuf, reason: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    /// A step-level failure outside a walk (`cutover rollback dns`); already redacted.
    #[error("{0}")]
    Step(String),
}

/// A valid plan, its step graph and where its state lives.
#[derive(Debug)]
pub struct Workspace {
    pub plan_file: PathBuf,
    pub loaded: Loaded,
    pub state_path: PathBuf,
    /// Built on first use and kept: `apply` previews and then runs with the same runners, so
    /// the secrets and tokens they hold are fetched once per command.
    runners: BuiltRunners,
}

/// The runners a [`Workspace`] built, once.
#[derive(Default)]
struct BuiltRunners(std::sync::OnceLock<Runners>);

impl std::fmt::Debug for BuiltRunners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "built"
        } else {
            "not built"
        })
    }
}

impl Workspace {
    /// Loads and validates `plan_file`; the state file defaults to `.cutover/<name>.db`
    /// beside the plan.
    pub fn open(
        plan_file: &Path,
        state_path: Option<&Path>,
        options: Options,
    ) -> Result<Workspace, OpsError> {
        let loaded = plan_file::load_file(plan_file, options).map_err(|source| OpsError::Read {
            path: plan_file.to_path_buf(),
            source,
        })?;
        Self::from_loaded(plan_file, loaded, state_path)
    }

    /// A workspace over an already loaded plan; fails when the plan has errors.
    pub fn from_loaded(
        plan_file: &Path,
        loaded: Loaded,
        state_path: Option<&Path>,
    ) -> Result<Workspace, OpsError> {
        let Some((plan, _)) = loaded.valid() else {
            return Err(OpsError::InvalidPlan(Box::new(loaded.report)));
        };
        let state_path = state_path.map_or_else(
            || state::default_state_path(plan_file, &plan.name),
            Path::to_path_buf,
        );
        Ok(Workspace {
            plan_file: plan_file.to_path_buf(),
            loaded,
            state_path,
            runners: BuiltRunners::default(),
        })
    }

    pub fn plan(&self) -> &Plan {
        self.loaded
            .plan
            .as_ref()
            .expect("Workspace::open keeps only valid plans")
    }

    pub fn graph(&self) -> &StepGraph {
        self.loaded
            .graph
            .as_ref()
            .expect("Workspace::open keeps only valid plans")
    }

    pub fn base_dir(&self) -> &Path {
        &self.loaded.base_dir
    }

    /// Opens (creating) the state store.
    pub fn store(&self) -> Result<Arc<SqliteStore>, OpsError> {
        Ok(Arc::new(SqliteStore::open(&self.state_path)?))
    }

    /// Opens the state store only if it exists (read-only commands never create one).
    pub fn existing_store(&self) -> Result<Option<Arc<SqliteStore>>, OpsError> {
        if self.state_path.exists() {
            self.store().map(Some)
        } else {
            Ok(None)
        }
    }

    pub fn select(&self, selection: &Selection) -> BTreeSet<String> {
        self.graph().select(selection)
    }

    /// The runner of every step, built once per workspace (see the field's note).
    pub fn runners(&self) -> Runners {
        self.runners
            .0
            .get_or_init(|| crate::runners::runners_for(self.plan(), self.graph(), self.base_dir()))
            .clone()
    }

    /// `<plan dir>/<settings.output_dir>`
    pub fn output_dir(&self) -> PathBuf {
        tidy_path(&self.base_dir().join(&self.plan().settings.output_dir))
    }

    /// The JSONL event log beside the state file.
    pub fn event_log_path(&self) -> PathBuf {
        self.state_path
            .with_file_name(format!("{}.events.jsonl", self.plan().name))
    }
}

/// `plans/../demo-out` → `demo-out`, for paths shown to people (lexical: no symlink lookup).
fn tidy_path(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            other => out.push(other),
        }
    }
    if out.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        out
    }
}

pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), OpsError> {
    let err = |source| OpsError::Write {
        path: path.to_path_buf(),
        source,
    };
    crate::files::write_atomically(path, bytes).map_err(err)
}
