//! The one place that knows the YAML library.
//!
//! A plan is parsed into a [`Node`] tree where every node — mapping, sequence, scalar and every
//! mapping key — carries its byte span in the source. Diagnostics need a span for *any* node
//! (a key for an unknown field, a value for a wrong type, a parent mapping for a missing field),
//! and validation must report every problem in one run, which a fail-fast serde deserializer
//! cannot do. So the tree is checked against the plan's JSON Schema and semantic rules first, and
//! only a tree with no structural problem is handed to serde (via `serde_json::Value`).
//!
//! Scalars are resolved with the YAML 1.2 core schema (`true`, `null`, `0x1F`, `1e3` …);
//! quoted scalars are always strings.

use std::ops::Range;

use saphyr_parser::{Event, Parser, ScalarStyle, ScanError, Span};

/// Byte range in the plan source.
pub type ByteSpan = Range<usize>;

/// A YAML node with its byte span.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub span: ByteSpan,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// A string scalar. `plain` is false for quoted and block scalars.
    String {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

/// One `key: value` pair of a mapping. Keys keep their own span so an unknown field can be
/// pointed at precisely.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: Node,
    pub value: Node,
}

impl Node {
    /// The kind of node, as a user reads it ("a mapping", "a string", …).
    pub fn kind_name(&self) -> &'static str {
        match &self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::String { .. } => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::String { text, .. } => Some(text),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[Entry]> {
        match &self.value {
            Value::Map(entries) => Some(entries),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.value {
            Value::Seq(items) => Some(items),
            _ => None,
        }
    }

    /// The entry of a mapping whose key is the string `key` (the first one, if duplicated).
    pub fn entry(&self, key: &str) -> Option<&Entry> {
        self.as_map()?.iter().find(|e| e.key.as_str() == Some(key))
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|e| &e.value)
    }

    /// Converts to JSON for serde. Mapping keys that are not strings are rendered as their text.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::String { text, .. } => J::String(text.clone()),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => J::Object(
                entries
                    .iter()
                    .map(|e| (e.key.scalar_text(), e.value.to_json()))
                    .collect(),
            ),
        }
    }

    /// A scalar's text as written (for keys and messages).
    pub fn scalar_text(&self) -> String {
        match &self.value {
            Value::Null => "null".into(),
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => f.to_string(),
            Value::String { text, .. } => text.clone(),
            Value::Seq(_) => "[…]".into(),
            Value::Map(_) => "{…}".into(),
        }
    }
}

/// A YAML syntax error with its byte offset.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    pub offset: usize,
    pub message: String,
}

/// How many nodes alias expansion may create: a guard against "billion laughs" plans.
const MAX_EXPANDED_NODES: usize = 1_000_000;
/// Nesting deeper than this is refused rather than risking the stack on hostile input.
const MAX_DEPTH: usize = 256;

/// Parses the first YAML document of `source`. An empty document is `Null`.
pub fn parse(source: &str) -> Result<Node, SyntaxError> {
    let offsets = CharOffsets::new(source);
    let mut builder = Builder {
        source,
        offsets: &offsets,
        stack: Vec::new(),
        anchors: Vec::new(),
        root: None,
        expanded: 0,
        source_len: source.len(),
    };
    let mut documents = 0;
    for event in Parser::new_from_str(source) {
        let (event, span) = event.map_err(|e| builder.scan_error(&e))?;
        match event {
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(SyntaxError {
                        offset: offsets.byte(span.start.index()),
                        message: "a plan file holds one YAML document; found a second `---`".into(),
                    });
                }
            }
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => {}
            other => builder.event(other, span)?,
        }
    }
    Ok(builder.root.unwrap_or(Node {
        span: 0..0,
        value: Value::Null,
    }))
}

/// saphyr reports positions in characters; miette wants bytes.
struct CharOffsets {
    /// Byte offset of every char index, plus one past the end. Empty when the source is ASCII.
    bytes: Vec<usize>,
    len: usize,
}

impl CharOffsets {
    fn new(source: &str) -> Self {
        let bytes = if source.is_ascii() {
            Vec::new()
        } else {
            source
                .char_indices()
                .map(|(i, _)| i)
                .chain(std::iter::once(source.len()))
                .collect()
        };
        CharOffsets {
            bytes,
            len: source.len(),
        }
    }

    fn byte(&self, char_index: usize) -> usize {
        if self.bytes.is_empty() {
            char_index.min(self.len)
        } else {
            self.bytes.get(char_index).copied().unwrap_or(self.len)
        }
    }
}

enum Frame {
    Seq {
        start: usize,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        start: usize,
        anchor: usize,
        entries: Vec<Entry>,
        pending_key: Option<Node>,
    },
}

struct Builder<'a> {
    source: &'a str,
    offsets: &'a CharOffsets,
    stack: Vec<Frame>,
    anchors: Vec<(usize, Node)>,
    root: Option<Node>,
    expanded: usize,
    source_len: usize,
}

impl Builder<'_> {
    fn scan_error(&self, e: &ScanError) -> SyntaxError {
        SyntaxError {
            offset: self.offsets.byte(e.marker().index()),
            message: e.info().to_string(),
        }
    }

    fn span(&self, span: &Span) -> ByteSpan {
        let start = self.offsets.byte(span.start.index());
        let end = self.offsets.byte(span.end.index()).max(start);
        start..end.min(self.source_len)
    }

    fn event(&mut self, event: Event<'_>, span: Span) -> Result<(), SyntaxError> {
        let at = self.span(&span);
        match event {
            Event::Scalar(text, style, anchor, _tag) => {
                let node = Node {
                    value: resolve_scalar(&text, style),
                    span: self.trim_span(at, &text, style),
                };
                self.remember(anchor, &node);
                self.push(node)
            }
            Event::Alias(anchor) => {
                let node = self
                    .anchors
                    .iter()
                    .rev()
                    .find(|(id, _)| *id == anchor)
                    .map(|(_, n)| n.clone())
                    .ok_or_else(|| SyntaxError {
                        offset: at.start,
                        message: "alias refers to an unknown anchor".into(),
                    })?;
                self.expanded += count_nodes(&node);
                if self.expanded > MAX_EXPANDED_NODES {
                    return Err(SyntaxError {
                        offset: at.start,
                        message: "aliases expand to too many nodes".into(),
                    });
                }
                // The alias stands where it is written, so point diagnostics there.
                self.push(Node {
                    span: at,
                    value: node.value,
                })
            }
            Event::SequenceStart(anchor, _) => self.open(Frame::Seq {
                start: at.start,
                anchor,
                items: Vec::new(),
            }),
            Event::MappingStart(anchor, _) => self.open(Frame::Map {
                start: at.start,
                anchor,
                entries: Vec::new(),
                pending_key: None,
            }),
            Event::SequenceEnd | Event::MappingEnd => {
                let Some(frame) = self.stack.pop() else {
                    return Ok(());
                };
                let (node, anchor) = match frame {
                    Frame::Seq {
                        start,
                        anchor,
                        items,
                    } => {
                        let end = items.last().map_or(at.end, |n| n.span.end.max(start));
                        (
                            Node {
                                span: start..end,
                                value: Value::Seq(items),
                            },
                            anchor,
                        )
                    }
                    Frame::Map {
                        start,
                        anchor,
                        entries,
                        ..
                    } => {
                        let end = entries
                            .last()
                            .map_or(at.end, |e| e.value.span.end.max(start));
                        (
                            Node {
                                span: start..end,
                                value: Value::Map(entries),
                            },
                            anchor,
                        )
                    }
                };
                self.remember(anchor, &node);
                self.push(node)
            }
            Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart(_)
            | Event::DocumentEnd
            | Event::Nothing => Ok(()),
        }
    }

    /// Quoted scalars' spans include the quotes; keep them, they help the reader see the value.
    /// Spans sometimes run on over trailing whitespace: trim it.
    fn trim_span(&self, span: ByteSpan, text: &str, style: ScalarStyle) -> ByteSpan {
        if style == ScalarStyle::Plain && !text.contains('\n') && span.len() > text.len() {
            return span.start..span.start + text.len();
        }
        let written = self.source.get(span.clone()).unwrap_or("");
        span.start..span.start + written.trim_end().len()
    }

    fn open(&mut self, frame: Frame) -> Result<(), SyntaxError> {
        if self.stack.len() >= MAX_DEPTH {
            let offset = match &frame {
                Frame::Seq { start, .. } | Frame::Map { start, .. } => *start,
            };
            return Err(SyntaxError {
                offset,
                message: format!("nesting deeper than {MAX_DEPTH} levels"),
            });
        }
        self.stack.push(frame);
        Ok(())
    }

    fn remember(&mut self, anchor: usize, node: &Node) {
        if anchor != 0 {
            self.anchors.push((anchor, node.clone()));
        }
    }

    fn push(&mut self, node: Node) -> Result<(), SyntaxError> {
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map {
                entries,
                pending_key,
                ..
            }) => match pending_key.take() {
                None => *pending_key = Some(node),
                Some(key) => entries.push(Entry { key, value: node }),
            },
        }
        Ok(())
    }
}

fn count_nodes(node: &Node) -> usize {
    1 + match &node.value {
        Value::Seq(items) => items.iter().map(count_nodes).sum(),
        Value::Map(entries) => entries
            .iter()
            .map(|e| count_nodes(&e.key) + count_nodes(&e.value))
            .sum(),
        _ => 0,
    }
}

fn resolve_scalar(text: &str, style: ScalarStyle) -> Value {
    if style != ScalarStyle::Plain {
        return Value::String {
            text: text.to_string(),
            plain: false,
        };
    }
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    if let Some(i) = parse_int(text) {
        return Value::Int(i);
    }
    if let Some(f) = parse_float(text) {
        return Value::Float(f);
    }
    Value::String {
        text: text.to_string(),
        plain: true,
    }
}

fn parse_int(text: &str) -> Option<i64> {
    let (negative, digits) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let magnitude = if let Some(hex) = digits.strip_prefix("0x") {
        i64::from_str_radix(hex, 16).ok()?
    } else if let Some(oct) = digits.strip_prefix("0o") {
        i64::from_str_radix(oct, 8).ok()?
    } else if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse().ok()?
    } else {
        return None;
    };
    Some(if negative { -magnitude } else { magnitude })
}

fn parse_float(text: &str) -> Option<f64> {
    match text {
        ".inf" | ".Inf" | ".INF" | "+.inf" => return Some(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => return Some(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Some(f64::NAN),
        _ => {}
    }
    // The core schema's float pattern: digits, an optional fraction, an optional exponent.
    let body = text.strip_prefix(['-', '+']).unwrap_or(text);
    let mut seen_digit = false;
    let mut chars = body.chars().peekable();
    while chars.peek().is_some_and(char::is_ascii_digit) {
        chars.next();
        seen_digit = true;
    }
    if chars.peek() == Some(&'.') {
        chars.next();
        while chars.peek().is_some_and(char::is_ascii_digit) {
            chars.next();
            seen_digit = true;
        }
    }
    if !seen_digit {
        return None;
    }
    if matches!(chars.peek(), Some('e' | 'E')) {
        chars.next();
        if matches!(chars.peek(), Some('-' | '+')) {
            chars.next();
        }
        let mut exponent_digit = false;
        while chars.peek().is_some_and(char::is_ascii_digit) {
            chars.next();
            exponent_digit = true;
        }
        if !exponent_digit {
            return None;
        }
    }
    if chars.next().is_some() {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_point_at_keys_and_values() {
        let src = "name: acme\nusers:\n  - email: a@x.io\n";
        let root = parse(src).unwrap();
        let entry = root.entry("name").unwrap();
        assert_eq!(&src[entry.key.span.clone()], "name");
        assert_eq!(&src[entry.value.span.clone()], "acme");
        let email = &root.get("users").unwrap().as_seq().unwrap()[0]
            .get("email")
            .unwrap();
        assert_eq!(&src[email.span.clone()], "a@x.io");
    }

    #[test]
    fn spans_are_bytes_after_non_ascii() {
        let src = "display: Zoë Ünal\nport: 99x\n";
        let root = parse(src).unwrap();
        let port = root.get("port").unwrap();
        assert_eq!(&src[port.span.clone()], "99x");
    }

    #[test]
    fn core_schema_scalars() {
        let root = parse("a: 12\nb: '12'\nc: true\nd: ~\ne: 1.5\nf: 0x1F\ng: 24h").unwrap();
        assert_eq!(root.get("a").unwrap().value, Value::Int(12));
        assert_eq!(root.get("b").unwrap().as_str(), Some("12"));
        assert_eq!(root.get("c").unwrap().value, Value::Bool(true));
        assert_eq!(root.get("d").unwrap().value, Value::Null);
        assert_eq!(root.get("e").unwrap().value, Value::Float(1.5));
        assert_eq!(root.get("f").unwrap().value, Value::Int(31));
        assert_eq!(root.get("g").unwrap().as_str(), Some("24h"));
    }

    #[test]
    fn aliases_expand_and_bombs_are_refused() {
        let root = parse("a: &x {k: 1}\nb: *x\n").unwrap();
        assert_eq!(
            root.get("b").unwrap().get("k").unwrap().value,
            Value::Int(1)
        );
        let mut bomb = String::from("a: &a [x,x,x,x,x,x,x,x,x,x]\n");
        for i in 0..8 {
            let prev = if i == 0 {
                "a".to_string()
            } else {
                format!("a{}", i - 1)
            };
            bomb.push_str(&format!(
                "a{i}: &a{i} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"
            ));
        }
        assert!(parse(&bomb).is_err());
    }

    #[test]
    fn syntax_error_has_offset() {
        let err = parse("a: [1, 2\nb: c").unwrap_err();
        assert!(err.offset > 0);
    }
}
