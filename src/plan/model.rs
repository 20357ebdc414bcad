//! The plan model, version 1. The JSON Schema in `schemas/plan.schema.json` is generated from
//! these types, so every field's doc comment is what an editor shows the consultant.

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A cutover plan: one mail migration, from legacy hosts to one target, kept in git.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "cutover plan")]
pub struct Plan {
    /// Plan format version. Only `1` exists.
    pub version: u32,
    /// Short name of this migration, e.g. `acme-to-m365`. Names the state file
    /// (`.cutover/<name>.db`) and the report. Letters, digits, `-` and `_`.
    pub name: String,
    /// The client's primary mail domain, e.g. `acme.co.uk`. Every user's address must be in
    /// this domain or one of `extra_domains`.
    pub domain: String,
    /// Further domains the client receives mail for (accepted domains at the target).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_domains: Vec<String>,
    /// Where mail is migrated to.
    pub target: Target,
    /// The legacy mail sources, by id. Users' `migrate:` entries refer to these ids.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sources: BTreeMap<String, Source>,
    /// The mailboxes to migrate, one entry per person or shared mailbox.
    pub users: Vec<User>,
    /// The DNS cutover: records to point at the target, and TTL lowering ahead of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<Dns>,
    /// Human gates, by id (step `manual.<id>`): the walk stops there until someone runs
    /// `cutover approve manual.<id>`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub manual: BTreeMap<String, ManualGate>,
    /// Extra ordering: each key is a step id (or glob) that must wait for the listed steps
    /// (ids or globs), e.g. `dns.cutover: [manual.client-sign-off]`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub after: BTreeMap<String, Vec<String>>,
    /// Run settings: parallelism, retries, size limits, where outputs go.
    #[serde(default)]
    pub settings: Settings,
}

/// The system mail is migrated into.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Target {
    /// Microsoft 365 (Exchange Online). `user.*` steps create the users, assign their
    /// licences and wait for their mailboxes through Microsoft Graph; mail is appended over
    /// IMAP with SASL XOAUTH2. Both as the app registration (client-credentials tokens), which
    /// needs these application permissions with admin consent: Microsoft Graph
    /// `User.ReadWrite.All` (users, licences), `Organization.Read.All` (the tenant's
    /// subscriptions; or `Directory.ReadWrite.All` for both) and `MailboxSettings.Read`
    /// (whether a mailbox answers yet); Office 365 Exchange Online `IMAP.AccessAsApp`, with an
    /// Exchange service principal holding FullAccess to each mailbox (`New-ServicePrincipal`,
    /// `Add-MailboxPermission`: cutover writes the lines for the mailboxes it creates).
    M365 {
        /// The tenant: its id (a GUID) or a domain such as `acme.onmicrosoft.com`.
        tenant: String,
        /// The tenant's initial `*.onmicrosoft.com` domain; mailboxes exist there before
        /// the client's own domain is cut over. When set, cutover signs in to each mailbox as
        /// `<local part>@<initial_domain>` (unless the user has a `target_login`), for every
        /// step: that address is the mailbox's from its creation on and stays after the
        /// cutover, while the client's own address only reaches the mailbox once the domain is
        /// added to the tenant — and pre-stage copies run before the cutover.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        initial_domain: Option<String>,
        /// The app registration cutover signs in as (client-credentials flow).
        auth: AppAuth,
        /// Where mail is appended over IMAP; default `outlook.office365.com:993`, implicit TLS.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        imap: Option<M365Imap>,
        /// Where Microsoft Graph is; default `https://graph.microsoft.com`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        graph: Option<M365Graph>,
        /// The country where users use their services (ISO 3166-1 alpha-2 code, e.g. `GB`,
        /// `US`, `DE`): set on the users cutover creates, and on existing users without one.
        /// Microsoft requires it before a licence can be assigned, so it is needed when any
        /// user has a `licence` (a user's own `usage_location` overrides it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        usage_location: Option<String>,
    },
    /// Any IMAP server (Dovecot, a hosted mailbox, Google Workspace over IMAP).
    Imap(ServerEndpoint),
    /// A local Maildir++ tree (Dovecot layout): one sub-directory per user's address.
    Maildir {
        /// Directory holding one Maildir per user (relative to the plan file).
        path: PathBuf,
    },
}

/// Exchange Online's IMAP endpoint, for tenants outside Microsoft's global cloud: GCC High
/// serves IMAP at `outlook.office365.us`, Microsoft 365 operated by 21Vianet at
/// `partner.outlook.cn` (their token endpoints differ too: set `auth.token_endpoint`). The
/// token's scope follows the host (`https://<host>/.default`). It also lets a test point the
/// target at a local IMAP server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct M365Imap {
    /// Host name; default `outlook.office365.com`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// TCP port; default 993 (143 with `tls: starttls`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// `implicit` (the default) or `starttls`. `none` only for a local stand-in (a test
    /// server, a gateway on this machine): it also needs `allow_plaintext: true` and a
    /// loopback host, since the access token and the mail travel on this connection.
    #[serde(default)]
    pub tls: M365Tls,
    /// Explicit opt-in for `tls: none`, accepted only with a loopback host.
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_plaintext: bool,
    /// PEM file of extra CA certificates to trust; relative to the plan file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// The most connections cutover opens to this server at once, all logins together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    /// The most connections cutover opens at once to any one mailbox. Default 3 (Exchange
    /// Online allows more); a refusal as too many slows the step down instead of failing it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections_per_login: Option<u32>,
    /// A known throttling budget: messages per second each mailbox takes (like imapsync's
    /// `--maxmessagespersecond`). Without it cutover finds the budget from the throttling
    /// replies; with it, it sends at that rate from the start and is never refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.01))]
    pub max_messages_per_second: Option<f64>,
}

/// Microsoft Graph's service root, for tenants outside Microsoft's global cloud (US Government
/// L4 `https://graph.microsoft.us`, L5 `https://dod-graph.microsoft.us`, 21Vianet
/// `https://microsoftgraph.chinacloudapi.cn`) or a local stand-in in tests. The token's scope
/// follows the host (`https://<host>/.default`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct M365Graph {
    /// The service root URL without the version (cutover uses `v1.0` under it), e.g.
    /// `https://graph.microsoft.us`. `https` only; plain `http` is accepted only to a
    /// loopback address (`127.0.0.1`, `[::1]`, `localhost`).
    pub endpoint: String,
}

/// Transport security of the m365 IMAP connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum M365Tls {
    /// TLS from the first byte (IMAPS, port 993).
    #[default]
    Implicit,
    /// Plaintext greeting, then STARTTLS before the token is sent (port 143).
    Starttls,
    /// No encryption: only to a loopback host, with `allow_plaintext: true`.
    None,
}

impl From<M365Tls> for Tls {
    fn from(t: M365Tls) -> Tls {
        match t {
            M365Tls::Implicit => Tls::Implicit,
            M365Tls::Starttls => Tls::Starttls,
            M365Tls::None => Tls::None,
        }
    }
}

/// Exchange Online's IMAP host in Microsoft's global cloud.
pub const M365_IMAP_HOST: &str = "outlook.office365.com";

impl M365Imap {
    /// The host, defaulted.
    pub fn host(&self) -> &str {
        self.host.as_deref().unwrap_or(M365_IMAP_HOST)
    }
}

/// An app registration's credentials.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AppAuth {
    /// The application (client) id of the app registration.
    pub client_id: String,
    /// The app's client secret, as a reference (never inline).
    pub client_secret: SecretRef,
    /// OAuth2 token endpoint; defaults to Microsoft's
    /// `https://login.microsoftonline.com/<tenant>/oauth2/v2.0/token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint: Option<String>,
}

/// A mail server cutover connects to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerEndpoint {
    /// Host name or IP address.
    pub host: String,
    /// TCP port. Defaults to the protocol's port for the chosen `tls` (IMAP 993/143, POP3 995/110).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Transport security: `implicit` (TLS from the first byte, the default), `starttls`, or
    /// `none` (plaintext; also needs `allow_plaintext: true`).
    #[serde(default)]
    pub tls: Tls,
    /// Explicit opt-in to send passwords and mail unencrypted when `tls: none`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_plaintext: bool,
    /// PEM file of extra CA certificates to trust (a private CA); relative to the plan file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// How to authenticate: `password` (LOGIN/PLAIN/USER-PASS) or `xoauth2`.
    #[serde(default)]
    pub auth: AuthMethod,
    /// The most connections cutover opens to this server at once, all logins together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    /// The most connections cutover opens at once with any one login (mailbox) on this
    /// server. Default 3: web hosts commonly allow a few per user (Dovecot's
    /// `mail_max_userip_connections`, Courier's per-user limits; Gmail about 15, Exchange
    /// Online about 20). A server that still refuses a connection as too many (`[LIMIT]`)
    /// slows the step down instead of failing it, and the report suggests lowering this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections_per_login: Option<u32>,
    /// As a target: a known throttling budget, messages per second each mailbox (login)
    /// takes. Without it cutover finds the budget from the server's throttling replies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.01))]
    pub max_messages_per_second: Option<f64>,
}

/// Transport security of a server connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Tls {
    /// TLS from the first byte (IMAPS 993, POP3S 995).
    #[default]
    Implicit,
    /// Plaintext greeting, then STARTTLS/STLS before any credential is sent.
    Starttls,
    /// No encryption. Needs `allow_plaintext: true`.
    None,
}

/// How cutover authenticates to a server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AuthMethod {
    /// A login and password (IMAP LOGIN/AUTHENTICATE PLAIN, POP3 USER/PASS).
    #[default]
    Password,
    /// OAuth2 bearer token (SASL XOAUTH2), obtained by cutover with the client-credentials flow.
    Xoauth2,
}

/// A legacy mail source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Source {
    /// An IMAP server: every folder is migrated (subject to `folders:` rules).
    Imap(ServerEndpoint),
    /// A POP3 server: only the inbox exists; messages are never deleted unless `delete_after_copy`.
    Pop3 {
        #[serde(flatten)]
        server: ServerEndpoint,
        /// Delete each message from the POP3 server once the target has it. Off by default.
        #[serde(default, skip_serializing_if = "is_false")]
        delete_after_copy: bool,
    },
    /// Outlook PST files (each user's `migrate:` entry names the file).
    Pst {
        /// `direct`: cutover reads the PST and uploads its mail itself. `import-service`:
        /// upload to Microsoft's PST Import Service (SAS URL) and generate its mapping CSV.
        #[serde(default)]
        via: PstVia,
        /// `via: import-service`: the network-upload SAS URL from the Microsoft Purview portal
        /// (Data lifecycle management → Import → New import job → Upload your data → Show
        /// network upload SAS URL), as a secret reference. It is the container URL
        /// (`https://….blob.core.windows.net/ingestiondata?sv=…&sig=…`); cutover puts each PST
        /// at `<plan name>/<user>/<file name>` in it. Its signature never appears in output.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sas_url: Option<SecretRef>,
        /// `via: import-service`: blocks uploaded at once per file (default 2). More is not
        /// faster on a small office's uplink: parallel blocks share the line, each slows down,
        /// and a block that keeps failing lowers this by itself.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 1, max = 32))]
        upload_concurrency: Option<u32>,
        /// `via: import-service`: the upload's block size in MiB (default 4; raised as needed
        /// for files over 195 GiB, the service's 50,000-block limit).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 1, max = 100))]
        block_mib: Option<u32>,
        /// `via: import-service`: cap on upload bandwidth in megabits per second (like
        /// AzCopy's `--cap-mbps`), leaving room on the office line. Default: no cap.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 0.1))]
        max_upload_mbps: Option<f64>,
        /// `via: import-service`: the Windows code page of ANSI (Outlook 97–2002) PST files,
        /// written as the mapping CSV's `ContentCodePage`, e.g. `932` Japanese, `936`
        /// Simplified Chinese, `949` Korean, `1251` Cyrillic. Microsoft needs it for
        /// double-byte languages, or folder names arrive garbled. Unicode PSTs (Outlook 2003
        /// and later) ignore it; cutover reads each file's header to tell them apart.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 1, max = 65535))]
        code_page: Option<u32>,
    },
    /// An mbox file per user (Thunderbird, Apple Mail or Google Takeout export).
    Mbox,
    /// A local Maildir per user.
    Maildir,
}

/// How PST files reach the target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum PstVia {
    /// cutover reads the PST and appends its mail to the target itself.
    #[default]
    Direct,
    /// Upload to Microsoft's PST Import Service and write its mapping CSV.
    ImportService,
}

/// One mailbox to migrate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// The user's address at the target, e.g. `alice@acme.co.uk`. Its local part names the
    /// user's steps (`copy.alice.…`).
    pub email: String,
    /// Name shown in the address book, e.g. `Alice Smith`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Licence SKU to assign at the target, e.g. `O365_BUSINESS_PREMIUM`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub licence: Option<String>,
    /// Further addresses that deliver to this mailbox. For an `m365` target Microsoft Graph
    /// cannot add them (a mailbox's proxy addresses are read-only there): cutover writes the
    /// Exchange Online PowerShell lines adding them, listed in the report.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// This user's usage location (ISO 3166-1 alpha-2 code) when it differs from the
    /// target's `usage_location`; `m365` targets only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_location: Option<String>,
    /// The password an `m365` user cutover creates starts with (the user must change it at
    /// first sign-in), as a secret reference. Without it cutover generates one and writes it
    /// only to a private file (0600) in the output folder, named in the report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_password: Option<SecretRef>,
    /// Credentials at the target, for targets that sign in per user (IMAP with passwords).
    /// With an `m365` target only `login` is used, as the mailbox address the app's token
    /// signs in to; the password reference is never resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_login: Option<Credentials>,
    /// Where this user's mail comes from: one entry per source (or per file).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub migrate: Vec<Migration>,
    /// Outlook autocomplete caches (.nk2 or Stream_Autocomplete .dat) to carry over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autocomplete: Option<Autocomplete>,
}

/// A login and its password reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// Login name at the server.
    pub login: String,
    /// Password reference.
    pub password: SecretRef,
}

/// Mail of one user from one source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Migration {
    /// The source id (a key of `sources:`).
    pub from: String,
    /// Distinguishes two entries of one user from the same source (two PST files); becomes
    /// part of the step id: `copy.<user>.<source>.<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Login at an IMAP or POP3 source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login: Option<String>,
    /// Password reference for `login` (sources with `auth: password`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<SecretRef>,
    /// The PST, mbox file or Maildir directory (relative to the plan file), for file sources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// Which folders to copy and where they land.
    #[serde(default, skip_serializing_if = "FolderRules::is_empty")]
    pub folders: FolderRules,
    /// Target folder for mail that has no folder of its own (POP3, mbox); default the inbox.
    /// For a PST via the import service: the folder its folder tree is imported under (the
    /// mapping CSV's `TargetRootFolder`); default Microsoft's own new `Imported` folder, and
    /// `/` merges the PST's folders into the mailbox's (its Inbox into the Inbox).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub into: Option<String>,
    /// PST via the import service only: import into the user's archive mailbox (Exchange
    /// Online Archiving; the mapping CSV's `IsArchive`) instead of the primary mailbox. The
    /// archive must be enabled first.
    #[serde(default, skip_serializing_if = "is_false")]
    pub archive_mailbox: bool,
    /// Copy only mail received on or after this date (`YYYY-MM-DD`, from 00:00 UTC).
    /// Received means the IMAP internal date; for POP3 the topmost `Received:` header (else
    /// `Date:`); for mbox the `From ` line's date; for maildir the file's time. Mail without
    /// any such date is copied. Verify compares only mail in the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Copy only mail received strictly before this date (`YYYY-MM-DD`, before 00:00 UTC of
    /// that day). Received as for `since`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
}

/// Folder selection and renaming. Globs match source folder names with `/` as separator:
/// `*` within one level, `**` across levels.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FolderRules {
    /// Copy only folders matching one of these globs (default: all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
    /// Skip folders matching any of these globs, e.g. `Junk*`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    /// Explicit renames, source folder → target folder, e.g. `INBOX.Sent: Sent Items`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub map: BTreeMap<String, String>,
}

impl FolderRules {
    pub fn is_empty(&self) -> bool {
        self.include.is_empty() && self.exclude.is_empty() && self.map.is_empty()
    }
}

/// A user's Outlook autocomplete caches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Autocomplete {
    /// `.nk2` (Outlook 2003/2007) or `Stream_Autocomplete_*.dat` (Outlook 2010+) files,
    /// relative to the plan file; several are merged. May be left out when the caches come
    /// from the user's PST files (`from_pst`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<PathBuf>,
    /// CSV mapping old Exchange addresses (legacyExchangeDN or display name) to SMTP addresses,
    /// for EX entries the plan's users do not resolve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address_map: Option<PathBuf>,
    /// Also merge the cache Outlook keeps inside each PST file the user migrates (the hidden
    /// `IPM.Configuration.Autocomplete` message of its Inbox). On by default; `false` uses
    /// `files` only.
    #[serde(default = "default_true", skip_serializing_if = "is_true")]
    pub from_pst: bool,
}

fn default_true() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

/// The DNS cutover. For an `m365` target cutover computes each domain's records itself (MX,
/// SPF merged into the existing TXT, autodiscover, DKIM selectors, the `MS=ms…` verification
/// TXT); `records` adds to or overrides them. For other targets `records` is the whole set.
/// Every domain of the plan (`domain` and `extra_domains`) gets its set. See
/// `docs/dns-cutover.md` for the runbook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Dns {
    /// `manual`: cutover prints the changes and waits for approval. `rfc2136`: cutover sends
    /// dynamic updates (signed with TSIG) to the zone's primary server.
    pub provider: DnsProvider,
    /// The dynamic-update server, for `provider: rfc2136`. It is also where the current
    /// records are read, since the update's prerequisites are checked there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rfc2136: Option<Rfc2136>,
    /// Records to set at cutover, on top of (or instead of) the computed ones. A record
    /// replaces the computed set of its name and type, except TXT: a TXT value is added to the
    /// name's TXT set, and one starting with `v=<tag>` (`v=spf1`, `v=DMARC1`) replaces the
    /// value with that tag.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub records: Vec<DnsRecord>,
    /// Lower the TTL of the managed records ahead of the cutover so the change takes effect fast.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lower_ttl: Option<LowerTtl>,
    /// How the existing SPF record is merged with Microsoft 365's
    /// `include:spf.protection.outlook.com` (m365 targets).
    #[serde(default, skip_serializing_if = "SpfMerge::is_empty")]
    pub spf: SpfMerge,
    /// Per-domain values only the tenant knows, by domain (`acme.co.uk`): the MX host the
    /// Microsoft 365 admin centre shows, the `MS=ms…` verification record.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub domains: BTreeMap<String, DomainDns>,
    /// The zones' authoritative servers to read and verify at, as `host`, `host:port`,
    /// `address` or `[v6 address]:port`, instead of those the zone's NS records name. For a
    /// hidden primary, a split-horizon setup, or a test server. Default: the NS records,
    /// looked up through the system resolver; each server is then queried directly.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    /// How long cutover polls the authoritative servers for a change to show (every server
    /// must answer the new records), e.g. `30m`, `2h` (default `1h`). On timeout the step fails
    /// with each server's answer; apply again to keep waiting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub propagation_timeout: Option<String>,
}

/// SPF merge rules.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SpfMerge {
    /// Mechanisms to remove from the existing SPF record, e.g. the old host's
    /// `include:_spf-eu.ionos.com` once it no longer sends the client's mail. Compared without
    /// case and qualifier. Everything else in the record is kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drop: Vec<String>,
}

impl SpfMerge {
    pub fn is_empty(&self) -> bool {
        self.drop.is_empty()
    }
}

/// Tenant-specific DNS values of one domain.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DomainDns {
    /// The MX host Microsoft 365 shows for this domain, e.g.
    /// `acme-co-uk.mail.protection.outlook.com` (the default) or
    /// `acme-co-uk.r-v1.mx.microsoft`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mx_host: Option<String>,
    /// The domain-verification TXT value, `MS=ms12345678`, published at the apex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<String>,
}

/// Who changes DNS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DnsProvider {
    /// The consultant edits DNS at the registrar; cutover says what to change and waits.
    Manual,
    /// RFC 2136 dynamic updates with TSIG.
    Rfc2136,
}

/// An RFC 2136 primary server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rfc2136 {
    /// The primary server's host name or address.
    pub server: String,
    /// DNS port (default 53).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The zone holding the plan's `domain`, e.g. `acme.co.uk.` (default: the domain
    /// itself). Every `extra_domains` entry is its own zone on the same server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// The TSIG key that signs updates.
    pub tsig: Tsig,
}

/// A TSIG key (RFC 8945).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Tsig {
    /// Key name, e.g. `cutover-key.`.
    pub name: String,
    /// HMAC algorithm.
    #[serde(default)]
    pub algorithm: TsigAlgorithm,
    /// The base64 key secret, as a reference.
    pub secret: SecretRef,
}

/// TSIG HMAC algorithms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum TsigAlgorithm {
    #[default]
    HmacSha256,
    HmacSha512,
}

/// One DNS record set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DnsRecord {
    /// Owner name relative to the record's `domain`: `@` for the apex, `autodiscover`, …;
    /// a name ending in `.` is absolute.
    pub name: String,
    /// Record type.
    #[serde(rename = "type")]
    pub record_type: RecordType,
    /// Record data, e.g. `acme-co-uk.mail.protection.outlook.com` or `v=spf1 include:… -all`.
    pub value: String,
    /// MX preference (MX only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u16>,
    /// TTL in seconds after cutover (default 3600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u32>,
    /// The domain (zone) the name is relative to: the plan's `domain` (the default) or one of
    /// its `extra_domains`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
}

/// DNS record types cutover manages.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "UPPERCASE")]
pub enum RecordType {
    Mx,
    Txt,
    Cname,
    A,
    Aaaa,
    Srv,
}

/// TTL lowering ahead of the cutover.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LowerTtl {
    /// The low TTL in seconds, e.g. `300`.
    pub to: u32,
    /// How long before the cutover to lower it: at least the old TTL, e.g. `24h`, `90m`, `2d`.
    pub ahead: String,
}

/// A human gate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ManualGate {
    /// What the person must do before approving, shown when the walk reaches the gate.
    pub instructions: String,
    /// Steps (ids or globs) that wait for this gate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub before: Vec<String>,
    /// Steps (ids or globs) this gate waits for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
}

/// Run settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Steps run at once (default 4; mail servers throttle beyond a few connections per account).
    #[serde(default = "default_parallelism")]
    pub parallelism: u32,
    /// Attempts per step for transient errors (default 5), with exponential backoff and jitter.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Largest message copied, in MB (default 35, Microsoft 365's default; up to 150).
    /// Larger messages are skipped and listed in the report.
    #[serde(default = "default_max_message_size_mb")]
    pub max_message_size_mb: u32,
    /// Where generated files go (autocomplete outputs, reports, CSVs), relative to the plan file.
    #[serde(default = "default_output_dir")]
    pub output_dir: PathBuf,
    /// Messages flagged `\Deleted` at the source but not yet expunged (IMAP; a Maildir's `T`
    /// flag; an mbox's `X-Status: D`): `skip` (default) leaves them at the source and lists
    /// each in the report as left behind, like imapsync's `--skipdeleted`; `copy` copies them
    /// with the flag — where the target's next expunge removes them unseen.
    #[serde(default, skip_serializing_if = "DeletedMessages::is_default")]
    pub deleted_messages: DeletedMessages,
    /// Bytes of mail held in memory at once by the whole apply, in MB (default 128): every
    /// message fetched whole takes its size from this budget before it is read and gives it
    /// back once the target acknowledged it; copies wait for budget instead of allocating.
    /// A message larger than an eighth of it is not held whole but streamed from source to
    /// target. At least 16.
    #[serde(
        default = "default_memory_budget_mb",
        skip_serializing_if = "is_default_memory_budget"
    )]
    #[schemars(range(min = 16))]
    pub memory_budget_mb: u32,
}

/// See [`Settings::deleted_messages`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeletedMessages {
    /// Leave them at the source; the report lists them.
    #[default]
    Skip,
    /// Copy them, `\Deleted` flag included.
    Copy,
}

impl DeletedMessages {
    fn is_default(&self) -> bool {
        *self == DeletedMessages::default()
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            parallelism: default_parallelism(),
            retries: default_retries(),
            max_message_size_mb: default_max_message_size_mb(),
            output_dir: default_output_dir(),
            deleted_messages: DeletedMessages::default(),
            memory_budget_mb: default_memory_budget_mb(),
        }
    }
}

fn default_parallelism() -> u32 {
    4
}
fn default_retries() -> u32 {
    5
}
fn default_max_message_size_mb() -> u32 {
    35
}
fn default_memory_budget_mb() -> u32 {
    128
}
fn is_default_memory_budget(mb: &u32) -> bool {
    *mb == default_memory_budget_mb()
}
fn default_output_dir() -> PathBuf {
    PathBuf::from("cutover-out")
}
fn is_false(b: &bool) -> bool {
    !*b
}

/// Where a secret comes from. Secrets never live in the plan: an inline string is refused
/// (a warning with `--allow-inline-secrets`).
#[derive(Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum SecretRef {
    /// Read from an environment variable.
    Env(EnvSecret),
    /// Read from a file (relative to the plan file); one trailing newline is dropped.
    File(FileSecret),
    /// Run a command (through `sh -c`) and use its standard output, e.g. `pass show acme/alice`.
    Command(CommandSecret),
    /// An inline literal. Rejected unless `--allow-inline-secrets`; never do this in git.
    Inline(String),
}

impl std::fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretRef::Env(e) => write!(f, "env:{}", e.env),
            SecretRef::File(s) => write!(f, "file:{}", s.file.display()),
            SecretRef::Command(c) => write!(f, "command:{}", c.command),
            SecretRef::Inline(_) => f.write_str("inline:<redacted>"),
        }
    }
}

/// `{ env: VAR }`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvSecret {
    /// Environment variable name.
    pub env: String,
}

/// `{ file: PATH }`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileSecret {
    /// File holding the secret.
    pub file: PathBuf,
}

/// `{ command: "…" }`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandSecret {
    /// Shell command printing the secret.
    pub command: String,
}

/// Produces the JSON Schema of the plan, as committed in `schemas/plan.schema.json`.
pub fn json_schema() -> serde_json::Value {
    let schema = schemars::schema_for!(Plan);
    serde_json::to_value(schema).unwrap_or_default()
}
