//! A local stand-in for Microsoft Graph and the Entra ID token endpoint (Microsoft's are not
//! reachable from tests), following Microsoft's documented requests and answers:
//!
//! - `POST /{tenant}/oauth2/v2.0/token` (client credentials): `{"token_type":"Bearer",
//!   "expires_in":…,"access_token":…}`; a wrong secret is `401 invalid_client` with
//!   AADSTS7000215, an unknown app `400 unauthorized_client` with AADSTS700016;
//! - `GET /v1.0/users/{id | userPrincipalName}` (also the `('$…')` form), `POST /v1.0/users`,
//!   `PATCH /v1.0/users/{id}`, `GET /v1.0/subscribedSkus`,
//!   `POST /v1.0/users/{id}/assignLicense`, `GET /v1.0/users/{id}/mailboxSettings`,
//!   `POST /v1.0/$batch` (at most 20 requests, answered per request with `id`, `status`,
//!   `headers`, `body`);
//! - bodies with `@odata.context`; errors as `{"error":{"code","message","innerError":
//!   {"date","request-id","client-request-id"}}}` with Graph's codes
//!   (`Request_ResourceNotFound`, `Request_BadRequest`, `InvalidAuthenticationToken`,
//!   `MailboxNotEnabledForRESTAPI`, `TooManyRequests`…);
//! - throttling on demand ([`GraphFake::fail_next`]): 429/503 with `Retry-After` in seconds,
//!   inside a batch too, as the throttling guidance describes.
//!
//! The tenant behaves like one: a user's mailbox is provisioned only after a licence that
//! includes Exchange Online, and answers `mailboxSettings` only after a configurable number of
//! polls; seats are counted; `proxyAddresses` is read-only; UPNs must be in a verified domain.
//! Every request is logged (method, path, body, bearer) for assertions.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

/// One subscription of the fake tenant.
#[derive(Debug, Clone)]
pub struct FakeSku {
    pub part_number: String,
    pub sku_id: String,
    pub enabled: i64,
    pub consumed: i64,
    /// Whether it includes Exchange Online (a mailbox is provisioned when assigned).
    pub exchange: bool,
}

impl FakeSku {
    pub fn new(part_number: &str, enabled: i64, consumed: i64) -> FakeSku {
        FakeSku {
            part_number: part_number.into(),
            sku_id: fake_guid(part_number),
            enabled,
            consumed,
            exchange: true,
        }
    }
}

/// What the fake tenant starts with.
#[derive(Debug, Clone)]
pub struct FakeTenant {
    pub tenant: String,
    pub client_id: String,
    pub client_secret: String,
    pub verified_domains: Vec<String>,
    /// The onmicrosoft.com domain mailboxes get a secondary address in.
    pub initial_domain: String,
    pub skus: Vec<FakeSku>,
    /// Polls of `mailboxSettings` answered "not yet" after a licence is assigned.
    pub mailbox_polls: u32,
    /// Tokens to issue by scope (e.g. the IMAP scope's token a test Dovecot accepts); other
    /// scopes get a generated one.
    pub scope_tokens: HashMap<String, String>,
}

impl FakeTenant {
    pub fn new(domains: &[&str]) -> FakeTenant {
        FakeTenant {
            tenant: "contoso.onmicrosoft.com".into(),
            client_id: "11111111-2222-3333-4444-555555555555".into(),
            client_secret: "fake-app-secret-value".into(),
            verified_domains: domains.iter().map(|d| d.to_string()).collect(),
            initial_domain: "contoso.onmicrosoft.com".into(),
            skus: Vec::new(),
            mailbox_polls: 0,
            scope_tokens: HashMap::new(),
        }
    }
}

/// A user of the fake directory.
#[derive(Debug, Clone, PartialEq)]
pub struct FakeUser {
    pub id: String,
    pub upn: String,
    pub display_name: String,
    pub mail_nickname: String,
    pub account_enabled: bool,
    pub usage_location: Option<String>,
    pub licences: Vec<String>,
    pub proxy_addresses: Vec<String>,
    /// The password the user was created with (to check what cutover sent).
    pub password: Option<String>,
    pub force_change_password: bool,
    /// `None`: no mailbox will come (no Exchange licence); `Some(n)`: `n` more polls until
    /// it answers; `Some(0)`: it answers.
    pub mailbox_in: Option<u32>,
}

/// One logged request.
#[derive(Debug, Clone)]
pub struct Logged {
    pub method: String,
    /// Path and query as sent (`/v1.0/users/x?$select=…`, `/tenant/oauth2/v2.0/token`).
    pub target: String,
    pub body: String,
    pub bearer: Option<String>,
    /// When it arrived (for checking that a `Retry-After` was waited out).
    pub at: std::time::Instant,
}

/// A canned failure for the next matching requests.
#[derive(Debug, Clone)]
struct Fault {
    method: String,
    path_prefix: String,
    status: u16,
    retry_after: Option<u64>,
    left: u32,
}

struct State {
    config: FakeTenant,
    users: Vec<FakeUser>,
    issued: Vec<String>,
    log: Vec<Logged>,
    faults: VecDeque<Fault>,
    next_id: u64,
}

pub struct GraphFake {
    /// The Graph service root for `target.graph.endpoint`.
    pub root: String,
    /// The token endpoint for `target.auth.token_endpoint`.
    pub token_url: String,
    state: Arc<Mutex<State>>,
}

impl GraphFake {
    /// Starts the fake on a free loopback port; it serves until the test process ends.
    pub fn start(config: FakeTenant) -> GraphFake {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = listener.local_addr().unwrap().port();
        let root = format!("http://127.0.0.1:{port}");
        let token_url = format!("{root}/{}/oauth2/v2.0/token", config.tenant);
        let state = Arc::new(Mutex::new(State {
            config,
            users: Vec::new(),
            issued: Vec::new(),
            log: Vec::new(),
            faults: VecDeque::new(),
            next_id: 1,
        }));
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let state = Arc::clone(&shared);
                std::thread::spawn(move || serve(stream, &state));
            }
        });
        GraphFake {
            root,
            token_url,
            state,
        }
    }

    /// Adds a user that already exists at the tenant, licensed with `licences` (part
    /// numbers), with a mailbox when any of them includes Exchange.
    pub fn add_user(&self, upn: &str, display_name: &str, licences: &[&str]) {
        let mut st = self.state.lock().unwrap();
        let id = st.new_id();
        let nickname = upn.split('@').next().unwrap().to_string();
        let mut user = FakeUser {
            id,
            upn: upn.into(),
            display_name: display_name.into(),
            mail_nickname: nickname,
            account_enabled: true,
            usage_location: Some("GB".into()),
            licences: Vec::new(),
            proxy_addresses: Vec::new(),
            password: None,
            force_change_password: false,
            mailbox_in: None,
        };
        for part in licences {
            let sku = st
                .config
                .skus
                .iter_mut()
                .find(|s| s.part_number == *part)
                .expect("a licence of the fake tenant");
            sku.consumed += 1;
            user.licences.push(sku.sku_id.clone());
            if sku.exchange {
                user.mailbox_in = Some(0);
            }
        }
        if user.mailbox_in == Some(0) {
            let initial = st.config.initial_domain.clone();
            provision_addresses(&mut user, &initial);
        }
        st.users.push(user);
    }

    /// The next `times` requests of `method` whose path (after `/v1.0`, without the query)
    /// starts with `path_prefix` are answered `status` (429, 503, 500…) with `Retry-After:
    /// retry_after` seconds when given.
    pub fn fail_next(
        &self,
        method: &str,
        path_prefix: &str,
        status: u16,
        retry_after: Option<u64>,
        times: u32,
    ) {
        self.state.lock().unwrap().faults.push_back(Fault {
            method: method.into(),
            path_prefix: path_prefix.into(),
            status,
            retry_after,
            left: times,
        });
    }

    /// Adds a proxy address (`smtp:…`) to a user, as an Exchange admin would.
    pub fn add_address(&self, upn: &str, address: &str) {
        let mut st = self.state.lock().unwrap();
        let i = st.user_index(upn).expect("a user of the fake tenant");
        st.users[i].proxy_addresses.push(address.into());
    }

    /// The user's mailbox answers from now on.
    pub fn set_mailbox_ready(&self, upn: &str) {
        let mut st = self.state.lock().unwrap();
        let i = st.user_index(upn).expect("a user of the fake tenant");
        st.users[i].mailbox_in = Some(0);
    }

    pub fn requests(&self) -> Vec<Logged> {
        self.state.lock().unwrap().log.clone()
    }

    /// Requests whose method is `method` and whose target starts with `prefix`.
    pub fn count(&self, method: &str, prefix: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.method == method && r.target.starts_with(prefix))
            .count()
    }

    /// Requests of `method` to exactly `target` (path and query).
    pub fn count_exact(&self, method: &str, target: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.method == method && r.target == target)
            .count()
    }

    pub fn user(&self, upn: &str) -> Option<FakeUser> {
        let st = self.state.lock().unwrap();
        st.users
            .iter()
            .find(|u| u.upn.eq_ignore_ascii_case(upn))
            .cloned()
    }

    /// Seats of a SKU: (enabled, consumed).
    pub fn seats(&self, part_number: &str) -> (i64, i64) {
        let st = self.state.lock().unwrap();
        let sku = st
            .config
            .skus
            .iter()
            .find(|s| s.part_number == part_number)
            .unwrap();
        (sku.enabled, sku.consumed)
    }
}

impl State {
    fn new_id(&mut self) -> String {
        self.next_id += 1;
        format!("00000000-0000-4000-8000-{:012x}", self.next_id)
    }

    fn user_index(&self, key: &str) -> Option<usize> {
        self.users
            .iter()
            .position(|u| u.id == key || u.upn.eq_ignore_ascii_case(key))
    }

    fn take_fault(&mut self, method: &str, path: &str) -> Option<Fault> {
        let i = self
            .faults
            .iter()
            .position(|f| f.method == method && path.starts_with(&f.path_prefix))?;
        let fault = self.faults[i].clone();
        if fault.left <= 1 {
            self.faults.remove(i);
        } else {
            self.faults[i].left -= 1;
        }
        Some(fault)
    }
}

/// A GUID-shaped id derived from a name, stable across runs.
fn fake_guid(name: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        h >> 32,
        (h >> 16) & 0xffff,
        h & 0xfff,
        (h >> 20) & 0xfff,
        h & 0xffff_ffff_ffff
    )
}

/// Exchange stamps a new mailbox's addresses: the UPN as primary, the nickname at the
/// initial domain as secondary.
fn provision_addresses(user: &mut FakeUser, initial_domain: &str) {
    if user.proxy_addresses.is_empty() {
        user.proxy_addresses = vec![
            format!("SMTP:{}", user.upn),
            format!("smtp:{}@{initial_domain}", user.mail_nickname),
        ];
    }
}

/// An answer: status, extra headers, JSON body (`None` for no body).
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Option<Value>,
}

impl Reply {
    fn json(status: u16, body: Value) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Some(body),
        }
    }

    fn empty(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: None,
        }
    }
}

static REQUEST_IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Graph's error body.
fn graph_error(status: u16, code: &str, message: &str) -> Reply {
    let id = format!(
        "5a1e0000-0000-4000-8000-{:012x}",
        REQUEST_IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    Reply::json(
        status,
        json!({"error": {"code": code, "message": message, "innerError": {
            "date": "2024-05-01T10:00:00",
            "request-id": id,
            "client-request-id": id,
        }}}),
    )
}

fn context(fragment: &str) -> String {
    format!("https://graph.microsoft.com/v1.0/$metadata#{fragment}")
}

fn user_json(u: &FakeUser) -> Value {
    json!({
        "id": u.id,
        "userPrincipalName": u.upn,
        "displayName": u.display_name,
        "mail": if u.mailbox_in == Some(0) { Value::String(u.upn.clone()) } else { Value::Null },
        "mailNickname": u.mail_nickname,
        "accountEnabled": u.account_enabled,
        "usageLocation": u.usage_location,
        "assignedLicenses": u.licences.iter().map(|s| json!({"skuId": s, "disabledPlans": []})).collect::<Vec<_>>(),
        "proxyAddresses": u.proxy_addresses,
    })
}

/// Reads one HTTP/1.1 request, answers it, closes the connection.
fn serve(stream: TcpStream, state: &Mutex<State>) {
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let mut headers: HashMap<String, String> = HashMap::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length.min(1 << 20)];
    let _ = reader.read_exact(&mut body);
    let body = String::from_utf8_lossy(&body).into_owned();
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let reply = {
        let mut st = state.lock().unwrap();
        st.log.push(Logged {
            method: method.clone(),
            target: target.clone(),
            body: body.clone(),
            bearer: bearer.clone(),
            at: std::time::Instant::now(),
        });
        route(&mut st, &method, &target, &body, bearer.as_deref())
    };
    let mut stream = reader.into_inner();
    let text = reply.body.map(|b| b.to_string()).unwrap_or_default();
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        reply.status,
        reason(reply.status),
        text.len()
    );
    if !text.is_empty() {
        head.push_str("Content-Type: application/json; odata.metadata=minimal\r\n");
    }
    for (k, v) in &reply.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(text.as_bytes());
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

fn route(st: &mut State, method: &str, target: &str, body: &str, bearer: Option<&str>) -> Reply {
    let token_path = format!("/{}/oauth2/v2.0/token", st.config.tenant);
    if method == "POST" && target == token_path {
        return token(st, body);
    }
    let Some(rest) = target.strip_prefix("/v1.0") else {
        return graph_error(404, "ResourceNotFound", "Invalid version.");
    };
    if !bearer.is_some_and(|b| st.issued.iter().any(|t| t == b)) {
        return graph_error(
            401,
            "InvalidAuthenticationToken",
            if bearer.is_none() {
                "Access token is empty."
            } else {
                "Access token validation failure. Invalid audience."
            },
        );
    }
    graph(st, method, rest, body)
}

/// The v2.0 token endpoint, client-credentials grant.
fn token(st: &mut State, body: &str) -> Reply {
    let form: HashMap<String, String> = body
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (decode_form(k), decode_form(v)))
        .collect();
    let field = |k: &str| form.get(k).cloned().unwrap_or_default();
    let aad = |status: u16, error: &str, description: String, code: u32| {
        Reply::json(
            status,
            json!({"error": error, "error_description": description, "error_codes": [code],
                   "timestamp": "2024-05-01 10:00:00Z", "trace_id": "f0f0", "correlation_id": "e0e0"}),
        )
    };
    if field("grant_type") != "client_credentials" {
        return aad(
            400,
            "unsupported_grant_type",
            "AADSTS70003: The app requested an unsupported grant type.".into(),
            70003,
        );
    }
    if field("client_id") != st.config.client_id {
        return aad(
            400,
            "unauthorized_client",
            format!(
                "AADSTS700016: Application with identifier '{}' was not found in the directory '{}'.\r\nTrace ID: f0f0",
                field("client_id"),
                st.config.tenant
            ),
            700016,
        );
    }
    if field("client_secret") != st.config.client_secret {
        return aad(
            401,
            "invalid_client",
            format!(
                "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{}'.\r\nTrace ID: f0f0",
                st.config.client_id
            ),
            7000215,
        );
    }
    let scope = field("scope");
    if !scope.ends_with("/.default") {
        return aad(400, "invalid_scope", format!("AADSTS1002012: The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."), 1002012);
    }
    let token = st
        .config
        .scope_tokens
        .get(&scope)
        .cloned()
        .unwrap_or_else(|| {
            format!(
                "eyJ0eXAiOiJKV1QifQ.fake-graph-token-{}",
                st.issued.len() + 1
            )
        });
    if !st.issued.contains(&token) {
        st.issued.push(token.clone());
    }
    Reply::json(
        200,
        json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": token}),
    )
}

fn decode_form(s: &str) -> String {
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

/// Graph under `/v1.0`: `rest` is the path and query after it.
fn graph(st: &mut State, method: &str, rest: &str, body: &str) -> Reply {
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if let Some(fault) = st.take_fault(method, path) {
        let (code, message) = match fault.status {
            429 => ("TooManyRequests", "Too many requests."),
            503 => (
                "ServiceUnavailable",
                "The service is temporarily unavailable.",
            ),
            _ => ("UnknownError", "An unexpected error occurred."),
        };
        let mut reply = graph_error(fault.status, code, message);
        if let Some(secs) = fault.retry_after {
            reply.headers.push(("Retry-After".into(), secs.to_string()));
        }
        return reply;
    }
    let _ = query;
    let body_json: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    if method == "POST" && path == "/$batch" {
        return batch(st, &body_json);
    }
    if method == "GET" && path == "/subscribedSkus" {
        let value: Vec<Value> = st
            .config
            .skus
            .iter()
            .map(|s| {
                json!({
                    "capabilityStatus": "Enabled",
                    "consumedUnits": s.consumed,
                    "id": format!("tenant-id_{}", s.sku_id),
                    "prepaidUnits": {"enabled": s.enabled, "suspended": 0, "warning": 0, "lockedOut": 0},
                    "servicePlans": [],
                    "skuId": s.sku_id,
                    "skuPartNumber": s.part_number,
                    "appliesTo": "User",
                })
            })
            .collect();
        return Reply::json(
            200,
            json!({"@odata.context": context("subscribedSkus"), "value": value}),
        );
    }
    if method == "POST" && path == "/users" {
        return create_user(st, &body_json);
    }
    let Some(after) = path.strip_prefix("/users") else {
        return graph_error(
            400,
            "BadRequest",
            &format!(
                "Resource not found for the segment '{}'.",
                path.trim_start_matches('/')
            ),
        );
    };
    // `/users/{key}[/segment]` or `/users('{key}')[/segment]`.
    let (key, segment) = if let Some(quoted) = after.strip_prefix("('") {
        let Some((key, tail)) = quoted.split_once("')") else {
            return graph_error(400, "BadRequest", "Bad request.");
        };
        (key.replace("''", "'"), tail.to_string())
    } else {
        let after = after.trim_start_matches('/');
        let (key, tail) = after.split_once('/').map_or((after, ""), |(k, t)| (k, t));
        (
            key.to_string(),
            if tail.is_empty() {
                String::new()
            } else {
                format!("/{tail}")
            },
        )
    };
    let key = percent_encoding::percent_decode_str(&key)
        .decode_utf8_lossy()
        .into_owned();
    let Some(i) = st.user_index(&key) else {
        return graph_error(
            404,
            "Request_ResourceNotFound",
            &format!("Resource '{key}' does not exist or one of its queried reference-property objects are not present."),
        );
    };
    match (method, segment.as_str()) {
        ("GET", "") => {
            let mut value = user_json(&st.users[i]);
            value["@odata.context"] = json!(context("users/$entity"));
            Reply::json(200, value)
        }
        ("PATCH", "") => update_user(st, i, &body_json),
        ("POST", "/assignLicense") => assign_licence(st, i, &body_json),
        ("GET", "/mailboxSettings") => mailbox_settings(st, i),
        _ => graph_error(
            400,
            "BadRequest",
            &format!(
                "Resource not found for the segment '{}'.",
                segment.trim_start_matches('/')
            ),
        ),
    }
}

fn complex_enough(password: &str) -> bool {
    let classes = [
        password.chars().any(|c| c.is_ascii_uppercase()),
        password.chars().any(|c| c.is_ascii_lowercase()),
        password.chars().any(|c| c.is_ascii_digit()),
        password.chars().any(|c| !c.is_ascii_alphanumeric()),
    ];
    (8..=256).contains(&password.len()) && classes.iter().filter(|c| **c).count() >= 3
}

fn create_user(st: &mut State, body: &Value) -> Reply {
    for required in [
        "accountEnabled",
        "displayName",
        "mailNickname",
        "userPrincipalName",
        "passwordProfile",
    ] {
        if body.get(required).is_none() {
            return graph_error(
                400,
                "Request_BadRequest",
                &format!("A value is required for property '{required}' of resource 'User'."),
            );
        }
    }
    let upn = body["userPrincipalName"].as_str().unwrap_or("").to_string();
    let domain = upn.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
    if !st
        .config
        .verified_domains
        .iter()
        .any(|d| d.eq_ignore_ascii_case(domain))
    {
        return graph_error(400, "Request_BadRequest", "The domain portion of the userPrincipalName property is invalid. You must use one of the verified domain names in your organization.");
    }
    if st.user_index(&upn).is_some() {
        return graph_error(
            400,
            "Request_BadRequest",
            "Another object with the same value for property userPrincipalName already exists.",
        );
    }
    let password = body["passwordProfile"]["password"].as_str().unwrap_or("");
    if !complex_enough(password) {
        return graph_error(400, "Request_BadRequest", "The specified password does not comply with password complexity requirements. Please provide a different password.");
    }
    if let Some(location) = body.get("usageLocation").and_then(Value::as_str) {
        if !valid_location(location) {
            return bad_location();
        }
    }
    let id = st.new_id();
    let user = FakeUser {
        id,
        upn: upn.clone(),
        display_name: body["displayName"].as_str().unwrap_or("").into(),
        mail_nickname: body["mailNickname"].as_str().unwrap_or("").into(),
        account_enabled: body["accountEnabled"].as_bool().unwrap_or(false),
        usage_location: body["usageLocation"].as_str().map(str::to_owned),
        licences: Vec::new(),
        proxy_addresses: Vec::new(),
        password: Some(password.into()),
        force_change_password: body["passwordProfile"]["forceChangePasswordNextSignIn"]
            .as_bool()
            .unwrap_or(true),
        mailbox_in: None,
    };
    let mut value = user_json(&user);
    value["@odata.context"] = json!(context("users/$entity"));
    st.users.push(user);
    Reply::json(201, value)
}

fn valid_location(code: &str) -> bool {
    code.len() == 2 && code.chars().all(|c| c.is_ascii_uppercase())
}

fn bad_location() -> Reply {
    graph_error(
        400,
        "Request_BadRequest",
        "Invalid value specified for property 'usageLocation' of resource 'User'.",
    )
}

fn update_user(st: &mut State, i: usize, body: &Value) -> Reply {
    let Some(props) = body.as_object() else {
        return graph_error(400, "BadRequest", "Empty Payload. JSON content expected.");
    };
    for (name, value) in props {
        match name.as_str() {
            "displayName" => st.users[i].display_name = value.as_str().unwrap_or("").into(),
            "usageLocation" => {
                let code = value.as_str().unwrap_or("");
                if !valid_location(code) {
                    return bad_location();
                }
                st.users[i].usage_location = Some(code.into());
            }
            "proxyAddresses" => {
                return graph_error(
                    400,
                    "Request_BadRequest",
                    "Property 'proxyAddresses' is read-only and cannot be set.",
                )
            }
            other => {
                return graph_error(
                    400,
                    "Request_BadRequest",
                    &format!("Property '{other}' is not supported by this fake."),
                )
            }
        }
    }
    Reply::empty(204)
}

fn assign_licence(st: &mut State, i: usize, body: &Value) -> Reply {
    let adds = body["addLicenses"].as_array().cloned().unwrap_or_default();
    if body.get("removeLicenses").is_none() {
        return graph_error(
            400,
            "Request_BadRequest",
            "A value is required for property 'removeLicenses'.",
        );
    }
    if st.users[i].usage_location.is_none() {
        return graph_error(
            400,
            "Request_BadRequest",
            "License assignment cannot be done for user with invalid usage location.",
        );
    }
    for add in adds {
        let sku_id = add["skuId"].as_str().unwrap_or("").to_string();
        let Some(s) = st.config.skus.iter().position(|s| s.sku_id == sku_id) else {
            return graph_error(
                400,
                "Request_BadRequest",
                &format!("License {sku_id} does not correspond to a valid company License."),
            );
        };
        if st.users[i].licences.contains(&sku_id) {
            continue;
        }
        if st.config.skus[s].consumed >= st.config.skus[s].enabled {
            return graph_error(
                400,
                "Request_BadRequest",
                &format!("Subscription {sku_id} does not have any available licenses."),
            );
        }
        st.config.skus[s].consumed += 1;
        st.users[i].licences.push(sku_id);
        if st.config.skus[s].exchange && st.users[i].mailbox_in.is_none() {
            st.users[i].mailbox_in = Some(st.config.mailbox_polls);
            if st.config.mailbox_polls == 0 {
                let initial = st.config.initial_domain.clone();
                provision_addresses(&mut st.users[i], &initial);
            }
        }
    }
    let mut value = user_json(&st.users[i]);
    value["@odata.context"] = json!(context("users/$entity"));
    Reply::json(200, value)
}

fn mailbox_settings(st: &mut State, i: usize) -> Reply {
    let initial = st.config.initial_domain.clone();
    let user = &mut st.users[i];
    match user.mailbox_in {
        Some(0) => {
            provision_addresses(user, &initial);
            Reply::json(
                200,
                json!({
                    "@odata.context": context(&format!("users('{}')/mailboxSettings", user.id)),
                    "archiveFolder": "AAMkAGI2",
                    "timeZone": "UTC",
                    "dateFormat": "dd/MM/yyyy",
                    "timeFormat": "HH:mm",
                    "userPurpose": "user",
                }),
            )
        }
        Some(n) => {
            user.mailbox_in = Some(n - 1);
            graph_error(
                404,
                "MailboxNotEnabledForRESTAPI",
                "The mailbox is either inactive, soft-deleted, or is hosted on-premise.",
            )
        }
        None => graph_error(
            404,
            "MailboxNotEnabledForRESTAPI",
            "The mailbox is either inactive, soft-deleted, or is hosted on-premise.",
        ),
    }
}

/// JSON batching: each request answered on its own, in any order (here: reversed, as
/// Graph promises no order).
fn batch(st: &mut State, body: &Value) -> Reply {
    let requests = body["requests"].as_array().cloned().unwrap_or_default();
    if requests.is_empty() || requests.len() > 20 {
        return graph_error(400, "BadRequest", "Invalid batch payload format.");
    }
    let mut responses = Vec::new();
    for r in requests.iter().rev() {
        let id = r["id"].as_str().unwrap_or("").to_string();
        let method = r["method"].as_str().unwrap_or("GET").to_string();
        let url = r["url"].as_str().unwrap_or("").to_string();
        let inner_body = r.get("body").map(Value::to_string).unwrap_or_default();
        let reply = graph(st, &method, &url, &inner_body);
        let headers: BTreeMap<String, String> = reply
            .headers
            .iter()
            .cloned()
            .chain(std::iter::once((
                "Content-Type".to_string(),
                "application/json".to_string(),
            )))
            .collect();
        responses.push(json!({
            "id": id,
            "status": reply.status,
            "headers": headers,
            "body": reply.body.unwrap_or(Value::Null),
        }));
    }
    Reply::json(200, json!({ "responses": responses }))
}
