//! PostgreSQL's own tools behind `offpay backup` and `offpay restore`: `pg_dump` takes a
//! consistent snapshot of a live ledger (one repeatable-read transaction: it sees whole groups
//! only, and never blocks the server's writers), `pg_restore` lists and loads it.
//!
//! The database URL is given to them without its password, which goes in the child's
//! `PGPASSWORD` (never argv, where `ps` shows it to every user of the machine). offpay verifies a
//! TLS server's certificate and host name whenever it uses TLS; libpq's `require` and `verify-ca`
//! do not check the host name, so they are passed on as `verify-full`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use zeroize::Zeroizing;

/// Where the tools are: `OFFPAY_PG_BIN` (a directory) if set, else the `PATH`.
const BIN_DIRECTORY_VARIABLE: &str = "OFFPAY_PG_BIN";

/// A connection string as the tools get it, and the password kept apart.
pub struct Connection {
    /// The URL or `key=value` string without the password.
    pub target: String,
    password: Option<Zeroizing<String>>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("target", &self.target)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = text
                .get(index + 1..index + 3)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .ok_or("a bad percent-escape in the database URL")?;
            out.push(hex);
            index += 3;
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "the database URL's password is not UTF-8".to_owned())
}

/// Rewrites libpq's `sslmode` values that skip a check offpay makes.
fn strict_sslmode(value: &str) -> &str {
    match value {
        "require" | "verify-ca" => "verify-full",
        other => other,
    }
}

impl Connection {
    /// Splits `url` (`postgres://user:password@host:port,host2/db?sslmode=...` or the
    /// `host=... password=...` form) into what the tools may see and the password.
    pub fn parse(url: &str) -> Result<Connection, String> {
        let url = url.trim();
        if let Some((scheme, rest)) = url
            .split_once("://")
            .filter(|(scheme, _)| matches!(*scheme, "postgres" | "postgresql"))
        {
            let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
            let (authority, tail) = rest.split_at(authority_end);
            let mut password = None;
            let authority = match authority.rsplit_once('@') {
                Some((userinfo, hosts)) => match userinfo.split_once(':') {
                    Some((user, secret)) => {
                        password = Some(Zeroizing::new(percent_decode(secret)?));
                        format!("{user}@{hosts}")
                    }
                    None => authority.to_owned(),
                },
                None => authority.to_owned(),
            };
            let (path, query) = match tail.split_once('?') {
                Some((path, query)) => (path, Some(query)),
                None => (tail, None),
            };
            let mut kept = Vec::new();
            for pair in query.into_iter().flat_map(|query| query.split('&')) {
                match pair.split_once('=') {
                    Some(("password", value)) => {
                        password = Some(Zeroizing::new(percent_decode(value)?));
                    }
                    Some(("sslmode", value)) => {
                        kept.push(format!("sslmode={}", strict_sslmode(value)));
                    }
                    _ if pair.is_empty() => {}
                    _ => kept.push(pair.to_owned()),
                }
            }
            let mut target = format!("{scheme}://{authority}{path}");
            if !kept.is_empty() {
                target.push('?');
                target.push_str(&kept.join("&"));
            }
            return Ok(Connection { target, password });
        }
        // The key=value form: values with spaces would need quoting, which this does not parse.
        if url.contains(['\'', '"']) {
            return Err(
                "a quoted value in a key=value connection string: use a postgres:// URL for backups"
                    .to_owned(),
            );
        }
        let mut password = None;
        let mut kept = Vec::new();
        for pair in url.split_whitespace() {
            match pair.split_once('=') {
                Some(("password", value)) => password = Some(Zeroizing::new(value.to_owned())),
                Some(("sslmode", value)) => kept.push(format!("sslmode={}", strict_sslmode(value))),
                Some(_) => kept.push(pair.to_owned()),
                None => {
                    return Err(format!(
                        "'{pair}' in the connection string is not key=value"
                    ));
                }
            }
        }
        Ok(Connection {
            target: kept.join(" "),
            password,
        })
    }

    /// A command for the tool `name`, with the password in its environment.
    fn command(&self, name: &str) -> Command {
        let program = match std::env::var_os(BIN_DIRECTORY_VARIABLE) {
            Some(directory) => PathBuf::from(directory).join(name),
            None => PathBuf::from(name),
        };
        let mut command = Command::new(program);
        if let Some(password) = &self.password {
            command.env("PGPASSWORD", password.as_str());
        }
        if std::env::var_os("PGCONNECT_TIMEOUT").is_none() {
            command.env("PGCONNECT_TIMEOUT", "10");
        }
        command.stdin(Stdio::null());
        command
    }
}

/// Runs `command` to the end with a spinner saying `what`; its stderr is the error.
fn run(mut command: Command, tool: &str, what: &'static str) -> Result<String, String> {
    let spinner =
        indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
    spinner.set_message(what);
    spinner.enable_steady_tick(Duration::from_millis(200));
    let output = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(|error| {
            if error.kind() == std::io::ErrorKind::NotFound {
                format!(
                    "{tool} was not found: install PostgreSQL's client tools (Debian: postgresql-client) or set {BIN_DIRECTORY_VARIABLE} to their directory"
                )
            } else {
                format!("cannot run {tool}: {error}")
            }
        })?;
    spinner.finish_and_clear();
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        Err(format!(
            "{tool} failed ({}): {}",
            output.status,
            stderr.trim()
        ))
    }
}

/// `pg_dump` of the whole database into `file` (custom format, no owners or grants: it restores
/// into a database of another role).
pub fn dump(connection: &Connection, file: &Path) -> Result<(), String> {
    let mut command = connection.command("pg_dump");
    command
        .args([
            "--format=custom",
            "--no-owner",
            "--no-privileges",
            "--quote-all-identifiers",
        ])
        .arg("--file")
        .arg(file)
        .arg("--dbname")
        .arg(&connection.target);
    run(command, "pg_dump", "dumping the PostgreSQL ledger").map(|_| ())
}

/// The table names a dump holds data for (`pg_restore --list`): proof that it is a readable
/// custom-format dump, and of what is in it.
pub fn tables_with_data(file: &Path) -> Result<Vec<String>, String> {
    let mut command = Command::new(match std::env::var_os(BIN_DIRECTORY_VARIABLE) {
        Some(directory) => PathBuf::from(directory).join("pg_restore"),
        None => PathBuf::from("pg_restore"),
    });
    command.stdin(Stdio::null()).arg("--list").arg(file);
    let listing = run(command, "pg_restore", "reading the dump")?;
    // Lines such as `3390; 0 16390 TABLE DATA public accounts offpay`.
    let mut tables: Vec<String> = listing
        .lines()
        .filter(|line| !line.starts_with(';'))
        .filter_map(|line| {
            let (_, rest) = line.split_once(" TABLE DATA ")?;
            let mut words = rest.split_whitespace();
            let _schema = words.next()?;
            words.next().map(|name| name.trim_matches('"').to_owned())
        })
        .collect();
    tables.sort();
    Ok(tables)
}

/// Loads the dump `file` into the database, in one transaction that stops at the first error
/// (so a failed restore leaves the database as it was). With `replace`, the dump's objects are
/// dropped first if they exist.
pub fn restore(connection: &Connection, file: &Path, replace: bool) -> Result<(), String> {
    let mut command = connection.command("pg_restore");
    command.args([
        "--single-transaction",
        "--exit-on-error",
        "--no-owner",
        "--no-privileges",
    ]);
    if replace {
        command.args(["--clean", "--if-exists"]);
    }
    command.arg("--dbname").arg(&connection.target).arg(file);
    run(command, "pg_restore", "restoring the PostgreSQL ledger").map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(url: &str) -> (String, Option<String>) {
        let connection = Connection::parse(url).unwrap();
        let password = connection
            .password
            .as_ref()
            .map(|password| password.as_str().to_owned());
        (connection.target, password)
    }

    #[test]
    fn the_password_is_taken_out_of_every_form_of_url() {
        assert_eq!(
            split("postgres://offpay:s3cr%40t@db1:5432,db2:5433/ledger?sslmode=require&target_session_attrs=read-write"),
            (
                "postgres://offpay@db1:5432,db2:5433/ledger?sslmode=verify-full&target_session_attrs=read-write".to_owned(),
                Some("s3cr@t".to_owned())
            )
        );
        assert_eq!(
            split("postgresql://db/ledger?password=pw&sslmode=disable"),
            (
                "postgresql://db/ledger?sslmode=disable".to_owned(),
                Some("pw".to_owned())
            )
        );
        assert_eq!(
            split("postgres://postgres@127.0.0.1:5432/test"),
            ("postgres://postgres@127.0.0.1:5432/test".to_owned(), None)
        );
        assert_eq!(
            split("host=db dbname=ledger password=pw sslmode=verify-ca"),
            (
                "host=db dbname=ledger sslmode=verify-full".to_owned(),
                Some("pw".to_owned())
            )
        );
        assert!(Connection::parse("host=db password='a b'").is_err());
        assert!(Connection::parse("postgres://u:%zz@db/x").is_err());
        let debug = format!(
            "{:?}",
            Connection::parse("postgres://u:hunter2@db/x").unwrap()
        );
        assert!(!debug.contains("hunter2"), "{debug}");
    }
}
