//! One trust store for every TLS connection: the system store is what `SSL_CERT_FILE` and
//! `SSL_CERT_DIR` say (else the platform's), mail connections and the token request trust the
//! same certificates, and a store with nothing in it is a clear error. Each case runs the
//! `cutover` binary, since the store is loaded once per process.
mod support;

use std::path::Path;
use std::process::Command;

use support::dovecot::{make_certs, Dovecot};
use support::token_endpoint::{https_token_endpoint_always, ok_token};

/// `cutover plan` on `plan` with the trust environment `env` (other SSL_ variables removed).
fn plan(plan: &Path, env: &[(&str, &Path)]) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cutover"));
    command
        .args(["plan"])
        .arg(plan)
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR");
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command.output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// An IMAP source at Dovecot's TLS port *without* `ca_file`: only the system store can make
/// its private CA trusted.
#[test]
fn ssl_cert_file_and_dir_are_the_system_store() {
    let d = Dovecot::shared();
    let user = d.add_user("trust");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pw"), &user.password).unwrap();
    let plan_file = dir.path().join("plan.yaml");
    std::fs::write(
        &plan_file,
        format!(
            r#"version: 1
name: trust
domain: example.test
target: {{ kind: maildir, path: out }}
sources:
  old: {{ kind: imap, host: 127.0.0.1, port: {port} }}
users:
  - email: bob@example.test
    migrate:
      - {{ from: old, login: {login}, password: {{ file: pw }} }}
"#,
            port = d.imaps_port,
            login = user.login
        ),
    )
    .unwrap();
    let certs = dir.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    std::fs::copy(d.ca_file(), certs.join("cutover-test-ca.pem")).unwrap();
    let empty_dir = dir.path().join("empty");
    std::fs::create_dir(&empty_dir).unwrap();
    let empty_file = dir.path().join("empty.pem");
    std::fs::write(&empty_file, "").unwrap();

    let by_file = plan(&plan_file, &[("SSL_CERT_FILE", &d.ca_file())]);
    assert!(
        by_file.contains("+ copy.bob.old") && !by_file.contains("blocked"),
        "{by_file}"
    );
    let by_dir = plan(&plan_file, &[("SSL_CERT_DIR", &certs)]);
    assert!(
        by_dir.contains("+ copy.bob.old") && !by_dir.contains("blocked"),
        "{by_dir}"
    );
    // The platform's store does not know this CA.
    let untrusted = plan(&plan_file, &[]);
    assert!(
        untrusted.contains("! copy.bob.old") && untrusted.contains("TLS"),
        "{untrusted}"
    );
    // Nothing trusted at all: said so, with what to do.
    let nothing = plan(
        &plan_file,
        &[("SSL_CERT_FILE", &empty_file), ("SSL_CERT_DIR", &empty_dir)],
    );
    assert!(
        nothing.contains("no trusted CA certificates") && nothing.contains("ca_file"),
        "{nothing}"
    );
}

/// The token request trusts what the mail connections trust: a token endpoint whose
/// certificate a private CA signed is reached once that CA is in SSL_CERT_FILE, and refused
/// without it (ureq's own compiled-in roots are not used). Run in a child process: the store
/// is loaded once per process.
#[test]
fn the_token_request_trusts_the_same_store() {
    let mailbox_token = "token-issued-over-https";
    let (ca, cert, key) = make_certs();
    let endpoint = https_token_endpoint_always(ok_token(mailbox_token, 3599), &cert, &key);
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("https-ca.pem");
    std::fs::write(&ca_file, ca).unwrap();
    let fetch = |ca: Option<&Path>| {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .args([
                "token_request_child",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_URL, &endpoint.url)
            .env_remove("SSL_CERT_FILE")
            .env_remove("SSL_CERT_DIR");
        if let Some(ca) = ca {
            command.env("SSL_CERT_FILE", ca);
        }
        let out = command.output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let trusted = fetch(Some(&ca_file));
    assert!(
        trusted.contains(&format!("TOKEN:{mailbox_token}")),
        "{trusted}"
    );
    assert_eq!(endpoint.request_count(), 1);
    let untrusted = fetch(None);
    assert!(
        untrusted.contains("ERROR:") && untrusted.contains("token request"),
        "{untrusted}"
    );
    assert_eq!(endpoint.request_count(), 1, "no request got through");
}

const CHILD_URL: &str = "CUTOVER_TRUST_TEST_TOKEN_URL";

/// The child side of [`the_token_request_trusts_the_same_store`]; does nothing in a normal
/// test run.
#[test]
fn token_request_child() {
    let Ok(url) = std::env::var(CHILD_URL) else {
        return;
    };
    let source = cutover::connectors::oauth::TokenSource::new(
        url,
        "app",
        cutover::secrets::Secret::new("app-secret"),
        cutover::connectors::oauth::M365_MAIL_SCOPE,
    );
    match source.and_then(|s| s.token()) {
        Ok(token) => println!("TOKEN:{}", token.expose()),
        Err(e) => println!("ERROR:{e}"),
    }
}
