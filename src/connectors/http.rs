//! What every HTTPS client of cutover shares (the Entra ID token endpoint, Microsoft Graph):
//! which URLs it may send credentials to, and one agent configuration.
//!
//! TLS is the default; plain `http` is allowed only to this machine, for tests and local
//! stand-ins. Whether a URL is "this machine" is decided on the URL as ureq parses it (its
//! `http::Uri`), never by text prefixes: `http://127.0.0.1@attacker.example/` connects to
//! `attacker.example`, and `http://localhost.attacker.example/` is not localhost.

use std::net::IpAddr;
use std::time::Duration;

use ureq::http::Uri;

/// How long one HTTP exchange (connect, send, receive) may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a URL is not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlRefused {
    #[error("`{url}` is not a URL ({reason})")]
    Malformed { url: String, reason: String },
    #[error("`{url}` carries user info before the host; put credentials in secret references, not in URLs")]
    UserInfo { url: String },
    #[error("`{url}` is refused: only https, or plain http to a loopback address (127.0.0.0/8, ::1, localhost)")]
    NotTls { url: String },
}

/// Checks `url` for sending credentials (a client secret, a bearer token) and returns it
/// parsed: `https://` to any host, or `http://` only when the host is a loopback IP address
/// or exactly `localhost`. User info (`user@host`) is refused either way: it only serves to
/// make a URL look like it goes somewhere it does not.
pub fn checked_url(url: &str) -> Result<Uri, UrlRefused> {
    let uri: Uri = url
        .parse()
        .map_err(|e: ureq::http::uri::InvalidUri| UrlRefused::Malformed {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
    let malformed = |reason: &str| UrlRefused::Malformed {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let authority = uri.authority().ok_or_else(|| malformed("no host"))?;
    if authority.as_str().contains('@') {
        return Err(UrlRefused::UserInfo {
            url: url.to_owned(),
        });
    }
    let host = authority.host();
    if host.is_empty() {
        return Err(malformed("no host"));
    }
    match uri.scheme_str() {
        Some("https") => Ok(uri),
        Some("http") if is_loopback_host(host) => Ok(uri),
        Some("http") => Err(UrlRefused::NotTls {
            url: url.to_owned(),
        }),
        _ => Err(malformed("the scheme must be https")),
    }
}

/// `localhost`, or an IP address of the loopback network (IPv6 in brackets, as URLs write
/// it; an IPv4-mapped IPv6 loopback counts as IPv4).
fn is_loopback_host(host: &str) -> bool {
    if host == "localhost" {
        return true;
    }
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse::<IpAddr>()
        .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

/// An agent for JSON APIs: HTTP error statuses are answers to read (their bodies say why),
/// not transport errors; every exchange is bounded by [`REQUEST_TIMEOUT`]; TLS trusts exactly
/// what the mail connections trust (the system store loaded once, [`super::tls`]), never a
/// list compiled in. Call [`check_trust`] first to turn "no trusted certificate at all" into a
/// clear error rather than a failed handshake.
pub fn agent() -> ureq::Agent {
    let roots = super::tls::http_roots()
        .unwrap_or_else(|_| ureq::tls::RootCerts::Specific(Default::default()));
    let tls = ureq::tls::TlsConfig::builder()
        .unversioned_rustls_crypto_provider(super::tls::crypto_provider())
        .root_certs(roots)
        .build();
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(REQUEST_TIMEOUT))
        .tls_config(tls)
        .build()
        .into()
}

/// Whether an https `url` can be verified at all: `Err` (what to do about it) when the system
/// store holds no certificate. Plain http to this machine needs none.
pub fn check_trust(url: &Uri) -> Result<(), String> {
    if url
        .scheme_str()
        .is_some_and(|s| s.eq_ignore_ascii_case("https"))
    {
        super::tls::http_roots().map(drop)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_anywhere_http_only_to_loopback() {
        for ok in [
            "https://login.microsoftonline.com/t/oauth2/v2.0/token",
            "https://graph.microsoft.us",
            "http://127.0.0.1:8080/token",
            "http://127.5.6.7/",
            "http://localhost:1234/v1.0",
            "http://[::1]:99/",
            "http://[::ffff:127.0.0.1]/",
        ] {
            assert!(checked_url(ok).is_ok(), "{ok}: {:?}", checked_url(ok));
        }
        for (bad, why) in [
            ("http://graph.microsoft.com/", "plain http elsewhere"),
            (
                "http://127.0.0.1@attacker.example/",
                "user info hides the host",
            ),
            (
                "https://127.0.0.1@attacker.example/",
                "user info, even with TLS",
            ),
            ("http://localhost.attacker.example/", "not localhost"),
            (
                "http://127.0.0.1.attacker.example/",
                "a name, not an address",
            ),
            ("http://10.0.0.1/", "private is not loopback"),
            ("http://[::2]/", "not the loopback address"),
            ("ftp://127.0.0.1/", "not http"),
            ("127.0.0.1:80", "no scheme"),
            ("https:///path", "no host"),
            ("not a url", "garbage"),
        ] {
            assert!(checked_url(bad).is_err(), "{bad} must be refused: {why}");
        }
        assert!(matches!(
            checked_url("http://127.0.0.1@attacker.example/"),
            Err(UrlRefused::UserInfo { .. })
        ));
        assert!(matches!(
            checked_url("http://localhost.attacker.example/"),
            Err(UrlRefused::NotTls { .. })
        ));
    }
}
