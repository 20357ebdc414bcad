//! From the plan to the mail contracts: which [`MailSource`] a migration reads and which
//! [`MailTarget`] a user's mail goes to, with the logins that sign them in. Everything the
//! copy, delta and verify runners need to know about the plan is decided here, so they
//! themselves know only the contracts.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::m365;
use crate::connectors::imap::PORTS as IMAP_PORTS;
use crate::connectors::mail::DateWindow;
use crate::connectors::mailflow::imap_source::ImapSource;
use crate::connectors::mailflow::imap_target::{ImapTarget, Quirks};
use crate::connectors::mailflow::m365_target::M365Target;
use crate::connectors::mailflow::maildir_source::MaildirSource;
use crate::connectors::mailflow::maildir_target::MaildirTarget;
use crate::connectors::mailflow::mbox_source::MboxSource;
use crate::connectors::mailflow::pop3_source::Pop3Source;
use crate::connectors::mailflow::pst_source::PstSource;
use crate::connectors::mailflow::{
    BoxFuture, FlowError, FlowResult, FolderMapper, Login, MailSource, MailTarget, TargetNames,
};
use crate::connectors::net::{Credentials, Endpoint};
use crate::connectors::pop3::PORTS as POP3_PORTS;
use crate::connectors::pst::ConvertOptions;
use crate::graph::path_safe;
use crate::plan::model::{AuthMethod, Migration, Plan, PstVia, SecretRef, Source, Target, User};
use crate::secrets::SharedSecret;

/// A secret reference as hashed: the reference, never an inline value (a hash of a short
/// password is guessable, and the hash is stored in state).
pub(crate) fn secret_label(r: &SecretRef) -> String {
    match r {
        SecretRef::Env(e) => format!("env:{}", e.env),
        SecretRef::File(f) => format!("file:{}", f.file.display()),
        SecretRef::Command(c) => format!("command:{}", c.command),
        SecretRef::Inline(_) => "inline".into(),
    }
}

/// A login whose password (or externally issued token) the plan references. The secret is
/// resolved once per run, shared with every other login of the run that references it.
#[derive(Debug)]
struct PlanLogin {
    login: String,
    secret: Arc<SharedSecret>,
    auth: AuthMethod,
    /// Where the password is configured, for errors (`source ionos-imap`, `target_login`).
    context: String,
}

impl PlanLogin {
    fn new(
        login: &str,
        secret: &SecretRef,
        auth: AuthMethod,
        base: &Path,
        context: String,
    ) -> Self {
        PlanLogin {
            login: login.to_owned(),
            secret: crate::secrets::shared(secret, base),
            auth,
            context,
        }
    }
}

impl Login for PlanLogin {
    fn credentials(&self) -> BoxFuture<'_, FlowResult<Credentials>> {
        Box::pin(async move {
            let shared = Arc::clone(&self.secret);
            let secret = tokio::task::spawn_blocking(move || shared.get())
                .await
                .map_err(|e| FlowError::Permanent(format!("secret task failed: {e}")))?
                .map_err(|e| FlowError::Permanent(format!("{}: {e}", self.context)))?;
            Ok(match self.auth {
                AuthMethod::Password => Credentials::password(&self.login, secret.expose()),
                AuthMethod::Xoauth2 => Credentials::xoauth2(&self.login, secret.expose()),
            })
        })
    }

    fn describe(&self) -> String {
        format!(
            "{}|{:?}|{}",
            self.login,
            self.auth,
            secret_label(self.secret.reference())
        )
    }
}

/// A mailbox signed in to as the m365 target's app registration (XOAUTH2 with a
/// client-credentials token shared by every mailbox and step).
#[derive(Debug)]
struct AppLogin {
    login: String,
    tokens: Arc<m365::AppTokens>,
}

impl Login for AppLogin {
    fn credentials(&self) -> BoxFuture<'_, FlowResult<Credentials>> {
        Box::pin(async move {
            let tokens = Arc::clone(&self.tokens);
            let token = tokio::task::spawn_blocking(move || tokens.token())
                .await
                .map_err(|e| FlowError::Permanent(format!("token task failed: {e}")))?
                .map_err(|e| {
                    if e.transient {
                        FlowError::Transient(e.message)
                    } else {
                        FlowError::Permanent(e.message)
                    }
                })?;
            Ok(Credentials::xoauth2(&self.login, token.expose()))
        })
    }

    fn describe(&self) -> String {
        format!("{}|app|{}", self.login, self.tokens.describe())
    }
}

/// `settings.max_message_size_mb` in bytes: no mail over it is copied, and no server is read
/// for much more than it ([`Endpoint::read_limit`]).
pub(crate) fn message_limit(plan: &Plan) -> u64 {
    u64::from(plan.settings.max_message_size_mb) * 1024 * 1024
}

/// The window of a migration, or why its dates are wrong.
pub(crate) fn window_of(m: &Migration) -> Result<Option<DateWindow>, String> {
    DateWindow::parse(m.since.as_deref(), m.before.as_deref())
}

/// The `into` folder of a migration as target segments (empty: the inbox).
fn into_of(m: &Migration) -> Vec<String> {
    match &m.into {
        Some(name) => crate::connectors::mailflow::folders::split_target(name),
        None => Vec::new(),
    }
}

/// The source a migration reads, or what this build cannot do with it.
pub(crate) fn source_for(
    plan: &Plan,
    m: &Migration,
    base: &Path,
) -> Result<Arc<dyn MailSource>, String> {
    let window = window_of(m)?;
    let file = || {
        m.file
            .as_ref()
            .map(|f| base.join(f))
            .ok_or_else(|| format!("`{}` migration without `file:`", m.from))
    };
    let login = |server: &crate::plan::model::ServerEndpoint| -> Result<Arc<dyn Login>, String> {
        let (Some(login), Some(password)) = (&m.login, &m.password) else {
            return Err(format!(
                "copy from `{}` without `login` and `password`",
                m.from
            ));
        };
        Ok(Arc::new(PlanLogin::new(
            login,
            password,
            server.auth,
            base,
            format!("source `{}`", m.from),
        )))
    };
    // Connections count against the source login's limit.
    let endpoint = |server: &crate::plan::model::ServerEndpoint, ports| {
        let e = Endpoint::from_plan(server, ports, base).with_message_limit(message_limit(plan));
        match &m.login {
            Some(login) => e.for_login(login),
            None => e,
        }
    };
    match plan.sources.get(&m.from) {
        Some(Source::Imap(server)) => Ok(Arc::new(ImapSource::new(
            endpoint(server, IMAP_PORTS),
            login(server)?,
            window,
        ))),
        Some(Source::Pop3 {
            server,
            delete_after_copy,
        }) => Ok(Arc::new(Pop3Source::new(
            endpoint(server, POP3_PORTS),
            login(server)?,
            window,
            into_of(m),
            *delete_after_copy,
        ))),
        Some(Source::Mbox) => Ok(Arc::new(MboxSource::new(file()?, window, into_of(m)))),
        Some(Source::Maildir) => Ok(Arc::new(MaildirSource::new(file()?, window))),
        Some(Source::Pst {
            via: PstVia::Direct,
            ..
        }) => Ok(Arc::new(PstSource::new(
            file()?,
            window,
            into_of(m),
            ConvertOptions::default(),
        ))),
        Some(Source::Pst {
            via: PstVia::ImportService,
            ..
        }) => Err("copy from a pst source via the import service".into()),
        None => Err(format!("copy from unknown source `{}`", m.from)),
    }
}

/// The target mailbox of `user`, or what this build cannot do with it.
pub(crate) fn target_for(
    plan: &Plan,
    user: &User,
    base: &Path,
) -> Result<Arc<dyn MailTarget>, String> {
    match &plan.target {
        Target::Maildir { path } => {
            Ok(Arc::new(MaildirTarget::new(maildir_root(base, path, user))))
        }
        Target::Imap(_) => Ok(Arc::new(imap_target(plan, user, base)?.0)),
        Target::M365 { .. } => Ok(Arc::new(m365_target(plan, user, base)?)),
    }
}

/// The folder of `user`'s Maildir under a maildir target's `path`: named after the address,
/// built by [`path_safe`] so that no address can name a folder elsewhere.
pub(crate) fn maildir_root(base: &Path, path: &Path, user: &User) -> PathBuf {
    base.join(path).join(path_safe(&user.email))
}

/// The imap target's mailbox of `user`, with the login it signs in as.
pub(crate) fn imap_target(
    plan: &Plan,
    user: &User,
    base: &Path,
) -> Result<(ImapTarget, String), String> {
    let Target::Imap(server) = &plan.target else {
        return Err("not an imap target".into());
    };
    let Some(tl) = &user.target_login else {
        return Err(format!(
            "the imap target for {} without `target_login`",
            user.email
        ));
    };
    let login = Arc::new(PlanLogin::new(
        &tl.login,
        &tl.password,
        server.auth,
        base,
        format!("target_login of {}", user.email),
    ));
    let target = ImapTarget::new(
        Endpoint::from_plan(server, IMAP_PORTS, base)
            .with_message_limit(message_limit(plan))
            .for_login(&tl.login),
        login,
        TargetNames::imap(),
        Quirks::default(),
    );
    Ok((target, tl.login.clone()))
}

/// The m365 target's mailbox of `user`, for the runners that need more than the contract
/// (the `user.*` login check).
pub(crate) fn m365_target(plan: &Plan, user: &User, base: &Path) -> Result<M365Target, String> {
    let Target::M365 {
        tenant,
        initial_domain,
        auth,
        imap,
        ..
    } = &plan.target
    else {
        return Err("not an m365 target".into());
    };
    let endpoint = m365::imap_endpoint(imap.as_ref(), base).with_message_limit(message_limit(plan));
    let tokens = m365::app_tokens(tenant, auth, &endpoint.host, base);
    let mailbox = m365::login_for(user, initial_domain.as_deref());
    let endpoint = endpoint.for_login(&mailbox);
    let login = Arc::new(AppLogin {
        login: mailbox,
        tokens,
    });
    Ok(M365Target::new(endpoint, login))
}

/// The folder rules of a migration with the target's special-folder names.
pub(crate) fn mapper_for(m: &Migration, target: &dyn MailTarget) -> Result<FolderMapper, String> {
    FolderMapper::new(&m.folders, target.names())
}
