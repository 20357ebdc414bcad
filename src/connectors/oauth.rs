//! OAuth2 client-credentials tokens for XOAUTH2 (IMAP/POP3 at Microsoft 365) and Graph.
//!
//! cutover signs in as the plan's app registration: `POST` to the token endpoint with
//! `grant_type=client_credentials`, the client id and secret and the scope. Tokens are cached
//! and fetched again when less than [`REFRESH_MARGIN`] of their life is left, so a long copy
//! never sends an expired token. Neither the secret nor a token ever appears in an error or a
//! log: errors carry the endpoint, the HTTP status and the provider's error code (AADSTS…).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::secrets::Secret;

/// Tokens with less than this left are fetched again.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// Microsoft 365's token endpoint for a tenant (id or domain).
pub fn m365_token_endpoint(tenant: &str) -> String {
    format!("https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token")
}

/// The scope for IMAP/POP3 at Exchange Online.
pub const M365_MAIL_SCOPE: &str = "https://outlook.office365.com/.default";

#[derive(Debug, thiserror::Error)]
pub enum OauthError {
    #[error("token endpoint {0}")]
    Refused(#[from] crate::connectors::http::UrlRefused),
    #[error("token request to {endpoint} failed: {reason}")]
    Transport { endpoint: String, reason: String },
    #[error("token endpoint {endpoint} answered HTTP {status}: {error}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Rejected {
        endpoint: String,
        status: u16,
        error: String,
        description: Option<String>,
    },
    #[error("token endpoint {endpoint} answered without a usable access token: {reason}")]
    BadResponse { endpoint: String, reason: String },
}

impl OauthError {
    /// Worth retrying: the network or the provider hiccuped (5xx, 429), not a bad credential.
    pub fn is_transient(&self) -> bool {
        match self {
            OauthError::Transport { .. } => true,
            OauthError::Rejected { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }
}

/// Fetches and caches client-credentials tokens for one app registration and scope.
pub struct TokenSource {
    endpoint: String,
    client_id: String,
    client_secret: Secret,
    scope: String,
    cached: Mutex<Option<(Secret, Instant)>>,
    agent: ureq::Agent,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("endpoint", &self.endpoint)
            .field("client_id", &self.client_id)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: Option<String>,
    expires_in: Option<u64>,
    error: Option<String>,
    error_description: Option<String>,
}

impl TokenSource {
    pub fn new(
        endpoint: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: Secret,
        scope: impl Into<String>,
    ) -> Result<TokenSource, OauthError> {
        let endpoint = endpoint.into();
        let url = crate::connectors::http::checked_url(&endpoint)?;
        crate::connectors::http::check_trust(&url).map_err(|reason| OauthError::Transport {
            endpoint: endpoint.clone(),
            reason,
        })?;
        Ok(TokenSource {
            endpoint,
            client_id: client_id.into(),
            client_secret,
            scope: scope.into(),
            cached: Mutex::new(None),
            agent: crate::connectors::http::agent(),
        })
    }

    /// A token valid for at least [`REFRESH_MARGIN`] (unless the provider issues shorter ones),
    /// from the cache when possible. Blocking: call it from a blocking task.
    pub fn token(&self) -> Result<Secret, OauthError> {
        let mut cached = self
            .cached
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((token, expires)) = cached.as_ref() {
            if expires.saturating_duration_since(Instant::now()) > REFRESH_MARGIN {
                return Ok(token.clone());
            }
        }
        let (token, lifetime) = self.fetch()?;
        *cached = Some((token.clone(), Instant::now() + lifetime));
        Ok(token)
    }

    fn fetch(&self) -> Result<(Secret, Duration), OauthError> {
        let endpoint = self.endpoint.clone();
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.expose()),
            ("scope", self.scope.as_str()),
        ];
        let who = format!("http {}", self.endpoint);
        crate::trace::record(
            &who,
            crate::trace::Direction::Sent,
            &format!(
                "POST {} grant_type=client_credentials&client_id={}&client_secret=REDACTED&scope={}",
                self.endpoint, self.client_id, self.scope
            ),
        );
        let mut response = self
            .agent
            .post(&self.endpoint)
            .send_form(form)
            .map_err(|e| OauthError::Transport {
                endpoint: endpoint.clone(),
                reason: crate::redact::redact(&e.to_string()).into_owned(),
            })?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .read_to_string()
            .map_err(|e| OauthError::Transport {
                endpoint: endpoint.clone(),
                reason: e.to_string(),
            })?;
        let parsed: Option<TokenResponse> = serde_json::from_str(&body).ok();
        // The body is never traced: it holds the token.
        crate::trace::record(
            &who,
            crate::trace::Direction::Received,
            &format!(
                "HTTP {status} ({} bytes{})",
                body.len(),
                parsed
                    .as_ref()
                    .and_then(|p| p.error.as_deref())
                    .map(|e| format!(", error {e}"))
                    .unwrap_or_default()
            ),
        );
        if status != 200 {
            let (error, description) = parsed.map_or((String::from("no error code"), None), |p| {
                (
                    p.error.unwrap_or_else(|| "no error code".into()),
                    p.error_description.map(|d| {
                        crate::redact::redact(d.lines().next().unwrap_or("")).into_owned()
                    }),
                )
            });
            return Err(OauthError::Rejected {
                endpoint,
                status,
                error,
                description,
            });
        }
        let parsed = parsed.ok_or_else(|| OauthError::BadResponse {
            endpoint: endpoint.clone(),
            reason: "not JSON".into(),
        })?;
        let token = parsed
            .access_token
            .filter(|t| !t.is_empty())
            .ok_or_else(|| OauthError::BadResponse {
                endpoint: endpoint.clone(),
                reason: "no access_token".into(),
            })?;
        let lifetime = Duration::from_secs(parsed.expires_in.unwrap_or(3600));
        Ok((Secret::new(token), lifetime))
    }
}
