//! Resolving secret references (`{ env }`, `{ file }`, `{ command }`) at the moment a step
//! needs them. A resolved [`Secret`] prints as `<redacted>`; errors name the reference, never
//! the value.

use std::fmt;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::plan::model::SecretRef;

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

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("missing secret (environment variable {0} is not set)")]
    EnvMissing(String),
    #[error("missing secret (cannot read file {path}: {reason})")]
    File { path: String, reason: String },
    #[error("missing secret (command `{command}` failed: {reason})")]
    Command { command: String, reason: String },
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
            let output = Command::new("sh")
                .arg("-c")
                .arg(&c.command)
                .current_dir(if base_dir.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    base_dir
                })
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .output()
                .map_err(|e| SecretError::Command {
                    command: c.command.clone(),
                    reason: e.to_string(),
                })?;
            if !output.status.success() {
                // stderr is not shown: password managers may print more than they should.
                return Err(SecretError::Command {
                    command: c.command.clone(),
                    reason: format!("exit status {}", output.status),
                });
            }
            let text = String::from_utf8(output.stdout).map_err(|_| SecretError::Command {
                command: c.command.clone(),
                reason: "output is not UTF-8".into(),
            })?;
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
}
