//! Masking of credentials in text that leaves the process: state, logs, error output.
//!
//! Secrets reach cutover through `{ env: … }`, `{ file: … }` or `{ command: … }` and are only
//! meant to live in memory. They still leak into text by accident: a server echoes the request
//! URL with its SAS signature, an HTTP client error includes the `Authorization` header, an
//! OAuth error body repeats the `client_secret`. [`redact`] is the last line of defence: every
//! error text persisted by the state store goes through it, and so should anything logged.
//!
//! It errs on the side of masking too much: a masked word in an error message costs a little
//! clarity, a leaked token costs a tenant.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::{Captures, Regex};

/// What a masked value is replaced with.
pub const MASK: &str = "REDACTED";

/// A SAS signature inside a percent-encoded URL (a SAS URL passed as a parameter, logged
/// encoded): `sig%3D…` or double-encoded `sig%253D…`, up to the next encoded `&` (`%26`).
static ENCODED_SIG: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?i)((?:%(?:25)?(?:26|3F)|\b)sig%(?:25)?3D)(?:[^%\s&,;}\]"'#)]|%(?:[013-9a-f][0-9a-f]|2[0-57-9a-f]))+"#)
        .expect("valid regex")
});

/// `scheme://user:password@host` — the password part.
static URL_USERINFO: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b([a-z][a-z0-9+.\-]*://[^/\s:@]*:)[^@\s/]+@").expect("valid regex")
});

/// `Bearer <token>` anywhere (headers, debug output of requests).
static BEARER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)\b(bearer\s+)[A-Za-z0-9\-._~+/]+=*").expect("valid regex"));

/// `Authorization: Basic <base64>`; only after the header name, because "basic" is a common word.
static BASIC: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(authorization\s*[:=]\s*basic\s+)[A-Za-z0-9+/]+=*").expect("valid regex")
});

/// `key=value`, `key: value`, `"key": "value"` where the key names a credential.
///
/// Keys ending in `password`, `passwd`, `secret`, `token` (so `client_secret`, `access_token`,
/// `refresh_token`, `new_password`, but not `token_type`), plus SAS `sig` and Azure
/// connection-string `AccountKey`.
static KEY_VALUE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?ix)
        (?P<key>
            ["']?
            (?: \b[\w-]*(?:password|passwd|secret|token) | \bsig | \baccountkey )
            \b ["']?
            \s* [:=] \s*
        )
        (?P<value> "(?:[^"\\]|\\.)*" | '[^']*' | [^\s&,;}\]"'\#)]+ )
        "#,
    )
    .expect("valid regex")
});

/// Returns `text` with credentials masked; borrows when there was nothing to mask.
///
/// Masked: SAS `sig=` values (also percent-encoded, `sig%3D…`), `Bearer` tokens, `Authorization: Basic` credentials, passwords
/// in URLs, and the values of `password`/`*_secret`/`*_token`/`AccountKey` keys in query
/// strings, form bodies, JSON and `key: value` text. Quoting is kept so JSON stays JSON.
pub fn redact(text: &str) -> Cow<'_, str> {
    let mut out = Cow::Borrowed(text);
    for step in [
        redact_url,
        redact_bearer,
        redact_basic,
        redact_key_values,
        redact_encoded_sig,
    ] {
        if let Cow::Owned(changed) = step(&out) {
            out = Cow::Owned(changed);
        }
    }
    out
}

fn redact_url(text: &str) -> Cow<'_, str> {
    URL_USERINFO.replace_all(text, format!("${{1}}{MASK}@"))
}

fn redact_encoded_sig(text: &str) -> Cow<'_, str> {
    ENCODED_SIG.replace_all(text, format!("${{1}}{MASK}"))
}

fn redact_bearer(text: &str) -> Cow<'_, str> {
    BEARER.replace_all(text, format!("${{1}}{MASK}"))
}

fn redact_basic(text: &str) -> Cow<'_, str> {
    BASIC.replace_all(text, format!("${{1}}{MASK}"))
}

fn redact_key_values(text: &str) -> Cow<'_, str> {
    KEY_VALUE.replace_all(text, |caps: &Captures<'_>| {
        let value = &caps["value"];
        let masked = match value.chars().next() {
            Some(q @ ('"' | '\'')) => format!("{q}{MASK}{q}"),
            _ => MASK.to_owned(),
        };
        format!("{}{}", &caps["key"], masked)
    })
}
