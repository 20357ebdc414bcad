//! Child processes for state tests: the test binary re-runs itself with only the
//! `child_process_entry` test selected and a role in the environment. A separate helper binary
//! would be built only by some `cargo test` invocations; the test binary itself always exists.

use std::io::{BufRead, BufReader, Lines};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};

pub const ROLE_ENV: &str = "CUTOVER_STATE_TEST_ROLE";
pub const DB_ENV: &str = "CUTOVER_STATE_TEST_DB";

/// What a child prints before each message, so the parent can find it among libtest's output.
pub const MARK: &str = "CHILD:";

/// The role this process was started for, if it is a child.
pub fn child_role() -> Option<(String, std::path::PathBuf)> {
    let role = std::env::var(ROLE_ENV).ok()?;
    let db = std::env::var_os(DB_ENV).expect("child started without a database path");
    Some((role, db.into()))
}

/// Prints a message for the parent and flushes, so the parent sees it before anything else
/// the child does (or before it is killed).
pub fn tell_parent(message: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{MARK}{message}").unwrap();
    out.flush().unwrap();
}

/// A running child; killed and reaped on drop so a failing test leaves no process behind.
pub struct ChildProc {
    pub child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl ChildProc {
    pub fn spawn(role: &str, db: &Path) -> ChildProc {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "child_process_entry",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ROLE_ENV, role)
            .env(DB_ENV, db)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn child test process");
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        ChildProc { child, lines }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The text after the next `CHILD:<prefix>` line. Panics if the child exits first.
    pub fn wait_for(&mut self, prefix: &str) -> String {
        let needle = format!("{MARK}{prefix}");
        for line in &mut self.lines {
            let line = line.expect("read child output");
            if let Some(at) = line.find(&needle) {
                return line[at + needle.len()..].trim().to_owned();
            }
        }
        panic!("child {} exited before printing {needle}", self.pid());
    }

    /// Closes the child's stdin: the signal for a holding child to let go and exit.
    pub fn close_stdin(&mut self) {
        drop(self.child.stdin.take());
    }

    /// SIGKILL, then reap: a reaped child's pid is gone, as after a real crash.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL child");
        self.child.wait().expect("reap child");
    }

    /// Waits for a normal exit and checks it succeeded.
    pub fn finish(&mut self) {
        let status = self.child.wait().expect("wait for child");
        assert!(status.success(), "child failed: {status}");
    }
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
