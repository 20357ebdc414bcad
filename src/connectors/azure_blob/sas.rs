//! The one credential of an upload: a container SAS URL, as the Microsoft Purview portal hands
//! it out for the PST Import Service (`https://<account>.blob.core.windows.net/ingestiondata?sv=…&sig=…`).
//!
//! The signature is a bearer credential for the container. [`ContainerSas`] keeps the query
//! apart from the address: [`ContainerSas::describe`] and every error show the address only,
//! and only [`ContainerSas::blob_url`] — handed straight to the HTTP client — carries it.

use std::fmt;
use std::net::IpAddr;

use azure_core::http::Url;

/// A parsed container SAS URL. `Debug` never shows the query.
#[derive(Clone)]
pub struct ContainerSas {
    /// `scheme://host[:port]/[account/]container`, without query or trailing slash.
    container_url: Url,
    /// The SAS query (`sv=…&sig=…`), without `?`. Secret.
    query: String,
    /// Whether the account is the first path segment (Azurite, IP hosts) rather than the host.
    path_style: bool,
    container: String,
}

impl fmt::Debug for ContainerSas {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContainerSas")
            .field("container_url", &self.describe())
            .field("query", &"<redacted>")
            .finish()
    }
}

/// Why a SAS URL was refused. The text never contains the URL's query.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SasError(String);

impl ContainerSas {
    /// Parses and checks a container SAS URL.
    ///
    /// Accepted: `https://` to any host, with the container as the only path segment (or the
    /// account then the container for path-style hosts: an IP address or `localhost`, as the
    /// Azurite emulator serves). `http://` is refused except to a loopback address, so the
    /// signature never crosses a network in clear text. The query must carry a `sig=`.
    /// A folder after the container is refused: cutover names the blobs itself, and the
    /// mapping CSV's `FilePath` must match those names exactly.
    pub fn parse(text: &str) -> Result<ContainerSas, SasError> {
        let text = text.trim();
        let url = Url::parse(text).map_err(|e| {
            SasError(format!(
                "the SAS URL is not a URL ({e}); paste the whole URL the portal shows, https://…?sv=…&sig=…"
            ))
        })?;
        let host = url
            .host_str()
            .ok_or_else(|| SasError("the SAS URL has no host".into()))?
            .to_string();
        // The project's one rule for URLs that carry credentials; its errors quote the URL,
        // so they are reworded here without it.
        if let Err(refused) = crate::connectors::http::checked_url(text) {
            use crate::connectors::http::UrlRefused;
            return Err(SasError(match refused {
                UrlRefused::NotTls { .. } => format!(
                    "the SAS URL for {host} is http://: the signature would travel unencrypted; use https:// (http is accepted for loopback emulators only)"
                ),
                UrlRefused::UserInfo { .. } => format!(
                    "the SAS URL for {host} carries user info before the host; paste the portal's URL as it is"
                ),
                UrlRefused::Malformed { reason, .. } => format!(
                    "the SAS URL for {host} is refused ({reason}); expected https://…?sv=…&sig=…"
                ),
            }));
        }
        let loopback = is_loopback(&host);
        let query = url.query().unwrap_or_default().to_string();
        if !query.split('&').any(|pair| pair.starts_with("sig=")) {
            return Err(SasError(format!(
                "the URL for {host} carries no SAS signature (`sig=`); copy the full SAS URL, including everything after `?`"
            )));
        }
        let path_style = loopback || host.parse::<IpAddr>().is_ok();
        let segments: Vec<String> = url
            .path_segments()
            .map(|s| s.filter(|p| !p.is_empty()).map(str::to_string).collect())
            .unwrap_or_default();
        let wanted = if path_style { 2 } else { 1 };
        if segments.len() < wanted {
            return Err(SasError(format!(
                "the SAS URL for {host} names no container; expected {}",
                if path_style {
                    "http://<host>:<port>/<account>/<container>?…"
                } else {
                    "https://<account>.blob.core.windows.net/<container>?…"
                }
            )));
        }
        if segments.len() > wanted {
            return Err(SasError(format!(
                "the SAS URL points into folder `{}` of container `{}`; give the container URL itself (cutover names the blobs: <plan>/<user>/<file>)",
                segments[wanted..].join("/"),
                segments[wanted - 1]
            )));
        }
        let mut container_url = url.clone();
        container_url.set_query(None);
        container_url.set_fragment(None);
        let _ = container_url.set_username("");
        let _ = container_url.set_password(None);
        {
            let mut path = container_url.path_segments_mut().map_err(|_| {
                SasError(format!("the SAS URL for {host} cannot carry a blob path"))
            })?;
            path.clear();
            for segment in &segments {
                path.push(&percent_decode(segment));
            }
        }
        Ok(ContainerSas {
            container: percent_decode(&segments[wanted - 1]),
            container_url,
            query,
            path_style,
        })
    }

    /// The container's name (`ingestiondata` for Microsoft's import service).
    pub fn container(&self) -> &str {
        &self.container
    }

    /// Whether the URL is path-style (`http://127.0.0.1:10000/<account>/<container>`).
    pub fn is_path_style(&self) -> bool {
        self.path_style
    }

    /// The container's address without the SAS: safe to print and log.
    pub fn describe(&self) -> String {
        self.container_url
            .as_str()
            .trim_end_matches('/')
            .to_string()
    }

    /// A blob's address without the SAS: safe to print and log.
    pub fn describe_blob(&self, blob_name: &str) -> String {
        let mut url = self.container_url.clone();
        push_blob_path(&mut url, blob_name);
        url.as_str().to_string()
    }

    /// The blob's URL **with** the SAS query, for the HTTP client only. Never print it.
    /// Each `/`-separated part of `blob_name` is percent-encoded as one path segment.
    pub fn blob_url(&self, blob_name: &str) -> Url {
        let mut url = self.container_url.clone();
        push_blob_path(&mut url, blob_name);
        url.set_query(Some(&self.query));
        url
    }
}

fn push_blob_path(url: &mut Url, blob_name: &str) {
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty();
        for part in blob_name.split('/') {
            path.push(part);
        }
    }
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// `%20` → space, so a container or segment is stored as people read it and re-encoded once
/// by `path_segments_mut`.
fn percent_decode(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIG: &str = "sig=Vt5S4hVzlzMcBkuH8bH711atBffdrOS72TlV1mNdORg%3D";

    #[test]
    fn portal_url_is_accepted_and_never_described_with_its_query() {
        let text = format!("https://3c3e5952a2764023ad14984.blob.core.windows.net/ingestiondata?sv=2012-02-12&se=9999-12-31T23%3A59%3A59Z&sr=c&si=IngestionSasForAzCopy201601121920498117&{SIG}");
        let sas = ContainerSas::parse(&text).unwrap();
        assert_eq!(sas.container(), "ingestiondata");
        assert!(!sas.is_path_style());
        assert_eq!(
            sas.describe(),
            "https://3c3e5952a2764023ad14984.blob.core.windows.net/ingestiondata"
        );
        assert_eq!(
            sas.describe_blob("acme/bob/Bob Mail.pst"),
            "https://3c3e5952a2764023ad14984.blob.core.windows.net/ingestiondata/acme/bob/Bob%20Mail.pst"
        );
        let url = sas.blob_url("acme/bob/Bob Mail.pst");
        assert_eq!(
            url.path(),
            "/ingestiondata/acme/bob/Bob%20Mail.pst",
            "one encoded segment per name part"
        );
        assert!(url.query().unwrap().contains(SIG));
        let debug = format!("{sas:?}");
        assert!(!debug.contains("sig"), "{debug}");
    }

    #[test]
    fn azurite_path_style_url_keeps_the_account_segment() {
        let sas = ContainerSas::parse(&format!(
            "http://127.0.0.1:10000/devstoreaccount1/ingestiondata?sv=2020-12-06&sr=c&sp=rwl&{SIG}"
        ))
        .unwrap();
        assert!(sas.is_path_style());
        assert_eq!(sas.container(), "ingestiondata");
        assert_eq!(
            sas.blob_url("a/b.pst").path(),
            "/devstoreaccount1/ingestiondata/a/b.pst"
        );
    }

    #[test]
    fn refusals_name_the_problem_without_the_signature() {
        let cases = [
            (
                format!("http://acme.blob.core.windows.net/ingestiondata?{SIG}"),
                "unencrypted",
            ),
            (
                "https://acme.blob.core.windows.net/ingestiondata?sv=1".to_string(),
                "no SAS signature",
            ),
            (
                format!("https://acme.blob.core.windows.net/?{SIG}"),
                "names no container",
            ),
            (
                format!("https://acme.blob.core.windows.net/ingestiondata/PSTs?{SIG}"),
                "folder `PSTs`",
            ),
            (
                format!("ftp://acme/ingestiondata?{SIG}"),
                "scheme must be https",
            ),
            ("not a url sig=abc".to_string(), "not a URL"),
        ];
        for (text, expected) in cases {
            let err = ContainerSas::parse(&text).unwrap_err().to_string();
            assert!(err.contains(expected), "{text}: {err}");
            assert!(!err.contains("Vt5S4"), "{err}");
        }
    }
}
