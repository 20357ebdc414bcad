//! Steps this build cannot run yet, found by asking every runner
//! ([`crate::engine::StepRunner::unsupported`]) rather than from a list kept by hand, so the
//! warning disappears by itself when a runner lands.

use crate::graph::{StepGraph, StepKind};
use crate::plan::yaml::{self, ByteSpan};
use crate::plan::{Loaded, PlanDiagnostic};

pub const UNSUPPORTED_STEP: &str = "cutover::plan::unsupported-step";

/// `(step id, what is missing)` for every step of the plan this build cannot run, in plan
/// order. Builds the runners, which touch no network and resolve no secret.
pub fn unsupported_steps(loaded: &Loaded) -> Vec<(String, String)> {
    let (Some(plan), Some(graph)) = (&loaded.plan, &loaded.graph) else {
        return Vec::new();
    };
    let runners = crate::runners::runners_for(plan, graph, &loaded.base_dir);
    graph
        .topological_order()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|id| {
            let what = runners.get(id)?.unsupported()?;
            Some((id.to_string(), what.to_string()))
        })
        .collect()
}

/// A warning per step this build cannot run, on the plan entry the step comes from (the
/// migration, else the user, else the top of the file). Only for a plan without errors: a
/// plan that does not load has no steps to speak of.
pub fn unsupported_warnings(loaded: &Loaded) -> Vec<PlanDiagnostic> {
    if loaded.valid().is_none() {
        return Vec::new();
    }
    let root = yaml::parse(&loaded.report.source).ok();
    unsupported_steps(loaded)
        .into_iter()
        .map(|(id, what)| {
            let span = root
                .as_ref()
                .and_then(|root| step_span(root, loaded.graph.as_ref()?, &id))
                .unwrap_or(0..0);
            PlanDiagnostic::warning(
                UNSUPPORTED_STEP,
                format!("this build cannot run `{id}` yet: {what}"),
            )
            .label(span, "")
            .help(format!(
                "the plan is valid, but `plan` shows `{id}` blocked and `apply` fails it and skips \
                 what depends on it"
            ))
        })
        .collect()
}

/// Where in the plan step `id` comes from: `users[u].migrate[m].from`, else the user's
/// `email`.
fn step_span(root: &yaml::Node, graph: &StepGraph, id: &str) -> Option<ByteSpan> {
    let step = graph.step(id)?;
    let user = root.get("users")?.as_seq()?.get(step.user?)?;
    let node = match (step.kind, step.migration) {
        (StepKind::Copy | StepKind::Delta, Some(m)) => {
            let entry = user.get("migrate")?.as_seq()?.get(m)?;
            entry.get("from").unwrap_or(entry)
        }
        _ => user.get("email").unwrap_or(user),
    };
    Some(node.span.clone())
}
