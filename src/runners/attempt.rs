//! How a runner's attempt runs: on a blocking thread with a current-thread runtime of its own,
//! because targets (maildir writes, fsyncs) and [`ApplyCtx::commit`] block and the walker's
//! workers must not; and how the mail contracts' errors become step errors.

use std::future::Future;
use std::time::Duration;

use crate::connectors::mailflow::FlowError;
use crate::engine::{ApplyCtx, BoxFuture, Outcome, StepError};

/// The longest server-suggested wait honoured before a retry; beyond it the walker's own
/// backoff takes over.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// A runner's failure: a step error, or a mail error still carrying its retry hint.
#[derive(Debug)]
pub(crate) enum Failure {
    Step(StepError),
    Flow(FlowError),
}

impl From<StepError> for Failure {
    fn from(e: StepError) -> Self {
        Failure::Step(e)
    }
}

impl From<FlowError> for Failure {
    fn from(e: FlowError) -> Self {
        Failure::Flow(e)
    }
}

impl From<crate::connectors::net::NetError> for Failure {
    fn from(e: crate::connectors::net::NetError) -> Self {
        Failure::Flow(e.into())
    }
}

impl Failure {
    pub(crate) fn into_step(self) -> StepError {
        match self {
            Failure::Step(e) => e,
            Failure::Flow(e) if e.is_transient() => StepError::transient(e.to_string()),
            Failure::Flow(e) => StepError::permanent(e.to_string()),
        }
    }
}

/// Runs `f` to completion on a fresh current-thread runtime in a thread of its own, so it may
/// block freely and may be called from sync or async code (`observe` is sync but called from
/// within the walker's runtime).
pub(crate) fn on_own_runtime<T, F, Fut>(f: F) -> Result<T, StepError>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, Failure>>,
{
    match std::thread::spawn(move || block_on_fresh(f)).join() {
        Ok(r) => r.map_err(Failure::into_step),
        Err(_) => Err(StepError::permanent("step thread panicked")),
    }
}

/// Blocks the current (non-runtime) thread on `f` with a fresh current-thread runtime. Each
/// copy lane runs this way, so one lane's blocking work (fsyncs, state commits) never stalls
/// another.
pub(crate) fn block_on_fresh<T, F, Fut>(f: F) -> Result<T, Failure>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<T, Failure>>,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| StepError::permanent(format!("cannot start a runtime: {e}")))?;
    rt.block_on(f())
}

/// One apply attempt on its own thread. A transient error with a server-suggested wait
/// sleeps that long (bounded, cancellable) before reporting, so the walker's retry does not
/// hit a throttling server early.
pub(crate) fn run_attempt<F, Fut>(
    ctx: ApplyCtx,
    f: F,
) -> BoxFuture<'static, Result<Outcome, StepError>>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<Outcome, Failure>>,
{
    Box::pin(async move {
        let task = tokio::task::spawn_blocking(move || {
            block_on_fresh(move || async move {
                match f().await {
                    Ok(o) => Ok(o),
                    Err(Failure::Flow(e)) if e.is_transient() => {
                        if let Some(wait) = e.retry_after() {
                            tokio::select! {
                                _ = tokio::time::sleep(wait.min(MAX_RETRY_AFTER)) => {}
                                _ = ctx.cancel_token().cancelled() => {}
                            }
                        }
                        Err(Failure::Flow(e))
                    }
                    Err(other) => Err(other),
                }
            })
        });
        match task.await {
            Ok(r) => r.map_err(Failure::into_step),
            Err(e) => Err(StepError::permanent(format!("step task failed: {e}"))),
        }
    })
}
