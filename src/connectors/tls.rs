//! One trust store for every TLS connection cutover makes: IMAP, POP3 (through
//! [`super::net`]) and HTTPS (the token requests of [`super::http`]).
//!
//! The system's CA certificates are loaded once per process by `rustls-native-certs`, which
//! honours `SSL_CERT_FILE` and `SSL_CERT_DIR` and otherwise finds the platform's store (the
//! OpenSSL bundle paths on Linux, the keychain on macOS, the Windows store). One rustls
//! configuration — one certificate verifier — is built from them and shared by every
//! connection; a server entry's `ca_file` adds its certificates to a configuration of its own,
//! built once per file content. No trusted certificate at all is an error that says what to
//! do, never a store that silently trusts nothing.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

/// The system's trusted certificates, as loaded at first use.
struct SystemRoots {
    certs: Vec<CertificateDer<'static>>,
    /// What went wrong loading them (unreadable files, broken entries), for the error shown
    /// when nothing usable was found.
    problems: Vec<String>,
}

static SYSTEM: LazyLock<SystemRoots> = LazyLock::new(|| {
    let found = rustls_native_certs::load_native_certs();
    SystemRoots {
        certs: found.certs,
        problems: found.errors.iter().map(ToString::to_string).collect(),
    }
});

/// Configurations built so far: the system's (key `None`) and one per `ca_file` content.
type Configs = HashMap<Option<Vec<u8>>, Arc<ClientConfig>>;
static CONFIGS: LazyLock<Mutex<Configs>> = LazyLock::new(Mutex::default);

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    static PROVIDER: LazyLock<Arc<rustls::crypto::CryptoProvider>> =
        LazyLock::new(|| Arc::new(rustls::crypto::ring::default_provider()));
    Arc::clone(&PROVIDER)
}

/// Why no certificate is trusted, and what to do about it.
fn no_roots() -> String {
    let mut text =
        String::from("no trusted CA certificates: the system store is empty or unreadable");
    for var in ["SSL_CERT_FILE", "SSL_CERT_DIR"] {
        if let Some(value) = std::env::var_os(var) {
            text.push_str(&format!(" ({var}={})", Path::new(&value).display()));
        }
    }
    if let Some(first) = SYSTEM.problems.first() {
        text.push_str(&format!(": {first}"));
    }
    text.push_str(
        "; install the system's CA certificates (`ca-certificates`), point SSL_CERT_FILE at a PEM bundle, or set `ca_file` for the server",
    );
    text
}

/// The rustls configuration for a connection: the system roots, plus the certificates of
/// `ca_file` when given. Built once per distinct set and shared.
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, String> {
    let extra = match ca_file {
        Some(path) => {
            Some(std::fs::read(path).map_err(|e| format!("ca_file {}: {e}", path.display()))?)
        }
        None => None,
    };
    let mut configs = CONFIGS.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(config) = configs.get(&extra) {
        return Ok(Arc::clone(config));
    }
    let mut roots = RootCertStore::empty();
    // A broken entry in the system store must not make every server unreachable.
    roots.add_parsable_certificates(SYSTEM.certs.iter().cloned());
    if let (Some(path), Some(pem)) = (ca_file, extra.as_deref()) {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("ca_file {}: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!(
                "ca_file {}: no PEM certificate in it",
                path.display()
            ));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| format!("ca_file {}: {e}", path.display()))?;
        }
    }
    if roots.is_empty() {
        return Err(no_roots());
    }
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| e.to_string())?;
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_webpki_verifier(verifier)
        .with_no_client_auth();
    let config = Arc::new(config);
    configs.insert(extra, Arc::clone(&config));
    Ok(config)
}

/// The system roots as the HTTP client takes them (the same certificates the mail
/// connections trust), or why there are none.
pub(crate) fn http_roots() -> Result<ureq::tls::RootCerts, String> {
    static ROOTS: LazyLock<Arc<Vec<ureq::tls::Certificate<'static>>>> = LazyLock::new(|| {
        Arc::new(
            SYSTEM
                .certs
                .iter()
                .map(|c| ureq::tls::Certificate::from_der(c.as_ref()).to_owned())
                .collect(),
        )
    });
    if ROOTS.is_empty() {
        return Err(no_roots());
    }
    Ok(ureq::tls::RootCerts::Specific(Arc::clone(&ROOTS)))
}

/// The crypto provider every TLS connection uses (ring), for the HTTP client's configuration.
pub(crate) fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    provider()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_configuration_per_trust_set() {
        let dir = tempfile::tempdir().unwrap();
        let ca = rcgen::generate_simple_self_signed(vec!["ca.test".into()]).unwrap();
        let pem = dir.path().join("ca.pem");
        std::fs::write(&pem, ca.cert.pem()).unwrap();
        let a = client_config(Some(&pem)).unwrap();
        let b = client_config(Some(&pem)).unwrap();
        assert!(Arc::ptr_eq(&a, &b), "built once per ca_file content");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = client_config(Some(&empty)).unwrap_err();
        assert!(err.contains("no PEM certificate"), "{err}");
        let missing = client_config(Some(&dir.path().join("missing.pem"))).unwrap_err();
        assert!(missing.contains("missing.pem"), "{missing}");
    }
}
