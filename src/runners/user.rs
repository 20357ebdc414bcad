//! `user.*`: the user's mailbox exists at the target. For a maildir target that is its
//! directory (created); for an IMAP target, that the mailbox takes the login (the
//! `target_login` password) — nothing is written; for an m365 target, the user, licence and
//! mailbox through Microsoft Graph ([`super::m365_user`]), then the app's login.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::attempt::{on_own_runtime, run_attempt, Failure};
use super::mail::{imap_target, m365_target};
use crate::connectors::mail::MaildirTarget;
use crate::connectors::mailflow::MailTarget;
use crate::engine::{
    hash_parts, ApplyCtx, BoxFuture, Observation, ObserveCtx, Outcome, StepError, StepRunner,
    Unsupported,
};
use crate::plan::model::{Plan, Target, User};
use crate::state::Counts;

/// The runner of `user.<name>`.
pub(crate) fn runner(plan: &Plan, user: &User, base: &Path) -> Arc<dyn StepRunner> {
    match &plan.target {
        Target::Maildir { path } => Arc::new(UserMaildir {
            root: super::mail::maildir_root(base, path, user),
            hash: hash_parts(&["user-maildir", &path.display().to_string(), &user.email]),
        }),
        Target::Imap(_) => match imap_target(plan, user, base) {
            Ok((t, login)) => login_check(t.describe(), login, move || {
                let t = t.clone();
                async move { t.check_login().await }
            }),
            Err(what) => Arc::new(Unsupported::new(format!("user steps into {what}"))),
        },
        Target::M365 { initial_domain, .. } => match m365_target(plan, user, base) {
            Ok(t) => {
                let login = super::m365::login_for(user, initial_domain.as_deref());
                let login = login_check(t.describe(), login, move || {
                    let t = t.clone();
                    async move { t.check_login().await }
                });
                // The login ends the Graph work: user, licence, mailbox.
                super::m365_user::user_runner(plan, user, base, Arc::clone(&login)).unwrap_or(login)
            }
            Err(what) => Arc::new(Unsupported::new(format!("user steps into {what}"))),
        },
    }
}

fn login_check<F, Fut>(describe: String, login: String, check: F) -> Arc<dyn StepRunner>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = crate::connectors::mailflow::FlowResult<()>> + Send + 'static,
{
    Arc::new(LoginCheck {
        hash: hash_parts(&["user-login", &describe]),
        login,
        check: Arc::new(move || Box::pin(check()) as _),
    })
}

type Check = Arc<
    dyn Fn() -> crate::connectors::mailflow::BoxFuture<
            'static,
            crate::connectors::mailflow::FlowResult<()>,
        > + Send
        + Sync,
>;

/// `user.*` of an IMAP-speaking target.
struct LoginCheck {
    hash: String,
    /// The address signed in as.
    login: String,
    check: Check,
}

impl StepRunner for LoginCheck {
    fn config_hash(&self) -> String {
        self.hash.clone()
    }

    fn observe(&self, _ctx: &ObserveCtx<'_>) -> Result<Observation, StepError> {
        let check = Arc::clone(&self.check);
        on_own_runtime(move || async move { Ok::<_, Failure>(check().await?) })?;
        Ok(Observation {
            present: 1,
            note: Some(format!("{} can log in at the target", self.login)),
            ..Observation::default()
        })
    }

    fn apply<'a>(&'a self, ctx: &'a mut ApplyCtx) -> BoxFuture<'a, Result<Outcome, StepError>> {
        let check = Arc::clone(&self.check);
        let mut ctx = ctx.clone();
        run_attempt(ctx.clone(), move || async move {
            check().await?;
            ctx.commit(
                Counts {
                    present: 1,
                    ..Counts::default()
                },
                &[],
            )?;
            Ok(Outcome::Complete)
        })
    }
}

/// `user.*` into a maildir target: the user's Maildir root exists.
struct UserMaildir {
    root: PathBuf,
    hash: String,
}

impl StepRunner for UserMaildir {
    fn config_hash(&self) -> String {
        self.hash.clone()
    }

    fn observe(&self, _ctx: &ObserveCtx) -> Result<Observation, StepError> {
        let exists = self.root.join("cur").is_dir();
        Ok(Observation {
            items: u64::from(!exists),
            present: u64::from(exists),
            note: Some(format!("maildir {}", self.root.display())),
            ..Observation::default()
        })
    }

    fn apply<'a>(&'a self, ctx: &'a mut ApplyCtx) -> BoxFuture<'a, Result<Outcome, StepError>> {
        let root = self.root.clone();
        let mut ctx = ctx.clone();
        super::blocking(move || {
            let existed = root.join("cur").is_dir();
            MaildirTarget::open(&root).map_err(|e| StepError::permanent(e.to_string()))?;
            let delta = if existed {
                Counts {
                    present: 1,
                    ..Counts::default()
                }
            } else {
                Counts {
                    items: 1,
                    ..Counts::default()
                }
            };
            ctx.commit(delta, &[])?;
            Ok(Outcome::Complete)
        })
    }
}
