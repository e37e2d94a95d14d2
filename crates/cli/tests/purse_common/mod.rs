//! Shared by the purse tests: a real `offpay serve` process, the `offpay` CLI as a subprocess, and
//! a small operator API client. Loopback only; every wait is bounded.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use offpay_test_support::ServerProcess;
use offpay_test_support::process::http;
pub use offpay_test_support::{Backend, BackendKind};

/// A running `offpay serve`.
pub struct Server {
    process: ServerProcess,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The data directory.
    pub data_dir: PathBuf,
    /// The operator token.
    pub token: String,
}

impl Server {
    /// Starts a server on `data_dir` and `backend` (port chosen by the OS); `operator` names the
    /// purse operator when the data directory is new.
    pub fn start(data_dir: &Path, operator: Option<&str>, backend: &Backend) -> Server {
        let mut environment = Vec::new();
        if let Some(operator) = operator {
            environment.push(("OFFPAY_PURSE_OPERATOR", operator));
        }
        let process = ServerProcess::start(
            Path::new(env!("CARGO_BIN_EXE_offpay")),
            data_dir,
            backend,
            &environment,
            &["OFFPAY_PURSE_OPERATOR"],
        );
        Server {
            base: process.base.clone(),
            data_dir: process.data_dir.clone(),
            token: process.token.clone(),
            process,
        }
    }

    /// Stops the server (SIGKILL: nothing acknowledged may be lost) and waits for it.
    pub fn stop(self) {
        self.process.kill();
    }

    /// `GET /api/v1/...` with the token; returns (status, JSON).
    pub fn get(&self, path: &str) -> (u16, Value) {
        let response = http()
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .expect("GET");
        let status = response.status().as_u16();
        (status, response.json().expect("JSON"))
    }

    /// POSTs raw bytes to a device endpoint; returns (status, body).
    pub fn post_bytes(&self, path: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
        let response = http()
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/octet-stream")
            .body(body)
            .send()
            .expect("POST");
        let status = response.status().as_u16();
        (status, response.bytes().expect("body").to_vec())
    }

    /// The shadow account JSON of a purse.
    pub fn shadow(&self, phone: &str) -> Value {
        let (status, body) = self.get(&format!(
            "/api/v1/purse/purses/{}",
            phone.replace('+', "%2B")
        ));
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Asserts that every currency's balances sum to zero.
    pub fn assert_balanced(&self) {
        let (status, totals) = self.get("/api/v1/totals");
        assert_eq!(status, 200);
        assert_eq!(totals["balanced"], Value::Bool(true), "{totals}");
    }

    /// The purse rail's fraud flags.
    pub fn purse_flags(&self) -> Vec<Value> {
        let (status, body) = self.get("/api/v1/fraud?rail=purse");
        assert_eq!(status, 200, "{body}");
        body["items"].as_array().cloned().unwrap_or_default()
    }
}

/// The `offpay` CLI with this test's device secret.
pub struct Cli {
    /// Device secret file.
    pub device_secret: PathBuf,
}

/// The PIN every test purse is provisioned with.
pub const PIN: &str = "1234";

impl Cli {
    /// A CLI whose device secret lives in `directory`.
    pub fn new(directory: &Path) -> Cli {
        Cli {
            device_secret: directory.join("device.secret"),
        }
    }

    /// Runs `offpay ARGS`.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with_input(args, None)
    }

    /// Runs `offpay ARGS` with `input` on stdin. A purse command or a provisioning gets the PIN
    /// 1234 on the first line of stdin (`--pin-stdin`; a PIN is never an argument).
    pub fn run_with_input(&self, args: &[&str], input: Option<&str>) -> Output {
        self.run_with_pin(args, Some(PIN), input)
    }

    /// Runs `offpay ARGS`, giving `pin` (if any) on the first line of stdin to a purse command or
    /// a provisioning, then `input`.
    pub fn run_with_pin(&self, args: &[&str], pin: Option<&str>, input: Option<&str>) -> Output {
        let mut args: Vec<&str> = args.to_vec();
        let mut stdin = String::new();
        let provisioning = args.contains(&"provision");
        if let Some(pin) = pin
            && (args.first() == Some(&"purse") || provisioning)
        {
            args.push("--pin-stdin");
            stdin.push_str(pin);
            stdin.push('\n');
        }
        if provisioning {
            args.push("--kdf-for-tests");
        }
        if let Some(input) = input {
            stdin.push_str(input);
        }
        let input = (!stdin.is_empty()).then_some(stdin);
        let input = input.as_deref();
        let mut child = Command::new(env!("CARGO_BIN_EXE_offpay"))
            .args(&args)
            .env("OFFPAY_DEVICE_SECRET", &self.device_secret)
            .env_remove("OFFPAY_OPERATOR")
            .env_remove("OFFPAY_SERVER")
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run offpay");
        if let Some(input) = input {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(input.as_bytes())
                .expect("write stdin");
        }
        child.wait_with_output().expect("offpay output")
    }

    /// Runs `offpay ARGS --json`, expects success, returns the JSON.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all: Vec<&str> = args.to_vec();
        all.push("--json");
        let output = self.run(&all);
        assert!(
            output.status.success(),
            "offpay {args:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).expect("JSON output")
    }

    /// Runs `offpay ARGS`, expects failure, returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            !output.status.success(),
            "offpay {args:?} should fail: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        String::from_utf8_lossy(&output.stderr).into_owned()
    }

    /// `offpay admin --server S purse ARGS --json`.
    pub fn admin(&self, server: &Server, args: &[&str]) -> Value {
        let token_file = server.data_dir.join("admin.token");
        let mut all = vec![
            "admin",
            "--server",
            &server.base,
            "--token-file",
            token_file.to_str().expect("path"),
            "purse",
        ];
        all.extend_from_slice(args);
        self.json(&all)
    }

    /// Provisions a purse into `file`.
    pub fn provision(&self, server: &Server, phone: &str, file: &Path, agent: bool) -> Value {
        let mut args = vec![
            "provision",
            "--phone",
            phone,
            "--out",
            file.to_str().expect("path"),
        ];
        if agent {
            args.push("--agent");
        }
        self.admin(server, &args)
    }

    /// `offpay purse --file F ARGS --json`.
    pub fn purse(&self, file: &Path, args: &[&str]) -> Value {
        let mut all = vec!["purse", "--file", file.to_str().expect("path")];
        all.extend_from_slice(args);
        self.json(&all)
    }

    /// Payee asks, payer pays, payee accepts: returns (Code 1, Code 2).
    pub fn pay(
        &self,
        payer: (&Path, &str),
        payee: (&Path, &str),
        amount: &str,
    ) -> (String, String) {
        let request = self.purse(payee.0, &["request", "--from", payer.1, "--amount", amount]);
        let code1 = request["code1"].as_str().expect("code1").to_owned();
        let paid = self.purse(
            payer.0,
            &["pay", "--to", payee.1, "--amount", amount, "--code", &code1],
        );
        let code2 = paid["code2"].as_str().expect("code2").to_owned();
        let accepted = self.purse(payee.0, &["accept", "--code", &code2]);
        assert_eq!(
            accepted["credited"].as_str().expect("credited"),
            format!("{amount}.00")
        );
        (code1, code2)
    }

    /// `offpay purse --file F sync --server S --json`.
    pub fn sync(&self, file: &Path, server: &Server) -> Value {
        self.purse(file, &["sync", "--server", &server.base])
    }
}
