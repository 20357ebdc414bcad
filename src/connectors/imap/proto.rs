//! IMAP response syntax: reading one response (line plus any literals) and tokenizing it into
//! values. Tolerant where servers differ, strict where a misread would corrupt data: a literal
//! is read by its exact length, never by scanning for delimiters; only responses that may
//! carry literals are read for them (a status response's text is text, whatever it ends in);
//! and no response is read past the connection's limit ([`Conn::read_limit`]: the plan's
//! message size limit plus slack), whatever length a server announces.

use crate::connectors::net::{Conn, NetError, NetResult};

/// Text lines of one response beyond its literals: lines are capped at 1 MiB each by the
/// connection, and a response may hold several.
const TEXT_ALLOWANCE: u64 = 4 << 20;

/// A parsed response value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    Atom(String),
    Str(Vec<u8>),
    Nil,
    List(Vec<Value>),
}

impl Value {
    pub(crate) fn as_atom(&self) -> Option<&str> {
        match self {
            Value::Atom(a) => Some(a),
            _ => None,
        }
    }

    /// Atom or string as bytes (for values a server may send either way).
    pub(crate) fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Atom(a) => Some(a.as_bytes()),
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// One response: the text of each line (without CRLF and literal markers) and the literals
/// between them, in order.
#[derive(Debug, Default)]
pub(crate) struct Response {
    pub(crate) parts: Vec<Part>,
}

#[derive(Debug)]
pub(crate) enum Part {
    Text(Vec<u8>),
    Literal(Vec<u8>),
}

impl Response {
    /// Bytes held: text and literals.
    pub(crate) fn size(&self) -> u64 {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Text(t) | Part::Literal(t) => t.len() as u64,
            })
            .sum()
    }

    /// The first line's text, for status responses.
    pub(crate) fn first_line(&self) -> &[u8] {
        match self.parts.first() {
            Some(Part::Text(t)) => t,
            _ => b"",
        }
    }
}

/// Reads one complete response, including any literals. A literal longer than the
/// connection's read limit, or a response growing past it, is a protocol error raised before
/// the excess is read.
pub(crate) async fn read_response(conn: &mut Conn, op: &'static str) -> NetResult<Response> {
    read_response_from(conn, None, op).await
}

/// [`read_response`] of a response whose first line (with its line ending) the caller read
/// already, to see whether it starts a literal it streams itself.
pub(crate) async fn read_response_from(
    conn: &mut Conn,
    first: Option<Vec<u8>>,
    op: &'static str,
) -> NetResult<Response> {
    let limit = conn.read_limit();
    let budget = limit.saturating_add(TEXT_ALLOWANCE);
    let mut used = 0u64;
    let mut resp = Response::default();
    let mut first = first;
    loop {
        let mut line = match first.take() {
            Some(line) => line,
            None => conn.read_line(op).await?,
        };
        used = used.saturating_add(line.len() as u64);
        while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            line.pop();
        }
        // A status response or continuation request is text to its end: `C4 NO Mailbox
        // doesn't exist: {5}` announces nothing.
        let marker = if resp.parts.is_empty() && is_text_response(&line) {
            None
        } else {
            literal_marker(&line)
        };
        match marker {
            Some((start, n)) => {
                if n as u64 > limit || used.saturating_add(n as u64) > budget {
                    return Err(NetError::protocol(
                        &conn.at,
                        format!(
                            "{op}: the server announced {n} bytes, more than the {limit} this run reads for one message (settings.max_message_size_mb plus slack)"
                        ),
                    ));
                }
                used += n as u64;
                line.truncate(start);
                resp.parts.push(Part::Text(line));
                let mut lit = Vec::new();
                conn.read_exact_into(n, &mut lit, op).await?;
                resp.parts.push(Part::Literal(lit));
            }
            None => {
                resp.parts.push(Part::Text(line));
                return Ok(resp);
            }
        }
        if used > budget {
            return Err(NetError::protocol(
                &conn.at,
                format!(
                    "{op}: a response longer than the {limit} bytes this run reads for one message"
                ),
            ));
        }
    }
}

/// A response whose rest is free text (RFC 3501 `resp-text`), which carries no literal: a
/// continuation request (`+ …`), a tagged completion (`tag OK|NO|BAD …`) and the untagged
/// status responses (`* OK|NO|BAD|BYE|PREAUTH …`).
pub(crate) fn is_text_response(line: &[u8]) -> bool {
    if line.first() == Some(&b'+') {
        return true;
    }
    let mut words = line.split(|b| *b == b' ');
    let (Some(tag), Some(status)) = (words.next(), words.next()) else {
        return false;
    };
    let is = |name: &[u8]| status.eq_ignore_ascii_case(name);
    if tag == b"*" {
        is(b"OK") || is(b"NO") || is(b"BAD") || is(b"BYE") || is(b"PREAUTH")
    } else {
        !tag.is_empty() && (is(b"OK") || is(b"NO") || is(b"BAD"))
    }
}

/// `{123}` or `{123+}` at the end of a line: (where it starts, length).
pub(crate) fn literal_marker(line: &[u8]) -> Option<(usize, usize)> {
    let body = line.strip_suffix(b"}")?;
    let open = body.iter().rposition(|b| *b == b'{')?;
    let digits = &body[open + 1..];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    if digits.is_empty() || digits.len() > 12 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some((open, n))
}

/// Tokenizes a response into a flat list of values (parenthesised lists nested).
/// Unbalanced or odd syntax yields what could be read; callers check for what they need.
/// Literals are moved into the values, not copied.
pub(crate) fn parse(resp: Response) -> Vec<Value> {
    let mut stack: Vec<Vec<Value>> = vec![Vec::new()];
    for part in resp.parts {
        match part {
            Part::Literal(l) => push(&mut stack, Value::Str(l)),
            Part::Text(t) => tokenize(&t, &mut stack),
        }
    }
    while stack.len() > 1 {
        let inner = stack.pop().unwrap_or_default();
        push(&mut stack, Value::List(inner));
    }
    stack.pop().unwrap_or_default()
}

fn push(stack: &mut [Vec<Value>], v: Value) {
    if let Some(top) = stack.last_mut() {
        top.push(v);
    }
}

fn tokenize(t: &[u8], stack: &mut Vec<Vec<Value>>) {
    let mut i = 0;
    while i < t.len() {
        match t[i] {
            b' ' => i += 1,
            b'(' => {
                stack.push(Vec::new());
                i += 1;
            }
            b')' => {
                if stack.len() > 1 {
                    let inner = stack.pop().unwrap_or_default();
                    push(stack, Value::List(inner));
                }
                i += 1;
            }
            b'"' => {
                let mut s = Vec::new();
                i += 1;
                while i < t.len() && t[i] != b'"' {
                    if t[i] == b'\\' && i + 1 < t.len() {
                        i += 1;
                    }
                    s.push(t[i]);
                    i += 1;
                }
                i += 1;
                push(stack, Value::Str(s));
            }
            _ => {
                // An atom; brackets are part of it (`BODY[]`, `[UIDVALIDITY`), and a
                // bracketed section may contain spaces (`BODY[HEADER.FIELDS (A)]`).
                let start = i;
                let mut depth = 0usize;
                while i < t.len() {
                    match t[i] {
                        b'[' => depth += 1,
                        b']' => depth = depth.saturating_sub(1),
                        b' ' | b'(' | b')' if depth == 0 => break,
                        _ => {}
                    }
                    i += 1;
                }
                let atom = String::from_utf8_lossy(&t[start..i]).into_owned();
                if atom.eq_ignore_ascii_case("NIL") {
                    push(stack, Value::Nil);
                } else {
                    push(stack, Value::Atom(atom));
                }
            }
        }
    }
}

/// A mailbox name or other string argument: quoted when it is plain printable ASCII, else
/// `None` (the caller sends a literal).
pub(crate) fn quoted(s: &[u8]) -> Option<String> {
    if s.len() > 1000 || !s.iter().all(|b| (0x20..0x7f).contains(b)) {
        return None;
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for &b in s {
        if b == b'"' || b == b'\\' {
            out.push('\\');
        }
        out.push(char::from(b));
    }
    out.push('"');
    Some(out)
}

/// The response code of a status text, e.g. `APPENDUID 38505 3955` from
/// `[APPENDUID 38505 3955] Append completed`.
pub(crate) fn response_code(text: &str) -> Option<&str> {
    let t = text.trim_start();
    let rest = t.strip_prefix('[')?;
    Some(&rest[..rest.find(']')?])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(parts: Vec<Part>) -> Response {
        Response { parts }
    }

    #[test]
    fn literal_markers() {
        assert_eq!(literal_marker(b"* 1 FETCH (BODY[] {12}"), Some((18, 12)));
        assert_eq!(literal_marker(b"A1 APPEND x {5+}"), Some((12, 5)));
        assert_eq!(literal_marker(b"* OK {x}"), None);
        assert_eq!(literal_marker(b"* OK {}"), None);
        assert_eq!(literal_marker(b"* OK done"), None);
    }

    #[test]
    fn parses_fetch_with_literal() {
        let r = resp(vec![
            Part::Text(b"* 3 FETCH (UID 7 FLAGS (\\Seen $Fwd) INTERNALDATE \" 1-Jan-2020 00:00:00 +0000\" BODY[] ".to_vec()),
            Part::Literal(b"a\r\n)(\"b".to_vec()),
            Part::Text(b")".to_vec()),
        ]);
        let v = parse(r);
        assert_eq!(v[0], Value::Atom("*".into()));
        assert_eq!(v[2], Value::Atom("FETCH".into()));
        let Value::List(items) = &v[3] else {
            panic!("{v:?}")
        };
        assert_eq!(items[1], Value::Atom("7".into()));
        assert_eq!(
            items[3],
            Value::List(vec![
                Value::Atom("\\Seen".into()),
                Value::Atom("$Fwd".into())
            ])
        );
        assert_eq!(items[6], Value::Atom("BODY[]".into()));
        assert_eq!(items[7], Value::Str(b"a\r\n)(\"b".to_vec()));
    }

    #[test]
    fn garbage_never_panics() {
        for t in [
            &b"(((("[..],
            b"))))",
            b"\"unterminated",
            b"\"\\",
            b"[[[",
            b"]]] (",
            b"",
        ] {
            let _ = parse(resp(vec![Part::Text(t.to_vec())]));
        }
    }

    #[test]
    fn status_responses_carry_no_literal() {
        for text in [
            &b"C4 NO Mailbox doesn't exist: {5}"[..],
            b"C4 BAD [CLIENTBUG] {12}",
            b"c4 ok done {3}",
            b"* OK [ALERT] {20}",
            b"* BYE going {7}",
            b"* NO {1}",
            b"+ {99}",
            b"+",
        ] {
            assert!(is_text_response(text), "{}", String::from_utf8_lossy(text));
        }
        for data in [
            &b"* 1 FETCH (BODY[] {12}"[..],
            b"* LIST () \"/\" {5}",
            b"* OKAY {3}",
            b"",
            b"*",
        ] {
            assert!(!is_text_response(data), "{}", String::from_utf8_lossy(data));
        }
    }

    #[tokio::test]
    async fn announced_lengths_beyond_the_limit_are_refused_unread() {
        let mut conn = Conn::replay(b"* 1 FETCH (BODY[] {2147483648}\r\nxx".to_vec(), 1 << 20);
        let err = read_response(&mut conn, "UID FETCH").await.unwrap_err();
        let shown = err.to_string();
        assert!(
            shown.contains("2147483648") && shown.contains("max_message_size_mb"),
            "{shown}"
        );
        // A NO that echoes a name ending in `{n}` is one response; the next is read as sent.
        let mut conn = Conn::replay(
            b"C4 NO Mailbox doesn't exist: {5}\r\n* 2 EXISTS\r\n".to_vec(),
            1 << 20,
        );
        let no = read_response(&mut conn, "EXAMINE").await.unwrap();
        assert_eq!(no.first_line(), b"C4 NO Mailbox doesn't exist: {5}");
        let next = read_response(&mut conn, "EXAMINE").await.unwrap();
        assert_eq!(next.first_line(), b"* 2 EXISTS");
        // Many small literals add up: the response as a whole is bounded too.
        let mut many = b"* 1 FETCH (".to_vec();
        for _ in 0..200 {
            many.extend_from_slice(b"X {60000}\r\n");
            many.extend(std::iter::repeat_n(b'a', 60000));
        }
        let mut conn = Conn::replay(many, 1 << 20);
        assert!(read_response(&mut conn, "UID FETCH").await.is_err());
    }

    #[test]
    fn quoting_and_codes() {
        assert_eq!(quoted(b"a\"b\\c").as_deref(), Some("\"a\\\"b\\\\c\""));
        assert_eq!(quoted("ä".as_bytes()), None);
        assert_eq!(quoted(b"a\r\n"), None);
        assert_eq!(response_code("[APPENDUID 1 2] ok"), Some("APPENDUID 1 2"));
        assert_eq!(response_code("no code"), None);
    }
}
