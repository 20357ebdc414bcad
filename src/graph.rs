//! Plan → step DAG. Every unit of work is a step with a stable id; edges follow the real
//! runbook (users exist → pre-stage copies → TTL lowered and expired → DNS cutover → delta
//! passes → autocomplete → verify) plus the plan's own `after:` edges and manual gates.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::fmt::Write as _;

use globset::{Glob, GlobMatcher};
use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use petgraph::Direction;
use serde::Serialize;

use crate::plan::model::{Plan, Source};
use crate::plan::pst_import;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepKind {
    /// The mailbox exists (and is licensed) at the target.
    User,
    /// Pre-stage copy of one user's mail from one source.
    Copy,
    /// Lower the TTL of the managed records.
    LowerTtl,
    /// Point DNS at the target.
    Cutover,
    /// Copy what still arrived at the old host after the copy.
    Delta,
    /// Carry the Outlook autocomplete cache over.
    Autocomplete,
    /// Compare source and target counts.
    Verify,
    /// A human gate.
    Manual,
}

/// One unit of work.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// Stable id, e.g. `copy.alice.ionos-imap`.
    pub id: String,
    pub kind: StepKind,
    /// Index into `plan.users`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<usize>,
    /// Index into that user's `migrate:` list.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub migration: Option<usize>,
    /// Manual gate id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gate: Option<String>,
}

/// Why an edge exists; plan-written edges know where they were written, for diagnostics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EdgeOrigin {
    Runbook,
    /// `after: { <key>: [.., <pattern #index>, ..] }`
    PlanAfter {
        key: String,
        index: usize,
    },
    /// `manual: { <gate>: { before: [.., #index] } }`
    GateBefore {
        gate: String,
        index: usize,
    },
    /// `manual: { <gate>: { after: [.., #index] } }`
    GateAfter {
        gate: String,
        index: usize,
    },
}

/// Where in the plan a step reference was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefSite {
    /// A key of the top-level `after:` map.
    AfterKey {
        key: String,
    },
    /// An item of an `after:` list.
    AfterItem {
        key: String,
        index: usize,
    },
    GateBefore {
        gate: String,
        index: usize,
    },
    GateAfter {
        gate: String,
        index: usize,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GraphProblem {
    /// Two steps got the same id (two users with one local part in different domains, or one
    /// user migrating twice from a source without `name:`). Points at the second definition.
    DuplicateStep {
        id: String,
        user: usize,
        migration: Option<usize>,
    },
    /// A reference matched no step.
    UnknownStep { pattern: String, site: RefSite },
    /// A reference pattern is not a valid glob.
    InvalidPattern {
        pattern: String,
        site: RefSite,
        reason: String,
    },
    /// The steps form a cycle: `path` starts and ends with the same id; `origins[i]` made the
    /// edge `path[i] → path[i+1]`.
    Cycle {
        path: Vec<String>,
        origins: Vec<EdgeOrigin>,
    },
}

/// The DAG of a plan. Edges point from a dependency to its dependent.
#[derive(Debug, Clone)]
pub struct StepGraph {
    graph: DiGraph<Step, EdgeOrigin>,
    by_id: HashMap<String, NodeIndex>,
}

impl StepGraph {
    /// Expands a plan into steps and edges. Problems are collected, not fatal: the graph holds
    /// every step that could be made.
    pub fn build(plan: &Plan) -> (StepGraph, Vec<GraphProblem>) {
        let mut g = StepGraph {
            graph: DiGraph::new(),
            by_id: HashMap::new(),
        };
        let mut problems = Vec::new();
        let add = |g: &mut StepGraph,
                   problems: &mut Vec<GraphProblem>,
                   step: Step|
         -> Option<NodeIndex> {
            if g.by_id.contains_key(&step.id) {
                if let Some(user) = step.user {
                    problems.push(GraphProblem::DuplicateStep {
                        id: step.id.clone(),
                        user,
                        migration: step.migration,
                    });
                }
                return None;
            }
            let id = step.id.clone();
            let ix = g.graph.add_node(step);
            g.by_id.insert(id, ix);
            Some(ix)
        };

        let has_dns = plan.dns.is_some();
        let lower_ttl = plan
            .dns
            .as_ref()
            .and_then(|d| d.lower_ttl.as_ref())
            .and_then(|_| {
                add(
                    &mut g,
                    &mut problems,
                    Step {
                        id: "dns.lower-ttl".into(),
                        kind: StepKind::LowerTtl,
                        user: None,
                        migration: None,
                        gate: None,
                    },
                )
            });
        let cutover = if has_dns {
            add(
                &mut g,
                &mut problems,
                Step {
                    id: "dns.cutover".into(),
                    kind: StepKind::Cutover,
                    user: None,
                    migration: None,
                    gate: None,
                },
            )
        } else {
            None
        };
        if let (Some(lower), Some(cut)) = (lower_ttl, cutover) {
            g.graph.add_edge(lower, cut, EdgeOrigin::Runbook);
        }

        // PST uploads to Microsoft's import service, with their user: the portal's import job
        // comes after them.
        let mut uploads: Vec<(NodeIndex, usize)> = Vec::new();
        for (ui, user) in plan.users.iter().enumerate() {
            let slug = user_slug(&user.email);
            let Some(user_step) = add(
                &mut g,
                &mut problems,
                Step {
                    id: format!("user.{slug}"),
                    kind: StepKind::User,
                    user: Some(ui),
                    migration: None,
                    gate: None,
                },
            ) else {
                continue;
            };
            let mut mail_done = Vec::new();
            // One user's copy steps (and delta steps) run one after the other, in plan order:
            // two of them may write the same target folder (a PST and the POP3 account it was
            // filled from both reach the inbox), and each must count what the other stored.
            let mut previous_copy = None;
            let mut previous_delta = None;
            for (mi, migration) in user.migrate.iter().enumerate() {
                let from = path_safe(&migration.from);
                let suffix = match &migration.name {
                    Some(name) => format!("{slug}.{from}.{}", path_safe(name)),
                    None => format!("{slug}.{from}"),
                };
                let Some(copy) = add(
                    &mut g,
                    &mut problems,
                    Step {
                        id: format!("copy.{suffix}"),
                        kind: StepKind::Copy,
                        user: Some(ui),
                        migration: Some(mi),
                        gate: None,
                    },
                ) else {
                    continue;
                };
                g.graph.add_edge(user_step, copy, EdgeOrigin::Runbook);
                if let Some(prev) = previous_copy.replace(copy) {
                    g.graph.add_edge(prev, copy, EdgeOrigin::Runbook);
                }
                if pst_import::is_import_source(plan.sources.get(&migration.from)) {
                    uploads.push((copy, ui));
                }
                if let Some(cut) = cutover {
                    g.graph.add_edge(copy, cut, EdgeOrigin::Runbook);
                }
                let live_source = matches!(
                    plan.sources.get(&migration.from),
                    Some(Source::Imap(_) | Source::Pop3 { .. })
                );
                match cutover {
                    Some(cut) if live_source => {
                        if let Some(delta) = add(
                            &mut g,
                            &mut problems,
                            Step {
                                id: format!("delta.{suffix}"),
                                kind: StepKind::Delta,
                                user: Some(ui),
                                migration: Some(mi),
                                gate: None,
                            },
                        ) {
                            g.graph.add_edge(cut, delta, EdgeOrigin::Runbook);
                            g.graph.add_edge(copy, delta, EdgeOrigin::Runbook);
                            if let Some(prev) = previous_delta.replace(delta) {
                                g.graph.add_edge(prev, delta, EdgeOrigin::Runbook);
                            }
                            mail_done.push(delta);
                        }
                    }
                    _ => mail_done.push(copy),
                }
            }
            let mut last_stage = mail_done.clone();
            if let Some(cut) = cutover {
                last_stage.push(cut);
            }
            let autocomplete = user.autocomplete.as_ref().and_then(|_| {
                add(
                    &mut g,
                    &mut problems,
                    Step {
                        id: format!("autocomplete.{slug}"),
                        kind: StepKind::Autocomplete,
                        user: Some(ui),
                        migration: None,
                        gate: None,
                    },
                )
            });
            if let Some(ac) = autocomplete {
                g.graph.add_edge(user_step, ac, EdgeOrigin::Runbook);
                for &dep in &last_stage {
                    g.graph.add_edge(dep, ac, EdgeOrigin::Runbook);
                }
            }
            if let Some(verify) = add(
                &mut g,
                &mut problems,
                Step {
                    id: format!("verify.{slug}"),
                    kind: StepKind::Verify,
                    user: Some(ui),
                    migration: None,
                    gate: None,
                },
            ) {
                let deps = autocomplete.map_or(last_stage, |ac| vec![ac]);
                g.graph.add_edge(user_step, verify, EdgeOrigin::Runbook);
                for dep in deps.into_iter().chain(mail_done) {
                    g.graph.add_edge(dep, verify, EdgeOrigin::Runbook);
                }
            }
        }

        for id in plan.manual.keys() {
            add(
                &mut g,
                &mut problems,
                Step {
                    id: format!("manual.{id}"),
                    kind: StepKind::Manual,
                    user: None,
                    migration: None,
                    gate: Some(id.clone()),
                },
            );
        }
        // The import job in the Purview portal: one gate after every upload, before the
        // verify step of each user with an uploaded PST (see `plan::pst_import`). A plan's
        // own `manual.pst-import` gate is that gate.
        if !uploads.is_empty() {
            let id = format!("manual.{}", pst_import::GATE);
            let gate = match g.by_id.get(&id) {
                Some(&ix) => Some(ix),
                None => add(
                    &mut g,
                    &mut problems,
                    Step {
                        id,
                        kind: StepKind::Manual,
                        user: None,
                        migration: None,
                        gate: Some(pst_import::GATE.into()),
                    },
                ),
            };
            if let Some(gate) = gate {
                for (copy, ui) in uploads {
                    g.graph.update_edge(copy, gate, EdgeOrigin::Runbook);
                    let verify = format!("verify.{}", user_slug(&plan.users[ui].email));
                    if let Some(&verify) = g.by_id.get(&verify) {
                        g.graph.update_edge(gate, verify, EdgeOrigin::Runbook);
                    }
                }
            }
        }
        for (gate_id, gate) in &plan.manual {
            let Some(&gate_ix) = g.by_id.get(&format!("manual.{gate_id}")) else {
                continue;
            };
            for (index, pattern) in gate.before.iter().enumerate() {
                let site = RefSite::GateBefore {
                    gate: gate_id.clone(),
                    index,
                };
                for dependent in g.resolve(pattern, site, &mut problems) {
                    g.graph.update_edge(
                        gate_ix,
                        dependent,
                        EdgeOrigin::GateBefore {
                            gate: gate_id.clone(),
                            index,
                        },
                    );
                }
            }
            for (index, pattern) in gate.after.iter().enumerate() {
                let site = RefSite::GateAfter {
                    gate: gate_id.clone(),
                    index,
                };
                for dependency in g.resolve(pattern, site, &mut problems) {
                    g.graph.update_edge(
                        dependency,
                        gate_ix,
                        EdgeOrigin::GateAfter {
                            gate: gate_id.clone(),
                            index,
                        },
                    );
                }
            }
        }
        for (key, deps) in &plan.after {
            let dependents = g.resolve(key, RefSite::AfterKey { key: key.clone() }, &mut problems);
            for (index, pattern) in deps.iter().enumerate() {
                let site = RefSite::AfterItem {
                    key: key.clone(),
                    index,
                };
                for dependency in g.resolve(pattern, site, &mut problems) {
                    for &dependent in &dependents {
                        g.graph.update_edge(
                            dependency,
                            dependent,
                            EdgeOrigin::PlanAfter {
                                key: key.clone(),
                                index,
                            },
                        );
                    }
                }
            }
        }
        problems.extend(g.cycles());
        (g, problems)
    }

    fn resolve(
        &self,
        pattern: &str,
        site: RefSite,
        problems: &mut Vec<GraphProblem>,
    ) -> Vec<NodeIndex> {
        match step_matcher(pattern) {
            Err(reason) => {
                problems.push(GraphProblem::InvalidPattern {
                    pattern: pattern.to_string(),
                    site,
                    reason,
                });
                Vec::new()
            }
            Ok(matcher) => {
                let found: Vec<NodeIndex> = self
                    .graph
                    .node_indices()
                    .filter(|&ix| matcher.is_match(&self.graph[ix].id))
                    .collect();
                if found.is_empty() {
                    problems.push(GraphProblem::UnknownStep {
                        pattern: pattern.to_string(),
                        site,
                    });
                }
                found
            }
        }
    }

    /// Every elementary cycle's representative: one per strongly connected component.
    fn cycles(&self) -> Vec<GraphProblem> {
        let mut found = Vec::new();
        let mut components = tarjan_scc(&self.graph);
        components.sort_by_key(|c| c.iter().min().copied());
        for component in components {
            let self_loop =
                component.len() == 1 && self.graph.find_edge(component[0], component[0]).is_some();
            if component.len() < 2 && !self_loop {
                continue;
            }
            let members: BTreeSet<NodeIndex> = component.iter().copied().collect();
            let Some(&start) = members.iter().next() else {
                continue;
            };
            if let Some(path) = self.cycle_from(start, &members) {
                let origins = path
                    .windows(2)
                    .filter_map(|w| {
                        self.graph
                            .find_edge(w[0], w[1])
                            .map(|e| self.graph[e].clone())
                    })
                    .collect();
                found.push(GraphProblem::Cycle {
                    path: path.iter().map(|&ix| self.graph[ix].id.clone()).collect(),
                    origins,
                });
            }
        }
        found
    }

    /// A shortest cycle through `start` inside one component (breadth-first, deterministic).
    fn cycle_from(
        &self,
        start: NodeIndex,
        members: &BTreeSet<NodeIndex>,
    ) -> Option<Vec<NodeIndex>> {
        let mut parent: HashMap<NodeIndex, NodeIndex> = HashMap::new();
        let mut queue = std::collections::VecDeque::from([start]);
        while let Some(at) = queue.pop_front() {
            let mut next: Vec<NodeIndex> = self
                .graph
                .neighbors_directed(at, Direction::Outgoing)
                .filter(|n| members.contains(n))
                .collect();
            next.sort();
            for n in next {
                if n == start {
                    let mut path = vec![at];
                    while let Some(&up) = parent.get(path.last().unwrap_or(&start)) {
                        path.push(up);
                    }
                    path.reverse();
                    path.push(start);
                    return Some(normalize_cycle(path));
                }
                if n != start && !parent.contains_key(&n) {
                    parent.insert(n, at);
                    queue.push_back(n);
                }
            }
        }
        None
    }

    pub fn steps(&self) -> impl Iterator<Item = &Step> {
        self.graph.node_indices().map(|ix| &self.graph[ix])
    }

    pub fn len(&self) -> usize {
        self.graph.node_count()
    }

    pub fn is_empty(&self) -> bool {
        self.graph.node_count() == 0
    }

    pub fn step(&self, id: &str) -> Option<&Step> {
        self.by_id.get(id).map(|&ix| &self.graph[ix])
    }

    /// Ids of the steps `id` directly depends on, sorted.
    pub fn dependencies(&self, id: &str) -> Vec<&str> {
        self.neighbours(id, Direction::Incoming)
    }

    /// Ids of the steps that directly depend on `id`, sorted.
    pub fn dependents(&self, id: &str) -> Vec<&str> {
        self.neighbours(id, Direction::Outgoing)
    }

    fn neighbours(&self, id: &str, direction: Direction) -> Vec<&str> {
        let Some(&ix) = self.by_id.get(id) else {
            return Vec::new();
        };
        let mut ids: Vec<&str> = self
            .graph
            .neighbors_directed(ix, direction)
            .map(|n| self.graph[n].id.as_str())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Step ids in an order where every step follows its dependencies (plan order among
    /// equals). `None` when the graph has a cycle.
    pub fn topological_order(&self) -> Option<Vec<&str>> {
        // Kahn's algorithm, always taking the earliest-defined ready step: output follows
        // the plan's own order wherever the dependencies allow.
        let mut waiting: Vec<usize> = self
            .graph
            .node_indices()
            .map(|ix| {
                self.graph
                    .neighbors_directed(ix, Direction::Incoming)
                    .count()
            })
            .collect();
        let mut ready: BinaryHeap<Reverse<NodeIndex>> = self
            .graph
            .node_indices()
            .filter(|ix| waiting[ix.index()] == 0)
            .map(Reverse)
            .collect();
        let mut order = Vec::with_capacity(self.graph.node_count());
        while let Some(Reverse(ix)) = ready.pop() {
            order.push(self.graph[ix].id.as_str());
            for next in self.graph.neighbors_directed(ix, Direction::Outgoing) {
                waiting[next.index()] -= 1;
                if waiting[next.index()] == 0 {
                    ready.push(Reverse(next));
                }
            }
        }
        (order.len() == self.graph.node_count()).then_some(order)
    }

    /// The steps `--target`/`--exclude` select: every step matching a target (all steps when
    /// there is none) with everything it depends on, less the excluded steps and whatever
    /// depends on them (they could not run).
    /// The selected steps `selection` asks to run again (`--replace`); an error names a
    /// pattern that matches no selected step.
    pub fn replaced(
        &self,
        selection: &Selection,
        selected: &BTreeSet<String>,
    ) -> Result<BTreeSet<String>, String> {
        let mut out = BTreeSet::new();
        for m in &selection.replace {
            let before = out.len();
            out.extend(selected.iter().filter(|id| m.is_match(id)).cloned());
            if out.len() == before && !selected.iter().any(|id| m.is_match(id)) {
                return Err(format!(
                    "--replace {}: no selected step matches",
                    m.glob().glob()
                ));
            }
        }
        Ok(out)
    }

    pub fn select(&self, selection: &Selection) -> BTreeSet<String> {
        let mut chosen: BTreeSet<NodeIndex> = BTreeSet::new();
        let mut stack: Vec<NodeIndex> = self
            .graph
            .node_indices()
            .filter(|&ix| {
                selection.targets.is_empty()
                    || selection
                        .targets
                        .iter()
                        .any(|m| m.is_match(&self.graph[ix].id))
            })
            .collect();
        while let Some(ix) = stack.pop() {
            if chosen.insert(ix) {
                stack.extend(self.graph.neighbors_directed(ix, Direction::Incoming));
            }
        }
        let mut dropped: Vec<NodeIndex> = chosen
            .iter()
            .copied()
            .filter(|&ix| {
                selection
                    .excludes
                    .iter()
                    .any(|m| m.is_match(&self.graph[ix].id))
            })
            .collect();
        while let Some(ix) = dropped.pop() {
            if chosen.remove(&ix) {
                dropped.extend(self.graph.neighbors_directed(ix, Direction::Outgoing));
            }
        }
        chosen
            .into_iter()
            .map(|ix| self.graph[ix].id.clone())
            .collect()
    }

    /// Graphviz DOT of the selected steps.
    pub fn to_dot(&self, selected: &BTreeSet<String>) -> String {
        let mut out = String::from("digraph cutover {\n  rankdir=LR;\n  node [shape=box, style=rounded, fontname=\"Helvetica\"];\n");
        for step in self.steps().filter(|s| selected.contains(&s.id)) {
            let shape = if step.kind == StepKind::Manual {
                ", shape=hexagon"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "  \"{}\" [group=\"{}\"{shape}];",
                step.id,
                kind_name(step.kind)
            );
        }
        for (from, to) in self.selected_edges(selected) {
            let _ = writeln!(out, "  \"{from}\" -> \"{to}\";");
        }
        out.push_str("}\n");
        out
    }

    /// Mermaid flowchart of the selected steps.
    pub fn to_mermaid(&self, selected: &BTreeSet<String>) -> String {
        let mut out = String::from("flowchart LR\n");
        let node_id = |id: &str| id.replace(['.', '-', '@', '+'], "_");
        for step in self.steps().filter(|s| selected.contains(&s.id)) {
            let (open, close) = if step.kind == StepKind::Manual {
                ("{{", "}}")
            } else {
                ("[", "]")
            };
            let _ = writeln!(out, "    {}{open}\"{}\"{close}", node_id(&step.id), step.id);
        }
        for (from, to) in self.selected_edges(selected) {
            let _ = writeln!(out, "    {} --> {}", node_id(from), node_id(to));
        }
        out
    }

    fn selected_edges(&self, selected: &BTreeSet<String>) -> Vec<(&str, &str)> {
        let mut edges: Vec<(NodeIndex, NodeIndex, &str, &str)> = self
            .graph
            .edge_references()
            .map(|e| {
                (
                    e.source(),
                    e.target(),
                    self.graph[e.source()].id.as_str(),
                    self.graph[e.target()].id.as_str(),
                )
            })
            .filter(|(_, _, a, b)| selected.contains(*a) && selected.contains(*b))
            .collect();
        edges.sort();
        edges.dedup();
        edges.into_iter().map(|(_, _, a, b)| (a, b)).collect()
    }
}

/// Rotate so the cycle starts at its smallest node: the same cycle reads the same every run.
fn normalize_cycle(path: Vec<NodeIndex>) -> Vec<NodeIndex> {
    let ring = &path[..path.len() - 1];
    let Some(start) = ring
        .iter()
        .enumerate()
        .min_by_key(|(_, ix)| **ix)
        .map(|(i, _)| i)
    else {
        return path;
    };
    let mut out: Vec<NodeIndex> = ring[start..]
        .iter()
        .chain(&ring[..start])
        .copied()
        .collect();
    out.push(out[0]);
    out
}

fn kind_name(kind: StepKind) -> &'static str {
    match kind {
        StepKind::User => "user",
        StepKind::Copy => "copy",
        StepKind::LowerTtl | StepKind::Cutover => "dns",
        StepKind::Delta => "delta",
        StepKind::Autocomplete => "autocomplete",
        StepKind::Verify => "verify",
        StepKind::Manual => "manual",
    }
}

/// The user part of step ids and of file names written per user: the address's local part,
/// lower-cased, as a [`path_safe`] name.
pub fn user_slug(email: &str) -> String {
    let local = email.rsplit_once('@').map_or(email, |(local, _)| local);
    path_safe(&local.to_lowercase())
}

/// `text` as one file or folder name that cannot leave the folder it is joined to: every
/// character but ASCII letters, digits and the harmless punctuation of addresses
/// (`-_+.@!#$%&'*=?^`{|}~`) becomes `_` (so no `/`, `\`, NUL or control character), a
/// leading `.` and `..` become `_.`/`_`, and nothing becomes `_`. A valid plan's addresses
/// pass unchanged (validation refuses the rest), so this changes no existing step id or
/// folder; it is what keeps an unvalidated plan from writing elsewhere.
pub fn path_safe(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_+.@!#$%&'*=?^`{|}~".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    while out.contains("..") {
        out = out.replace("..", "_.");
    }
    if out.starts_with('.') {
        out.replace_range(0..1, "_");
    }
    if out.is_empty() {
        out.push('_');
    }
    out
}

/// Step-id glob: `*` also crosses dots, so `copy.*` selects every copy step.
pub fn step_matcher(pattern: &str) -> Result<GlobMatcher, String> {
    Glob::new(pattern)
        .map(|g| g.compile_matcher())
        .map_err(|e| e.kind().to_string())
}

/// `--target` / `--exclude` globs.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub targets: Vec<GlobMatcher>,
    pub excludes: Vec<GlobMatcher>,
    /// `--replace`: done steps to run again (copies and deltas catch up from their
    /// checkpoints), like Terraform's `-replace`.
    pub replace: Vec<GlobMatcher>,
}

impl Selection {
    pub fn new(targets: &[String], excludes: &[String]) -> Result<Selection, String> {
        let compile = |patterns: &[String]| -> Result<Vec<GlobMatcher>, String> {
            patterns
                .iter()
                .map(|p| step_matcher(p).map_err(|e| format!("invalid step pattern `{p}`: {e}")))
                .collect()
        };
        Ok(Selection {
            targets: compile(targets)?,
            excludes: compile(excludes)?,
            replace: Vec::new(),
        })
    }

    /// The same selection, with `patterns` as the done steps to run again.
    pub fn replacing(mut self, patterns: &[String]) -> Result<Selection, String> {
        self.replace = patterns
            .iter()
            .map(|p| step_matcher(p).map_err(|e| format!("invalid step pattern `{p}`: {e}")))
            .collect::<Result<_, _>>()?;
        Ok(self)
    }
}
