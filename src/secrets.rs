//! Resolving secret references (`{ env }`, `{ file }`, `{ command }`) at the moment a step
//! needs them. A resolved [`Secret`] prints as `<redacted>`; errors name the reference, never
//! the value.
//!
//! A plan's references are resolved **once per run**: the runners hold [`SharedSecret`]s
//! ([`shared`]), and every connection of every step that uses a reference asks the same one,
//! which resolves it on first use and keeps the value (or the failure) in memory only. So a
//! `pass`/gpg prompt appears once, not once per lane, side and retry. A `{ command }` that
//! does not finish within [`COMMAND_TIMEOUT`] is stopped and reported: a prompt nobody answers
//! must not hang a run forever.
//!
//! Only `plan` (without `--offline`) and `apply` resolve references; `validate` and `plan
//! --offline` never do, so CI on untrusted pull requests runs those two and never a plan's
//! commands.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::plan::model::SecretRef;

/// How long a `{ command }` secret may take (a password manager's prompt included) before it
/// is stopped.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// The most a `{ command }` may print: a secret is short, and a command printing a file must
/// not fill memory.
const MAX_COMMAND_OUTPUT: usize = 64 * 1024;

/// A secret value. `Debug`/`Display` never show it; only [`Secret::expose`] does, at the
/// point of use (a LOGIN command, a token request).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value obtained some other way (a fresh OAuth2 token, a test password).
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("missing secret (environment variable {0} is not set)")]
    EnvMissing(String),
    #[error("missing secret (cannot read file {path}: {reason})")]
    File { path: String, reason: String },
    #[error("missing secret (command `{command}` failed: {reason})")]
    Command { command: String, reason: String },
    #[error("missing secret (command `{command}` did not finish within {}s — is it waiting for a passphrase or a prompt nobody sees? It was stopped; unlock the password manager first, or use {{ env }} or {{ file }})", .timeout.as_secs())]
    Timeout { command: String, timeout: Duration },
    #[error("missing secret ({0} is empty)")]
    Empty(String),
    #[error(
        "inline secrets are refused: use {{ env: VAR }}, {{ file: path }} or {{ command: \"…\" }}"
    )]
    Inline,
}

/// Resolves a reference. `base_dir` resolves relative `file:` paths (the plan's folder).
/// Inline literals are refused here too: validation lets them through only as a warning
/// with `--allow-inline-secrets`, and then they are used as written.
pub fn resolve(
    reference: &SecretRef,
    base_dir: &Path,
    allow_inline: bool,
) -> Result<Secret, SecretError> {
    resolve_within(reference, base_dir, allow_inline, COMMAND_TIMEOUT)
}

/// [`resolve`] with a `{ command }` stopped after `timeout`.
pub fn resolve_within(
    reference: &SecretRef,
    base_dir: &Path,
    allow_inline: bool,
    timeout: Duration,
) -> Result<Secret, SecretError> {
    let (value, name) = match reference {
        SecretRef::Env(e) => (
            std::env::var(&e.env).map_err(|_| SecretError::EnvMissing(e.env.clone()))?,
            format!("env {}", e.env),
        ),
        SecretRef::File(f) => {
            let path = base_dir.join(&f.file);
            let text = std::fs::read_to_string(&path).map_err(|e| SecretError::File {
                path: f.file.display().to_string(),
                reason: e.kind().to_string(),
            })?;
            (
                strip_one_newline(text),
                format!("file {}", f.file.display()),
            )
        }
        SecretRef::Command(c) => {
            let dir = if base_dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                base_dir
            };
            let text = run_command(&c.command, dir, timeout)?;
            (strip_one_newline(text), format!("command {}", c.command))
        }
        SecretRef::Inline(value) if allow_inline => (value.clone(), "inline value".to_string()),
        SecretRef::Inline(_) => return Err(SecretError::Inline),
    };
    if value.is_empty() {
        return Err(SecretError::Empty(name));
    }
    Ok(Secret(value))
}

/// Runs `command` through `sh -c` in `dir` and returns its standard output: stdin closed,
/// stderr discarded (password managers may print more than they should), at most
/// [`MAX_COMMAND_OUTPUT`] bytes, stopped after `timeout`.
fn run_command(command: &str, dir: &Path, timeout: Duration) -> Result<String, SecretError> {
    let failed = |reason: String| SecretError::Command {
        command: command.to_owned(),
        reason,
    };
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| failed(e.to_string()))?;
    // Read on a thread of its own: a command that prints nothing and never exits (a prompt)
    // must not block the wait below.
    let mut stdout = child
        .stdout
        .take()
        .ok_or_else(|| failed("no stdout".into()))?;
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let read = (&mut stdout)
            .take(MAX_COMMAND_OUTPUT as u64 + 1)
            .read_to_end(&mut out);
        read.map(|_| out)
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                // The reader ends when the last writer (a child of the shell, maybe) closes the
                // pipe; it is not waited for.
                return Err(SecretError::Timeout {
                    command: command.to_owned(),
                    timeout,
                });
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(failed(e.to_string())),
        }
    };
    let out = reader
        .join()
        .map_err(|_| failed("reading its output failed".into()))?
        .map_err(|e| failed(e.to_string()));
    // Too much output first: the command then dies of the pipe closed behind it.
    if out.as_ref().is_ok_and(|o| o.len() > MAX_COMMAND_OUTPUT) {
        return Err(failed(format!(
            "it printed more than {} KiB, which is no secret",
            MAX_COMMAND_OUTPUT / 1024
        )));
    }
    if !status.success() {
        return Err(failed(status.to_string()));
    }
    let out = out?;
    String::from_utf8(out).map_err(|_| failed("output is not UTF-8".into()))
}

/// A plan's secret reference, resolved at most once while anything holds it: the first
/// [`get`](Self::get) resolves it (others asking meanwhile wait for that answer), later ones
/// return the kept value or failure. Held by the logins of a run's runners (see [`shared`]).
pub struct SharedSecret {
    reference: SecretRef,
    base_dir: PathBuf,
    value: OnceLock<Result<Secret, SecretError>>,
}

impl fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedSecret")
            .field("reference", &self.reference)
            .field("base_dir", &self.base_dir)
            .finish_non_exhaustive()
    }
}

impl SharedSecret {
    /// The reference, for descriptions and errors (never the value).
    pub fn reference(&self) -> &SecretRef {
        &self.reference
    }

    /// The value, resolving the reference on first use. Blocking (a `{ command }` may run for
    /// up to [`COMMAND_TIMEOUT`]): call it from a blocking task.
    pub fn get(&self) -> Result<Secret, SecretError> {
        self.value
            .get_or_init(|| resolve(&self.reference, &self.base_dir, false))
            .clone()
    }
}

/// The [`SharedSecret`] of `reference` in a plan at `base_dir`: the same one for every caller
/// while any holds it, so each reference is resolved once per run.
pub fn shared(reference: &SecretRef, base_dir: &Path) -> Arc<SharedSecret> {
    static LIVE: crate::live::LiveRegistry<SharedSecret> = crate::live::LiveRegistry::new();
    // The key holds an inline literal's value too (in memory only): two different literals
    // are two secrets.
    let key = format!(
        "{}|{}",
        serde_json::to_string(reference).unwrap_or_default(),
        base_dir.display()
    );
    LIVE.get_or_insert(key, || SharedSecret {
        reference: reference.clone(),
        base_dir: base_dir.to_path_buf(),
        value: OnceLock::new(),
    })
}

fn strip_one_newline(mut text: String) -> String {
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::model::{CommandSecret, EnvSecret, FileSecret};

    #[test]
    fn resolves_each_kind_and_never_prints_the_value() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "from-file\n").unwrap();
        std::env::set_var("CUTOVER_SECRET_TEST_VAR", "from-env");
        let env = resolve(
            &SecretRef::Env(EnvSecret {
                env: "CUTOVER_SECRET_TEST_VAR".into(),
            }),
            dir.path(),
            false,
        )
        .unwrap();
        assert_eq!(env.expose(), "from-env");
        assert_eq!(format!("{env} {env:?}"), "<redacted> <redacted>");
        let file = resolve(
            &SecretRef::File(FileSecret { file: "pw".into() }),
            dir.path(),
            false,
        )
        .unwrap();
        assert_eq!(file.expose(), "from-file");
        let command = resolve(
            &SecretRef::Command(CommandSecret {
                command: "printf 'from-command\\n'".into(),
            }),
            dir.path(),
            false,
        )
        .unwrap();
        assert_eq!(command.expose(), "from-command");
    }

    #[test]
    fn failures_name_the_reference_not_a_value() {
        let dir = tempfile::tempdir().unwrap();
        let missing = resolve(
            &SecretRef::Env(EnvSecret {
                env: "CUTOVER_SURELY_UNSET_VAR".into(),
            }),
            dir.path(),
            false,
        )
        .unwrap_err();
        assert_eq!(
            missing.to_string(),
            "missing secret (environment variable CUTOVER_SURELY_UNSET_VAR is not set)"
        );
        let failing = resolve(
            &SecretRef::Command(CommandSecret {
                command: "printf 'leaked''-value' >&2; exit 3".into(),
            }),
            dir.path(),
            false,
        )
        .unwrap_err();
        assert!(!failing.to_string().contains("leaked-value"));
        assert_eq!(
            resolve(&SecretRef::Inline("x".into()), dir.path(), false),
            Err(SecretError::Inline)
        );
    }

    #[test]
    fn a_command_that_hangs_is_stopped_with_a_clear_message() {
        let dir = tempfile::tempdir().unwrap();
        // The shell writes its pid, then becomes `sleep` (same pid).
        let command = "echo $$ > pid; exec sleep 30";
        let err = resolve_within(
            &SecretRef::Command(CommandSecret {
                command: command.into(),
            }),
            dir.path(),
            false,
            Duration::from_millis(300),
        )
        .unwrap_err();
        assert!(matches!(err, SecretError::Timeout { .. }), "{err}");
        let shown = err.to_string();
        assert!(
            shown.contains(command) && shown.contains("did not finish"),
            "{shown}"
        );
        // Stopped, not left behind: killed and reaped, its pid is gone.
        let pid = std::fs::read_to_string(dir.path().join("pid")).unwrap();
        let proc = std::path::Path::new("/proc").join(pid.trim());
        assert!(
            !proc.exists(),
            "the command still runs as {}",
            proc.display()
        );
        let flood = resolve(
            &SecretRef::Command(CommandSecret {
                command: "head -c 1000000 /dev/zero | tr '\\0' x".into(),
            }),
            dir.path(),
            false,
        )
        .unwrap_err();
        assert!(flood.to_string().contains("no secret"), "{flood}");
    }

    /// One resolution per reference and plan folder while the shared secret is held, however
    /// many connections ask at once.
    #[test]
    fn shared_secrets_resolve_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("value"), "s3cret").unwrap();
        let reference = SecretRef::Command(CommandSecret {
            command: "echo run >> count; cat value".into(),
        });
        let a = shared(&reference, dir.path());
        let b = shared(&reference, dir.path());
        assert!(Arc::ptr_eq(&a, &b));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let s = Arc::clone(&a);
                std::thread::spawn(move || s.get().unwrap().expose().to_owned())
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().unwrap(), "s3cret");
        }
        assert_eq!(b.get().unwrap().expose(), "s3cret");
        let runs = std::fs::read_to_string(dir.path().join("count")).unwrap();
        assert_eq!(runs.lines().count(), 1, "the command ran {runs:?}");
        drop((a, b));
        // Nobody holds it any more: the next run resolves afresh.
        shared(&reference, dir.path()).get().unwrap();
        let runs = std::fs::read_to_string(dir.path().join("count")).unwrap();
        assert_eq!(runs.lines().count(), 2);
        assert!(!format!("{:?}", shared(&reference, dir.path())).contains("s3cret"));
    }
}
