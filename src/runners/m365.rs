//! What the `m365` target adds to the server runners of [`super::remote`]: where Exchange
//! Online's IMAP is, which address each mailbox is signed in as, and the app registration's
//! access tokens.
//!
//! cutover signs in to every mailbox as the plan's app registration (SASL XOAUTH2 with a
//! client-credentials token; Microsoft's "Authenticate an IMAP, POP or SMTP connection using
//! OAuth"), so one token serves all users. [`app_tokens`] hands every runner of a plan the same
//! [`AppTokens`] while any of them is alive: a walk fetches one token and reuses it across
//! `user.*`, `copy.*`, `delta.*` and `verify.*` steps until it nears expiry.
//!
//! Users, licences and mailboxes are Microsoft Graph's business: see [`super::m365_user`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use crate::connectors::imap::PORTS as IMAP_PORTS;
use crate::connectors::net::Endpoint;
use crate::connectors::oauth::{m365_token_endpoint, TokenSource};
use crate::engine::step::StepError;
use crate::plan::model::{AppAuth, AuthMethod, M365Imap, ServerEndpoint, User};
use crate::secrets::{Secret, SharedSecret};

/// The IMAP endpoint of an m365 target: the plan's `imap:` override, else
/// `outlook.office365.com:993` with implicit TLS.
pub(crate) fn imap_endpoint(imap: Option<&M365Imap>, base: &Path) -> Endpoint {
    let default = M365Imap {
        host: None,
        port: None,
        tls: Default::default(),
        ca_file: None,
        max_connections: None,
        max_connections_per_login: None,
        max_messages_per_second: None,
        allow_plaintext: false,
    };
    let imap = imap.unwrap_or(&default);
    let server = ServerEndpoint {
        host: imap.host().to_owned(),
        port: imap.port,
        tls: imap.tls.into(),
        // Validation accepts it only towards a loopback host.
        allow_plaintext: imap.allow_plaintext,
        ca_file: imap.ca_file.clone(),
        auth: AuthMethod::Xoauth2,
        max_connections: imap.max_connections,
        max_connections_per_login: imap.max_connections_per_login,
        max_messages_per_second: imap.max_messages_per_second,
    };
    Endpoint::from_plan(&server, IMAP_PORTS, base)
}

/// The token scope for Exchange Online's IMAP at `host`: the resource is the host itself,
/// so a sovereign cloud's host asks for that cloud's resource.
pub(crate) fn scope_for(host: &str) -> String {
    format!("https://{host}/.default")
}

/// The address the app's token signs in to the user's mailbox as (the XOAUTH2 `user=`).
///
/// `target_login` wins. Otherwise, with an `initial_domain`, the mailbox's
/// `<local part>@<initial_domain>` address: in the runbook the mailboxes exist before the DNS
/// cutover and the pre-stage copies run before it, when the client's own domain may not be on
/// the tenant yet, while the onmicrosoft.com address is the mailbox's from creation on and
/// stays after the cutover — so one login serves copy, delta and verify alike, and the steps'
/// config does not change at the cutover. Without `initial_domain`, the user's `email`.
pub(crate) fn login_for(user: &User, initial_domain: Option<&str>) -> String {
    if let Some(tl) = &user.target_login {
        return tl.login.clone();
    }
    match (initial_domain, user.email.rsplit_once('@')) {
        (Some(domain), Some((local, _))) => format!("{local}@{domain}"),
        _ => user.email.clone(),
    }
}

/// The app registration's client-credentials tokens for one scope. The secret is resolved on
/// the first token request, not when runners are built, so `plan` on a machine without the
/// secret still builds every runner.
pub(crate) struct AppTokens {
    tenant: String,
    client_id: String,
    endpoint: String,
    scope: String,
    /// The client secret, resolved once per run (shared with any other use of the reference).
    secret: Arc<SharedSecret>,
    base_dir: PathBuf,
    /// Built once the secret resolved.
    source: Mutex<Option<Arc<TokenSource>>>,
}

impl std::fmt::Debug for AppTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppTokens")
            .field("tenant", &self.tenant)
            .field("client_id", &self.client_id)
            .field("endpoint", &self.endpoint)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

pub(crate) use crate::live::LiveRegistry;

/// Live token holders by [`AppTokens::describe`].
static LIVE: LiveRegistry<AppTokens> = LiveRegistry::new();

/// The token holder of an m365 target's app for the service at `host` (Exchange Online's
/// IMAP, Microsoft Graph): the same one for every caller while any is alive.
pub(crate) fn app_tokens(tenant: &str, auth: &AppAuth, host: &str, base: &Path) -> Arc<AppTokens> {
    let wanted = AppTokens {
        tenant: tenant.to_owned(),
        client_id: auth.client_id.clone(),
        endpoint: auth
            .token_endpoint
            .clone()
            .unwrap_or_else(|| m365_token_endpoint(tenant)),
        scope: scope_for(host),
        secret: crate::secrets::shared(&auth.client_secret, base),
        base_dir: base.to_path_buf(),
        source: Mutex::new(None),
    };
    LIVE.get_or_insert(wanted.describe(), || wanted)
}

impl AppTokens {
    /// Everything that selects the token but the secret's value: for config hashes and
    /// sharing.
    pub(crate) fn describe(&self) -> String {
        format!(
            "{}|{}|{}|{}|{}|{}",
            self.tenant,
            self.client_id,
            self.endpoint,
            self.scope,
            super::mail::secret_label(self.secret.reference()),
            self.base_dir.display()
        )
    }

    /// Names the tenant and app in errors, never the secret.
    fn who(&self) -> String {
        format!("m365 tenant `{}`, app `{}`", self.tenant, self.client_id)
    }

    /// A valid access token, cached while it has life left. Blocking (an HTTPS request when
    /// none is cached): call it from a blocking task.
    pub(crate) fn token(&self) -> Result<Secret, StepError> {
        let source = {
            let mut slot = self.source.lock().unwrap_or_else(PoisonError::into_inner);
            match slot.as_ref() {
                Some(s) => Arc::clone(s),
                None => {
                    let secret = self.secret.get().map_err(|e| {
                        StepError::permanent(format!(
                            "{}: the client secret cannot be read ({e})",
                            self.who()
                        ))
                    })?;
                    let s = TokenSource::new(&self.endpoint, &self.client_id, secret, &self.scope)
                        .map_err(|e| StepError::permanent(format!("{}: {e}", self.who())))?;
                    Arc::clone(slot.insert(Arc::new(s)))
                }
            }
        };
        source.token().map_err(|e| {
            // No "token:" before `e`: the redactor would mask the word after it.
            let text = format!("{}: {e}", self.who());
            if e.is_transient() {
                StepError::transient(text)
            } else {
                StepError::permanent(text)
            }
        })
    }
}

/// Graph's requests carry the app's token for Graph's scope.
impl crate::connectors::graph::BearerSource for AppTokens {
    fn bearer(&self) -> Result<Secret, crate::connectors::graph::BearerError> {
        self.token()
            .map_err(|e| crate::connectors::graph::BearerError {
                message: e.message,
                transient: e.transient,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::oauth::M365_MAIL_SCOPE;
    use crate::plan::model::{Credentials, EnvSecret, M365Tls, SecretRef};

    fn user(email: &str) -> User {
        User {
            email: email.into(),
            display_name: None,
            licence: None,
            aliases: vec![],
            usage_location: None,
            initial_password: None,
            target_login: None,
            migrate: vec![],
            autocomplete: None,
        }
    }

    #[test]
    fn login_prefers_target_login_then_initial_domain() {
        let alice = user("alice@acme.co.uk");
        assert_eq!(login_for(&alice, None), "alice@acme.co.uk");
        assert_eq!(
            login_for(&alice, Some("acme.onmicrosoft.com")),
            "alice@acme.onmicrosoft.com"
        );
        let mut custom = alice.clone();
        custom.target_login = Some(Credentials {
            login: "a.smith@acme.onmicrosoft.com".into(),
            password: SecretRef::Inline(String::new()),
        });
        assert_eq!(
            login_for(&custom, Some("acme.onmicrosoft.com")),
            "a.smith@acme.onmicrosoft.com"
        );
    }

    #[test]
    fn endpoint_and_scope_default_to_exchange_online() {
        let e = imap_endpoint(None, Path::new("/plans"));
        assert_eq!(e.server(), "outlook.office365.com:993");
        assert_eq!(e.tls, crate::plan::model::Tls::Implicit);
        assert!(!e.allow_plaintext);
        assert_eq!(scope_for(&e.host), M365_MAIL_SCOPE);

        let gcc = M365Imap {
            host: Some("outlook.office365.us".into()),
            port: None,
            tls: M365Tls::Starttls,
            ca_file: Some("ca.pem".into()),
            max_connections: None,
            max_connections_per_login: None,
            max_messages_per_second: None,
            allow_plaintext: false,
        };
        let e = imap_endpoint(Some(&gcc), Path::new("/plans"));
        assert_eq!(e.server(), "outlook.office365.us:143");
        assert_eq!(e.ca_file.as_deref(), Some(Path::new("/plans/ca.pem")));
        assert_eq!(scope_for(&e.host), "https://outlook.office365.us/.default");
    }

    #[test]
    fn one_token_holder_per_app_while_alive() {
        let auth = AppAuth {
            client_id: "app".into(),
            client_secret: SecretRef::Env(EnvSecret {
                env: "CUTOVER_UNIT_M365_SECRET".into(),
            }),
            token_endpoint: Some("http://127.0.0.1:9/token".into()),
        };
        let base = Path::new("/plans");
        let a = app_tokens("t.onmicrosoft.com", &auth, "outlook.office365.com", base);
        let b = app_tokens("t.onmicrosoft.com", &auth, "outlook.office365.com", base);
        assert!(Arc::ptr_eq(&a, &b));
        let other = app_tokens("t.onmicrosoft.com", &auth, "outlook.office365.us", base);
        assert!(!Arc::ptr_eq(&a, &other), "another cloud, another scope");
        let err = a.token().unwrap_err().to_string();
        assert!(
            err.contains("tenant `t.onmicrosoft.com`, app `app`")
                && err.contains("CUTOVER_UNIT_M365_SECRET"),
            "{err}"
        );
    }
}
