//! Microsoft Graph, app-only: the users, licences and mailboxes of a Microsoft 365 tenant.
//!
//! A blocking client over ureq (call it from a blocking task). Every request carries the app
//! registration's client-credentials token (scope `https://<graph host>/.default`), asked of a
//! [`BearerSource`] each time so a long wait never sends an expired token. Answers follow
//! Microsoft's documented shapes: JSON bodies, errors as
//! `{"error": {"code", "message", "innerError": {"request-id", "date"}}}`.
//!
//! Throttling ("Microsoft Graph throttling guidance"): 429 and 503 are waited out for the
//! `Retry-After` the service sends (seconds), else with exponential backoff; 500, 502 and 504
//! and dropped connections are retried with backoff too. Waits are bounded
//! ([`MAX_RETRY_AFTER`], [`MAX_ATTEMPTS`]) and cancellable; past them the error is returned as
//! transient so the engine's own retry takes over. `$batch` (JSON batching, up to
//! [`BATCH_LIMIT`] requests per batch) reads many users in one round trip; throttled requests
//! inside a batch are sent again after their own `Retry-After`.
//!
//! Nothing secret reaches an error: not the token, not a request body (a new user's initial
//! password travels in one), only the method, the path, the status and Graph's error code
//! and message.

mod exchange;
mod password;
mod users;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

pub use exchange::{script as exchange_script, script_file_name, ExchangeChange, EXCHANGE_PREFIX};
pub use password::initial_password;
pub use users::{
    AssignedLicense, GraphUser, MailboxState, NewUser, PrepaidUnits, SubscribedSku, USER_SELECT,
};

use crate::secrets::Secret;

/// Microsoft Graph in Microsoft's global cloud.
pub const GLOBAL_ENDPOINT: &str = "https://graph.microsoft.com";

/// The API version every path is under.
pub const VERSION: &str = "v1.0";

/// Attempts per request (the first and its retries) before a throttled or failing request
/// is given back as a transient error.
pub const MAX_ATTEMPTS: u32 = 6;

/// The longest server-suggested wait honoured inside one request; beyond it the error goes
/// back to the caller (whose retry waits in turn).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// Requests per JSON batch: Graph's documented limit.
pub const BATCH_LIMIT: usize = 20;

/// First backoff wait when the service suggests none; doubled per attempt up to
/// [`BACKOFF_MAX`].
const BACKOFF_BASE: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Largest response body read; a hostile or broken server gets no more memory than this.
const BODY_LIMIT: u64 = 8 << 20;

/// Where a client's access tokens come from.
pub trait BearerSource: Send + Sync {
    /// A valid access token for Graph. Called before every request (so an implementation
    /// should cache); blocking. `Err` carries a message naming the app and the provider's
    /// error code, never the secret, and whether trying again later may help.
    fn bearer(&self) -> Result<Secret, BearerError>;
}

/// Why no token could be had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BearerError {
    pub message: String,
    pub transient: bool,
}

/// A failed Graph exchange.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GraphError {
    /// The app's token could not be obtained (wrong secret, unknown app, tenant…).
    #[error("{}", .0.message)]
    Token(BearerError),
    #[error("Graph {method} {path}: {reason}")]
    Transport {
        method: &'static str,
        path: String,
        reason: String,
    },
    /// Graph answered with an error status.
    #[error("{0}")]
    Api(Box<ApiError>),
    #[error("Graph {method} {path}: unexpected answer: {reason}")]
    BadResponse {
        method: &'static str,
        path: String,
        reason: String,
    },
    #[error("cancelled while waiting for Microsoft Graph")]
    Cancelled,
}

/// An error status from Graph, with its documented error body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Graph {method} {path}: HTTP {status} {code}: {message}{}", request_id.as_deref().map(|r| format!(" (request-id {r})")).unwrap_or_default())]
pub struct ApiError {
    pub method: &'static str,
    pub path: String,
    pub status: u16,
    /// Graph's error code, e.g. `Request_ResourceNotFound`, `MailboxNotEnabledForRESTAPI`.
    pub code: String,
    pub message: String,
    pub request_id: Option<String>,
    /// The wait the service asked for (429/503), when it said one.
    pub retry_after: Option<Duration>,
}

impl GraphError {
    /// Worth trying again later: throttling, service errors, the network, a token endpoint
    /// hiccup. A refusal (4xx other than 429) needs a human.
    pub fn is_transient(&self) -> bool {
        match self {
            GraphError::Token(e) => e.transient,
            GraphError::Transport { .. } => true,
            GraphError::Api(e) => is_retryable(e.status),
            GraphError::BadResponse { .. } | GraphError::Cancelled => false,
        }
    }

    /// The HTTP status of an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            GraphError::Api(e) => Some(e.status),
            _ => None,
        }
    }

    /// Graph's error code of an API error.
    pub fn code(&self) -> Option<&str> {
        match self {
            GraphError::Api(e) => Some(&e.code),
            _ => None,
        }
    }

    /// The service's suggested wait, for throttling answers.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            GraphError::Api(e) => e.retry_after,
            _ => None,
        }
    }
}

/// 429 and 503 are throttling; 500, 502 and 504 are the service failing for now.
fn is_retryable(status: u16) -> bool {
    matches!(status, 429 | 500 | 502 | 503 | 504)
}

/// Called with what the client waits for (throttling), for progress lines.
pub type WaitObserver = Arc<dyn Fn(&str) + Send + Sync>;

/// A Microsoft Graph client for one tenant's app registration.
pub struct GraphClient {
    /// `https://graph.microsoft.com` or a national cloud's root, without a trailing `/`.
    root: String,
    tokens: Arc<dyn BearerSource>,
    agent: ureq::Agent,
    cancel: Option<CancellationToken>,
    on_wait: Option<WaitObserver>,
}

impl std::fmt::Debug for GraphClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphClient")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

/// An HTTP method the client uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Get,
    Post,
    Patch,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Patch => "PATCH",
        }
    }
}

/// One answer: status and JSON body (`Null` when empty, as for 204).
struct Answer {
    status: u16,
    body: Value,
    retry_after: Option<Duration>,
}

impl GraphClient {
    /// A client for the Graph service root `root` (checked by
    /// [`crate::connectors::http::checked_url`]: https, or http to loopback only).
    pub fn new(
        root: &str,
        tokens: Arc<dyn BearerSource>,
    ) -> Result<GraphClient, crate::connectors::http::UrlRefused> {
        crate::connectors::http::checked_url(root)?;
        Ok(GraphClient {
            root: root.trim_end_matches('/').to_owned(),
            tokens,
            agent: crate::connectors::http::agent(),
            cancel: None,
            on_wait: None,
        })
    }

    /// Makes throttling waits end early (with [`GraphError::Cancelled`]) when `cancel` fires.
    pub fn with_cancel(mut self, cancel: CancellationToken) -> Self {
        self.cancel = Some(cancel);
        self
    }

    /// Tells `observer` whenever the client waits for the service.
    pub fn with_wait_observer(mut self, observer: WaitObserver) -> Self {
        self.on_wait = Some(observer);
        self
    }

    /// `GET` a path under the version root (`/users/…`), retried as the module docs say.
    fn get(&self, path: &str) -> Result<Value, GraphError> {
        self.call(Method::Get, path, None)
    }

    fn post(&self, path: &str, body: &Value) -> Result<Value, GraphError> {
        self.call(Method::Post, path, Some(body))
    }

    fn patch(&self, path: &str, body: &Value) -> Result<Value, GraphError> {
        self.call(Method::Patch, path, Some(body))
    }

    /// One request with the retries of the module docs: `Ok` for 2xx, else the last error.
    fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value, GraphError> {
        let mut attempt = 1;
        loop {
            let outcome = self.exchange(method, path, body).and_then(|answer| {
                if (200..300).contains(&answer.status) {
                    Ok(answer.body)
                } else {
                    Err(api_error(
                        method.as_str(),
                        path,
                        answer.status,
                        &answer.body,
                        answer.retry_after,
                    ))
                }
            });
            match outcome {
                Err(e) if e.is_transient() && attempt < MAX_ATTEMPTS => {
                    let wait = match e.retry_after() {
                        Some(w) if w > MAX_RETRY_AFTER => return Err(e),
                        Some(w) => w,
                        None => backoff(attempt),
                    };
                    self.wait(wait, &e)?;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Sends one request and reads its answer; transport failures are errors, HTTP error
    /// statuses are answers.
    fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, GraphError> {
        let token = self.tokens.bearer().map_err(GraphError::Token)?;
        let url = format!("{}/{VERSION}{path}", self.root);
        let auth = format!("Bearer {}", token.expose());
        // The protocol trace gets the request line, never a body (a new user's password) or
        // the Authorization header.
        let who = format!("http {}", self.root);
        crate::trace::record(
            &who,
            crate::trace::Direction::Sent,
            &format!("{} {url}", method.as_str()),
        );
        let transport = |e: ureq::Error| GraphError::Transport {
            method: method.as_str(),
            path: path.to_owned(),
            reason: crate::redact::redact(&e.to_string()).into_owned(),
        };
        let sent = match (method, body) {
            (Method::Get, _) => self
                .agent
                .get(&url)
                .header("Authorization", &auth)
                .header("Accept", "application/json")
                .call(),
            (m, body) => {
                let text = body.map(Value::to_string).unwrap_or_default();
                let request = if m == Method::Post {
                    self.agent.post(&url)
                } else {
                    self.agent.patch(&url)
                };
                request
                    .header("Authorization", &auth)
                    .header("Accept", "application/json")
                    .content_type("application/json")
                    .send(text.as_bytes())
            }
        };
        let mut response = sent.map_err(transport)?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let text = response
            .body_mut()
            .with_config()
            .limit(BODY_LIMIT)
            .read_to_string()
            .map_err(transport)?;
        crate::trace::record(
            &who,
            crate::trace::Direction::Received,
            &format!("HTTP {status} ({} bytes)", text.len()),
        );
        let body = if text.trim().is_empty() {
            Value::Null
        } else {
            match serde_json::from_str(&text) {
                Ok(v) => v,
                // An error status with a non-JSON body (a gateway's HTML page) is still an
                // answer: its status decides.
                Err(_) if status >= 400 => Value::Null,
                Err(e) => {
                    return Err(GraphError::BadResponse {
                        method: method.as_str(),
                        path: path.to_owned(),
                        reason: format!("not JSON ({e})"),
                    })
                }
            }
        };
        Ok(Answer {
            status,
            body,
            retry_after,
        })
    }

    /// Sleeps `wait` unless cancelled, telling the observer why.
    fn wait(&self, wait: Duration, why: &GraphError) -> Result<(), GraphError> {
        if let Some(observer) = &self.on_wait {
            let what = match why.status() {
                Some(429 | 503) => "throttled by Microsoft Graph".to_string(),
                Some(status) => format!("Microsoft Graph answered HTTP {status}"),
                None => "Microsoft Graph unreachable".to_string(),
            };
            observer(&format!("{what}; retrying in {:.1}s", wait.as_secs_f64()));
        }
        sleep_unless_cancelled(wait, self.cancel.as_ref())
    }

    /// `GET` of many paths through `$batch`, [`BATCH_LIMIT`] at a time. Each path's own
    /// answer comes back in order (status and body); only the batch request itself failing
    /// is an error. Requests throttled inside a batch are sent again after the longest
    /// `Retry-After` among them, up to [`MAX_ATTEMPTS`] rounds; still throttled after that,
    /// they are returned as they are.
    fn batch_get(&self, paths: &[String]) -> Result<Vec<(u16, Value)>, GraphError> {
        let mut results: Vec<Option<(u16, Value)>> = vec![None; paths.len()];
        for chunk_start in (0..paths.len()).step_by(BATCH_LIMIT) {
            let mut pending: Vec<usize> =
                (chunk_start..(chunk_start + BATCH_LIMIT).min(paths.len())).collect();
            let mut round = 1;
            while !pending.is_empty() {
                let requests: Vec<Value> = pending
                    .iter()
                    .map(|&i| json!({"id": i.to_string(), "method": "GET", "url": paths[i]}))
                    .collect();
                let answer = self.post("/$batch", &json!({ "requests": requests }))?;
                let responses = answer["responses"].as_array().cloned().unwrap_or_default();
                let mut throttled = Vec::new();
                let mut longest: Option<Duration> = None;
                for r in responses {
                    let Some(i) = r["id"].as_str().and_then(|id| id.parse::<usize>().ok()) else {
                        continue;
                    };
                    if !pending.contains(&i) {
                        continue;
                    }
                    let status = r["status"].as_u64().unwrap_or(0) as u16;
                    let body = r["body"].clone();
                    if is_retryable(status) && round < MAX_ATTEMPTS {
                        let wait = r["headers"]
                            .as_object()
                            .and_then(|h| {
                                h.iter()
                                    .find(|(k, _)| k.eq_ignore_ascii_case("retry-after"))
                            })
                            .and_then(|(_, v)| v.as_str().and_then(parse_retry_after));
                        longest = longest.max(wait.or(Some(backoff(round))));
                        throttled.push(i);
                    }
                    results[i] = Some((status, body));
                }
                let missing: Vec<usize> = pending
                    .iter()
                    .copied()
                    .filter(|&i| results[i].is_none())
                    .collect();
                if !missing.is_empty() {
                    return Err(GraphError::BadResponse {
                        method: "POST",
                        path: "/$batch".into(),
                        reason: format!("{} request(s) without a response", missing.len()),
                    });
                }
                if throttled.is_empty() {
                    break;
                }
                let wait = longest.unwrap_or(BACKOFF_BASE).min(MAX_RETRY_AFTER);
                let why = GraphError::Api(Box::new(ApiError {
                    method: "POST",
                    path: "/$batch".into(),
                    status: 429,
                    code: "TooManyRequests".into(),
                    message: String::new(),
                    request_id: None,
                    retry_after: Some(wait),
                }));
                self.wait(wait, &why)?;
                pending = throttled;
                round += 1;
            }
        }
        Ok(results.into_iter().map(Option::unwrap_or_default).collect())
    }
}

/// Graph's error body as an error; a body without one still names the status.
fn api_error(
    method: &'static str,
    path: &str,
    status: u16,
    body: &Value,
    retry_after: Option<Duration>,
) -> GraphError {
    let error = &body["error"];
    let text = |v: &Value| v.as_str().map(str::to_owned);
    GraphError::Api(Box::new(ApiError {
        method,
        path: path.to_owned(),
        status,
        code: text(&error["code"]).unwrap_or_else(|| "no error code".into()),
        message: crate::redact::redact(
            text(&error["message"])
                .unwrap_or_default()
                .lines()
                .next()
                .unwrap_or(""),
        )
        .into_owned(),
        request_id: text(&error["innerError"]["request-id"]),
        retry_after,
    }))
}

/// `Retry-After` as Graph sends it: whole seconds.
fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// The wait before attempt `attempt + 1` when the service suggested none.
fn backoff(attempt: u32) -> Duration {
    BACKOFF_BASE
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(BACKOFF_MAX)
}

/// Sleeps `total` in short slices, returning [`GraphError::Cancelled`] as soon as `cancel`
/// fires. For blocking code that must stay Ctrl-C responsive.
pub fn sleep_unless_cancelled(
    total: Duration,
    cancel: Option<&CancellationToken>,
) -> Result<(), GraphError> {
    const SLICE: Duration = Duration::from_millis(100);
    let deadline = std::time::Instant::now() + total;
    loop {
        if cancel.is_some_and(CancellationToken::is_cancelled) {
            return Err(GraphError::Cancelled);
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        std::thread::sleep(left.min(SLICE));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert_eq!(backoff(2), Duration::from_secs(1));
        assert_eq!(backoff(4), Duration::from_secs(4));
        assert_eq!(backoff(40), BACKOFF_MAX);
    }

    #[test]
    fn retry_after_is_whole_seconds() {
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }

    #[test]
    fn error_bodies_give_code_message_and_request_id() {
        let body: Value = serde_json::from_str(
            r#"{"error":{"code":"Request_ResourceNotFound","message":"Resource 'x' does not exist.\nmore","innerError":{"date":"2024-01-01T00:00:00","request-id":"abc","client-request-id":"abc"}}}"#,
        )
        .unwrap();
        let e = api_error("GET", "/users/x", 404, &body, None);
        assert_eq!(
            e.to_string(),
            "Graph GET /users/x: HTTP 404 Request_ResourceNotFound: Resource 'x' does not exist. (request-id abc)"
        );
        assert!(!e.is_transient());
        let e = api_error(
            "POST",
            "/users",
            429,
            &Value::Null,
            Some(Duration::from_secs(2)),
        );
        assert!(e.is_transient());
        assert_eq!(e.retry_after(), Some(Duration::from_secs(2)));
        assert!(e.to_string().contains("HTTP 429 no error code"), "{e}");
    }

    #[test]
    fn cancelled_sleep_returns_early() {
        let cancel = CancellationToken::new();
        cancel.cancel();
        assert_eq!(
            sleep_unless_cancelled(Duration::from_secs(3600), Some(&cancel)),
            Err(GraphError::Cancelled)
        );
    }
}
