//! Helpers of the benchmarks.

pub mod delay_proxy;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use cutover::engine::{
    self, ApplyOptions, CancellationToken, NullSink, Runners, StepResult, WalkOutcome,
};
use cutover::graph::{Selection, StepGraph};
use cutover::plan::{self, Options, Plan};
use cutover::state::{Counts, SqliteStore, StateStore};

/// A number from the environment (a bench's scale), else `default`.
pub fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The plan `yaml` (relative paths from `base`), its step graph and runners; panics with the
/// diagnostics when it is not valid.
pub fn load(yaml: &str, base: &Path) -> (Plan, StepGraph, Runners) {
    let loaded = plan::load_str(yaml.to_string(), "bench.yaml", base, Options::default());
    assert_eq!(
        loaded.report.errors(),
        0,
        "{:#?}",
        loaded.report.diagnostics
    );
    let (plan, graph) = (loaded.plan.expect("plan"), loaded.graph.expect("graph"));
    let runners = cutover::runners::runners_for(&plan, &graph, base);
    (plan, graph, runners)
}

/// Applies the plan's `step` (a glob) with a state file `state`; returns (seconds, counts and
/// result of `copy.bench.old` or `delta.bench.old`). For a delta the copy and the DNS cutover
/// are marked done first, as after a real cutover.
pub async fn apply(yaml: &str, base: &Path, state: &str, step: &str) -> (f64, Counts, StepResult) {
    let (plan, graph, runners) = load(yaml, base);
    let selected = graph.select(&Selection::new(&[step.to_string()], &[]).expect("selection"));
    let store: Arc<dyn StateStore> = Arc::new(SqliteStore::open(base.join(state)).expect("state"));
    let id = step.replace('*', "bench.old");
    if id.starts_with("delta.") {
        for gate in ["dns.lower-ttl", "dns.cutover"] {
            if let Some(runner) = runners.get(gate) {
                store
                    .set_config_hash(gate, &runner.config_hash())
                    .expect("state");
                store.mark_done(gate).expect("state");
            }
        }
    }
    let started = Instant::now();
    let report = engine::apply(
        &plan,
        &graph,
        &selected,
        Arc::clone(&store),
        &runners,
        &ApplyOptions::default(),
        &mut NullSink,
        CancellationToken::new(),
    )
    .await;
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(report.outcome, WalkOutcome::Succeeded, "{report:#?}");
    let result = report.steps[&id].clone();
    let counts = store.step(&id).expect("state").expect("record").counts;
    (secs, counts, result)
}

/// Resets the kernel's peak-RSS mark (Linux ≥ 4.0), so each scenario's peak is its own and
/// not the corpus loader's.
pub fn reset_peak_rss() {
    // SAFETY: malloc_trim only returns free heap pages to the kernel. Without it the
    // loader's freed buffers would still count as resident.
    unsafe {
        libc::malloc_trim(0);
    }
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Wall seconds and peak RSS (MB) of `cmd` run to its end, from `wait4`'s resource usage of
/// that one child. The child is spawned sharing this process's memory until it executes
/// (`vfork`), and Linux carries that memory's peak over into the child's: so this process's
/// peak is reset to what it holds now first, which then is the floor of the figure.
pub fn run_measured(cmd: &mut Command, what: &str, stderr: &Path) -> (f64, f64) {
    reset_peak_rss();
    let started = Instant::now();
    // Reaped below by `wait4`, which `Child` does not offer, for the child's own usage.
    #[allow(clippy::zombie_processes)]
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(stderr).expect("stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: waits for our own child and fills the struct it is given.
    let usage = unsafe {
        assert_eq!(libc::wait4(pid, &mut status, 0, usage.as_mut_ptr()), pid);
        usage.assume_init()
    };
    let secs = started.elapsed().as_secs_f64();
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        let err = std::fs::read_to_string(stderr).unwrap_or_default();
        panic!("{what} failed ({status}): {err}");
    }
    (secs, usage.ru_maxrss as f64 / 1024.0)
}

/// `cutover apply` of the copy steps of `base/plan.yaml`, as a user runs it (the release
/// binary, plain progress): wall seconds and peak RSS (MB), see [`run_measured`].
pub fn apply_copies_measured(base: &Path) -> (f64, f64) {
    run_measured(
        Command::new(env!("CARGO_BIN_EXE_cutover"))
            .args([
                "apply",
                "--yes",
                "--progress",
                "plain",
                "--target",
                "copy.*",
            ])
            .arg("plan.yaml")
            .current_dir(base),
        "cutover apply",
        &base.join("cutover.stderr"),
    )
}
