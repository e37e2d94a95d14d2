//! A PostgreSQL cluster of a test's own, in a temporary directory on a free loopback port, that
//! the test may stop (as a crash would) and start again: for outage tests, which must never stop
//! the shared test server. As root (CI), `initdb` and `pg_ctl` run as the `postgres` user, since
//! PostgreSQL refuses to run as root.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

/// Where the PostgreSQL server programs are, unless `OFFPAY_POSTGRES_BIN` names another folder.
pub const POSTGRES_BIN_DEFAULT: &str = "/usr/lib/postgresql/15/bin";
/// The environment variable naming the folder of `initdb`, `pg_ctl` and `postgres`.
pub const POSTGRES_BIN_VARIABLE: &str = "OFFPAY_POSTGRES_BIN";
/// The user that runs the cluster when the test runs as root.
const CLUSTER_USER: &str = "postgres";
/// Upper bound on `pg_ctl start` and `pg_ctl stop` (`-t`).
pub const PG_CTL_WAIT: Duration = Duration::from_secs(60);

/// A temporary cluster: superuser `postgres`, trust authentication, loopback only. Stopped
/// (immediately) and deleted when dropped.
#[derive(Debug)]
pub struct TempCluster {
    directory: tempfile::TempDir,
    bin: PathBuf,
    /// The loopback port it listens on.
    pub port: u16,
    /// Run the programs as [`CLUSTER_USER`] (the test runs as root).
    as_cluster_user: bool,
}

impl TempCluster {
    /// Initialises a cluster (not started yet), or says why it cannot: the PostgreSQL server
    /// programs are missing, or the test runs as root and there is no `postgres` user.
    pub fn create() -> Result<TempCluster, String> {
        let bin = std::env::var_os(POSTGRES_BIN_VARIABLE)
            .map_or_else(|| PathBuf::from(POSTGRES_BIN_DEFAULT), PathBuf::from);
        for program in ["initdb", "pg_ctl", "postgres"] {
            if !bin.join(program).is_file() {
                return Err(format!(
                    "{} is missing (install postgresql, or set {POSTGRES_BIN_VARIABLE})",
                    bin.join(program).display()
                ));
            }
        }
        let as_cluster_user = running_as_root();
        let directory = tempfile::Builder::new()
            .prefix("offpay-pg-")
            .tempdir()
            .map_err(|error| format!("temporary directory: {error}"))?;
        if as_cluster_user {
            let chown = Command::new("chown")
                .arg(format!("{CLUSTER_USER}:"))
                .arg(directory.path())
                .output()
                .map_err(|error| format!("chown: {error}"))?;
            if !chown.status.success() {
                return Err(format!(
                    "cannot hand {} to the {CLUSTER_USER} user: {}",
                    directory.path().display(),
                    String::from_utf8_lossy(&chown.stderr).trim()
                ));
            }
        }
        let cluster = TempCluster {
            directory,
            bin,
            port: free_port(),
            as_cluster_user,
        };
        let data = cluster.data_dir();
        let output = cluster.run(
            "initdb",
            &[
                "--no-sync",
                "--auth=trust",
                "--username=postgres",
                "--encoding=UTF8",
                "--locale=C",
                "-D",
                path_text(&data),
            ],
        )?;
        if !output.status.success() {
            return Err(format!("initdb failed: {}", describe_output(&output)));
        }
        Ok(cluster)
    }

    /// Turns TLS on for the next start, with the server certificate chain and private key given
    /// in PEM (the key file is the cluster user's, mode 0600, as PostgreSQL demands). Plain
    /// connections stay allowed, so that the test may compare.
    pub fn enable_tls(&self, certificate_pem: &str, key_pem: &str) -> Result<(), String> {
        use std::io::Write as _;
        use std::os::unix::fs::PermissionsExt as _;
        let data = self.data_dir();
        let write = |name: &str, text: &str, mode: u32| -> Result<(), String> {
            let path = data.join(name);
            std::fs::write(&path, text).map_err(|error| format!("{}: {error}", path.display()))?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                .map_err(|error| format!("{}: {error}", path.display()))?;
            if self.as_cluster_user {
                let chown = Command::new("chown")
                    .arg(format!("{CLUSTER_USER}:"))
                    .arg(&path)
                    .output()
                    .map_err(|error| format!("chown: {error}"))?;
                if !chown.status.success() {
                    return Err(describe_output(&chown));
                }
            }
            Ok(())
        };
        write("server.crt", certificate_pem, 0o644)?;
        write("server.key", key_pem, 0o600)?;
        let configuration = data.join("postgresql.conf");
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&configuration)
            .map_err(|error| format!("{}: {error}", configuration.display()))?;
        writeln!(
            file,
            "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'"
        )
        .map_err(|error| format!("{}: {error}", configuration.display()))
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.directory.path().join("data")
    }

    /// The server's log file.
    pub fn log_file(&self) -> PathBuf {
        self.directory.path().join("postgres.log")
    }

    /// `postgres://postgres@127.0.0.1:PORT/database`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Starts the server and waits until it accepts connections.
    pub fn start(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=on",
            self.port,
            path_text(self.directory.path())
        );
        let wait = PG_CTL_WAIT.as_secs().to_string();
        let output = self
            .run(
                "pg_ctl",
                &[
                    "start",
                    "-w",
                    "-t",
                    &wait,
                    "-D",
                    path_text(&self.data_dir()),
                    "-l",
                    path_text(&self.log_file()),
                    "-o",
                    &options,
                ],
            )
            .unwrap_or_else(|error| panic!("pg_ctl start: {error}"));
        assert!(
            output.status.success(),
            "pg_ctl start failed: {}\nlog: {}",
            describe_output(&output),
            std::fs::read_to_string(self.log_file()).unwrap_or_default()
        );
    }

    /// Stops the server as a crash would (`pg_ctl stop -m immediate`: no checkpoint, sessions
    /// cut); what was committed is recovered from the WAL at the next start.
    pub fn stop_immediately(&self) {
        let wait = PG_CTL_WAIT.as_secs().to_string();
        let output = self
            .run(
                "pg_ctl",
                &[
                    "stop",
                    "-m",
                    "immediate",
                    "-w",
                    "-t",
                    &wait,
                    "-D",
                    path_text(&self.data_dir()),
                ],
            )
            .unwrap_or_else(|error| panic!("pg_ctl stop: {error}"));
        assert!(
            output.status.success(),
            "pg_ctl stop failed: {}",
            describe_output(&output)
        );
    }

    /// Runs one SQL text as the superuser on `database` (a blocking client on a thread of its
    /// own, so that async tests may call it too).
    pub fn execute(&self, database: &str, sql: &str) {
        let url = self.url(database);
        let sql = sql.to_owned();
        std::thread::spawn(move || {
            let mut client = postgres::Client::connect(&url, postgres::NoTls)
                .unwrap_or_else(|error| panic!("connect to {url}: {error}"));
            client
                .batch_execute(&sql)
                .unwrap_or_else(|error| panic!("{sql}: {error}"));
        })
        .join()
        .expect("the thread running SQL");
    }

    /// Runs one query as the superuser on `database`: its rows, each column as text.
    pub fn query(&self, database: &str, sql: &str) -> Vec<Vec<Option<String>>> {
        let url = self.url(database);
        let sql = sql.to_owned();
        std::thread::spawn(move || {
            let mut client = postgres::Client::connect(&url, postgres::NoTls)
                .unwrap_or_else(|error| panic!("connect to {url}: {error}"));
            client
                .simple_query(&sql)
                .unwrap_or_else(|error| panic!("{sql}: {error}"))
                .into_iter()
                .filter_map(|message| match message {
                    postgres::SimpleQueryMessage::Row(row) => Some(
                        (0..row.len())
                            .map(|index| row.get(index).map(str::to_owned))
                            .collect(),
                    ),
                    _ => None,
                })
                .collect()
        })
        .join()
        .expect("the thread running the query")
    }

    /// Runs a program of the PostgreSQL server's, as the cluster's user.
    fn run(&self, program: &str, arguments: &[&str]) -> Result<Output, String> {
        let path = self.bin.join(program);
        let mut command = if self.as_cluster_user {
            let mut command = Command::new("runuser");
            command.args(["-u", CLUSTER_USER, "--"]).arg(&path);
            command
        } else {
            Command::new(&path)
        };
        command
            .args(arguments)
            .current_dir(self.directory.path())
            .output()
            .map_err(|error| format!("{}: {error}", path.display()))
    }
}

impl Drop for TempCluster {
    fn drop(&mut self) {
        // Best effort: it may be stopped already.
        let _ = self.run(
            "pg_ctl",
            &["stop", "-m", "immediate", "-D", path_text(&self.data_dir())],
        );
    }
}

/// A loopback port nothing listens on at the moment (the OS's pick).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free loopback port")
}

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|metadata| metadata.uid() == 0)
}

fn path_text(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temporary path")
}

fn describe_output(output: &Output) -> String {
    format!(
        "{}: {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout).trim(),
        String::from_utf8_lossy(&output.stderr).trim()
    )
}
