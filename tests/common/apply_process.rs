//! `cutover apply` as a separate process, for tests that kill it.

use std::path::Path;
use std::process::{Command, Stdio};

/// `cutover apply --yes --progress plain plan.yaml` in `dir`, output discarded.
pub fn apply(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cutover"));
    cmd.args(["apply", "--yes", "--progress", "plain", "plan.yaml"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// Runs apply in `dir` until it succeeds, at most `max_runs` times (panicking with the last
/// run's stderr); returns how many runs it took.
pub fn resume_until_done(dir: &Path, max_runs: usize) -> usize {
    for runs in 1..=max_runs {
        let run = apply(dir).stderr(Stdio::piped()).output().unwrap();
        if run.status.success() {
            return runs;
        }
        assert!(
            runs < max_runs,
            "apply did not finish after {runs} runs: {}\n{}",
            run.status,
            String::from_utf8_lossy(&run.stderr)
        );
    }
    max_runs
}

/// Messages the copy steps settled (copied, found already there, or left behind) according
/// to the state file `state` so far: 0 before the apply has set it up. For deciding when to
/// kill. Read-only: a watcher opening the file for writing would race the apply's own start.
pub fn settled_so_far(state: &Path) -> u64 {
    use cutover::state::{SqliteStore, StateStore};
    if !state.exists() {
        return 0;
    }
    let Ok(store) = SqliteStore::open_read_only(state) else {
        return 0;
    };
    store
        .steps()
        .unwrap()
        .iter()
        .filter(|s| s.id.starts_with("copy."))
        .map(|s| s.counts.items + s.counts.present + s.counts.left_behind)
        .sum()
}
