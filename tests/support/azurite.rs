//! A throwaway Azurite (Microsoft's Azure Storage emulator, npm `azurite`) for integration
//! tests: blob service only, in memory, on a free loopback port, started by the test binary
//! and killed when the last holder drops it. A test that needs it and cannot start it fails.
//!
//! `--skipApiVersionCheck`: the SDK sends a newer `x-ms-version` than Azurite knows.
//! The tests sign their own SAS tokens with Azurite's well-known development account key
//! (HMAC-SHA256, as the service does) and check results with plain HTTP requests (ureq),
//! independently of the SDK under test.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use base64::Engine;
use hmac::{KeyInit, Mac};

/// Azurite's development account (documented by Microsoft; not a secret).
pub const ACCOUNT: &str = "devstoreaccount1";
const ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
/// The service version the tests' own requests and SAS tokens use.
const VERSION: &str = "2022-11-02";
const EXPIRY: &str = "2099-01-01T00:00:00Z";

pub struct Azurite {
    _dir: tempfile::TempDir,
    child: Mutex<Child>,
    pub port: u16,
    log: PathBuf,
}

static SHARED: Mutex<Weak<Azurite>> = Mutex::new(Weak::new());

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot bind a loopback port")
}

fn find_azurite() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join("azurite-blob");
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!("azurite-blob is not installed (not on PATH); install it with `npm install -g azurite`");
}

impl Azurite {
    /// The instance of this test binary, started on first use.
    pub fn shared() -> Arc<Azurite> {
        let mut slot = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(a) = slot.upgrade() {
            return a;
        }
        let a = Arc::new(Azurite::start());
        *slot = Arc::downgrade(&a);
        a
    }

    /// Starts a fresh instance; panics with its log when it does not come up.
    pub fn start() -> Azurite {
        let binary = find_azurite();
        let dir = tempfile::Builder::new()
            .prefix("cutover-azurite-")
            .tempdir()
            .expect("create temp dir");
        let port = free_port();
        let log = dir.path().join("azurite.log");
        let out = std::fs::File::create(dir.path().join("stdout.log")).unwrap();
        let err = out.try_clone().unwrap();
        let child = Command::new(&binary)
            .args([
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                &port.to_string(),
                "--inMemoryPersistence",
                "--skipApiVersionCheck",
                "--debug",
                log.to_str().unwrap(),
            ])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let azurite = Azurite {
            child: Mutex::new(child),
            port,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return azurite;
            }
            if let Ok(Some(status)) = azurite.child.lock().unwrap().try_wait() {
                panic!(
                    "azurite exited at start ({status}): {}",
                    azurite.output_tail()
                );
            }
            assert!(
                Instant::now() < deadline,
                "azurite did not listen on port {port} within 30 s: {}",
                azurite.output_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn output_tail(&self) -> String {
        let stdout =
            std::fs::read_to_string(self._dir.path().join("stdout.log")).unwrap_or_default();
        let debug = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: String = debug
            .chars()
            .rev()
            .take(3000)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        format!("{stdout}\n{tail}")
    }

    /// `http://127.0.0.1:<port>/devstoreaccount1`
    pub fn account_url(&self) -> String {
        format!("http://127.0.0.1:{}/{ACCOUNT}", self.port)
    }

    /// Creates a container (an account SAS signs the request).
    pub fn create_container(&self, container: &str) {
        let url = format!(
            "{}/{container}?restype=container&{}",
            self.account_url(),
            account_sas()
        );
        let response = ureq::put(&url)
            .header("x-ms-version", VERSION)
            .config()
            .http_status_as_error(false)
            .build()
            .send_empty()
            .expect("create container request");
        assert!(
            response.status() == 201 || response.status() == 409,
            "create container {container}: HTTP {}",
            response.status()
        );
    }

    /// A container SAS URL as the Purview portal hands out: service SAS, `sr=c`,
    /// read/write/list, signed with the account key.
    pub fn container_sas_url(&self, container: &str) -> String {
        format!(
            "{}/{container}?{}",
            self.account_url(),
            container_sas(container, "rwl")
        )
    }

    /// The blob's bytes, read with a plain GET (account SAS).
    pub fn download(&self, container: &str, blob: &str) -> Vec<u8> {
        let mut out = Vec::new();
        self.get_blob(container, blob)
            .read_to_end(&mut out)
            .expect("read blob");
        out
    }

    /// MD5 of the blob's bytes, streamed.
    pub fn blob_md5(&self, container: &str, blob: &str) -> [u8; 16] {
        use md5::Digest;
        let mut reader = self.get_blob(container, blob);
        let mut hasher = md5::Md5::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = reader.read(&mut buf).expect("read blob");
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        hasher.finalize().into()
    }

    fn get_blob(&self, container: &str, blob: &str) -> impl Read {
        let url = format!(
            "{}/{container}/{}?{}",
            self.account_url(),
            encode_path(blob),
            account_sas()
        );
        let response = ureq::get(&url)
            .header("x-ms-version", VERSION)
            .call()
            .unwrap_or_else(|e| panic!("GET {container}/{blob}: {e}"));
        response.into_body().into_reader()
    }

    /// The blob's properties as headers (`content-length`, `content-md5`, …); `None` for 404.
    pub fn blob_headers(&self, container: &str, blob: &str) -> Option<Vec<(String, String)>> {
        let url = format!(
            "{}/{container}/{}?{}",
            self.account_url(),
            encode_path(blob),
            account_sas()
        );
        let response = ureq::head(&url)
            .header("x-ms-version", VERSION)
            .config()
            .http_status_as_error(false)
            .build()
            .call()
            .expect("HEAD blob");
        if response.status() == 404 {
            return None;
        }
        Some(
            response
                .headers()
                .iter()
                .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
                .collect(),
        )
    }

    /// Uncommitted block count of a blob (0 when it does not exist).
    pub fn uncommitted_blocks(&self, container: &str, blob: &str) -> usize {
        let url = format!(
            "{}/{container}/{}?comp=blocklist&blocklisttype=uncommitted&{}",
            self.account_url(),
            encode_path(blob),
            account_sas()
        );
        let mut response = ureq::get(&url)
            .header("x-ms-version", VERSION)
            .config()
            .http_status_as_error(false)
            .build()
            .call()
            .expect("Get Block List");
        if response.status() == 404 {
            return 0;
        }
        let text = response.body_mut().read_to_string().unwrap_or_default();
        text.matches("<Block>").count()
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn encode_path(blob: &str) -> String {
    blob.split('/')
        .map(|part| {
            percent_encoding::utf8_percent_encode(part, percent_encoding::NON_ALPHANUMERIC)
                .to_string()
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn sign(string_to_sign: &str) -> String {
    let key = base64::engine::general_purpose::STANDARD
        .decode(ACCOUNT_KEY)
        .unwrap();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(string_to_sign.as_bytes());
    let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    percent_encoding::utf8_percent_encode(&sig, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// A service SAS for a container (version 2020-12-06 and later string-to-sign).
pub fn container_sas(container: &str, permissions: &str) -> String {
    let resource = format!("/blob/{ACCOUNT}/{container}");
    let string_to_sign = [
        permissions,
        "",
        EXPIRY,
        &resource,
        "",
        "",
        "",
        VERSION,
        "c",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
    ]
    .join("\n");
    format!(
        "sv={VERSION}&sr=c&sp={permissions}&se={}&sig={}",
        EXPIRY.replace(':', "%3A"),
        sign(&string_to_sign)
    )
}

/// An account SAS for the blob service with every permission (test set-up and checks).
pub fn account_sas() -> String {
    let permissions = "rwdlac";
    let string_to_sign = [
        ACCOUNT,
        permissions,
        "b",
        "sco",
        "",
        EXPIRY,
        "",
        "",
        VERSION,
        "",
        "",
    ]
    .join("\n");
    format!(
        "sv={VERSION}&ss=b&srt=sco&sp={permissions}&se={}&sig={}",
        EXPIRY.replace(':', "%3A"),
        sign(&string_to_sign)
    )
}
