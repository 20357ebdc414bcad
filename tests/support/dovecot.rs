//! A throwaway Dovecot (IMAP + POP3) for integration tests.
//!
//! One instance is shared by the tests of a binary that run at the same time ([`Dovecot::shared`]
//! hands out an `Arc`; the last holder's drop stops it). Everything lives in its own temp dir:
//! `base_dir`, config, passwd-file, maildirs, logs, and a private CA plus server certificate
//! generated per run with `rcgen`, so nothing on the machine is touched and parallel test
//! binaries do not collide.
//!
//! Why the details are the way they are:
//! - Dovecot refuses to deliver mail as root, so when the tests run as root the mail uid is
//!   `nobody` (65534); the mail home is world-writable (sticky) so that uid can create its
//!   maildir. As an ordinary user every Dovecot user (login, internal, mail) is that user.
//! - Ports are free loopback ports picked by binding port 0; four listeners: imap, imaps,
//!   pop3, pop3s.
//! - The daemon's stdout/stderr and its log go to files in the temp dir; a start failure
//!   panics with their content so the reason is in the test output.
//! - Users are handed out from a pool written at start ([`Dovecot::add_user`]), so each test
//!   gets its own mailboxes. Not appended later: Dovecot re-checks a passwd-file at most once
//!   per second, so a user added right after a lookup is unknown for up to a second.
//! - A user's password is also accepted as its XOAUTH2 token: Dovecot 2.3 verifies the
//!   XOAUTH2 bearer token against the passdb like a password, which lets the XOAUTH2 code path
//!   run against a real server without an OAuth provider.

use std::fs;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// A login on the test Dovecot.
#[derive(Debug, Clone)]
pub struct User {
    pub login: String,
    pub password: String,
}

pub struct Dovecot {
    dir: tempfile::TempDir,
    child: Mutex<Child>,
    users: Mutex<u32>,
    pub imap_port: u16,
    pub imaps_port: u16,
    pub pop3_port: u16,
    pub pop3s_port: u16,
    /// PEM of the private CA that signed the server certificate (for `ca_file`).
    pub ca_pem: String,
    mail_uid: u32,
}

/// Users written to the passwd-file at start.
const USER_POOL: u32 = 200;

fn pool_login(n: u32) -> String {
    format!("user{n}@example.test")
}

fn pool_password(n: u32) -> String {
    format!("pw-{n}-{}", std::process::id())
}

static SHARED: Mutex<Weak<Dovecot>> = Mutex::new(Weak::new());

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot bind a loopback port")
}

fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().expect("run id -un");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn find_dovecot() -> PathBuf {
    for p in ["/usr/sbin/dovecot", "/usr/local/sbin/dovecot"] {
        if Path::new(p).exists() {
            return p.into();
        }
    }
    panic!(
        "dovecot is not installed (looked in /usr/sbin and /usr/local/sbin); \
         install the Debian packages dovecot-imapd and dovecot-pop3d"
    );
}

impl Dovecot {
    /// The instance of this test binary, started on first use.
    pub fn shared() -> Arc<Dovecot> {
        let mut slot = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(d) = slot.upgrade() {
            return d;
        }
        let d = Arc::new(Dovecot::start());
        *slot = Arc::downgrade(&d);
        d
    }

    /// Starts a fresh instance; panics (failing the test) with the reason when it cannot.
    pub fn start() -> Dovecot {
        Dovecot::start_full(&[], "")
    }

    /// Like [`Dovecot::start`], with `logins` (login, password) in the passwd-file besides the
    /// pool: for tests whose mailboxes need given addresses (several XOAUTH2 mailboxes
    /// sharing one app token, say).
    pub fn start_with(logins: &[(String, String)]) -> Dovecot {
        Dovecot::start_full(logins, "")
    }

    /// Like [`Dovecot::start`], with `extra` appended to its configuration (a per-user
    /// connection limit, say), for the tests that need a server configured unlike the shared
    /// one.
    pub fn start_configured(extra: &str) -> Dovecot {
        Dovecot::start_full(&[], extra)
    }

    fn start_full(logins: &[(String, String)], extra: &str) -> Dovecot {
        let binary = find_dovecot();
        let dir = tempfile::Builder::new()
            .prefix("cutover-dovecot-")
            .tempdir()
            .expect("create temp dir");
        let root = dir.path().to_path_buf();
        // Login processes (dovenull) and mail processes (nobody) must traverse it.
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
        let home = root.join("home");
        fs::create_dir(&home).unwrap();
        fs::set_permissions(&home, fs::Permissions::from_mode(0o1777)).unwrap();
        let mut passwd = String::new();
        for n in 1..=USER_POOL {
            passwd.push_str(&format!(
                "{}:{{PLAIN}}{}::::::\n",
                pool_login(n),
                pool_password(n)
            ));
        }
        for (login, password) in logins {
            passwd.push_str(&format!("{login}:{{PLAIN}}{password}::::::\n"));
        }
        fs::write(root.join("passwd"), passwd).unwrap();
        fs::set_permissions(root.join("passwd"), fs::Permissions::from_mode(0o644)).unwrap();

        let (ca_pem, cert_pem, key_pem) = make_certs();
        fs::write(root.join("ca.pem"), &ca_pem).unwrap();
        fs::write(root.join("cert.pem"), cert_pem).unwrap();
        fs::write(root.join("key.pem"), key_pem).unwrap();

        let is_root = unsafe { libc::geteuid() } == 0;
        let (mail_uid, mail_gid, users_line) = if is_root {
            (65534, 65534, String::new())
        } else {
            let me = current_user();
            let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
            (
                uid,
                gid,
                format!("default_login_user = {me}\ndefault_internal_user = {me}\n"),
            )
        };
        let ports = [free_port(), free_port(), free_port(), free_port()];
        let ssl_dh = if Path::new("/usr/share/dovecot/dh.pem").exists() {
            "ssl_dh = </usr/share/dovecot/dh.pem\n"
        } else {
            ""
        };
        let r = root.display();
        let config = format!(
            r#"# generated by tests/support/dovecot.rs
base_dir = {r}/run
state_dir = {r}/state
log_path = {r}/dovecot.log
protocols = imap pop3
listen = 127.0.0.1
{users_line}first_valid_uid = 1
ssl = yes
ssl_cert = <{r}/cert.pem
ssl_key = <{r}/key.pem
{ssl_dh}disable_plaintext_auth = no
auth_mechanisms = plain login xoauth2
auth_failure_delay = 0
mail_location = maildir:~/Maildir
mail_uid = {mail_uid}
mail_gid = {mail_gid}
pop3_uidl_format = %08Xu%08Xv
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {r}/passwd
}}
userdb {{
  driver = static
  args = uid={mail_uid} gid={mail_gid} home={r}/home/%u
}}
namespace inbox {{
  inbox = yes
  mailbox Sent {{
    special_use = \Sent
  }}
  mailbox Drafts {{
    special_use = \Drafts
  }}
  mailbox Trash {{
    special_use = \Trash
  }}
  mailbox Junk {{
    special_use = \Junk
  }}
  mailbox Archive {{
    special_use = \Archive
  }}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {p0}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {p1}
    ssl = yes
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {p2}
  }}
  inet_listener pop3s {{
    address = 127.0.0.1
    port = {p3}
    ssl = yes
  }}
}}
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
{extra}
"#,
            p0 = ports[0],
            p1 = ports[1],
            p2 = ports[2],
            p3 = ports[3],
        );
        let conf = root.join("dovecot.conf");
        fs::write(&conf, config).unwrap();
        let stdout = fs::File::create(root.join("stdout.log")).unwrap();
        let stderr = fs::File::create(root.join("stderr.log")).unwrap();
        let child = Command::new(&binary)
            .arg("-F")
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary.display()));
        let d = Dovecot {
            dir,
            child: Mutex::new(child),
            users: Mutex::new(0),
            imap_port: ports[0],
            imaps_port: ports[1],
            pop3_port: ports[2],
            pop3s_port: ports[3],
            ca_pem,
            mail_uid,
        };
        d.wait_ready();
        d
    }

    /// Waits until both plaintext listeners greet; on a deadline or an early exit, panics with
    /// the daemon's output and log.
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut pending = vec![(self.imap_port, "* OK"), (self.pop3_port, "+OK")];
        while !pending.is_empty() {
            if let Ok(Some(status)) = self.child.lock().unwrap().try_wait() {
                panic!("dovecot exited during start ({status}):\n{}", self.logs());
            }
            if Instant::now() > deadline {
                panic!("dovecot did not greet within 20s:\n{}", self.logs());
            }
            let (port, want) = pending[0];
            if greets(port, want) {
                pending.remove(0);
            } else {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// stdout, stderr and the log file, for failure messages.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        for f in ["stdout.log", "stderr.log", "dovecot.log"] {
            let text = fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
            s.push_str(&format!("--- {f} ---\n{text}\n"));
        }
        s
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A user no other test of this instance has: the next one of the pool. `hint` is only
    /// for readability at call sites.
    pub fn add_user(&self, hint: &str) -> User {
        let _ = hint;
        let mut n = self.users.lock().unwrap_or_else(|e| e.into_inner());
        *n += 1;
        assert!(
            *n <= USER_POOL,
            "test Dovecot user pool ({USER_POOL}) exhausted"
        );
        User {
            login: pool_login(*n),
            password: pool_password(*n),
        }
    }

    /// The user's maildir on disk (exists after the first login that touched it).
    pub fn maildir(&self, user: &User) -> PathBuf {
        self.dir
            .path()
            .join("home")
            .join(&user.login)
            .join("Maildir")
    }

    /// Writes a message straight into a user's INBOX maildir (`new/`), as a delivery agent
    /// would; for seeding POP3 mailboxes without an SMTP server. The files are chowned to the
    /// mail uid so Dovecot can rename and delete them.
    pub fn deliver(&self, user: &User, name: &str, bytes: &[u8]) {
        let md = self.maildir(user);
        for sub in ["", "new", "cur", "tmp"] {
            let p = md.join(sub);
            if !p.exists() {
                fs::create_dir_all(&p).unwrap();
                self.chown(&p);
            }
        }
        let path = md.join("new").join(name);
        fs::write(&path, bytes).unwrap();
        self.chown(&path);
    }

    fn chown(&self, path: &Path) {
        if unsafe { libc::geteuid() } != 0 {
            return;
        }
        let mut p = path.to_path_buf();
        // Also the user's home, created above the maildir.
        loop {
            let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
            unsafe { libc::chown(c.as_ptr(), self.mail_uid, self.mail_uid) };
            if p.parent() == Some(&self.dir.path().join("home")) || !p.pop() {
                break;
            }
            if !p.starts_with(self.dir.path().join("home")) {
                break;
            }
        }
    }
}

fn greets(port: u16, want: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = [0u8; 256];
    match s.read(&mut buf) {
        Ok(n) => String::from_utf8_lossy(&buf[..n]).starts_with(want),
        Err(_) => false,
    }
}

/// A private CA and a server certificate for `localhost`/`127.0.0.1` signed by it: (CA PEM,
/// certificate PEM, key PEM).
pub fn make_certs() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "cutover test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}

impl Drop for Dovecot {
    /// SIGTERM lets the master stop its children; SIGKILL only if it does not exit.
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|e| e.into_inner());
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() > deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }
}
