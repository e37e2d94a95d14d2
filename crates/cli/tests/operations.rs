//! Operating a server, on real processes: readiness and what it names when not ready, the data
//! directory's lock, private files, the Prometheus metrics after a session on every rail, JSON
//! logs with request ids, backups restored and served, tampered archives refused, exit codes.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed expectation is a failed test"
)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use offpay_test_support::cluster::free_port;
use offpay_test_support::process::http;
use offpay_test_support::{Backend, ServerProcess, TempCluster};
use serde_json::{Value, json};

/// Upper bound on the demo's walkthrough of the four rails.
const DEMO_WAIT_MAX: Duration = Duration::from_secs(180);

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_offpay"))
}

/// Runs `offpay ARGS`; (exit code, stdout, stderr).
fn offpay(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(binary())
        .args(args)
        .env_remove("OFFPAY_LOG_FORMAT")
        .stdin(Stdio::null())
        .output()
        .expect("run offpay");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Upper bound on a second server's refusal to start.
const REFUSAL_WAIT_MAX: Duration = Duration::from_secs(30);

/// Runs `offpay serve` on `data`, which another server holds, with `environment`: it must exit
/// within [`REFUSAL_WAIT_MAX`] (a server that starts all the same is killed, and the test
/// fails). Returns its exit code and stderr.
fn second_serve(data: &Path, environment: &[(&str, &str)]) -> (Option<i32>, String) {
    let child = Command::new(binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .env_remove("OFFPAY_LOG_FORMAT")
        .envs(environment.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(child.wait_with_output());
    });
    match receiver.recv_timeout(REFUSAL_WAIT_MAX) {
        Ok(output) => {
            let output = output.unwrap();
            (
                output.status.code(),
                String::from_utf8_lossy(&output.stderr).into_owned(),
            )
        }
        Err(_) => {
            let _ = Command::new("kill").arg(pid.to_string()).status();
            panic!("a second server started on a data directory another server holds");
        }
    }
}

fn get(base: &str, path: &str) -> (u16, Value) {
    let response = http().get(format!("{base}{path}")).send().expect("GET");
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

fn not_ready_checks(body: &Value) -> Vec<String> {
    body["not_ready"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|problem| problem["check"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn ready_names_a_schema_that_is_not_this_builds() {
    let data = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(binary(), data.path(), &Backend::Sqlite, &[], &[]);
    let (status, body) = get(&server.base, "/ready");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ready");
    // Another process (a newer offpay) migrates the database ahead of this one.
    let connection = rusqlite::Connection::open(data.path().join("offpay.sqlite")).unwrap();
    connection
        .execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (99, 0)",
            [],
        )
        .unwrap();
    let (status, body) = get(&server.base, "/ready");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "not_ready");
    assert_eq!(not_ready_checks(&body), ["migrations"], "{body}");
    assert!(
        body["not_ready"][0]["message"]
            .as_str()
            .unwrap()
            .contains("schema version 99"),
        "{body}"
    );
    // Live all the same: /health answers.
    assert_eq!(get(&server.base, "/health").0, 200);
}

#[test]
fn ready_names_a_database_that_cannot_be_reached() {
    let cluster = match TempCluster::create() {
        Ok(cluster) => cluster,
        Err(reason) => {
            eprintln!("skipped the database-down readiness test: {reason}");
            return;
        }
    };
    cluster.start();
    cluster.execute("postgres", "CREATE DATABASE offpay");
    let data = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(
        binary(),
        data.path(),
        &Backend::PostgresUrl(cluster.url("offpay")),
        &[],
        &[],
    );
    let (status, body) = get(&server.base, "/ready");
    assert_eq!(status, 200, "{body}");
    cluster.stop_immediately();
    let (status, body) = get(&server.base, "/ready");
    assert_eq!(status, 503, "{body}");
    assert_eq!(not_ready_checks(&body), ["ledger"], "{body}");
    assert_eq!(get(&server.base, "/health").0, 200, "still live");
    cluster.start();
    let (status, body) = get(&server.base, "/ready");
    assert_eq!(status, 200, "ready again once the database is back: {body}");
}

#[test]
fn a_second_server_on_the_same_data_directory_refuses_to_start() {
    let data = tempfile::tempdir().unwrap();
    let first = ServerProcess::start(binary(), data.path(), &Backend::Sqlite, &[], &[]);
    let holder: u32 = std::fs::read_to_string(data.path().join("offpay.lock"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let (code, stderr) = second_serve(data.path(), &[]);
    assert_eq!(code, Some(6), "{stderr}");
    assert!(stderr.contains("offpay.lock"), "{stderr}");
    assert!(stderr.contains(&format!("pid {holder}")), "{stderr}");
    // The first server is untouched and still serves.
    assert_eq!(get(&first.base, "/ready").0, 200);
    first.kill();
    // Once it is gone, the kernel has released its lock: a new server starts.
    let second = ServerProcess::start(binary(), data.path(), &Backend::Sqlite, &[], &[]);
    assert_eq!(get(&second.base, "/ready").0, 200);
}

/// Every file under `directory` is 0600 (no group or other bits) and every directory 0700.
fn assert_private(directory: &Path) -> usize {
    use std::os::unix::fs::PermissionsExt;
    let mut checked = 0;
    let mut pending = vec![directory.to_path_buf()];
    while let Some(path) = pending.pop() {
        let metadata = std::fs::symlink_metadata(&path).unwrap();
        let mode = metadata.permissions().mode() & 0o777;
        if metadata.is_dir() {
            assert_eq!(mode, 0o700, "directory {} is {mode:o}", path.display());
            for entry in std::fs::read_dir(&path).unwrap() {
                pending.push(entry.unwrap().path());
            }
        } else {
            assert_eq!(mode, 0o600, "file {} is {mode:o}", path.display());
            checked += 1;
        }
    }
    checked
}

// ------------------------------------------------------------------ a Prometheus text checker

/// A histogram's buckets as read: (`le`, cumulative count).
type Buckets = Vec<(String, f64)>;

/// One sample: its labels and value.
type Samples = BTreeMap<String, Vec<(BTreeMap<String, String>, f64)>>;

fn is_metric_name(name: &str) -> bool {
    let mut characters = name.chars();
    characters
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_' || first == ':')
        && characters.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn parse_labels(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (name, after) = rest
            .split_once("=\"")
            .ok_or_else(|| format!("label without =\": {rest}"))?;
        if !is_metric_name(name) || name.contains(':') {
            return Err(format!("bad label name {name:?}"));
        }
        let mut value = String::new();
        let mut characters = after.char_indices();
        let end = loop {
            match characters.next() {
                Some((_, '\\')) => match characters.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    other => return Err(format!("bad escape {other:?}")),
                },
                Some((index, '"')) => break index,
                Some((_, character)) => value.push(character),
                None => return Err(format!("unterminated label value in {text}")),
            }
        };
        if labels.insert(name.to_owned(), value).is_some() {
            return Err(format!("label {name} twice"));
        }
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
    Ok(labels)
}

/// Parses the text exposition format strictly: HELP and TYPE before a family's samples, known
/// types, valid names and labels, numeric values, histograms with cumulative buckets ending in
/// `+Inf` equal to `_count`.
fn parse_exposition(text: &str) -> Result<Samples, String> {
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut samples: Samples = BTreeMap::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut words = rest.splitn(3, ' ');
            let (keyword, name, value) = (words.next(), words.next(), words.next());
            let name = name.ok_or_else(|| format!("comment without a name: {line}"))?;
            if !is_metric_name(name) {
                return Err(format!("bad metric name in {line}"));
            }
            match (keyword, value) {
                (Some("HELP"), Some(_)) => {}
                (Some("TYPE"), Some(kind @ ("counter" | "gauge" | "histogram"))) => {
                    if types.insert(name.to_owned(), kind.to_owned()).is_some() {
                        return Err(format!("TYPE twice for {name}"));
                    }
                }
                _ => return Err(format!("bad comment: {line}")),
            }
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .ok_or_else(|| format!("sample without a value: {line}"))?;
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            other => other.parse().map_err(|_| format!("bad value in {line}"))?,
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, labels)) => (
                name,
                parse_labels(
                    labels
                        .strip_suffix('}')
                        .ok_or_else(|| format!("unclosed labels: {line}"))?,
                )?,
            ),
            None => (series, BTreeMap::new()),
        };
        if !is_metric_name(name) {
            return Err(format!("bad metric name {name:?}"));
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                name.strip_suffix(suffix)
                    .filter(|base| types.get(*base).is_some_and(|kind| kind == "histogram"))
            })
            .unwrap_or(name);
        let kind = types
            .get(family)
            .ok_or_else(|| format!("sample before its TYPE: {line}"))?;
        if kind == "counter" && (value.is_nan() || value < 0.0) {
            return Err(format!("negative counter: {line}"));
        }
        samples
            .entry(name.to_owned())
            .or_default()
            .push((labels, value));
    }
    for (family, kind) in &types {
        if kind != "histogram" {
            continue;
        }
        let buckets = samples
            .get(&format!("{family}_bucket"))
            .cloned()
            .unwrap_or_default();
        let mut by_series: BTreeMap<Vec<(String, String)>, Buckets> = BTreeMap::new();
        for (labels, value) in buckets {
            let le = labels.get("le").cloned().ok_or("a bucket without le")?;
            let key = labels
                .into_iter()
                .filter(|(name, _)| name != "le")
                .collect();
            by_series.entry(key).or_default().push((le, value));
        }
        for (key, buckets) in by_series {
            let counts: Vec<f64> = buckets.iter().map(|(_, value)| *value).collect();
            if counts.windows(2).any(|pair| pair[1] < pair[0]) {
                return Err(format!("{family}{key:?}: buckets are not cumulative"));
            }
            let (last_le, last) = buckets.last().ok_or("no buckets")?;
            if last_le != "+Inf" {
                return Err(format!("{family}{key:?}: the last bucket is not +Inf"));
            }
            let labels: BTreeMap<String, String> = key.into_iter().collect();
            let count = samples
                .get(&format!("{family}_count"))
                .and_then(|series| series.iter().find(|(l, _)| *l == labels))
                .map(|(_, value)| *value)
                .ok_or_else(|| format!("{family}: no _count for {labels:?}"))?;
            if count != *last {
                return Err(format!("{family}: +Inf bucket {last} but count {count}"));
            }
        }
    }
    Ok(samples)
}

/// The value of `name` with (at least) `labels`, summed over the series that match.
fn value(samples: &Samples, name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .get(name)
        .into_iter()
        .flatten()
        .filter(|(have, _)| {
            labels
                .iter()
                .all(|(label, value)| have.get(*label).map(String::as_str) == Some(*value))
        })
        .map(|(_, value)| value)
        .sum()
}

#[test]
fn the_checker_refuses_malformed_exposition_text() {
    assert!(parse_exposition("# TYPE a counter\na 1\n").is_ok());
    for bad in [
        "a 1\n",                          // no TYPE
        "# TYPE a counter\na{b=\"c} 1\n", // unterminated label
        "# TYPE a counter\na one\n",      // not a number
        "# TYPE a summary\na 1\n",        // a type we never write
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n",
        "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_count 1\n",
        "# TYPE a counter\na{0b=\"c\"} 1\n",
    ] {
        assert!(parse_exposition(bad).is_err(), "accepted: {bad}");
    }
}

// ----------------------------------------------------------- a session on every rail, scraped

/// `offpay demo` in `data` with JSON logs: returns the child, its base URL, and the stderr
/// lines as they come (kept by a thread).
struct Demo {
    child: std::process::Child,
    base: String,
    stderr: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Demo {
    /// Stops the demo and returns every line it wrote to stderr.
    fn stop(&mut self) -> Vec<String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            reader.join().expect("the stderr reader");
        }
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run_demo(data: &Path) -> Demo {
    let mut child = Command::new(binary())
        .args(["demo", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .env("OFFPAY_LOG_FORMAT", "json")
        .env("OFFPAY_LOG", "warn,offpay_server=debug")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start offpay demo");
    let stderr = child.stderr.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = lines.clone();
    let (address_sender, address) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("listening on http://").nth(1) {
                let address: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                    .collect();
                let _ = address_sender.send(address);
            }
            kept.lock().unwrap().push(line);
        }
    });
    let (done_sender, done) = mpsc::channel();
    std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            all.push_str(&line);
            all.push('\n');
            if line.contains("The server keeps running") {
                let _ = done_sender.send(Ok(all.clone()));
            }
        }
        let _ = done_sender.send(Err(all));
    });
    let address = address
        .recv_timeout(DEMO_WAIT_MAX)
        .expect("the demo announces its address");
    match done.recv_timeout(DEMO_WAIT_MAX) {
        Ok(Ok(_)) => {}
        other => panic!(
            "the demo's walkthrough did not finish: {other:?}\n{}",
            lines.lock().unwrap().join("\n")
        ),
    }
    Demo {
        child,
        base: format!("http://{address}"),
        stderr: lines,
        reader: Some(reader),
    }
}

#[test]
fn a_session_on_every_rail_moves_the_metrics_and_files_are_private() {
    let scratch = tempfile::tempdir().unwrap();
    let data = scratch.path().join("data");
    let mut demo = run_demo(&data);

    let response = http()
        .get(format!("{}/metrics", demo.base))
        .header("x-request-id", "scrape-1")
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["x-request-id"], "scrape-1");
    let text = response.text().unwrap();
    let samples = parse_exposition(&text).unwrap_or_else(|error| panic!("{error}\n{text}"));

    // Requests by route template and status, latency per route: every rail's device routes.
    for route in [
        "/purse/v1/sms",
        "/api/v1/wallet-sync",
        "/microcheck/v1/deposit",
        "/api/v1/sms/simulate",
        "/api/v1/accounts",
        "/api/v1/accounts/{id}",
    ] {
        assert!(
            value(&samples, "offpay_http_requests_total", &[("route", route)]) > 0.0,
            "no requests counted for {route}\n{text}"
        );
        assert!(
            value(
                &samples,
                "offpay_http_request_duration_seconds_count",
                &[("route", route)]
            ) > 0.0,
            "no latency for {route}"
        );
    }
    // Never the raw path: no series names a concrete account.
    for (labels, _) in samples
        .get("offpay_http_requests_total")
        .into_iter()
        .flatten()
    {
        let route = &labels["route"];
        assert!(
            route == "unmatched" || !route.contains("purse:alice"),
            "{route}"
        );
    }
    assert!(
        value(
            &samples,
            "offpay_http_requests_total",
            &[("route", "/api/v1/transfers"), ("status", "422")]
        ) > 0.0,
        "the demo's refused overdraft is counted with its status\n{text}"
    );
    // The ledger writer's figures.
    assert!(value(&samples, "offpay_ledger_group_batches_count", &[]) > 0.0);
    assert!(value(&samples, "offpay_ledger_commit_duration_seconds_count", &[]) > 0.0);
    assert!(value(&samples, "offpay_ledger_transfers_committed_total", &[]) > 0.0);
    assert!(
        value(
            &samples,
            "offpay_ledger_batches_total",
            &[("outcome", "committed")]
        ) > 0.0
    );
    assert!(
        value(
            &samples,
            "offpay_ledger_batches_total",
            &[("outcome", "refused")]
        ) > 0.0
    );
    assert!(samples.contains_key("offpay_ledger_writer_queue_depth"));
    assert_eq!(value(&samples, "offpay_ledger_writer_up", &[]), 1.0);
    // Syncs by rail and outcome, deposits, the SMS rail's queue and counters.
    for rail in ["purse", "wallet"] {
        assert!(
            value(
                &samples,
                "offpay_syncs_total",
                &[("rail", rail), ("outcome", "ok")]
            ) > 0.0,
            "no {rail} sync counted\n{text}"
        );
    }
    assert!(
        value(
            &samples,
            "offpay_syncs_total",
            &[("rail", "microcheck_payer")]
        ) > 0.0,
        "{text}"
    );
    assert!(value(&samples, "offpay_deposits_total", &[("rail", "microcheck")]) > 0.0);
    assert!(
        value(&samples, "offpay_sms_inbound_total", &[]) > 0.0,
        "{text}"
    );
    assert!(samples.contains_key("offpay_sms_outbox_depth"), "{text}");
    assert!(samples.contains_key("offpay_sms_dead_letters"), "{text}");
    assert!(
        samples.contains_key("offpay_fraud_flags_total")
            || text.contains("# TYPE offpay_fraud_flags_total counter")
    );

    // A request with an id the server makes, and one with an id it must not take.
    let made = http().get(format!("{}/health", demo.base)).send().unwrap();
    let made_id = made.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(made_id.len(), 16, "{made_id}");
    let refused = http()
        .get(format!("{}/health", demo.base))
        .header("x-request-id", "bad id\twith tab")
        .send()
        .unwrap();
    assert_ne!(refused.headers()["x-request-id"], "bad id\twith tab");

    // The requests' log lines carry their ids (the demo's own narration on stderr is not the
    // server's log: `offpay serve` alone is checked line by line below).
    let lines = demo.stop();
    let with_id = |id: &str| {
        lines
            .iter()
            .filter(|line| line.starts_with('{'))
            .filter(|line| line.contains(&format!("\"request_id\":\"{id}\"")))
            .count()
    };
    assert!(
        with_id("scrape-1") > 0,
        "no log line of the scrape has its id"
    );
    assert!(with_id(&made_id) > 0, "no log line of /health has its id");

    // The data directory and everything in it is the owner's alone.
    let files = assert_private(&data);
    assert!(files >= 5, "only {files} files in {}", data.display());
    // And what the CLI writes for an operator: printed envelopes (their TANs), in a directory
    // it makes.
    let devices = scratch.path().join("printing/today");
    let token = data.join("admin.token");
    let pdf = devices.join("envelopes.pdf");
    let server = ServerProcess::start(binary(), &data, &Backend::Sqlite, &[], &[]);
    std::fs::create_dir_all(&devices).unwrap();
    let (code, out, err) = offpay(&[
        "admin",
        "--server",
        &server.base,
        "--token-file",
        token.to_str().unwrap(),
        "envelope",
        "print",
        "--count",
        "1",
        "--out",
        pdf.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(pdf.is_file());
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&pdf).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the envelope PDF");
    }
    assert_private(&data);
}

#[test]
fn with_json_logs_every_line_of_offpay_serve_is_a_json_object_and_requests_carry_their_ids() {
    let data = tempfile::tempdir().unwrap();
    let json_logs = [
        ("OFFPAY_LOG_FORMAT", "json"),
        ("OFFPAY_LOG", "warn,offpay_server=debug"),
    ];
    let server = ServerProcess::start(binary(), data.path(), &Backend::Sqlite, &json_logs, &[]);
    let (status, _) = server.post(
        "/api/v1/accounts",
        &json!({ "id": "a", "kind": "customer" }),
    );
    assert_eq!(status, 201);
    let tagged = http()
        .get(format!("{}/api/v1/accounts/a", server.base))
        .bearer_auth(&server.token)
        .header("x-request-id", "operator-call-7")
        .send()
        .unwrap();
    assert_eq!(tagged.headers()["x-request-id"], "operator-call-7");
    assert_eq!(get(&server.base, "/no/such/route").0, 404);
    let (status, _) = server.post("/purse/v1/sync", &json!("not an upload"));
    assert!(status >= 400);
    // A second server on the same directory says why it stops in JSON too.
    let (code, second) = second_serve(data.path(), &json_logs);
    assert_eq!(code, Some(6), "{second}");
    let mut lines = server.stderr_lines();
    lines.extend(second.lines().map(str::to_owned));
    server.kill();
    assert!(lines.len() >= 5, "{lines:?}");
    for line in &lines {
        let parsed: Value =
            serde_json::from_str(line).unwrap_or_else(|error| panic!("not JSON ({error}): {line}"));
        assert!(parsed.is_object(), "{line}");
        assert!(
            parsed["level"].is_string() && parsed["timestamp"].is_string(),
            "{line}"
        );
    }
    let tagged_lines = lines
        .iter()
        .filter(|line| line.contains("\"request_id\":\"operator-call-7\""))
        .count();
    assert!(tagged_lines > 0, "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|line| line.contains("listening on http://"))
    );
    assert!(lines.iter().any(|line| line.contains("offpay.lock")));
}

// ---------------------------------------------------------------------- backups and restore

fn transfer(server: &ServerProcess, id: &str, from: &str, to: &str, amount: &str) {
    let (status, body) = server.post(
        "/api/v1/transfers",
        &json!({ "transfers": [{ "id": id, "debit_account": from, "credit_account": to, "amount": amount }] }),
    );
    assert_eq!(status, 200, "{body}");
}

fn balances(server: &ServerProcess, accounts: &[&str]) -> Vec<Value> {
    accounts
        .iter()
        .map(|account| {
            let (status, body) = server.get(&format!("/api/v1/accounts/{account}"));
            assert_eq!(status, 200, "{body}");
            json!([
                body["balance_minor"],
                body["available_minor"],
                body["created_at_ms"]
            ])
        })
        .collect()
}

#[test]
fn a_backup_taken_while_serving_restores_and_serves_the_same_books_and_a_tampered_one_is_refused() {
    let scratch = tempfile::tempdir().unwrap();
    let path = |name: &str| scratch.path().join(name);
    let text = |path: &PathBuf| path.to_str().unwrap().to_owned();
    let data = path("data");
    let server = ServerProcess::start(binary(), &data, &Backend::Sqlite, &[], &[]);
    for (id, kind) in [
        ("float", "operator_float"),
        ("alice", "customer"),
        ("bob", "customer"),
    ] {
        let (status, body) = server.post("/api/v1/accounts", &json!({ "id": id, "kind": kind }));
        assert_eq!(status, 201, "{body}");
    }
    for number in 0..20 {
        transfer(&server, &format!("t{number}"), "float", "alice", "10.00");
    }
    transfer(&server, "pay", "alice", "bob", "55.50");
    let accounts = ["float", "alice", "bob"];
    let before = balances(&server, &accounts);

    let identity = path("backup.key");
    let (code, out, err) = offpay(&["backup", "keygen", "--out", &text(&identity)]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        !out.contains(&std::fs::read_to_string(&identity).unwrap()[25..]),
        "the secret is not printed"
    );
    let archive = path("offpay.backup");
    let (code, out, err) = offpay(&[
        "backup",
        "--data-dir",
        &text(&data),
        "--recipient",
        &format!("{}.pub", text(&identity)),
        "--out",
        &text(&archive),
        "--json",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert!(
        report["files"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "admin.token"),
        "{report}"
    );
    // The server goes on; what it does after the backup is not in it.
    transfer(&server, "after", "float", "bob", "1.00");

    let (code, out, err) = offpay(&[
        "backup",
        "verify",
        &text(&archive),
        "--identity",
        &text(&identity),
        "--json",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let verified: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(verified["ledger"]["balanced"], true, "{verified}");
    assert_eq!(verified["ledger"]["accounts"], 3, "{verified}");
    assert_eq!(verified["ledger"]["transfers"], 21, "{verified}");

    let restored = path("restored");
    let (code, out, err) = offpay(&[
        "restore",
        &text(&archive),
        "--identity",
        &text(&identity),
        "--data-dir",
        &text(&restored),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    // Into a directory that is not empty: refused without --force.
    let (code, _, err) = offpay(&[
        "restore",
        &text(&archive),
        "--identity",
        &text(&identity),
        "--data-dir",
        &text(&restored),
    ]);
    assert_eq!(code, 3, "{err}");
    for file in [&identity, &archive] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", file.display());
    }
    assert_private(&restored);

    let copy = ServerProcess::start(binary(), &restored, &Backend::Sqlite, &[], &[]);
    assert_eq!(copy.token, server.token, "the operator token came back");
    assert_eq!(balances(&copy, &accounts), before);
    let (status, original) = server.get("/api/v1/transfers/pay");
    assert_eq!(status, 200);
    let (status, again) = copy.get("/api/v1/transfers/pay");
    assert_eq!(status, 200);
    assert_eq!(again, original);
    assert_eq!(
        copy.get("/api/v1/transfers/after").0,
        404,
        "made after the backup"
    );
    copy.assert_balanced();

    // One byte changed in the middle: verify and restore refuse it, and restore writes nothing.
    let mut bytes = std::fs::read(&archive).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    let tampered = path("tampered.backup");
    std::fs::write(&tampered, &bytes).unwrap();
    let (code, _, err) = offpay(&[
        "backup",
        "verify",
        &text(&tampered),
        "--identity",
        &text(&identity),
    ]);
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("does not authenticate"), "{err}");
    let untouched = path("untouched");
    let (code, _, err) = offpay(&[
        "restore",
        &text(&tampered),
        "--identity",
        &text(&identity),
        "--data-dir",
        &text(&untouched),
    ]);
    assert_eq!(code, 5, "{err}");
    let left: Vec<_> = std::fs::read_dir(&untouched)
        .map(|entries| {
            entries
                .map(|entry| entry.unwrap().file_name())
                .filter(|name| name != "offpay.lock")
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
    // Another backup key cannot open it.
    let other = path("other.key");
    assert_eq!(offpay(&["backup", "keygen", "--out", &text(&other)]).0, 0);
    let (code, _, err) = offpay(&[
        "backup",
        "verify",
        &text(&archive),
        "--identity",
        &text(&other),
    ]);
    assert_eq!(code, 4, "{err}");
}

// ---------------------------------------------------------------------------- exit codes

#[test]
fn exit_codes_follow_one_scheme() {
    let (code, out, _) = offpay(&["--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("Exit codes: 0 done"), "{out}");
    assert_eq!(offpay(&["no-such-command"]).0, 2);

    let data = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(binary(), data.path(), &Backend::Sqlite, &[], &[]);
    let token = data.path().join("admin.token");
    let token = token.to_str().unwrap();
    let admin = |server: &str, token: &str, account: &str| {
        offpay(&[
            "admin",
            "--server",
            server,
            "--token-file",
            token,
            "balance",
            account,
        ])
        .0
    };
    let (status, _) = server.post(
        "/api/v1/accounts",
        &json!({ "id": "x", "kind": "customer" }),
    );
    assert_eq!(status, 201);
    assert_eq!(admin(&server.base, token, "x"), 0);
    assert_eq!(admin(&server.base, token, "nobody"), 3, "unknown: refused");
    let wrong = data.path().join("wrong.token");
    std::fs::write(&wrong, "not-the-token\n").unwrap();
    assert_eq!(
        admin(&server.base, wrong.to_str().unwrap(), "x"),
        4,
        "wrong token"
    );
    let closed = format!("http://127.0.0.1:{}", free_port());
    assert_eq!(admin(&closed, token, "x"), 6, "unreachable");
    assert_eq!(
        offpay(&["healthcheck", "--url", &format!("{}/ready", server.base)]).0,
        0
    );
    assert_eq!(
        offpay(&["healthcheck", "--url", &format!("{closed}/health")]).0,
        6
    );
}
