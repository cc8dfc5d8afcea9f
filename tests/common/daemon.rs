//! A daemon binary run as a child process, with its log lines as they come.
#![allow(dead_code)] // not every test binary uses every helper

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A daemon started with a config, its standard error read line by line.
pub struct Daemon {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Daemon {
    pub fn start(binary: &str, config: &Path) -> Self {
        Self::start_with(binary, config, &[])
    }

    pub fn start_with(binary: &str, config: &Path, env: &[(&str, &Path)]) -> Self {
        let mut child = Command::new(binary)
            .env("SN2_CONFIG", config)
            .envs(env.iter().copied())
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (sender, lines) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a log line containing `needle`; the limit only keeps a broken daemon from
    /// hanging the test suite.
    pub fn wait_for(&mut self, needle: &str) -> String {
        loop {
            match self.lines.recv_timeout(Duration::from_secs(60)) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!("no log line with {needle:?}; saw {:#?}", self.seen),
            }
        }
    }

    /// The daemon's own `ready` line, logged once every listener is bound; not a line
    /// that only contains the word (a model's, or "already").
    pub fn wait_for_ready(&mut self) -> String {
        loop {
            let line = self.wait_for("ready");
            if line.contains(": ready ")
                || line.ends_with(": ready")
                || line.contains("\"message\":\"ready\"")
            {
                return line;
            }
        }
    }

    /// Waits up to `limit` for the daemon to exit on its own: its status, or `None` if it
    /// is still running.
    pub fn exited_within(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if std::time::Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Every log line so far.
    pub fn lines_so_far(&mut self) -> Vec<String> {
        self.seen.extend(self.lines.try_iter());
        self.seen.clone()
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub fn finish(mut self) -> (std::process::ExitStatus, Vec<String>) {
        let status = self.child.wait().unwrap();
        let mut seen = std::mem::take(&mut self.seen);
        seen.extend(self.lines.iter());
        (status, seen)
    }
}

/// A test that fails midway leaves no daemon behind to hold its ports for the next test.
impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
