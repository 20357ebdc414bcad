//! Helpers of the benchmarks.

pub mod delay_proxy;

use std::path::Path;
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
