//! Throwaway Knot DNS servers for the DNS tests: a primary serving zone files and accepting
//! RFC 2136 updates signed with one TSIG key, and secondaries that copy it by zone transfer
//! only when told to ([`Knot::refresh`]), so a test controls exactly how long one lags.
//!
//! Each instance runs `knotd` in the foreground in its own temp dir (config, zone files,
//! journal, control socket, log) on a free loopback port; it is stopped on drop. A start that
//! fails panics with the log, and a missing `knotd` fails the test: install the Debian
//! packages `knot knot-dnsutils` (`.ci/run` does).

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The TSIG key name every primary accepts updates from.
pub const KEY_NAME: &str = "cutover-key.";

pub struct Knot {
    dir: tempfile::TempDir,
    child: Child,
    pub port: u16,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot bind a loopback port")
}

fn knotd() -> PathBuf {
    for p in ["/usr/sbin/knotd", "/usr/local/sbin/knotd"] {
        if Path::new(p).exists() {
            return p.into();
        }
    }
    panic!("knotd is not installed; install the Debian packages knot and knot-dnsutils");
}

impl Knot {
    /// A primary for `zones` (name, zone-file text) accepting updates signed with
    /// [`KEY_NAME`] and `secret_b64` (hmac-sha256), and transfers to loopback.
    pub fn primary(zones: &[(&str, &str)], secret_b64: &str) -> Knot {
        let dir = temp_dir();
        let mut zone_conf = String::new();
        for (name, text) in zones {
            fs::write(dir.path().join(format!("{name}.zone")), text).unwrap();
            zone_conf.push_str(&format!(
                "  - domain: {name}\n    file: {name}.zone\n    acl: [update, transfer]\n"
            ));
        }
        let config = format!(
            "key:\n  - id: {KEY_NAME}\n    algorithm: hmac-sha256\n    secret: {secret_b64}\n\
             acl:\n  - id: update\n    key: {KEY_NAME}\n    action: update\n\
             \x20 - id: transfer\n    address: 127.0.0.0/8\n    action: transfer\n\
             zone:\n{zone_conf}"
        );
        Knot::start(dir, &config, zones.iter().map(|(n, _)| *n))
    }

    /// A secondary of `primary` for `zones`. It transfers the zones once at start and then
    /// only on [`refresh`](Self::refresh): no NOTIFY reaches it and its refresh timer is a day.
    pub fn secondary(primary: &Knot, zones: &[&str]) -> Knot {
        let dir = temp_dir();
        let mut zone_conf = String::new();
        for name in zones {
            zone_conf.push_str(&format!(
                "  - domain: {name}\n    master: primary\n    refresh-min-interval: 86400\n    refresh-max-interval: 86400\n"
            ));
        }
        let config = format!(
            "remote:\n  - id: primary\n    address: 127.0.0.1@{}\nzone:\n{zone_conf}",
            primary.port
        );
        Knot::start(dir, &config, zones.iter().copied())
    }

    fn start<'a>(
        dir: tempfile::TempDir,
        zones_config: &str,
        zones: impl Iterator<Item = &'a str>,
    ) -> Knot {
        let port = free_port();
        let root = dir.path().display().to_string();
        let config = format!(
            "server:\n    listen: 127.0.0.1@{port}\n    rundir: {root}\n\
             log:\n  - target: {root}/knot.log\n    any: info\n\
             database:\n    storage: {root}\n\
             template:\n  - id: default\n    storage: {root}\n    zonefile-sync: -1\n    journal-content: all\n\
             {zones_config}"
        );
        let conf_path = dir.path().join("knot.conf");
        fs::write(&conf_path, config).unwrap();
        let child = Command::new(knotd())
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.path().join("stderr.log")).unwrap())
            .spawn()
            .expect("start knotd");
        let mut knot = Knot { dir, child, port };
        for zone in zones {
            knot.wait_serving(zone);
        }
        knot
    }

    /// `127.0.0.1:<port>`, as `dns.nameservers` and `rfc2136` take it.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The zone's records of `name`/`rtype` as `kdig +short` prints them, with TTLs:
    /// `3600 MX 10 mx00.ionos.co.uk.` lines, sorted.
    pub fn answer(&self, name: &str, rtype: &str) -> Vec<String> {
        let port = self.port.to_string();
        let out = Command::new("kdig")
            .args([
                "@127.0.0.1",
                "-p",
                &port,
                "+tcp",
                "+norec",
                "+noall",
                "+answer",
                name,
                rtype,
            ])
            .output()
            .expect("run kdig (Debian package knot-dnsutils)");
        let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let parts: Vec<&str> = l.split_whitespace().collect();
                (parts.len() >= 5)
                    .then(|| format!("{} {} {}", parts[1], parts[3], parts[4..].join(" ")))
            })
            .collect();
        lines.sort();
        lines
    }

    /// The zone's SOA serial.
    pub fn serial(&self, zone: &str) -> u32 {
        self.answer(zone, "SOA")
            .first()
            .and_then(|l| l.split_whitespace().nth(4))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no SOA for {zone} at {}", self.addr()))
    }

    /// Makes a secondary transfer the zone from its primary now, and waits until it serves
    /// the primary's serial.
    pub fn refresh(&self, zone: &str, primary: &Knot) {
        let status = Command::new("knotc")
            .arg("-s")
            .arg(self.dir.path().join("knot.sock"))
            .args(["zone-refresh", zone])
            .stdout(Stdio::null())
            .status()
            .expect("run knotc");
        assert!(status.success(), "knotc zone-refresh {zone} failed");
        let want = primary.serial(zone);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.serial(zone) != want {
            assert!(
                Instant::now() < deadline,
                "secondary did not reach serial {want}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_serving(&mut self, zone: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("knotd exited ({status}):\n{}", self.log());
            }
            if !self.answer(zone, "SOA").is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "knotd does not serve {zone}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        let read = |f: &str| fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
        format!("{}{}", read("knot.log"), read("stderr.log"))
    }
}

impl Drop for Knot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("cutover-knot-")
        .tempdir()
        .expect("create temp dir")
}
