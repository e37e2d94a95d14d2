//! A real `offpay serve` process on a loopback port the OS picks.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::database::Backend;

/// Upper bound on waiting for a server to announce itself.
pub const START_WAIT_MAX: Duration = Duration::from_secs(30);
/// Timeout of one HTTP call from a test.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// The approval amount a test server starts with unless the test sets `OFFPAY_APPROVAL_ABOVE`
/// itself: the stories of the rails fund accounts with more than the product's default, and four
/// eyes has tests of its own (`crates/server/tests/four_eyes.rs`, `crates/cli/tests/operator_users.rs`).
pub const TEST_APPROVAL_ABOVE: &str = "1000000000";

/// A running `offpay serve` (killed on drop).
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    /// Everything it wrote to stderr so far.
    stderr: Arc<Mutex<Vec<String>>>,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The data directory.
    pub data_dir: PathBuf,
    /// The operator token.
    pub token: String,
}

impl ServerProcess {
    /// Starts `binary serve` on `data_dir` and `backend`, with `environment` added (and
    /// `OFFPAY_LOG=warn`, `OFFPAY_APPROVAL_ABOVE` = [`TEST_APPROVAL_ABOVE`]) and the variables `removed` taken out of the test's own environment,
    /// and waits until it listens.
    pub fn start(
        binary: &Path,
        data_dir: &Path,
        backend: &Backend,
        environment: &[(&str, &str)],
        removed: &[&str],
    ) -> ServerProcess {
        let mut command = Command::new(binary);
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env("OFFPAY_LOG", "warn")
            .env("OFFPAY_APPROVAL_ABOVE", TEST_APPROVAL_ABOVE)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(url) = backend.database_url() {
            command.args(["--database-url", url]);
        }
        for name in removed {
            command.env_remove(name);
        }
        for (name, value) in environment {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("start offpay serve");
        let stderr = child.stderr.take().expect("the server's stderr");
        let (sender, receiver) = std::sync::mpsc::channel();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let kept = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let address = rest
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                    let _ = sender.send(address);
                }
                if let Ok(mut kept) = kept.lock() {
                    kept.push(line);
                }
            }
        });
        let address = receiver.recv_timeout(START_WAIT_MAX).unwrap_or_else(|_| {
            panic!(
                "the server announces its address; it wrote:\n{}",
                lines
                    .lock()
                    .map(|lines| lines.join("\n"))
                    .unwrap_or_default()
            )
        });
        let token = std::fs::read_to_string(data_dir.join("admin.token"))
            .expect("the token file")
            .trim()
            .to_owned();
        ServerProcess {
            child,
            stderr: lines,
            base: format!("http://{address}"),
            data_dir: data_dir.to_path_buf(),
            token,
        }
    }

    /// What the server wrote to stderr so far, one entry a line.
    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr
            .lock()
            .map(|lines| lines.clone())
            .unwrap_or_default()
    }

    /// Whether the process has ended (crashed, panicked, exited).
    pub fn has_exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Stops the server with SIGKILL (nothing acknowledged may be lost) and waits for it.
    pub fn kill(mut self) {
        self.child.kill().expect("kill the server");
        self.child.wait().expect("wait for the server");
    }

    /// `GET path` with the operator token; (status, JSON).
    pub fn get(&self, path: &str) -> (u16, Value) {
        let response = http()
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .expect("GET");
        let status = response.status().as_u16();
        (status, response.json().expect("a JSON answer"))
    }

    /// `POST path` with a JSON body and the operator token; (status, JSON).
    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let response = http()
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .expect("POST");
        let status = response.status().as_u16();
        (status, response.json().expect("a JSON answer"))
    }

    /// Asserts that every currency's balances sum to zero.
    pub fn assert_balanced(&self) {
        let (status, totals) = self.get("/api/v1/totals");
        assert_eq!(status, 200, "{totals}");
        assert_eq!(totals["balanced"], Value::Bool(true), "{totals}");
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A blocking HTTP client with [`HTTP_TIMEOUT`].
pub fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(HTTP_TIMEOUT)
        .build()
        .expect("an HTTP client")
}
