//! Semantic checks: what the schema cannot say. They read the YAML tree, not the typed
//! model, so they still run (and report) when another part of the plan is structurally
//! broken; checks that need the step graph run once the whole plan deserializes.

use std::collections::HashMap;
use std::path::Path;

use super::diagnostic::{did_you_mean, list_names, PlanDiagnostic};
use super::yaml::{ByteSpan, Node, Value};
use crate::graph::{EdgeOrigin, GraphProblem, RefSite, StepGraph};
use crate::plan::model::Plan;

pub const UNSUPPORTED_VERSION: &str = "cutover::plan::unsupported-version";
pub const INVALID_NAME: &str = "cutover::plan::invalid-name";
pub const INVALID_DOMAIN: &str = "cutover::plan::invalid-domain";
pub const INVALID_EMAIL: &str = "cutover::plan::invalid-email";
pub const EMAIL_OUTSIDE_DOMAINS: &str = "cutover::plan::email-outside-domains";
pub const DUPLICATE_USER: &str = "cutover::plan::duplicate-user";
pub const DUPLICATE_SOURCE: &str = "cutover::plan::duplicate-source";
pub const DUPLICATE_STEP: &str = "cutover::plan::duplicate-step";
pub const UNKNOWN_SOURCE: &str = "cutover::plan::unknown-source";
pub const UNKNOWN_USER: &str = "cutover::plan::unknown-user";
pub const UNKNOWN_STEP: &str = "cutover::plan::unknown-step";
pub const INLINE_SECRET: &str = "cutover::plan::inline-secret";
pub const PLAINTEXT: &str = "cutover::plan::plaintext-without-opt-in";
pub const INVALID_HOST: &str = "cutover::plan::invalid-host";
pub const INVALID_PORT: &str = "cutover::plan::invalid-port";
pub const INVALID_GLOB: &str = "cutover::plan::invalid-glob";
pub const INVALID_DATE: &str = "cutover::plan::invalid-date";
pub const INVALID_DURATION: &str = "cutover::plan::invalid-duration";
pub const MISSING_FILE: &str = "cutover::plan::missing-file";
pub const MISSING_SETTING: &str = "cutover::plan::missing-setting";
pub const DEPENDENCY_CYCLE: &str = "cutover::plan::dependency-cycle";
pub const CONNECTION_LIMIT: &str = "cutover::plan::connection-limit";
pub const INVALID_URL: &str = "cutover::plan::invalid-url";
pub const INVALID_COUNTRY: &str = "cutover::plan::invalid-country";
pub const SPF_LOOKUP_LIMIT: &str = "cutover::plan::spf-lookup-limit";
pub const UNKNOWN_DOMAIN: &str = "cutover::plan::unknown-domain";
pub const DNS_RECORD: &str = "cutover::plan::dns-record";
pub const OUTSIDE_PLAN_FOLDER: &str = "cutover::plan::outside-plan-folder";

/// Options that change what validation accepts.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Inline literal secrets are warnings instead of errors.
    pub allow_inline_secrets: bool,
}

/// Checks of a plan's meaning, on its tree. `base_dir` resolves relative file paths.
/// Inline secrets are found by the schema walk and reported through [`inline_secret`].
pub fn check_tree(root: &Node, base_dir: &Path, out: &mut Vec<PlanDiagnostic>) {
    let mut checker = TreeChecker { base_dir, out };
    checker.run(root);
}

struct TreeChecker<'a> {
    base_dir: &'a Path,
    out: &'a mut Vec<PlanDiagnostic>,
}

impl TreeChecker<'_> {
    fn run(&mut self, root: &Node) {
        if let Some(version) = root.get("version") {
            if let Value::Int(v) = version.value {
                if v != 1 {
                    self.out.push(
                        PlanDiagnostic::error(UNSUPPORTED_VERSION, format!("plan version {v} is not supported"))
                            .label(version.span.clone(), "this cutover reads version 1")
                            .help("set `version: 1`, or upgrade cutover if the plan was written for a newer one"),
                    );
                }
            }
        }
        if let Some(name) = root.get("name") {
            if let Some(text) = name.as_str() {
                self.check_identifier(name, text, "plan name", "it names the state file: use letters, digits, `-` and `_`, e.g. `acme-to-m365`");
            }
        }
        let mut domains: Vec<String> = Vec::new();
        if let Some(domain) = root.get("domain") {
            if let Some(text) = domain.as_str() {
                if self.check_domain(domain, text) {
                    domains.push(text.to_ascii_lowercase());
                }
            }
        }
        for extra in seq(root.get("extra_domains")) {
            if let Some(text) = extra.as_str() {
                if self.check_domain(extra, text) {
                    domains.push(text.to_ascii_lowercase());
                }
            }
        }

        let mut source_kinds: HashMap<String, String> = HashMap::new();
        if let Some(sources) = root.get("sources").and_then(Node::as_map) {
            for (i, entry) in sources.iter().enumerate() {
                let id = entry.key.scalar_text();
                if let Some(first) = sources[..i].iter().find(|e| e.key.scalar_text() == id) {
                    self.out.push(
                        PlanDiagnostic::error(
                            DUPLICATE_SOURCE,
                            format!("source `{id}` is defined twice"),
                        )
                        .label(entry.key.span.clone(), "second definition")
                        .label(first.key.span.clone(), "first defined here")
                        .help("give each source its own id"),
                    );
                    continue;
                }
                self.check_identifier(
                    &entry.key,
                    &id,
                    "source id",
                    "source ids become part of step ids: use letters, digits, `-` and `_`",
                );
                let kind = entry
                    .value
                    .get("kind")
                    .and_then(Node::as_str)
                    .unwrap_or("")
                    .to_string();
                if matches!(kind.as_str(), "imap" | "pop3") {
                    self.check_server(&entry.value);
                }
                let kind = if kind == "pst" {
                    self.check_pst_source(&entry.value)
                } else {
                    kind
                };
                source_kinds.insert(id, kind);
            }
        }
        if let Some(target) = root.get("target") {
            match target.get("kind").and_then(Node::as_str) {
                Some("imap") => {
                    self.check_server(target);
                    if let Some(sources) = root.get("sources").and_then(Node::as_map) {
                        for entry in sources {
                            self.check_shared_server(target, &entry.value);
                        }
                    }
                }
                Some("m365") => {
                    if let Some(imap) = target.get("imap") {
                        self.check_server_parts(imap, true);
                        self.check_m365_plaintext(imap);
                    }
                    if let Some(initial) = target.get("initial_domain") {
                        if let Some(text) = initial.as_str() {
                            if !text.to_ascii_lowercase().ends_with(".onmicrosoft.com") {
                                self.out.push(
                                    PlanDiagnostic::error(INVALID_DOMAIN, format!("`{text}` is not an onmicrosoft.com domain"))
                                        .label(initial.span.clone(), "expected `<tenant>.onmicrosoft.com`")
                                        .help("the initial domain is the one Microsoft created with the tenant, e.g. `acme.onmicrosoft.com`"),
                                );
                            }
                        }
                    }
                    if let Some(endpoint) = target.get("auth").and_then(|a| a.get("token_endpoint"))
                    {
                        self.check_url(
                            endpoint,
                            "the token endpoint",
                            "the client secret and tokens travel to this URL",
                        );
                    }
                    if let Some(endpoint) = target.get("graph").and_then(|g| g.get("endpoint")) {
                        self.check_url(
                            endpoint,
                            "the Microsoft Graph endpoint",
                            "the app's tokens travel to this URL",
                        );
                        self.check_service_root(endpoint);
                    }
                    if let Some(location) = target.get("usage_location") {
                        self.check_country(location);
                    }
                }
                _ => {}
            }
        }
        let target_kind = root
            .get("target")
            .and_then(|t| t.get("kind"))
            .and_then(Node::as_str);
        let target_needs_login = target_kind == Some("imap")
            && root
                .get("target")
                .and_then(|t| t.get("auth"))
                .and_then(Node::as_str)
                .unwrap_or("password")
                == "password";

        let m365_location = root
            .get("target")
            .filter(|_| target_kind == Some("m365"))
            .map(|t| t.get("usage_location").is_some());
        let mut seen_addresses: HashMap<String, ByteSpan> = HashMap::new();
        for user in seq(root.get("users")) {
            if let Some(location) = user.get("usage_location") {
                self.check_country(location);
            }
            if let (Some(false), Some(licence)) = (m365_location, user.get("licence")) {
                // A licence of the wrong type is reported as such, not twice.
                if licence.as_str().is_some() && user.get("usage_location").is_none() {
                    self.out.push(
                        PlanDiagnostic::error(MISSING_SETTING, "a licence needs a usage location")
                            .label(licence.span.clone(), "no `usage_location` for this user")
                            .help("Microsoft 365 assigns licences only to users with a usage location: set `usage_location: GB` (the ISO 3166-1 country code) on the target, or on this user"),
                    );
                }
            }
            if let Some(email) = user.get("email") {
                self.check_address(email, &domains, &mut seen_addresses, "user");
            }
            for alias in seq(user.get("aliases")) {
                self.check_address(alias, &domains, &mut seen_addresses, "alias");
            }
            if target_needs_login && user.as_map().is_some() && user.get("target_login").is_none() {
                let anchor = user
                    .as_map()
                    .and_then(|m| m.first())
                    .map_or(user.span.clone(), |e| e.key.span.clone());
                self.out.push(
                    PlanDiagnostic::error(MISSING_SETTING, "this user needs `target_login` for the IMAP target")
                        .label(anchor, "no target credentials")
                        .help("add `target_login: { login: …, password: { env: … } }`, or use `auth: xoauth2` on the target"),
                );
            }
            for migration in seq(user.get("migrate")) {
                self.check_migration(migration, &source_kinds);
            }
            if let Some(autocomplete) = user.get("autocomplete") {
                for file in seq(autocomplete.get("files")) {
                    self.check_file(file, "autocomplete cache");
                }
                if let Some(map) = autocomplete.get("address_map") {
                    self.check_file(map, "address map");
                }
            }
        }
        if let Some(dns) = root.get("dns") {
            self.check_dns(dns);
            self.check_dns_domains(root, dns);
        }
        self.check_secret_files(root);
    }

    /// `{ file: path }` secret references anywhere in the plan (a mapping whose only key is
    /// `file`): each is read and sent to a server, so one outside the plan's folder is named.
    fn check_secret_files(&mut self, node: &Node) {
        if let Some(map) = node.as_map() {
            if let [only] = map {
                if only.key.scalar_text() == "file" {
                    self.check_inside(&only.value, "secret file");
                    return;
                }
            }
            for entry in map {
                self.check_secret_files(&entry.value);
            }
        } else if let Some(items) = node.as_seq() {
            for item in items {
                self.check_secret_files(item);
            }
        }
    }

    /// A file the plan reads that lies outside the plan's folder (absolute, climbing out with
    /// `..`, or a symbolic link leading out): worth a look before running a plan from someone
    /// else, since its content may be sent to the plan's servers.
    fn check_inside(&mut self, node: &Node, what: &str) {
        let Some(text) = node.as_str() else { return };
        if leaves_folder(self.base_dir, Path::new(text)) {
            self.out.push(
                PlanDiagnostic::warning(
                    OUTSIDE_PLAN_FOLDER,
                    format!("{what} `{text}` is outside the plan's folder"),
                )
                .label(node.span.clone(), "read from outside the plan's folder")
                .help(format!(
                    "fine for a secret or CA file kept elsewhere on purpose; in a plan from someone else, check what it reads before running `plan` or `apply` (the plan's folder is {})",
                    display_dir(self.base_dir)
                )),
            );
        }
    }

    /// A URL credentials are sent to: https, or plain http to loopback only
    /// ([`crate::connectors::http::checked_url`], the rule the clients apply).
    fn check_url(&mut self, node: &Node, what: &str, why: &str) {
        use crate::connectors::http::{checked_url, UrlRefused};
        let Some(url) = node.as_str() else { return };
        let diagnostic = match checked_url(url) {
            Ok(_) => return,
            Err(UrlRefused::NotTls { .. }) => {
                PlanDiagnostic::error(PLAINTEXT, format!("{what} must use https"))
                    .label(
                        node.span.clone(),
                        "plain http to a host that is not loopback",
                    )
                    .help(format!(
                "{why}; only a loopback address (127.0.0.1, [::1], localhost) may use plain http"
            ))
            }
            Err(e) => PlanDiagnostic::error(INVALID_URL, format!("{what} is not usable: {e}"))
                .label(node.span.clone(), "not a usable https URL")
                .help(format!("write the full URL, e.g. `https://…`; {why}")),
        };
        self.out.push(diagnostic);
    }

    /// Graph's endpoint is the service root: cutover adds `/v1.0/…` itself.
    fn check_service_root(&mut self, node: &Node) {
        let Some(uri) = node
            .as_str()
            .and_then(|u| crate::connectors::http::checked_url(u).ok())
        else {
            return;
        };
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            self.out.push(
                PlanDiagnostic::error(
                    INVALID_URL,
                    "the Microsoft Graph endpoint must be the service root",
                )
                .label(node.span.clone(), format!("has a path: `{}`", uri.path()))
                .help(
                    "give the root only, e.g. `https://graph.microsoft.us`; cutover adds `/v1.0/…`",
                ),
            );
        }
    }

    fn check_country(&mut self, node: &Node) {
        let Some(code) = node.as_str() else { return };
        if super::countries::is_assigned(code) {
            return;
        }
        let help = match super::countries::suggestion(code) {
            Some(meant) => format!("did you mean `{meant}`? Microsoft 365 takes ISO 3166-1 alpha-2 codes in upper case"),
            None => "use an ISO 3166-1 alpha-2 country code in upper case, e.g. `GB`, `US`, `DE`".into(),
        };
        self.out.push(
            PlanDiagnostic::error(
                INVALID_COUNTRY,
                format!("`{code}` is not an ISO 3166-1 country code"),
            )
            .label(node.span.clone(), "not an assigned two-letter country code")
            .help(help),
        );
    }

    fn check_identifier(&mut self, node: &Node, text: &str, what: &str, help: &str) {
        let ok = !text.is_empty()
            && text.len() <= 64
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            && text
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric());
        if !ok {
            self.out.push(
                PlanDiagnostic::error(INVALID_NAME, format!("`{text}` is not a valid {what}"))
                    .label(node.span.clone(), "letters, digits, `-` and `_` only")
                    .help(help.to_string()),
            );
        }
    }

    fn check_domain(&mut self, node: &Node, text: &str) -> bool {
        if is_hostname(text) && text.contains('.') {
            return true;
        }
        self.out.push(
            PlanDiagnostic::error(INVALID_DOMAIN, format!("`{text}` is not a valid domain"))
                .label(node.span.clone(), "expected a domain such as `acme.co.uk`")
                .help("write the bare domain: no `@`, no scheme, no trailing dot"),
        );
        false
    }

    fn check_address(
        &mut self,
        node: &Node,
        domains: &[String],
        seen: &mut HashMap<String, ByteSpan>,
        what: &str,
    ) {
        let Some(text) = node.as_str() else { return };
        let Some((local, domain)) = split_email(text) else {
            self.out.push(
                PlanDiagnostic::error(
                    INVALID_EMAIL,
                    format!("`{text}` is not a valid email address"),
                )
                .label(node.span.clone(), "expected `name@domain`")
                .help("write the full address, e.g. `alice@acme.co.uk`"),
            );
            return;
        };
        let _ = local;
        let lower = text.to_ascii_lowercase();
        if let Some(first) = seen.get(&lower) {
            self.out.push(
                PlanDiagnostic::error(
                    DUPLICATE_USER,
                    format!("`{text}` appears twice among the plan's addresses"),
                )
                .label(node.span.clone(), format!("duplicate {what}"))
                .label(first.clone(), "first used here")
                .help("each address belongs to one mailbox; remove or merge the duplicate"),
            );
        } else {
            seen.insert(lower, node.span.clone());
        }
        if !domains.is_empty() && !domains.iter().any(|d| d.eq_ignore_ascii_case(domain)) {
            self.out.push(
                PlanDiagnostic::error(EMAIL_OUTSIDE_DOMAINS, format!("`{text}` is outside the plan's domains"))
                    .label(node.span.clone(), format!("`{domain}` is not the plan's domain"))
                    .help(format!(
                        "the plan's domains are {}; add `{domain}` to `extra_domains` if the client owns it",
                        list_names(domains.iter().map(String::as_str))
                    )),
            );
        }
    }

    /// A copy from an IMAP source into an IMAP target on the same server holds a connection
    /// to each side at once, so `max_connections: 1` there cannot be honoured: cutover takes
    /// two rather than stall. Say so before the run.
    fn check_shared_server(&mut self, target: &Node, source: &Node) {
        if source.get("kind").and_then(Node::as_str) != Some("imap") {
            return;
        }
        let address = |server: &Node| {
            let host = server.get("host")?.as_str()?.to_ascii_lowercase();
            let port = match server.get("port").map(|p| &p.value) {
                Some(Value::Int(p)) => *p,
                _ if server
                    .get("tls")
                    .and_then(Node::as_str)
                    .unwrap_or("implicit")
                    == "implicit" =>
                {
                    993
                }
                _ => 143,
            };
            Some((host, port))
        };
        if address(target).is_none() || address(target) != address(source) {
            return;
        }
        for side in [target, source] {
            if let Some(limit) = side
                .get("max_connections")
                .filter(|n| n.value == Value::Int(1))
            {
                self.out.push(
                    PlanDiagnostic::warning(
                        CONNECTION_LIMIT,
                        "source and target are the same server: a copy needs two connections",
                    )
                    .label(limit.span.clone(), "one connection cannot serve both sides")
                    .help(
                        "set `max_connections: 2` or more on both; with 1, cutover still opens two",
                    ),
                );
            }
        }
    }

    /// The m365 target's IMAP in plaintext carries the app's token: a local stand-in only.
    fn check_m365_plaintext(&mut self, imap: &Node) {
        let Some(tls) = imap.get("tls").filter(|t| t.as_str() == Some("none")) else {
            return;
        };
        // Without the opt-in, the plaintext check already says so.
        if !imap
            .get("allow_plaintext")
            .is_some_and(|a| a.value == Value::Bool(true))
        {
            return;
        }
        let host = imap
            .get("host")
            .and_then(Node::as_str)
            .unwrap_or("outlook.office365.com");
        let loopback = host.eq_ignore_ascii_case("localhost")
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.to_canonical().is_loopback());
        if !loopback {
            self.out.push(
                PlanDiagnostic::error(PLAINTEXT, "the m365 target's IMAP in plaintext carries the app's access token")
                    .label(tls.span.clone(), "plaintext to a host that is not this machine")
                    .help("`tls: none` is for a local stand-in only (127.0.0.1, ::1, localhost); use `tls: implicit` or `tls: starttls`"),
            );
        }
    }

    fn check_server(&mut self, server: &Node) {
        self.check_server_parts(server, true);
    }

    /// Host, port, `tls: none` opt-in (when the entry has `allow_plaintext`) and CA file of a
    /// server entry.
    fn check_server_parts(&mut self, server: &Node, plaintext_opt_in: bool) {
        if let Some(host) = server.get("host") {
            if let Some(text) = host.as_str() {
                if !is_hostname(text) && text.parse::<std::net::IpAddr>().is_err() {
                    self.out.push(
                        PlanDiagnostic::error(
                            INVALID_HOST,
                            format!("`{text}` is not a valid host name"),
                        )
                        .label(host.span.clone(), "expected a host name or IP address")
                        .help(
                            "write only the host, e.g. `imap.ionos.co.uk`: no scheme, port or path",
                        ),
                    );
                }
            }
        }
        if let Some(port) = server.get("port") {
            if port.value == Value::Int(0) {
                self.out.push(
                    PlanDiagnostic::error(INVALID_PORT, "port 0 is not a valid port")
                        .label(port.span.clone(), "expected 1 to 65535")
                        .help("omit `port` to use the protocol's default"),
                );
            }
        }
        if let Some(tls) = server.entry("tls").filter(|_| plaintext_opt_in) {
            let plaintext_allowed = server
                .get("allow_plaintext")
                .is_some_and(|a| a.value == Value::Bool(true));
            if tls.value.as_str() == Some("none") && !plaintext_allowed {
                self.out.push(
                    PlanDiagnostic::error(PLAINTEXT, "`tls: none` sends passwords and mail unencrypted")
                        .label(tls.value.span.clone(), "plaintext connection")
                        .help("use `tls: implicit` or `tls: starttls`; if this really is a closed network, add `allow_plaintext: true`"),
                );
            }
        }
        if let Some(ca) = server.get("ca_file") {
            self.check_file(ca, "CA file");
        }
    }

    /// A `pst` source: `via: import-service` needs its SAS URL, and the upload settings mean
    /// nothing to `via: direct`. Returns the kind [`Self::check_migration`] goes by: `pst`,
    /// or `pst-import` for the import service.
    fn check_pst_source(&mut self, source: &Node) -> String {
        const UPLOAD_ONLY: [&str; 5] = [
            "sas_url",
            "upload_concurrency",
            "block_mib",
            "max_upload_mbps",
            "code_page",
        ];
        let via = source.entry("via");
        if via.is_some_and(|v| v.value.as_str() == Some("import-service")) {
            if source.get("sas_url").is_none() {
                let anchor = via.map_or(source.span.clone(), |v| v.value.span.clone());
                self.out.push(
                    PlanDiagnostic::error(MISSING_SETTING, "`via: import-service` needs `sas_url`")
                        .label(anchor, "upload to where?")
                        .help("add `sas_url: { env: VAR }` with the network-upload SAS URL from the Purview portal (Import → New import job → Upload your data)"),
                );
            }
            return "pst-import".into();
        }
        for field in UPLOAD_ONLY {
            if let Some(entry) = source.entry(field) {
                self.out.push(
                    PlanDiagnostic::error(
                        MISSING_SETTING,
                        format!("`{field}` is only for `via: import-service`"),
                    )
                    .label(entry.key.span.clone(), "not used when cutover reads the PST itself")
                    .help("remove it, or set `via: import-service` to upload the PST to Microsoft's import service"),
                );
            }
        }
        "pst".into()
    }

    fn check_migration(&mut self, migration: &Node, source_kinds: &HashMap<String, String>) {
        let from = migration.get("from");
        let kind = from
            .and_then(Node::as_str)
            .and_then(|id| source_kinds.get(id))
            .map(String::as_str);
        if let Some(from) = from {
            if let Some(id) = from.as_str() {
                if !source_kinds.contains_key(id) {
                    let mut known: Vec<&str> = source_kinds.keys().map(String::as_str).collect();
                    known.sort_unstable();
                    let help = match did_you_mean(id, known.iter().copied()) {
                        Some(s) => format!(
                            "did you mean `{s}`? Sources: {}",
                            list_names(known.iter().copied())
                        ),
                        None => format!(
                            "sources defined in `sources:`: {}",
                            list_names(known.iter().copied())
                        ),
                    };
                    self.out.push(
                        PlanDiagnostic::error(UNKNOWN_SOURCE, format!("unknown source `{id}`"))
                            .label(from.span.clone(), "no such source")
                            .help(help),
                    );
                }
            }
        }
        if let Some(name) = migration.get("name") {
            if let Some(text) = name.as_str() {
                self.check_identifier(
                    name,
                    text,
                    "migration name",
                    "the name becomes part of the step id: use letters, digits, `-` and `_`",
                );
            }
        }
        let anchor = from.map_or(migration.span.clone(), |f| f.span.clone());
        match kind {
            Some("imap" | "pop3") => {
                if migration.get("login").is_none() {
                    self.out.push(
                        PlanDiagnostic::error(
                            MISSING_SETTING,
                            "a mail server source needs `login`",
                        )
                        .label(anchor.clone(), "no `login` for this source")
                        .help("add `login:` with the account's user name at the old host"),
                    );
                }
                if migration.get("file").is_some() {
                    self.out.push(
                        PlanDiagnostic::error(
                            MISSING_SETTING,
                            "`file` is only for file sources (pst, mbox, maildir)",
                        )
                        .label(
                            migration
                                .entry("file")
                                .map_or(anchor.clone(), |e| e.key.span.clone()),
                            "not used by a server source",
                        )
                        .help("remove `file:` or point `from:` at a file source"),
                    );
                }
            }
            Some("pst" | "pst-import" | "mbox" | "maildir") => match migration.get("file") {
                None => self.out.push(
                    PlanDiagnostic::error(MISSING_SETTING, "a file source needs `file`")
                        .label(anchor.clone(), "which file?")
                        .help("add `file:` with the path, relative to the plan file"),
                ),
                Some(file) => self.check_file(file, "mail file"),
            },
            _ => {}
        }
        if kind != Some("pst-import") {
            if let Some(archive) = migration
                .entry("archive_mailbox")
                .filter(|e| e.value.value == Value::Bool(true))
            {
                self.out.push(
                    PlanDiagnostic::error(
                        MISSING_SETTING,
                        "`archive_mailbox` is only for a PST uploaded to the import service",
                    )
                    .label(archive.key.span.clone(), "cutover cannot copy into an archive mailbox itself")
                    .help("use a `kind: pst, via: import-service` source, or remove `archive_mailbox`"),
                );
            }
        }
        if let Some(folders) = migration.get("folders") {
            for list in ["include", "exclude"] {
                for glob in seq(folders.get(list)) {
                    if let Some(text) = glob.as_str() {
                        if let Err(e) = globset::GlobBuilder::new(text)
                            .literal_separator(true)
                            .build()
                        {
                            self.out.push(
                                PlanDiagnostic::error(INVALID_GLOB, format!("`{text}` is not a valid folder glob"))
                                    .label(glob.span.clone(), e.kind().to_string())
                                    .help("globs use `*` within a folder level, `**` across levels, `?` and `[abc]`"),
                            );
                        }
                    }
                }
            }
        }
        let mut window: Vec<(&str, chrono_free::Date)> = Vec::new();
        for field in ["since", "before"] {
            if let Some(node) = migration.get(field) {
                if let Some(text) = node.as_str() {
                    match chrono_free::Date::parse(text) {
                        Some(date) => window.push((field, date)),
                        None => self.out.push(
                            PlanDiagnostic::error(INVALID_DATE, format!("`{text}` is not a date"))
                                .label(node.span.clone(), "expected YYYY-MM-DD")
                                .help(format!(
                                    "write `{field}` as a calendar date, e.g. `2024-01-31`"
                                )),
                        ),
                    }
                }
            }
        }
        if let [("since", since), ("before", before)] = window.as_slice() {
            if since >= before {
                if let Some(node) = migration.get("before") {
                    self.out.push(
                        PlanDiagnostic::error(
                            INVALID_DATE,
                            "`before` is not after `since`: the window is empty",
                        )
                        .label(node.span.clone(), "must be later than `since`")
                        .help("swap the dates or widen the window"),
                    );
                }
            }
        }
    }

    fn check_file(&mut self, node: &Node, what: &str) {
        let Some(text) = node.as_str() else { return };
        let path = self.base_dir.join(text);
        if path.exists() {
            self.check_inside(node, what);
        } else {
            self.out.push(
                PlanDiagnostic::error(MISSING_FILE, format!("{what} `{text}` does not exist"))
                    .label(node.span.clone(), "file not found")
                    .help(format!(
                        "paths are relative to the plan file's folder ({})",
                        display_dir(self.base_dir)
                    )),
            );
        }
    }

    fn check_dns(&mut self, dns: &Node) {
        if let Some(provider) = dns.entry("provider") {
            if provider.value.as_str() == Some("rfc2136") && dns.get("rfc2136").is_none() {
                self.out.push(
                    PlanDiagnostic::error(MISSING_SETTING, "`provider: rfc2136` needs an `rfc2136:` server")
                        .label(provider.value.span.clone(), "which server?")
                        .help("add `rfc2136: { server: ns1.example.net, tsig: { name: …, secret: { env: … } } }`"),
                );
            }
        }
        if let Some(server) = dns.get("rfc2136").and_then(|r| r.get("server")) {
            if let Some(text) = server.as_str() {
                if !is_hostname(text) && text.parse::<std::net::IpAddr>().is_err() {
                    self.out.push(
                        PlanDiagnostic::error(
                            INVALID_HOST,
                            format!("`{text}` is not a valid host name"),
                        )
                        .label(server.span.clone(), "expected a host name or IP address")
                        .help("write only the server's name or address"),
                    );
                }
            }
        }
        for record in seq(dns.get("records")) {
            let is_mx = record.get("type").and_then(Node::as_str) == Some("MX");
            if is_mx && record.get("priority").is_none() {
                let anchor = record
                    .entry("type")
                    .map_or(record.span.clone(), |e| e.value.span.clone());
                self.out.push(
                    PlanDiagnostic::error(MISSING_SETTING, "an MX record needs `priority`")
                        .label(anchor, "MX without priority")
                        .help("add `priority: 0` (Microsoft 365 publishes 0)"),
                );
            }
        }
        if let Some(ahead) = dns.get("lower_ttl").and_then(|l| l.get("ahead")) {
            if let Some(text) = ahead.as_str() {
                if parse_duration(text).is_none() {
                    self.out.push(
                        PlanDiagnostic::error(
                            INVALID_DURATION,
                            format!("`{text}` is not a duration"),
                        )
                        .label(ahead.span.clone(), "expected e.g. `24h`, `90m`, `2d`")
                        .help(
                            "a number followed by s, m, h or d; at least the records' current TTL",
                        ),
                    );
                }
            }
        }
    }
}

impl TreeChecker<'_> {
    /// The DNS settings that name domains, servers and record values: each must be one the
    /// cutover can act on, before anything reaches a zone.
    fn check_dns_domains(&mut self, root: &Node, dns: &Node) {
        let mut domains: Vec<String> = root
            .get("domain")
            .and_then(Node::as_str)
            .map(|d| d.to_ascii_lowercase())
            .into_iter()
            .collect();
        domains.extend(
            seq(root.get("extra_domains"))
                .filter_map(Node::as_str)
                .map(str::to_ascii_lowercase),
        );
        let unknown = |out: &mut Vec<PlanDiagnostic>, node: &Node, text: &str| {
            if !domains.iter().any(|d| d.eq_ignore_ascii_case(text)) {
                out.push(
                    PlanDiagnostic::error(
                        UNKNOWN_DOMAIN,
                        format!("`{text}` is not one of the plan's domains"),
                    )
                    .label(node.span.clone(), "unknown domain")
                    .help(format!(
                        "the plan's domains are {}; add it to `extra_domains` if the client owns it",
                        list_names(domains.iter().map(String::as_str))
                    )),
                );
            }
        };
        for entry in dns
            .get("domains")
            .and_then(Node::as_map)
            .unwrap_or_default()
        {
            if let Some(name) = entry.key.as_str() {
                unknown(self.out, &entry.key, name);
            }
            if let Some(verification) = entry.value.get("verification") {
                if let Some(text) = verification.as_str() {
                    if !text.starts_with("MS=") {
                        self.out.push(
                            PlanDiagnostic::warning(
                                DNS_RECORD,
                                format!("`{text}` does not look like a Microsoft 365 verification value"),
                            )
                            .label(verification.span.clone(), "expected `MS=ms…`")
                            .help("copy the TXT value the Microsoft 365 admin centre shows for the domain"),
                        );
                    }
                }
            }
        }
        for record in seq(dns.get("records")) {
            if let Some(domain) = record.get("domain") {
                if let Some(text) = domain.as_str() {
                    unknown(self.out, domain, text);
                }
            }
            let (Some(kind), Some(value)) = (
                record.get("type").and_then(Node::as_str),
                record.get("value"),
            ) else {
                continue;
            };
            let Some(text) = value.as_str() else { continue };
            if kind == "TXT" && crate::connectors::dns::spf::is_spf(text) {
                let lookups = crate::connectors::dns::spf::lookup_terms(text);
                if lookups > crate::connectors::dns::spf::LOOKUP_LIMIT {
                    self.out.push(
                        PlanDiagnostic::warning(
                            SPF_LOOKUP_LIMIT,
                            format!(
                                "this SPF record needs {lookups} DNS lookups, past RFC 7208's limit of 10"
                            ),
                        )
                        .label(value.span.clone(), "receivers fail the SPF check")
                        .help("drop senders the client no longer uses, or flatten includes into ip4:/ip6: ranges"),
                    );
                }
            }
            if matches!(kind, "A" | "AAAA") {
                let ok = match text.trim().parse::<std::net::IpAddr>() {
                    Ok(std::net::IpAddr::V4(_)) => kind == "A",
                    Ok(std::net::IpAddr::V6(_)) => kind == "AAAA",
                    Err(_) => false,
                };
                if !ok {
                    self.out.push(
                        PlanDiagnostic::error(
                            DNS_RECORD,
                            format!(
                                "`{text}` is not an {} address",
                                if kind == "A" { "IPv4" } else { "IPv6" }
                            ),
                        )
                        .label(value.span.clone(), "not an address of this record type"),
                    );
                }
            }
        }
        for server in seq(dns.get("nameservers")) {
            let Some(text) = server.as_str() else {
                continue;
            };
            let host = match text.parse::<std::net::SocketAddr>() {
                Ok(_) => continue,
                Err(_) => match text.rsplit_once(':') {
                    Some((host, port)) if port.parse::<u16>().is_ok() => host,
                    _ => text,
                },
            };
            if !is_hostname(host) && host.parse::<std::net::IpAddr>().is_err() {
                self.out.push(
                    PlanDiagnostic::error(INVALID_HOST, format!("`{text}` is not a name server"))
                        .label(
                            server.span.clone(),
                            "expected `host`, `host:port` or an address",
                        )
                        .help("e.g. `ns1.ionos.co.uk`, `192.0.2.53:5353` or `[2001:db8::53]:53`"),
                );
            }
        }
        if let Some(timeout) = dns.get("propagation_timeout") {
            if let Some(text) = timeout.as_str() {
                if parse_duration(text).is_none() {
                    self.out.push(
                        PlanDiagnostic::error(
                            INVALID_DURATION,
                            format!("`{text}` is not a duration"),
                        )
                        .label(timeout.span.clone(), "expected e.g. `30m`, `2h`")
                        .help("a number followed by s, m, h or d"),
                    );
                }
            }
        }
    }
}

/// Inline secrets found by the schema walk become errors, or warnings when allowed.
pub fn inline_secret(span: ByteSpan, path: &str, options: Options) -> PlanDiagnostic {
    let message = format!("`{path}` holds a secret inline");
    let diagnostic = if options.allow_inline_secrets {
        PlanDiagnostic::warning(INLINE_SECRET, message)
    } else {
        PlanDiagnostic::error(INLINE_SECRET, message)
    };
    diagnostic
        .label(span, "literal secret (redacted)")
        .help("plans live in git: use `{ env: VAR }`, `{ file: path }` or `{ command: \"pass show …\" }`; `--allow-inline-secrets` demotes this to a warning")
}

/// Problems of the step graph, anchored on the plan text that caused them.
pub fn check_graph(plan: &Plan, root: &Node, out: &mut Vec<PlanDiagnostic>) -> StepGraph {
    let (graph, problems) = StepGraph::build(plan);
    for problem in problems {
        match problem {
            GraphProblem::DuplicateStep {
                id,
                user,
                migration,
            } => {
                let user_node = seq(root.get("users")).nth(user);
                let (span, help) = match migration {
                    Some(m) => (
                        user_node.and_then(|u| seq(u.get("migrate")).nth(m)).and_then(|m| m.get("from")).map(|n| n.span.clone()),
                        "give each entry from the same source its own `name:` (it becomes part of the step id)",
                    ),
                    None => {
                        let email = &plan.users[user].email;
                        if plan.users[..user].iter().any(|u| u.email.eq_ignore_ascii_case(email)) {
                            // Already reported as a duplicate user; one root cause, one message.
                            continue;
                        }
                        (
                        user_node.and_then(|u| u.get("email")).map(|n| n.span.clone()),
                        "step ids use the address's local part; two users share it — rename one mailbox or migrate them in separate plans",
                    )
                    }
                };
                let mut d = PlanDiagnostic::error(
                    DUPLICATE_STEP,
                    format!("two steps would both be `{id}`"),
                )
                .help(help);
                if let Some(span) = span {
                    d = d.label(span, "second step with this id");
                }
                out.push(d);
            }
            GraphProblem::UnknownStep { pattern, site } => {
                let span = site_span(root, &site);
                let users: Vec<String> = plan
                    .users
                    .iter()
                    .map(|u| crate::graph::user_slug(&u.email))
                    .collect();
                let named_user = pattern.split('.').nth(1).filter(|u| {
                    matches!(
                        pattern.split('.').next(),
                        Some("user" | "copy" | "delta" | "autocomplete" | "verify")
                    ) && !u.contains(['*', '?', '['])
                });
                let d = match named_user.filter(|u| !users.iter().any(|x| x == u)) {
                    Some(user) => PlanDiagnostic::error(
                        UNKNOWN_USER,
                        format!("`{pattern}` names unknown user `{user}`"),
                    )
                    .help(
                        match did_you_mean(user, users.iter().map(String::as_str)) {
                            Some(s) => format!(
                                "did you mean `{s}`? Users: {}",
                                list_names(users.iter().map(String::as_str))
                            ),
                            None => format!(
                                "users (by local part): {}",
                                list_names(users.iter().map(String::as_str))
                            ),
                        },
                    ),
                    None => {
                        let ids: Vec<&str> = graph.steps().map(|s| s.id.as_str()).collect();
                        let mut shown: Vec<&str> = ids.iter().copied().take(12).collect();
                        if ids.len() > shown.len() {
                            shown.push("…");
                        }
                        PlanDiagnostic::error(UNKNOWN_STEP, format!("`{pattern}` matches no step"))
                            .help(match did_you_mean(&pattern, ids.iter().copied()) {
                                Some(s) => {
                                    format!("did you mean `{s}`? Steps: {}", shown.join(", "))
                                }
                                None => format!(
                                    "steps: {} (`cutover graph` lists them all)",
                                    shown.join(", ")
                                ),
                            })
                    }
                };
                out.push(match span {
                    Some(span) => d.label(span, "no such step"),
                    None => d,
                });
            }
            GraphProblem::InvalidPattern {
                pattern,
                site,
                reason,
            } => {
                let mut d = PlanDiagnostic::error(
                    INVALID_GLOB,
                    format!("`{pattern}` is not a valid step pattern"),
                )
                .help("a step id, or a glob such as `copy.*`");
                if let Some(span) = site_span(root, &site) {
                    d = d.label(span, reason);
                }
                out.push(d);
            }
            GraphProblem::Cycle { path, origins } => {
                let mut d = PlanDiagnostic::error(
                    DEPENDENCY_CYCLE,
                    format!("dependency cycle: {}", path.join(" → ")),
                )
                .help("a step cannot wait for itself: remove one of the labelled edges");
                for (i, origin) in origins.iter().enumerate() {
                    let edge = format!("{} → {}", path[i], path[i + 1]);
                    let site = match origin {
                        EdgeOrigin::Runbook => None,
                        EdgeOrigin::PlanAfter { key, index } => Some(RefSite::AfterItem {
                            key: key.clone(),
                            index: *index,
                        }),
                        EdgeOrigin::GateBefore { gate, index } => Some(RefSite::GateBefore {
                            gate: gate.clone(),
                            index: *index,
                        }),
                        EdgeOrigin::GateAfter { gate, index } => Some(RefSite::GateAfter {
                            gate: gate.clone(),
                            index: *index,
                        }),
                    };
                    if let Some(span) = site.and_then(|s| site_span(root, &s)) {
                        d = d.label(span, edge);
                    }
                }
                out.push(d);
            }
        }
    }
    graph
}

fn site_span(root: &Node, site: &RefSite) -> Option<ByteSpan> {
    match site {
        RefSite::AfterKey { key } => root.get("after")?.entry(key).map(|e| e.key.span.clone()),
        RefSite::AfterItem { key, index } => seq(root.get("after")?.get(key))
            .nth(*index)
            .map(|n| n.span.clone()),
        RefSite::GateBefore { gate, index } => seq(root.get("manual")?.get(gate)?.get("before"))
            .nth(*index)
            .map(|n| n.span.clone()),
        RefSite::GateAfter { gate, index } => seq(root.get("manual")?.get(gate)?.get("after"))
            .nth(*index)
            .map(|n| n.span.clone()),
    }
}

fn seq(node: Option<&Node>) -> impl Iterator<Item = &Node> {
    node.and_then(Node::as_seq).unwrap_or_default().iter()
}

/// Whether `path` (relative to `base`, or absolute) names something outside `base`: lexically
/// (absolute, or `..` climbing above it) or, when both exist, once symbolic links are
/// followed.
pub fn leaves_folder(base: &Path, path: &Path) -> bool {
    use std::path::Component;
    let mut depth = 0usize;
    for component in path.components() {
        match component {
            Component::Prefix(_) | Component::RootDir => return true,
            Component::CurDir => {}
            Component::ParentDir if depth == 0 => return true,
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
        }
    }
    let base = if base.as_os_str().is_empty() {
        Path::new(".")
    } else {
        base
    };
    match (base.canonicalize(), base.join(path).canonicalize()) {
        (Ok(base), Ok(full)) => !full.starts_with(base),
        _ => false,
    }
}

fn display_dir(dir: &Path) -> String {
    let shown = dir.display().to_string();
    if shown.is_empty() {
        ".".to_string()
    } else {
        shown
    }
}

/// RFC 1123 host name (letters, digits, hyphens; labels of 1–63; 253 in all).
pub fn is_hostname(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 253
        && text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// `local@domain` with a plausible local part and a host-name domain.
///
/// The local part is an RFC 5321 dot-atom *without `/`*: local parts become folder names
/// and step ids, so nothing that could name another folder (`/`, `\`, `..`, a leading dot,
/// NUL or other control characters) is accepted. Quoted local parts are not accepted either.
pub fn split_email(text: &str) -> Option<(&str, &str)> {
    let (local, domain) = text.rsplit_once('@')?;
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-=?^_`{|}~.".contains(c));
    (local_ok && is_hostname(domain) && domain.contains('.')).then_some((local, domain))
}

/// `24h`, `90m`, `2d`, `30s` → seconds.
pub fn parse_duration(text: &str) -> Option<u64> {
    let text = text.trim();
    let unit_at = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(unit_at);
    let n: u64 = number.parse().ok()?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    n.checked_mul(scale)
}

/// Calendar dates without pulling in a date crate for one check.
pub mod chrono_free {
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
    pub struct Date {
        pub year: u16,
        pub month: u8,
        pub day: u8,
    }

    impl Date {
        /// Strict `YYYY-MM-DD` with a real day of the month.
        pub fn parse(text: &str) -> Option<Date> {
            let bytes = text.as_bytes();
            if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
                return None;
            }
            let year: u16 = text.get(0..4)?.parse().ok()?;
            let month: u8 = text.get(5..7)?.parse().ok()?;
            let day: u8 = text.get(8..10)?.parse().ok()?;
            let leap =
                (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400);
            let days = match month {
                1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
                4 | 6 | 9 | 11 => 30,
                2 if leap => 29,
                2 => 28,
                _ => return None,
            };
            (year >= 1970 && (1..=days).contains(&day)).then_some(Date { year, month, day })
        }
    }
}
