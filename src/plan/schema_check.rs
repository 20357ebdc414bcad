//! Checks a YAML tree against the plan's JSON Schema and reports every structural problem —
//! unknown fields, wrong types, missing fields, values outside an enum or range — each on the
//! exact span. The schema generated from the model is the single description of the structure,
//! so this walker understands just the subset schemars emits: `$ref`, `type`, `properties`,
//! `required`, `additionalProperties`, `items`, `enum`, `const`, `oneOf`/`anyOf`,
//! `minimum`/`maximum`.

use serde_json::Value as J;

use super::diagnostic::{did_you_mean, list_names, PlanDiagnostic};
use super::yaml::{ByteSpan, Node, Value};

pub const UNKNOWN_FIELD: &str = "cutover::plan::unknown-field";
pub const WRONG_TYPE: &str = "cutover::plan::wrong-type";
pub const MISSING_FIELD: &str = "cutover::plan::missing-field";
pub const INVALID_VALUE: &str = "cutover::plan::invalid-value";
pub const DUPLICATE_KEY: &str = "cutover::plan::duplicate-key";

/// Where in the plan a node sits, for messages and for anchoring "missing field" labels.
/// A borrowed chain up to the root: the dotted path is only rendered when a problem is found,
/// which keeps large plans fast.
#[derive(Clone)]
struct Place<'p> {
    parent: Option<&'p Place<'p>>,
    seg: Seg<'p>,
    /// The key whose value is this node, when there is one.
    key_span: Option<ByteSpan>,
    /// The property's own description from the schema, for help lines.
    description: Option<&'p str>,
}

#[derive(Clone, Copy)]
enum Seg<'p> {
    Root,
    Key(&'p str),
    Index(usize),
}

impl<'p> Place<'p> {
    fn root() -> Self {
        Place {
            parent: None,
            seg: Seg::Root,
            key_span: None,
            description: None,
        }
    }

    fn child(&'p self, seg: Seg<'p>, key_span: Option<ByteSpan>) -> Place<'p> {
        Place {
            parent: Some(self),
            seg,
            key_span,
            description: None,
        }
    }

    fn without_description(&self) -> Place<'p> {
        Place {
            description: None,
            ..self.clone()
        }
    }

    /// `users[2].migrate[0].password`
    fn path(&self) -> String {
        let mut segs = Vec::new();
        let mut at = Some(self);
        while let Some(place) = at {
            segs.push(place.seg);
            at = place.parent;
        }
        let mut out = String::new();
        for seg in segs.into_iter().rev() {
            match seg {
                Seg::Root => {}
                Seg::Key(k) if out.is_empty() => out.push_str(k),
                Seg::Key(k) => {
                    out.push('.');
                    out.push_str(k);
                }
                Seg::Index(i) => out.push_str(&format!("[{i}]")),
            }
        }
        out
    }

    fn where_(&self) -> String {
        let path = self.path();
        if path.is_empty() {
            "at the top level".to_string()
        } else {
            format!("in `{path}`")
        }
    }
}

/// What the schema walk found: structural problems, and where inline secrets sit (a string
/// where the schema expects a `SecretRef`), so validation can refuse them and output can mask them.
pub struct SchemaFindings {
    pub diagnostics: Vec<PlanDiagnostic>,
    pub inline_secrets: Vec<(String, ByteSpan)>,
}

const SECRET_REF: &str = "#/$defs/SecretRef";

pub fn check(root: &Node, schema: &J) -> SchemaFindings {
    let mut out = Vec::new();
    let checker = Checker {
        root: schema,
        inline_secrets: Default::default(),
    };
    checker.check(root, schema, &Place::root(), &mut out);
    SchemaFindings {
        diagnostics: out,
        inline_secrets: checker.inline_secrets.into_inner(),
    }
}

struct Checker<'s> {
    root: &'s J,
    inline_secrets: std::cell::RefCell<Vec<(String, ByteSpan)>>,
}

impl<'s> Checker<'s> {
    fn deref(&self, schema: &'s J) -> &'s J {
        let mut current = schema;
        for _ in 0..32 {
            match current.get("$ref").and_then(J::as_str) {
                Some(reference) => {
                    // schemars only emits `#/$defs/<Name>`: look it up without pointer parsing.
                    let target = match reference.strip_prefix("#/$defs/") {
                        Some(name) => self.root.get("$defs").and_then(|d| d.get(name)),
                        None => self.root.pointer(reference.trim_start_matches('#')),
                    };
                    match target {
                        Some(target) => current = target,
                        None => return current,
                    }
                }
                None => return current,
            }
        }
        current
    }

    fn check(&self, node: &Node, schema: &'s J, place: &Place<'_>, out: &mut Vec<PlanDiagnostic>) {
        if schema.get("$ref").and_then(J::as_str) == Some(SECRET_REF) && node.as_str().is_some() {
            self.inline_secrets
                .borrow_mut()
                .push((place.path(), node.span.clone()));
        }
        let description = place
            .description
            .or_else(|| schema.get("description").and_then(J::as_str));
        let schema = self.deref(schema);
        let place = &Place {
            description: description.or_else(|| schema.get("description").and_then(J::as_str)),
            ..place.clone()
        };

        if let Some(branches) = schema
            .get("oneOf")
            .or_else(|| schema.get("anyOf"))
            .and_then(J::as_array)
        {
            self.check_union(node, branches, place, out);
            return;
        }
        if let Some(allowed) = schema.get("enum").and_then(J::as_array) {
            let consts: Vec<&J> = allowed.iter().collect();
            self.check_const(node, &consts, place, out);
            return;
        }
        if let Some(constant) = schema.get("const") {
            self.check_const(node, &[constant], place, out);
            return;
        }
        if !self.type_matches(node, schema) {
            out.push(wrong_type(node, &expected_types(schema), place));
            return;
        }
        match &node.value {
            Value::Map(_) => self.check_object(node, schema, place, out),
            Value::Seq(items) => {
                if let Some(item_schema) = schema.get("items") {
                    for (i, item) in items.iter().enumerate() {
                        let item_place = place.child(Seg::Index(i), None);
                        self.check(item, item_schema, &item_place, out);
                    }
                }
            }
            Value::Int(i) => check_range(node, *i as f64, schema, place, out),
            Value::Float(f) => check_range(node, *f, schema, place, out),
            _ => {}
        }
    }

    fn type_matches(&self, node: &Node, schema: &J) -> bool {
        let Some(types) = schema.get("type") else {
            return true;
        };
        let accepts = |t: &str| {
            matches!(
                (&node.value, t),
                (Value::Null, "null")
                    | (Value::Bool(_), "boolean")
                    | (Value::Int(_), "integer" | "number")
                    | (Value::Float(_), "number")
                    | (Value::String { .. }, "string")
                    | (Value::Seq(_), "array")
                    | (Value::Map(_), "object")
            )
        };
        match types {
            J::String(t) => accepts(t),
            J::Array(ts) => ts.iter().filter_map(J::as_str).any(accepts),
            _ => true,
        }
    }

    fn check_object(
        &self,
        node: &Node,
        schema: &'s J,
        place: &Place<'_>,
        out: &mut Vec<PlanDiagnostic>,
    ) {
        let entries = node.as_map().unwrap_or_default();
        let properties = schema.get("properties").and_then(J::as_object);
        let additional = schema.get("additionalProperties");

        for (i, entry) in entries.iter().enumerate() {
            let scalar_key;
            let key: &str = match &entry.key.value {
                Value::String { text, .. } => text,
                Value::Int(_) | Value::Bool(_) | Value::Float(_) => {
                    scalar_key = entry.key.scalar_text();
                    &scalar_key
                }
                _ => {
                    out.push(
                        PlanDiagnostic::error(
                            WRONG_TYPE,
                            format!("a key {} is {}", place.where_(), entry.key.kind_name()),
                        )
                        .label(entry.key.span.clone(), "keys must be plain names")
                        .help("write keys as plain text, e.g. `host:`"),
                    );
                    continue;
                }
            };
            if let Some(first) = entries[..i].iter().find(|e| same_key(&e.key, key)) {
                out.push(
                    PlanDiagnostic::error(
                        DUPLICATE_KEY,
                        format!("`{key}` appears twice {}", place.where_()),
                    )
                    .label(entry.key.span.clone(), "second occurrence")
                    .label(first.key.span.clone(), "first defined here")
                    .help("keep one of them; YAML would silently use only one"),
                );
                continue;
            }
            let child_place = place.child(Seg::Key(key), Some(entry.key.span.clone()));
            if let Some(prop) = properties.and_then(|p| p.get(key)) {
                self.check(&entry.value, prop, &child_place, out);
            } else if let Some(extra) = additional.filter(|a| a.is_object()) {
                self.check(&entry.value, extra, &child_place, out);
            } else if additional == Some(&J::Bool(false)) {
                let mut diagnostic = PlanDiagnostic::error(
                    UNKNOWN_FIELD,
                    format!("unknown field `{key}` {}", place.where_()),
                )
                .label(entry.key.span.clone(), "not a field here");
                let known: Vec<&str> = properties
                    .map(|p| p.keys().map(String::as_str).collect())
                    .unwrap_or_default();
                let suggestion = did_you_mean(key, known.iter().copied());
                let fields = list_names(known.iter().copied());
                diagnostic = diagnostic.help(match suggestion {
                    Some(s) => format!("did you mean `{s}`? Fields here: {fields}"),
                    None => format!("fields here: {fields}"),
                });
                out.push(diagnostic);
            }
        }

        if let Some(required) = schema.get("required").and_then(J::as_array) {
            for field in required.iter().filter_map(J::as_str) {
                if !entries.iter().any(|e| e.key.as_str() == Some(field)) {
                    let field_help = properties
                        .and_then(|p| p.get(field))
                        .and_then(|p| {
                            p.get("description")
                                .or_else(|| self.deref(p).get("description"))
                        })
                        .and_then(J::as_str)
                        .map(first_sentence);
                    let mut diagnostic = PlanDiagnostic::error(
                        MISSING_FIELD,
                        format!("missing field `{field}` {}", place.where_()),
                    )
                    .label(anchor_of(node, place), format!("needs `{field}`"));
                    diagnostic = diagnostic.help(match field_help {
                        Some(h) => format!("add `{field}:` here — {h}"),
                        None => format!("add `{field}:` here"),
                    });
                    out.push(diagnostic);
                }
            }
        }
    }

    fn check_const(
        &self,
        node: &Node,
        allowed: &[&J],
        place: &Place<'_>,
        out: &mut Vec<PlanDiagnostic>,
    ) {
        if allowed.iter().any(|a| scalar_equals(node, a)) {
            return;
        }
        let names: Vec<String> = allowed
            .iter()
            .map(|a| a.as_str().map_or_else(|| a.to_string(), str::to_string))
            .collect();
        let found = node.scalar_text();
        let path = place.path();
        let field = path.rsplit(['.', '[']).next().unwrap_or(&path);
        let mut diagnostic =
            PlanDiagnostic::error(INVALID_VALUE, format!("`{found}` is not a valid `{field}`"))
                .label(
                    node.span.clone(),
                    format!("expected one of {}", names.join(", ")),
                );
        diagnostic = diagnostic.help(
            match did_you_mean(&found, names.iter().map(String::as_str)) {
                Some(s) => format!(
                    "did you mean `{s}`? Valid values: {}",
                    list_names(names.iter().map(String::as_str))
                ),
                None => format!(
                    "valid values: {}",
                    list_names(names.iter().map(String::as_str))
                ),
            },
        );
        out.push(diagnostic);
    }

    fn check_union(
        &self,
        node: &Node,
        written: &'s [J],
        place: &Place<'_>,
        out: &mut Vec<PlanDiagnostic>,
    ) {
        let is_null_branch = |b: &J| self.deref(b).get("type").and_then(J::as_str) == Some("null");
        if matches!(node.value, Value::Null) && written.iter().any(is_null_branch) {
            return;
        }
        // `Option<T>` is `anyOf [T, null]`: check against T as written, keeping its `$ref`.
        let written_non_null: Vec<&'s J> = written.iter().filter(|b| !is_null_branch(b)).collect();
        if written_non_null.len() == 1 {
            self.check(node, written_non_null[0], place, out);
            return;
        }
        let non_null: Vec<&'s J> = written_non_null.iter().map(|b| self.deref(b)).collect();
        // Unit enums with documented variants: `oneOf` of `const`s.
        if non_null.iter().all(|b| b.get("const").is_some()) {
            let consts: Vec<&J> = non_null.iter().filter_map(|b| b.get("const")).collect();
            self.check_const(node, &consts, place, out);
            return;
        }
        // Internally tagged enums: pick the variant by its `kind`.
        if let Some(tag) = discriminator(&non_null) {
            if let Some(entries) = node.as_map() {
                let tags: Vec<&J> = non_null.iter().filter_map(|b| tag_const(b, tag)).collect();
                match entries.iter().find(|e| e.key.as_str() == Some(tag)) {
                    None => out.push(
                        PlanDiagnostic::error(
                            MISSING_FIELD,
                            format!("missing field `{tag}` {}", place.where_()),
                        )
                        .label(anchor_of(node, place), format!("needs `{tag}`"))
                        .help(format!(
                            "add `{tag}:` with one of {}",
                            list_names(tags.iter().filter_map(|t| t.as_str()))
                        )),
                    ),
                    Some(entry) => {
                        match non_null.iter().find(|b| {
                            tag_const(b, tag).is_some_and(|c| scalar_equals(&entry.value, c))
                        }) {
                            Some(branch) => {
                                self.check(node, branch, &place.without_description(), out)
                            }
                            None => {
                                let tag_place =
                                    place.child(Seg::Key(tag), Some(entry.key.span.clone()));
                                self.check_const(&entry.value, &tags, &tag_place, out);
                            }
                        }
                    }
                }
                return;
            }
        }
        // Anything else: accept the first branch that fits, else report the closest one.
        let mut attempts: Vec<(Vec<PlanDiagnostic>, &'s J)> = Vec::new();
        for branch in &non_null {
            let mut found = Vec::new();
            self.check(node, branch, &place.without_description(), &mut found);
            if found.is_empty() {
                return;
            }
            attempts.push((found, branch));
        }
        let shape_fits: Vec<&(Vec<PlanDiagnostic>, &J)> = attempts
            .iter()
            .filter(|(_, b)| self.type_matches(node, b))
            .collect();
        let fewest = shape_fits.iter().map(|(f, _)| f.len()).min();
        let closest: Vec<_> = shape_fits
            .iter()
            .filter(|(f, _)| Some(f.len()) == fewest)
            .collect();
        if closest.len() == 1 && !is_only_missing_fields(&closest[0].0, node) {
            out.extend(closest[0].0.iter().cloned());
            return;
        }
        let alternatives: Vec<String> = non_null.iter().map(|b| describe_shape(b)).collect();
        out.push(
            PlanDiagnostic::error(
                WRONG_TYPE,
                format!(
                    "`{}` has the wrong shape {}",
                    leaf(&place.path()),
                    parent_where(&place.path())
                ),
            )
            .label(
                node.span.clone(),
                format!("expected {}", alternatives.join(" or ")),
            )
            .help(place.description.map_or_else(
                || format!("write one of: {}", alternatives.join(", ")),
                |d| {
                    format!(
                        "{} Write one of: {}",
                        first_sentence(d),
                        alternatives.join(", ")
                    )
                },
            )),
        );
    }
}

/// True when every problem is a missing field of `node` itself: the user wrote an empty or
/// unrelated mapping, so listing all the shapes helps more than one branch's complaint.
fn is_only_missing_fields(found: &[PlanDiagnostic], node: &Node) -> bool {
    node.as_map().is_some_and(|m| m.is_empty()) && found.iter().all(|d| d.code == MISSING_FIELD)
}

fn tag_const<'a>(branch: &'a J, tag: &str) -> Option<&'a J> {
    branch.get("properties")?.get(tag)?.get("const")
}

fn scalar_equals(node: &Node, value: &J) -> bool {
    match (&node.value, value) {
        (Value::String { text, .. }, J::String(v)) => text == v,
        (Value::Bool(a), J::Bool(b)) => a == b,
        (Value::Int(a), J::Number(b)) => b.as_i64() == Some(*a),
        (Value::Float(a), J::Number(b)) => b.as_f64() == Some(*a),
        (Value::Null, J::Null) => true,
        _ => false,
    }
}

fn same_key(key: &Node, name: &str) -> bool {
    match &key.value {
        Value::String { text, .. } => text == name,
        _ => key.scalar_text() == name,
    }
}

fn discriminator<'a>(branches: &[&'a J]) -> Option<&'a str> {
    let first = branches.first()?.get("properties")?.as_object()?;
    let tag = first
        .iter()
        .find(|(_, v)| v.get("const").is_some())
        .map(|(k, _)| k.as_str())?;
    branches
        .iter()
        .all(|b| tag_const(b, tag).is_some())
        .then_some(tag)
}

fn describe_shape(schema: &J) -> String {
    if let Some(props) = schema.get("properties").and_then(J::as_object) {
        let required: Vec<&str> = schema
            .get("required")
            .and_then(J::as_array)
            .map(|r| r.iter().filter_map(J::as_str).collect())
            .unwrap_or_default();
        let keys: Vec<&str> = if required.is_empty() {
            props.keys().map(String::as_str).collect()
        } else {
            required
        };
        return format!(
            "{{ {} }}",
            keys.iter()
                .map(|k| format!("{k}: …"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    expected_types(schema)
}

fn expected_types(schema: &J) -> String {
    let name = |t: &str| match t {
        "string" => "a string",
        "integer" => "an integer",
        "number" => "a number",
        "boolean" => "true or false",
        "array" => "a list",
        "object" => "a mapping",
        "null" => "nothing",
        _ => "a value",
    };
    match schema.get("type") {
        Some(J::String(t)) => name(t).to_string(),
        Some(J::Array(ts)) => ts
            .iter()
            .filter_map(J::as_str)
            .filter(|t| *t != "null")
            .map(name)
            .collect::<Vec<_>>()
            .join(" or "),
        _ => "a value".to_string(),
    }
}

fn wrong_type(node: &Node, expected: &str, place: &Place<'_>) -> PlanDiagnostic {
    let found = match node.value {
        Value::Null => "nothing",
        _ => node.kind_name(),
    };
    let path = place.path();
    let field = leaf(&path);
    let mut help = match (&node.value, expected) {
        (Value::Int(_) | Value::Float(_) | Value::Bool(_), "a string") => {
            format!("quote it to make it text: `\"{}\"`", node.scalar_text())
        }
        (Value::String { text, .. }, "an integer") if text.trim().parse::<i64>().is_ok() => {
            format!("write the number without quotes: `{}`", text.trim())
        }
        _ => String::new(),
    };
    if let Some(d) = place.description {
        if !help.is_empty() {
            help.push_str(". ");
        }
        help.push_str(&format!("`{field}`: {}", first_sentence(d)));
    }
    let diagnostic = PlanDiagnostic::error(
        WRONG_TYPE,
        format!(
            "`{field}` must be {expected}, found {found} {}",
            parent_where(&path)
        ),
    )
    .label(node.span.clone(), format!("expected {expected}"));
    if help.is_empty() {
        diagnostic
    } else {
        diagnostic.help(help)
    }
}

fn check_range(node: &Node, n: f64, schema: &J, place: &Place<'_>, out: &mut Vec<PlanDiagnostic>) {
    let min = schema.get("minimum").and_then(J::as_f64);
    let max = schema.get("maximum").and_then(J::as_f64);
    let too_low = min.is_some_and(|m| n < m);
    let too_high = max.is_some_and(|m| n > m);
    // The schema bounds u32 fields only from below; their upper bound comes from the format.
    let format_max = match schema.get("format").and_then(J::as_str) {
        Some("uint32") => Some(u32::MAX as f64),
        Some("uint16") => Some(u16::MAX as f64),
        _ => None,
    };
    let too_high = too_high || format_max.is_some_and(|m| n > m);
    if too_low || too_high {
        let range = format!(
            "{} to {}",
            min.map_or("…".to_string(), |m| m.to_string()),
            max.or(format_max)
                .map_or("…".to_string(), |m| m.to_string())
        );
        out.push(
            PlanDiagnostic::error(
                INVALID_VALUE,
                format!(
                    "`{}` is out of range {}",
                    leaf(&place.path()),
                    parent_where(&place.path())
                ),
            )
            .label(node.span.clone(), format!("must be {range}"))
            .help(place.description.map_or_else(
                || format!("use a value from {range}"),
                |d| format!("use a value from {range}. {}", first_sentence(d)),
            )),
        );
    }
}

/// Where to point a "missing field" label: the key that holds the mapping, else the
/// mapping's first line.
fn anchor_of(node: &Node, place: &Place<'_>) -> ByteSpan {
    if let Some(span) = &place.key_span {
        return span.clone();
    }
    match node.as_map().and_then(|m| m.first()) {
        Some(first) => first.key.span.clone(),
        None => node.span.clone(),
    }
}

fn leaf(path: &str) -> &str {
    if path.is_empty() {
        return "plan";
    }
    let last = path.rsplit('.').next().unwrap_or(path);
    if last.ends_with(']') {
        last
    } else {
        last.split('[').next().unwrap_or(last)
    }
}

fn parent_where(path: &str) -> String {
    match path.rfind('.') {
        Some(i) => format!("in `{}`", &path[..i]),
        None => "at the top level".to_string(),
    }
}

pub(crate) fn first_sentence(text: &str) -> String {
    let flat = text.replace('\n', " ");
    let mut from = 0;
    while let Some(i) = flat[from..].find(". ").map(|i| i + from) {
        let abbreviation = flat[..i].ends_with("e.g") || flat[..i].ends_with("i.e");
        if !abbreviation {
            return flat[..=i].to_string();
        }
        from = i + 2;
    }
    flat
}
