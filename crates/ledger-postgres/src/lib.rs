//! The offpay ledger on PostgreSQL, for operators who outgrow one machine: several server
//! processes may share one database, and the schema is meant to carry over to distributed engines
//! (the operator guide gives the plan for Citus, YugabyteDB and CockroachDB, and what is tested).
//!
//! The rules are [`offpay_ledger::engine`]'s; this crate loads the rows a group refers to and
//! writes what the engine decided, inside one database transaction per group commit:
//!
//! 1. `BEGIN`, and on the wire right behind it (pipelined: one round trip for all four):
//!    - the group's accounts, locked (`SELECT … FOR UPDATE`, in id order, `WHERE id = ANY($1)`);
//!    - the transfers it names, and sequence numbers for its new transfers drawn from the
//!      `transfer_sequence` database sequence, in one statement. The server runs pipelined
//!      statements in order, so these are drawn after the accounts are locked: each is larger
//!      than every number already given to a transfer on those accounts;
//!    - the records it writes, locked (only for a group that writes records).
//! 2. [`offpay_ledger::run_group`] decides the batches; one statement writes everything it
//!    decided (data-modifying CTEs, each an `INSERT … SELECT * FROM UNNEST(…)` or
//!    `UPDATE … FROM UNNEST(…)`), with `COMMIT` on the wire right behind it. The statement
//!    checks that each part changed one row per element and fails otherwise, so that the
//!    `COMMIT` then rolls back rather than commit a half-applied group.
//!
//! A group of 8190 transfers thus costs two round trips, as one does (six before the
//! pipelining).
//!
//! **No global lock.** Nothing every committer must lock: groups over different accounts and
//! records, from one server process or several, commit at the same time; groups sharing an
//! account queue for its row. A race the locks cannot see — two groups creating the same
//! account, transfer id or record at once — ends in a unique violation for one of them, which
//! is then decided again against what the other wrote. (Schema version 1 serialised every
//! commit on one `ledger_state` row; version 2 migrates its counter into the sequence.)
//!
//! **Durability.** The store leaves `synchronous_commit` at the server's setting, `on` by default:
//! `COMMIT` returns only once the group's WAL records are flushed to disk (and, with synchronous
//! replication configured, to the standbys it names). An operator who turns it `off` trades the
//! last few hundred milliseconds of acknowledged commits on a server crash for latency; the
//! [`LedgerStore`] contract then no longer holds, so do not.
//!
//! The store is synchronous: each session (module `session`) drives its `tokio-postgres` connection
//! on a runtime of its own while a call waits, so the server calls it from its writer thread or
//! `spawn_blocking`, never from inside async code. Connections are plain TCP, Unix sockets, or
//! TLS with the server's certificate verified (`sslmode` in the URL).
//!
//! **Lost connections and failover.** A call that finds its session dead (server restart,
//! failover, idle timeout) reconnects and runs again, once, if that is harmless: a read outside a
//! read transaction, or a `commit` whose transaction could not even begin. Otherwise it returns
//! `Err` and the next call reconnects. A `commit` that failed after it began is *not* retried
//! here: if the session died during `COMMIT`, the group may or may not have landed, and only the
//! caller knows whether resubmitting is right (transfers are idempotent by id; record writes may
//! not be). Its error says that the outcome is unknown.
//!
//! For a primary with standbys, give every node in a multi-host URL and ask for the writable one:
//! `postgres://user@db1:5432,db2:5432/offpay?target_session_attrs=read-write`. Each (re)connection
//! tries the hosts in order and keeps the first that accepts writes. After a failed call the store
//! checks its session before the next one, and reconnects if the session is gone *or* if it now
//! only reads (a node demoted, or a standby reached through an address that moved), so that it
//! follows the promoted standby on the next call.
//!
//! **Bounded waits.** Connecting gives up after [`CONNECT_TIMEOUT`] per host, and TCP keepalives
//! ([`KEEPALIVE_IDLE`], [`KEEPALIVE_INTERVAL`], [`KEEPALIVE_RETRIES`]) and [`TCP_USER_TIMEOUT`]
//! end a session whose host vanished without closing it (a machine lost, a network cut), unless
//! the URL sets them. The store sets no `statement_timeout`, and turns off one that the role or
//! database may set, in its own sessions: a timeout (or any cancel) that ends the wait for the
//! synchronous standby makes PostgreSQL answer the `COMMIT` as committed, with only a warning,
//! although the standby may not have the group. A `COMMIT` that comes back with a warning is
//! reported here as an error whose outcome is unknown. The wait for the synchronous standby is
//! bounded by the HA manager, which lets the primary go on alone (pg_auto_failover's
//! `wait_primary`) when its standby is declared lost.

use std::collections::HashSet;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use offpay_ledger::engine::{Changes, RecordKey, References, SequenceNumbers, Snapshot};
use offpay_ledger::{
    Account, AccountId, AccountKind, Amount, BalanceLimits, Batch, Currency, CurrencyTotal,
    GroupResult, GroupTransaction, HISTORY_PAGE_MAX, KnownGroups, LedgerStore, PendingState,
    RECORD_PAGE_MAX, Record, SchemaVersions, StoreError, Timestamp, Transfer, TransferId,
    TransferRecord, run_group,
};
use session::{Client, ConnectError};
use tokio_postgres::config::{Host, SslMode, TargetSessionAttrs};
use tokio_postgres::error::{Severity, SqlState};
use tokio_postgres::{Config, NoTls, Row, Statement};

mod known;
mod session;
use known::{Known, Learned, Plan};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio_postgres_rustls::MakeRustlsConnect;

/// Schema migrations, applied in order; the index + 1 is the schema version.
const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_ledger.sql"),
    include_str!("../migrations/0002_per_account_locks.sql"),
];

/// Advisory lock key held while migrating, so that server processes starting together do not
/// race to create the same tables (the text `offpay-m` as a big-endian integer).
const MIGRATION_LOCK_KEY: i64 = i64::from_be_bytes(*b"offpay-m");

/// Longest schema name PostgreSQL keeps (`NAMEDATALEN - 1`).
const SCHEMA_NAME_LENGTH_MAX: usize = 63;

/// How many times a group commit is attempted when the database aborts it for a serialization
/// failure, a deadlock, or a unique violation from a group that created the same row first.
/// CockroachDB and YugabyteDB also abort transactions that conflict, and ask the client to retry.
const COMMIT_ATTEMPTS_MAX: u32 = 5;

/// How long connecting may take when the URL does not say (`connect_timeout`): a database host
/// that drops packets must not hang the writer thread for the operating system's two minutes.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Idle time before the first TCP keepalive probe, unless the URL sets `keepalives_idle`: a
/// session waiting for an answer from a host that vanished is found dead within
/// `KEEPALIVE_IDLE + KEEPALIVE_INTERVAL * KEEPALIVE_RETRIES` (the driver's default is two hours).
pub const KEEPALIVE_IDLE: Duration = Duration::from_secs(5);

/// Time between TCP keepalive probes, unless the URL sets `keepalives_interval`.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(2);

/// Unanswered keepalive probes before the session is dropped, unless the URL sets
/// `keepalives_retries`.
pub const KEEPALIVE_RETRIES: u32 = 3;

/// How long sent data may stay unacknowledged before the session is dropped (Linux
/// `TCP_USER_TIMEOUT`), unless the URL sets `tcp_user_timeout`: a statement sent to a host that
/// vanished fails after this instead of the kernel's fifteen minutes of retransmissions.
pub const TCP_USER_TIMEOUT: Duration = Duration::from_secs(15);

/// Run at the start of every session, with the schema's `search_path` if there is one: see
/// "Bounded waits" above for why `statement_timeout` is off. (A `SET`, not startup `options`, so
/// that connection poolers and wire-compatible engines accept it.)
const SESSION_SETUP: &str = "SET statement_timeout = 0";

/// Run after [`SESSION_SETUP`]: the store's prepared statements are planned once per session (and
/// again at each [`REPLAN_FIRST_CALLS`] step), not at every call, and always as index lookups.
///
/// Left to itself PostgreSQL planned the group's statements again at every call: the write
/// statement spent longer being planned (its bind) than being run, 0.28 against 0.20 ms, and the
/// four statements of a one-transfer group 0.49 ms in all, a third of its commit. Every statement
/// the store prepares finds its rows by a key (an account id, a transfer id or sequence, a
/// record's namespace and key); the one plan fit for that at any table size is an index lookup.
/// A generic plan is made without the parameters' values, from the table statistics of the moment:
/// on the new, empty tables of a fresh ledger it chose to scan them whole, and kept scanning as
/// they grew (`offpay bench ledger` fell from about 55,000 to 867 transfers/s). With sequential
/// scans off the planner takes the index wherever one serves, and still scans a table whole where
/// nothing else can (the per-currency totals). Only an optimisation: an engine that does not know
/// a setting (a wire-compatible one) keeps its own planning (`Target::connect`).
const PLANNER_SETUP: &str = "SET plan_cache_mode = force_generic_plan; SET enable_seqscan = off";

/// The `application_name` the store's sessions show in `pg_stat_activity`, unless the URL sets one.
const APPLICATION_NAME: &str = "offpay-ledger";

/// A ledger stored in a PostgreSQL database (or a schema of one).
pub struct PostgresStore {
    client: Client,
    statements: Statements,
    target: Target,
    /// The last call failed: the connection may be dead without the driver knowing yet.
    connection_suspect: bool,
    /// The session was found dead after a failed call: replace it before the next.
    session_dead: bool,
    /// Inside [`LedgerStore::read_transaction`]: a lost connection is an error, not a reason to
    /// reconnect (reads on a new session would not share the transaction's snapshot).
    in_read_transaction: bool,
    /// Calls that succeeded on this session, and the count at which its cached plans are dropped
    /// next ([`REPLAN_FIRST_CALLS`]).
    calls: u64,
    replan_at: u64,
    /// What the session last saw of the rows it loaded and wrote (see `known.rs`).
    known: Known,
}

/// A session drops its cached plans (`DISCARD PLANS`) after this many successful calls, then
/// after [`REPLAN_GROWTH`] times as many, and so on. PostgreSQL settles a prepared statement on a
/// generic plan after a few executions and keeps it for the session; made while a new ledger's
/// tables were nearly empty, that plan scans them whole, and without an `ANALYZE` (autovacuum off,
/// or not yet run) nothing replaces it as they grow: on a fresh database a server here fell from
/// 3,000 to 1,100 transfers/s within a minute, and ran at 8,300/s on a new session. Planned again
/// each time the ledger has grown severalfold, a session's plans stay fit for its tables.
pub const REPLAN_FIRST_CALLS: u64 = 64;
/// How much further a session goes before it drops its plans again.
pub const REPLAN_GROWTH: u64 = 4;

const _: () = assert!(REPLAN_FIRST_CALLS > 0 && REPLAN_GROWTH > 1);

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("target", &self.target.description)
            .finish_non_exhaustive()
    }
}

fn database_error(error: tokio_postgres::Error) -> StoreError {
    StoreError::Database(describe(&error))
}

/// The driver's error with the server's message: `tokio_postgres::Error`'s `Display` says only
/// "db error" for what the server reported, and hides the cause of I/O failures.
fn describe(error: &tokio_postgres::Error) -> String {
    if let Some(reported) = error.as_db_error() {
        return format!(
            "{} {}: {}",
            reported.severity(),
            reported.code().code(),
            reported.message()
        );
    }
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn corrupt(what: impl fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

/// Where the store connects: the parsed URL, the schema, and what may be shown of them.
struct Target {
    config: Config,
    /// Plain TCP, or TLS with the certificate verified ([`TlsSettings`]).
    tls: Option<MakeRustlsConnect>,
    schema: Option<String>,
    /// `postgres://user@host:port/database (schema s)`, never the password.
    description: String,
    /// The password as given, to scrub from any message that might echo it.
    password: Option<String>,
    /// The URL asks for a session that accepts writes (`target_session_attrs=read-write`): a
    /// session that only reads is then one to replace.
    wants_writes: bool,
    /// Warnings the server sent on the store's sessions.
    warnings: Warnings,
}

/// The `WARNING`s a server sent (notices of lower severity are not kept), shared with the
/// sessions' notice callback: a `COMMIT` that warns did not do all it promises.
#[derive(Clone, Default)]
struct Warnings(Arc<Mutex<Vec<String>>>);

impl Warnings {
    /// Keeps at most this many, so that a chatty server cannot grow the store without bound.
    const KEPT_MAX: usize = 16;

    fn push(&self, warning: String) {
        let mut kept = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if kept.len() < Warnings::KEPT_MAX {
            kept.push(warning);
        }
    }

    fn take(&self) -> Vec<String> {
        std::mem::take(
            &mut *self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

impl Target {
    fn parse(url: &str, schema: Option<&str>) -> Result<Target, StoreError> {
        let password_in_url = password_in_url(url);
        let (url, tls_settings) = TlsSettings::take_from(url)?;
        let url = url.as_str();
        let mut config: Config = url.parse().map_err(|error: tokio_postgres::Error| {
            let message = scrub(describe(&error), password_in_url.as_deref());
            StoreError::Database(format!("invalid PostgreSQL connection string: {message}"))
        })?;
        let password = config
            .get_password()
            .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
            .or(password_in_url);
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(TCP_USER_TIMEOUT);
        }
        // The driver's default, which the URL cannot tell apart from an explicit two hours.
        if config.get_keepalives_idle() == Duration::from_secs(2 * 60 * 60) {
            config.keepalives_idle(KEEPALIVE_IDLE);
        }
        if config.get_keepalives_interval().is_none() {
            config.keepalives_interval(KEEPALIVE_INTERVAL);
        }
        if config.get_keepalives_retries().is_none() {
            config.keepalives_retries(KEEPALIVE_RETRIES);
        }
        let warnings = Warnings::default();
        let wants_writes = config.get_target_session_attrs() == TargetSessionAttrs::ReadWrite;
        if config.get_application_name().is_none() {
            config.application_name(APPLICATION_NAME);
        }
        // One port applies to every host; otherwise ports pair with hosts (libpq's rule).
        let ports = config.get_ports();
        let hosts: Vec<String> = config
            .get_hosts()
            .iter()
            .enumerate()
            .map(|(index, host)| {
                let port = match ports {
                    [one] => *one,
                    _ => ports.get(index).copied().unwrap_or(5432),
                };
                match host {
                    Host::Tcp(name) => format!("{name}:{port}"),
                    Host::Unix(path) => format!("{}:{port}", path.display()),
                }
            })
            .collect();
        let mut description = format!(
            "postgres://{}@{}/{}",
            config.get_user().unwrap_or(""),
            hosts.join(","),
            config.get_dbname().unwrap_or("")
        );
        if let Some(schema) = schema {
            description.push_str(&format!(" (schema {schema})"));
        }
        let tls = match tls_settings {
            Some(settings) => {
                config.ssl_mode(settings.mode);
                description.push_str(" over TLS");
                Some(settings.connector()?)
            }
            None => {
                // A key=value connection string keeps its own sslmode, which this store reads
                // only from URLs: refuse rather than connect in the clear to one that asks TLS.
                if config.get_ssl_mode() == SslMode::Require {
                    return Err(StoreError::Database(
                        "sslmode=require is honoured in postgres:// URLs: write the connection \
                         string as a URL (postgres://user@host/db?sslmode=verify-full)"
                            .to_owned(),
                    ));
                }
                config.ssl_mode(SslMode::Disable);
                None
            }
        };
        Ok(Target {
            config,
            tls,
            schema: schema.map(str::to_owned),
            description,
            password,
            wants_writes,
            warnings,
        })
    }

    /// Opens a session: connected (to the first host that suits `target_session_attrs`), with
    /// [`SESSION_SETUP`] done, in the store's schema if it has one.
    fn connect(&self) -> Result<Client, StoreError> {
        let kept = self.warnings.clone();
        let notices: session::NoticeSink = Box::new(move |notice| {
            if notice.parsed_severity() == Some(Severity::Warning) {
                kept.push(format!(
                    "{} {}: {}",
                    notice.severity(),
                    notice.code().code(),
                    notice.message()
                ));
            }
        });
        let connected = match &self.tls {
            Some(tls) => Client::connect(&self.config, tls.clone(), notices),
            None => Client::connect(&self.config, NoTls, notices),
        };
        let mut client = connected.map_err(|error| match error {
            ConnectError::Driver(error) => self.error(error),
            ConnectError::Runtime(error) => StoreError::Database(format!(
                "{}: cannot start the session's runtime: {error}",
                self.description
            )),
        })?;
        let setup = match &self.schema {
            Some(schema) => format!("{SESSION_SETUP}; {}", search_path(schema)),
            None => SESSION_SETUP.to_owned(),
        };
        client
            .batch_execute(&setup)
            .map_err(|error| self.error(error))?;
        match client.batch_execute(PLANNER_SETUP) {
            Ok(()) => {}
            // An engine without these settings plans as it does.
            Err(error) if error.code() == Some(&SqlState::UNDEFINED_OBJECT) => {}
            Err(error) => return Err(self.error(error)),
        }
        Ok(client)
    }

    /// Turns a connection-time error into a [`StoreError`] that names the server but cannot
    /// contain the password, whatever the driver put in its message.
    fn error(&self, error: tokio_postgres::Error) -> StoreError {
        let message = scrub(describe(&error), self.password.as_deref());
        StoreError::Database(format!("{}: {message}", self.description))
    }
}

/// The password of a `postgres://user:password@host/...` URL, as written (percent-encoded or
/// not), if there is one.
/// What a URL's `sslmode` and `sslrootcert` ask for, as libpq names them. offpay always verifies
/// the server's certificate and host name when it uses TLS (against `sslrootcert`, or the system's
/// roots without it), so `require` and `verify-ca` mean what `verify-full` means in libpq;
/// `prefer` and `allow` use TLS, verified, when the server offers it. Without `sslmode` (or with
/// `disable`) the session is plain TCP: put such a database on a private network.
struct TlsSettings {
    mode: SslMode,
    root_certificates: Option<PathBuf>,
}

impl TlsSettings {
    /// Takes `sslmode` and `sslrootcert` out of a `postgres://` URL's query (the driver knows
    /// neither `verify-full` nor `sslrootcert`) and says what they ask for: `None` for plain TCP.
    fn take_from(url: &str) -> Result<(String, Option<TlsSettings>), StoreError> {
        let is_url = url.starts_with("postgres://") || url.starts_with("postgresql://");
        let Some((base, query)) = url.split_once('?').filter(|_| is_url) else {
            return Ok((url.to_owned(), None));
        };
        let (mut mode, mut roots) = (None, None);
        let mut kept = Vec::new();
        for parameter in query.split('&') {
            match parameter.split_once('=') {
                Some(("sslmode", value)) => mode = Some(value.to_owned()),
                Some(("sslrootcert", value)) => roots = Some(PathBuf::from(percent_decode(value))),
                _ => kept.push(parameter),
            }
        }
        let rest = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        let mode = match mode.as_deref() {
            None | Some("disable") => {
                if roots.is_some() {
                    return Err(StoreError::Database(
                        "the PostgreSQL URL names sslrootcert but no sslmode that uses TLS \
                         (add sslmode=verify-full)"
                            .to_owned(),
                    ));
                }
                return Ok((rest, None));
            }
            Some("allow" | "prefer") => SslMode::Prefer,
            Some("require" | "verify-ca" | "verify-full") => SslMode::Require,
            Some(other) => {
                return Err(StoreError::Database(format!(
                    "the PostgreSQL URL's sslmode {other:?} is not one of disable, allow, prefer, \
                     require, verify-ca, verify-full"
                )));
            }
        };
        Ok((
            rest,
            Some(TlsSettings {
                mode,
                root_certificates: roots,
            }),
        ))
    }

    /// The TLS connector: the roots in `sslrootcert`, or the system's.
    fn connector(&self) -> Result<MakeRustlsConnect, StoreError> {
        let mut roots = rustls::RootCertStore::empty();
        match &self.root_certificates {
            Some(path) => {
                let certificates: Vec<_> = CertificateDer::pem_file_iter(path)
                    .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
                    .map_err(|error| {
                        StoreError::Database(format!(
                            "cannot read the PostgreSQL root certificates in {}: {error}",
                            path.display()
                        ))
                    })?;
                if certificates.is_empty() {
                    return Err(StoreError::Database(format!(
                        "{} holds no PEM certificate (sslrootcert)",
                        path.display()
                    )));
                }
                for certificate in certificates {
                    roots.add(certificate).map_err(|error| {
                        StoreError::Database(format!(
                            "a root certificate in {} is not usable: {error}",
                            path.display()
                        ))
                    })?;
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(found.certs);
                if roots.is_empty() {
                    return Err(StoreError::Database(
                        "no system root certificates were found to verify the PostgreSQL \
                         server: name its CA with sslrootcert"
                            .to_owned(),
                    ));
                }
            }
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| StoreError::Database(format!("TLS set-up: {error}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(MakeRustlsConnect::new(config))
    }
}

/// Decodes `%XX` escapes in a URL query value (a path in `sslrootcert`).
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escaped = (bytes[index] == b'%')
            .then(|| value.get(index + 1..index + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                decoded.push(byte);
                index += 3;
            }
            None => {
                decoded.push(bytes[index]);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

fn password_in_url(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))?;
    let authority = rest.split(['/', '?']).next()?;
    let (user_info, _) = authority.rsplit_once('@')?;
    let (_, password) = user_info.split_once(':')?;
    (!password.is_empty()).then(|| password.to_owned())
}

fn scrub(message: String, password: Option<&str>) -> String {
    match password {
        Some(password) if !password.is_empty() => message.replace(password, "********"),
        _ => message,
    }
}

/// Checks a schema name: lowercase letters, digits and `_`, not starting with a digit. Anything
/// else would need quoting rules that differ between engines, and is never needed.
fn validate_schema_name(schema: &str) -> Result<(), StoreError> {
    let valid = !schema.is_empty()
        && schema.len() <= SCHEMA_NAME_LENGTH_MAX
        && !schema.starts_with(|character: char| character.is_ascii_digit())
        && schema
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'_');
    if valid {
        Ok(())
    } else {
        Err(StoreError::Schema(format!(
            "schema name {schema:?} must be 1 to {SCHEMA_NAME_LENGTH_MAX} lowercase letters, digits or _, not starting with a digit"
        )))
    }
}

/// What a database holds and who is using it, looked at without migrating it: what a restore
/// checks before it writes into a database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DatabaseUse {
    /// Tables in the session's current schema (`public` unless the URL's role or options say).
    pub tables: u64,
    /// Other sessions of offpay ledger stores connected to the database (their
    /// `application_name` is the store's default): a server running on it.
    pub offpay_sessions: u64,
}

/// Connects to `url` as a store would (the same TLS rules, timeouts, and errors that never hold
/// the password) and reports [`DatabaseUse`]; creates and changes nothing.
pub fn database_use(url: &str) -> Result<DatabaseUse, StoreError> {
    let target = Target::parse(url, None)?;
    let mut client = target.connect()?;
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM pg_catalog.pg_tables \
                      WHERE schemaname = current_schema())::BIGINT, \
                    (SELECT count(*) FROM pg_catalog.pg_stat_activity \
                      WHERE datname = current_database() AND application_name = $1 \
                        AND pid <> pg_backend_pid())::BIGINT",
            &[&APPLICATION_NAME],
        )
        .map_err(|error| target.error(error))?;
    let count = |index: usize| -> Result<u64, StoreError> {
        let value: i64 = row.try_get(index).map_err(|error| target.error(error))?;
        Ok(u64::try_from(value).unwrap_or(0))
    };
    Ok(DatabaseUse {
        tables: count(0)?,
        offpay_sessions: count(1)?,
    })
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/database` or
    /// `host=... dbname=...`), migrates it, and uses the connection's default `search_path`.
    pub fn open(url: &str) -> Result<PostgresStore, StoreError> {
        PostgresStore::connect(url, None)
    }

    /// Like [`PostgresStore::open`], in the schema `schema` (created if missing): one database
    /// can then hold several independent ledgers, for isolated tests or an operator's layout.
    pub fn open_in_schema(url: &str, schema: &str) -> Result<PostgresStore, StoreError> {
        validate_schema_name(schema)?;
        PostgresStore::connect(url, Some(schema))
    }

    fn connect(url: &str, schema: Option<&str>) -> Result<PostgresStore, StoreError> {
        let target = Target::parse(url, schema)?;
        let mut client = target.connect()?;
        migrate(&mut client, schema).map_err(|error| match error {
            StoreError::Schema(message) => {
                StoreError::Schema(format!("{}: {message}", target.description))
            }
            other => other,
        })?;
        let statements = Statements::prepare(&mut client)?;
        Ok(PostgresStore {
            client,
            statements,
            target,
            connection_suspect: false,
            session_dead: false,
            in_read_transaction: false,
            calls: 0,
            replan_at: REPLAN_FIRST_CALLS,
            known: Known::default(),
        })
    }

    /// The `synchronous_commit` setting in force on the connection (`on` unless the operator
    /// changed it), for tests and diagnostics.
    pub fn synchronous_commit(&mut self) -> Result<String, StoreError> {
        self.run(|client, _| {
            let row = client
                .query_one("SHOW synchronous_commit", &[])
                .map_err(database_error)?;
            row.try_get(0).map_err(database_error)
        })
    }

    /// A server setting as the store's session has it (`SELECT current_setting(name)`), for
    /// tests and diagnostics: `statement_timeout` is `0` whatever the role or URL set.
    pub fn session_setting(&mut self, name: &str) -> Result<String, StoreError> {
        self.run(|client, _| {
            let row = client
                .query_one("SELECT current_setting($1)", &[&name])
                .map_err(database_error)?;
            row.try_get(0).map_err(database_error)
        })
    }

    /// Runs a read (or the start of a read transaction) with [`PostgresStore::run_once`], and
    /// once more if it found its session dead ([`PostgresStore::session_died`]): a database that
    /// restarted or failed over while the session was idle costs the first call after it nothing.
    fn run<T>(
        &mut self,
        mut operation: impl FnMut(&mut Client, &Statements) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let result = self.run_once(&mut operation);
        if result.is_err() && self.session_died() {
            return self.run_once(operation);
        }
        result
    }

    /// After a failed call outside a read transaction (whose snapshot a new session would not
    /// share): whether the session is dead (closed, or not answering within [`CONNECT_TIMEOUT`]),
    /// so that the call failed for that. The next call then reconnects without checking again.
    fn session_died(&mut self) -> bool {
        if self.in_read_transaction {
            return false;
        }
        self.session_dead = self.client.is_closed() || !self.client.is_valid(CONNECT_TIMEOUT);
        self.session_dead
    }

    /// Runs `operation` on a live session: reconnects first if the session is known to be gone,
    /// or is found unfit after a failed call ([`PostgresStore::session_unfit`]).
    fn run_once<T, E: From<StoreError>>(
        &mut self,
        operation: impl FnOnce(&mut Client, &Statements) -> Result<T, E>,
    ) -> Result<T, E> {
        let lost = self.session_unfit();
        if lost && self.in_read_transaction {
            return Err(StoreError::Database(format!(
                "{}: the connection was lost during a read transaction",
                self.target.description
            ))
            .into());
        }
        if lost {
            // On failure the old session stays, still suspect: the next call tries again.
            let mut client = self.target.connect()?;
            self.statements = Statements::prepare(&mut client)?;
            self.client = client;
            self.session_dead = false;
            self.calls = 0;
            self.replan_at = REPLAN_FIRST_CALLS;
        }
        self.connection_suspect = false;
        let result = operation(&mut self.client, &self.statements);
        if result.is_err() {
            self.connection_suspect = true;
        } else {
            self.replan_when_grown();
        }
        result
    }

    /// Counts a successful call, and drops the session's cached plans when it has made
    /// [`PostgresStore::replan_at`] of them ([`REPLAN_FIRST_CALLS`]).
    fn replan_when_grown(&mut self) {
        self.calls += 1;
        if self.calls < self.replan_at || self.in_read_transaction {
            return;
        }
        self.replan_at = self.replan_at.saturating_mul(REPLAN_GROWTH);
        // Only an optimisation: if it fails, the next call finds out why.
        if self.client.batch_execute("DISCARD PLANS").is_err() {
            self.connection_suspect = true;
        }
    }

    /// Successful calls on this session and the count at which it next drops its plans (for
    /// tests).
    pub fn replan_state(&self) -> (u64, u64) {
        (self.calls, self.replan_at)
    }

    /// Whether the session must be replaced before the next call: it is closed; or, checked
    /// only after a failed call (a round trip or two), it does not answer, or it only reads
    /// although the URL asks for writes (the node was demoted, or is a standby now).
    fn session_unfit(&mut self) -> bool {
        if self.client.is_closed() || self.session_dead {
            return true;
        }
        if !self.connection_suspect {
            return false;
        }
        if !self.client.is_valid(CONNECT_TIMEOUT) {
            return true;
        }
        // Inside a read transaction `transaction_read_only` is on by our own choice.
        if !self.target.wants_writes || self.in_read_transaction {
            return false;
        }
        !matches!(session_read_only(&mut self.client), Ok(false))
    }
}

/// Whether the session only reads: the server is a standby, or defaults to read-only
/// transactions (what `target_session_attrs=read-write` checks when connecting).
fn session_read_only(client: &mut Client) -> Result<bool, tokio_postgres::Error> {
    let messages = client.simple_query("SHOW transaction_read_only")?;
    Ok(messages.iter().any(|message| {
        matches!(message, tokio_postgres::SimpleQueryMessage::Row(row) if row.get(0) == Some("on"))
    }))
}

/// Whether a failed `COMMIT` certainly did not commit: the server answered it with an error (and
/// rolled back). When the session died instead, the transaction may have committed.
fn commit_refused(error: &tokio_postgres::Error) -> bool {
    error
        .as_db_error()
        .is_some_and(|reported| reported.parsed_severity() == Some(Severity::Error))
}

/// One attempt at a group commit: one database transaction. Its `BEGIN` goes on the wire with
/// the group's loads ([`PostgresGroup::pipeline`]). Answers with what the group loaded and wrote,
/// for the session to know ([`Known::learn`]).
fn commit_once(
    client: &mut Client,
    statements: &Statements,
    warnings: &Warnings,
    batches: &[Batch],
    now: Timestamp,
) -> Result<(GroupResult, Learned), Failure> {
    // Warnings from before this group are not the group's.
    warnings.take();
    let spare_wanted = known::spare_target(known::transfer_operations(batches));
    let mut group = PostgresGroup {
        client,
        statements,
        begin_pending: true,
        not_started: None,
        retryable: None,
        records_found: HashSet::new(),
        drawn: None,
        committed: None,
        spare_wanted: bigint(spare_wanted as u64, "spare number count")?,
        learned: Learned::default(),
    };
    let outcome = run_group(&mut group, batches, now);
    let begun = !group.begin_pending && group.not_started.is_none();
    let not_started = group.not_started.take();
    let retryable = group.retryable.take();
    let committed = group.committed.take();
    let learned = std::mem::take(&mut group.learned);
    let client = group.client;
    let results = match outcome {
        Ok(results) => results,
        Err(error) => {
            // A COMMIT already sent behind a failed write has ended the transaction.
            if begun && committed.is_none() {
                // Best effort: a session that cannot roll back is found unfit by the next call.
                let _ = client.batch_execute("ROLLBACK");
            }
            return Err(match (not_started, retryable) {
                (Some(error), _) => Failure::NotStarted(error),
                (None, Some(cause)) => Failure::Retry(cause),
                (None, None) => Failure::Store(error),
            });
        }
    };
    if !begun {
        // The group needed no statement (nothing to load, nothing decided to write).
        return Ok((results, learned));
    }
    // Sent behind the group's write, or now if the group wrote nothing.
    let committed = match committed {
        Some(answer) => answer,
        None => client.batch_execute("COMMIT"),
    };
    check_commit(committed, warnings)?;
    Ok((results, learned))
}

/// Whether a group's `COMMIT` committed it, on this node and (as far as the answer tells) on the
/// synchronous standbys.
fn check_commit(
    committed: Result<(), tokio_postgres::Error>,
    warnings: &Warnings,
) -> Result<(), Failure> {
    committed.map_err(|error| {
        if commit_refused(&error) {
            Failure::from_driver(error)
        } else {
            Failure::Store(StoreError::Database(format!(
                "the session failed during COMMIT, so whether the group was committed is unknown: {}",
                describe(&error)
            )))
        }
    })?;
    // PostgreSQL answers a COMMIT whose wait for the synchronous standby was cancelled as
    // committed, with a warning: the group is committed on this node, maybe not on the standby.
    let warned = warnings.take();
    if !warned.is_empty() {
        return Err(Failure::Store(StoreError::Database(format!(
            "COMMIT answered with a warning, so whether the group reached the standbys is unknown: {}",
            warned.join("; ")
        ))));
    }
    Ok(())
}

/// Why a group decided on known rows did not commit.
enum KnownFailure {
    /// A row was not as known: the server refused the write, and the `COMMIT` behind it rolled
    /// the group back. Nothing of it was applied; it is decided again the usual way.
    Stale,
    /// The commit failed as any other would (the session, the network, the `COMMIT`).
    Failed(Failure),
}

/// Commits a group decided on known rows ([`Known::plan`]): `BEGIN`, its checked write
/// (`Statements::write_known`) and `COMMIT`, in one round trip. Answers with the spare numbers
/// the write drew.
fn commit_known(
    client: &mut Client,
    statements: &Statements,
    warnings: &Warnings,
    plan: &Plan,
) -> Result<Vec<u64>, KnownFailure> {
    let failed = |error: StoreError| KnownFailure::Failed(Failure::Store(error));
    warnings.take();
    let changes = &plan.changes;
    let updated = AccountColumns::of(&changes.accounts_updated).map_err(failed)?;
    let before = AccountColumns::of(&plan.accounts_before).map_err(failed)?;
    let transfers = TransferColumns::of(&changes.transfers_created).map_err(failed)?;
    let record = |index: usize| &changes.records[index];
    let inserts: Vec<_> = plan.inserted.iter().map(|&index| record(index)).collect();
    let inserts = RecordColumns::of(&inserts).map_err(failed)?;
    let updates: Vec<_> = plan
        .updated
        .iter()
        .map(|&(index, _)| record(index))
        .collect();
    let updates = RecordColumns::of(&updates).map_err(failed)?;
    let deletes: Vec<_> = plan
        .deleted
        .iter()
        .map(|&(index, _)| record(index))
        .collect();
    let deletes = RecordColumns::of(&deletes).map_err(failed)?;
    let versions = |known: &[(usize, u64)]| {
        bigints(known.iter().map(|&(_, version)| version), "record version")
    };
    let updated_from = versions(&plan.updated).map_err(failed)?;
    let deleted_at = versions(&plan.deleted).map_err(failed)?;
    let held_namespaces: Vec<&str> = plan.held.iter().map(|((ns, _), _)| ns.as_str()).collect();
    let held_keys: Vec<&str> = plan.held.iter().map(|((_, key), _)| key.as_str()).collect();
    let held_versions = bigints(
        plan.held.iter().map(|&(_, version)| version),
        "record version",
    )
    .map_err(failed)?;
    let absent_namespaces: Vec<&str> = plan.absent.iter().map(|(ns, _)| ns.as_str()).collect();
    let absent_keys: Vec<&str> = plan.absent.iter().map(|(_, key)| key.as_str()).collect();
    let expected = bigints(
        [
            updated.ids.len(),
            transfers.ids.len(),
            inserts.keys.len(),
            updates.keys.len(),
            deletes.keys.len(),
            held_keys.len(),
            plan.spare_wanted,
        ]
        .map(|count| count as u64),
        "row count",
    )
    .map_err(failed)?;
    let mut parameters: Vec<Parameter<'_>> = vec![&updated.ids];
    parameters.extend(updated.changed_parameters());
    parameters.extend(before.changed_parameters());
    parameters.extend(transfers.parameters());
    parameters.extend(inserts.parameters());
    parameters.extend(updates.parameters());
    parameters.extend([
        &updated_from as Parameter<'_>,
        &deletes.namespaces,
        &deletes.keys,
        &deleted_at,
        &held_namespaces,
        &held_keys,
        &held_versions,
        &absent_namespaces,
        &absent_keys,
    ]);
    parameters.extend(expected.iter().map(|count| count as Parameter<'_>));
    let driver = client.driver();
    // BEGIN, the write, COMMIT, in that order on the wire (as in `PostgresGroup::pipeline`).
    let (begun, written, committed) = client.block_on(async {
        tokio::join!(
            driver.batch_execute("BEGIN"),
            driver.query(&statements.write_known, &parameters),
            driver.batch_execute("COMMIT"),
        )
    });
    if let Err(error) = begun {
        return Err(KnownFailure::Failed(Failure::NotStarted(
            StoreError::Database(describe(&error)),
        )));
    }
    let rows = match written {
        Ok(rows) => rows,
        // The server refused the write (a row not as known, or anything else): the transaction
        // is aborted, so the COMMIT behind it rolled it back, whatever its own answer.
        Err(error) if error.as_db_error().is_some() => return Err(KnownFailure::Stale),
        Err(error) => return Err(failed(StoreError::Database(describe(&error)))),
    };
    match committed {
        // The server refused the COMMIT itself (and rolled back): decided again the usual way,
        // which retries what the database says may be retried.
        Err(error) if commit_refused(&error) => return Err(KnownFailure::Stale),
        committed => check_commit(committed, warnings).map_err(KnownFailure::Failed)?,
    }
    spare_numbers(&rows, 1).map_err(failed)
}

/// Applies the migrations this build knows and the database lacks, in one transaction under an
/// advisory lock; refuses a database that is ahead of this build.
fn migrate(client: &mut Client, schema: Option<&str>) -> Result<(), StoreError> {
    let schema_error = |error: tokio_postgres::Error| StoreError::Schema(describe(&error));
    client.batch_execute("BEGIN").map_err(schema_error)?;
    let migrated = migrate_in_transaction(client, schema)
        .and_then(|()| client.batch_execute("COMMIT").map_err(schema_error));
    if migrated.is_err() {
        // Best effort: a session that cannot even roll back is replaced by the next call.
        let _ = client.batch_execute("ROLLBACK");
    }
    migrated
}

/// [`migrate`]'s work, inside its transaction.
fn migrate_in_transaction(client: &mut Client, schema: Option<&str>) -> Result<(), StoreError> {
    let schema_error = |error: tokio_postgres::Error| StoreError::Schema(describe(&error));
    client
        .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK_KEY])
        .map_err(schema_error)?;
    if let Some(schema) = schema {
        // Created under the lock: two processes creating the same schema at once would collide.
        client
            .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
            .map_err(schema_error)?;
    }
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
        )
        .map_err(schema_error)?;
    let current: i64 = client
        .query_one(
            "SELECT COALESCE(MAX(version), 0)::BIGINT FROM schema_migrations",
            &[],
        )
        .and_then(|row| row.try_get(0))
        .map_err(schema_error)?;
    let known = MIGRATIONS.len() as i64;
    if current > known {
        return Err(StoreError::Schema(format!(
            "the database is at schema version {current}, newer than this offpay knows ({known}); upgrade offpay"
        )));
    }
    let applied_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64);
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        client.batch_execute(migration).map_err(schema_error)?;
        client
            .execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
                &[&(index as i64 + 1), &applied_at],
            )
            .map_err(schema_error)?;
    }
    Ok(())
}

/// The statement that puts a session in `schema` (validated by [`validate_schema_name`], so the
/// quotes are belt and braces).
fn search_path(schema: &str) -> String {
    format!("SET search_path TO \"{schema}\"")
}

const ACCOUNT_COLUMNS: &str = "id, kind, currency, exponent, balance_min, balance_max, \
     debits_pending, debits_posted, credits_pending, credits_posted, created_at, last_sequence";
const TRANSFER_COLUMNS: &str = "sequence, id, debit_account, credit_account, amount, currency, \
     kind, pending_id, pending_state, memo, committed_at, debit_previous, credit_previous";
/// How many columns [`TRANSFER_COLUMNS`] names.
const TRANSFER_COLUMN_COUNT: usize = 13;

/// Every statement the store runs, prepared once per connection: a prepare is a round trip, and
/// a group commit should cost only its reads and writes.
struct Statements {
    accounts_locked: Statement,
    transfers_and_numbers: Statement,
    record_versions: Statement,
    write_all: Statement,
    write_known: Statement,
    account: Statement,
    accounts_page: Statement,
    transfer: Statement,
    history: Statement,
    history_links: Statement,
    totals: Statement,
    record: Statement,
    records_page: Statement,
}

impl Statements {
    fn prepare(client: &mut Client) -> Result<Statements, StoreError> {
        let mut prepare = |sql: &str| client.prepare(sql).map_err(database_error);
        Ok(Statements {
            // Rows are locked in id order, so that groups over the same accounts queue for them
            // rather than deadlock.
            accounts_locked: prepare(&format!(
                "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = ANY($1::text[])
                 ORDER BY id FOR UPDATE"
            ))?,
            // The transfers a group names, then (marked by a non-null last column) the sequence
            // numbers for its new transfers.
            transfers_and_numbers: prepare(&format!(
                "SELECT {TRANSFER_COLUMNS}, NULL::bigint FROM transfers WHERE id = ANY($1::text[])
                 UNION ALL
                 SELECT NULL::bigint, NULL, NULL, NULL, NULL::bigint, NULL, NULL, NULL, NULL, NULL,
                   NULL::bigint, NULL::bigint, NULL::bigint, nextval('transfer_sequence')
                 FROM generate_series(1, $2::bigint)"
            ))?,
            record_versions: prepare(
                "SELECT r.namespace, r.key, r.version
                 FROM records AS r
                 JOIN UNNEST($1::text[], $2::text[]) AS wanted (namespace, key)
                   ON r.namespace = wanted.namespace AND r.key = wanted.key
                 ORDER BY r.namespace, r.key
                 FOR UPDATE OF r",
            )?,
            // Everything a group writes, in one statement (one round trip): each part is an
            // UNNEST of arrays, empty when the group has nothing of that kind. The parts touch
            // different rows, so that they may run in any order. A record the group found absent
            // is inserted without ON CONFLICT: if another group created it meanwhile, the unique
            // violation sends this group round again, to decide against the record as it is.
            write_all: prepare(&format!(
                "WITH
                 accounts_created AS (
                   INSERT INTO accounts ({ACCOUNT_COLUMNS})
                   SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::integer[],
                     $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[],
                     $10::bigint[], $11::bigint[], $12::bigint[])
                   RETURNING 1),
                 accounts_updated AS (
                   UPDATE accounts AS a SET balance_min = u.balance_min,
                     balance_max = u.balance_max, debits_pending = u.debits_pending,
                     debits_posted = u.debits_posted, credits_pending = u.credits_pending,
                     credits_posted = u.credits_posted, last_sequence = u.last_sequence
                   FROM UNNEST($13::text[], $14::bigint[], $15::bigint[], $16::bigint[],
                     $17::bigint[], $18::bigint[], $19::bigint[], $20::bigint[])
                     AS u (id, balance_min, balance_max, debits_pending, debits_posted,
                           credits_pending, credits_posted, last_sequence)
                   WHERE a.id = u.id
                   RETURNING 1),
                 transfers_created AS (
                   INSERT INTO transfers ({TRANSFER_COLUMNS})
                   SELECT * FROM UNNEST($21::bigint[], $22::text[], $23::text[], $24::text[],
                     $25::bigint[], $26::text[], $27::text[], $28::text[], $29::text[],
                     $30::text[], $31::bigint[], $32::bigint[], $33::bigint[])
                   RETURNING 1),
                 pending_resolved AS (
                   UPDATE transfers AS t SET pending_state = u.pending_state
                   FROM UNNEST($34::text[], $35::text[]) AS u (id, pending_state)
                   WHERE t.id = u.id AND t.pending_state = 'pending'
                   RETURNING 1),
                 records_created AS (
                   INSERT INTO records (namespace, key, value, version)
                   SELECT * FROM UNNEST($36::text[], $37::text[], $38::bytea[], $39::bigint[])
                   RETURNING 1),
                 records_updated AS (
                   UPDATE records AS r SET value = u.value, version = u.version
                   FROM UNNEST($40::text[], $41::text[], $42::bytea[], $43::bigint[])
                     AS u (namespace, key, value, version)
                   WHERE r.namespace = u.namespace AND r.key = u.key
                   RETURNING 1),
                 records_deleted AS (
                   DELETE FROM records AS r
                   USING UNNEST($44::text[], $45::text[]) AS gone (namespace, key)
                   WHERE r.namespace = gone.namespace AND r.key = gone.key
                   RETURNING 1)
                 SELECT counted.*,
                   -- A part that changed other than one row per element fails the statement
                   -- (division by zero, SQLSTATE 22012), so that the COMMIT sent behind it
                   -- rolls back (see `PostgresGroup::write`).
                   1 / CASE WHEN counted.accounts_created = $46::bigint
                         AND counted.accounts_updated = $47::bigint
                         AND counted.transfers_created = $48::bigint
                         AND counted.pending_resolved = $49::bigint
                         AND counted.records_created = $50::bigint
                         AND counted.records_updated = $51::bigint
                       THEN 1 ELSE 0 END,
                   -- Spare sequence numbers for the groups after this one (see `known.rs`).
                   ARRAY(SELECT nextval('transfer_sequence') FROM generate_series(1, $52::bigint))
                 FROM (SELECT (SELECT COUNT(*) FROM accounts_created) AS accounts_created,
                   (SELECT COUNT(*) FROM accounts_updated) AS accounts_updated,
                   (SELECT COUNT(*) FROM transfers_created) AS transfers_created,
                   (SELECT COUNT(*) FROM pending_resolved) AS pending_resolved,
                   (SELECT COUNT(*) FROM records_created) AS records_created,
                   (SELECT COUNT(*) FROM records_updated) AS records_updated,
                   (SELECT COUNT(*) FROM records_deleted) AS records_deleted) AS counted"
            ))?,
            // The write of a group decided on known rows (see `known.rs`): each change is made
            // only where the row is still as the group found it, and records only checked or
            // believed absent are checked; any row not as known fails the statement, so that the
            // COMMIT behind it rolls back. Rows are locked in the order the loads lock them:
            // accounts by id, then records.
            write_known: prepare(&format!(
                "WITH
                 accounts_updated AS (
                   UPDATE accounts AS a SET balance_min = u.balance_min,
                     balance_max = u.balance_max, debits_pending = u.debits_pending,
                     debits_posted = u.debits_posted, credits_pending = u.credits_pending,
                     credits_posted = u.credits_posted, last_sequence = u.last_sequence
                   FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::bigint[],
                     $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[],
                     $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[],
                     $13::bigint[], $14::bigint[], $15::bigint[])
                     AS u (id, balance_min, balance_max, debits_pending, debits_posted,
                           credits_pending, credits_posted, last_sequence,
                           was_balance_min, was_balance_max, was_debits_pending,
                           was_debits_posted, was_credits_pending, was_credits_posted,
                           was_last_sequence)
                   WHERE a.id = u.id
                     AND a.balance_min IS NOT DISTINCT FROM u.was_balance_min
                     AND a.balance_max IS NOT DISTINCT FROM u.was_balance_max
                     AND a.debits_pending = u.was_debits_pending
                     AND a.debits_posted = u.was_debits_posted
                     AND a.credits_pending = u.was_credits_pending
                     AND a.credits_posted = u.was_credits_posted
                     AND a.last_sequence = u.was_last_sequence
                   RETURNING 1),
                 transfers_created AS (
                   INSERT INTO transfers ({TRANSFER_COLUMNS})
                   SELECT * FROM UNNEST($16::bigint[], $17::text[], $18::text[], $19::text[],
                     $20::bigint[], $21::text[], $22::text[], $23::text[], $24::text[],
                     $25::text[], $26::bigint[], $27::bigint[], $28::bigint[])
                   RETURNING 1),
                 records_created AS (
                   INSERT INTO records (namespace, key, value, version)
                   SELECT * FROM UNNEST($29::text[], $30::text[], $31::bytea[], $32::bigint[])
                   RETURNING 1),
                 records_updated AS (
                   UPDATE records AS r SET value = u.value, version = u.version
                   FROM UNNEST($33::text[], $34::text[], $35::bytea[], $36::bigint[],
                     $37::bigint[]) AS u (namespace, key, value, version, was_version)
                   WHERE r.namespace = u.namespace AND r.key = u.key
                     AND r.version = u.was_version
                   RETURNING 1),
                 records_deleted AS (
                   DELETE FROM records AS r
                   USING UNNEST($38::text[], $39::text[], $40::bigint[])
                     AS gone (namespace, key, was_version)
                   WHERE r.namespace = gone.namespace AND r.key = gone.key
                     AND r.version = gone.was_version
                   RETURNING 1),
                 records_held AS (
                   SELECT 1 FROM records AS r
                   JOIN UNNEST($41::text[], $42::text[], $43::bigint[])
                     AS held (namespace, key, version)
                     ON r.namespace = held.namespace AND r.key = held.key
                       AND r.version = held.version
                   FOR UPDATE OF r),
                 records_absent AS (
                   SELECT 1 FROM records AS r
                   JOIN UNNEST($44::text[], $45::text[]) AS absent (namespace, key)
                     ON r.namespace = absent.namespace AND r.key = absent.key)
                 SELECT 1 / CASE WHEN (SELECT COUNT(*) FROM accounts_updated) = $46::bigint
                     AND (SELECT COUNT(*) FROM transfers_created) = $47::bigint
                     AND (SELECT COUNT(*) FROM records_created) = $48::bigint
                     AND (SELECT COUNT(*) FROM records_updated) = $49::bigint
                     AND (SELECT COUNT(*) FROM records_deleted) = $50::bigint
                     AND (SELECT COUNT(*) FROM records_held) = $51::bigint
                     AND NOT EXISTS (SELECT 1 FROM records_absent)
                   THEN 1 ELSE 0 END,
                   ARRAY(SELECT nextval('transfer_sequence') FROM generate_series(1, $52::bigint))"
            ))?,
            account: prepare(&format!(
                "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1"
            ))?,
            accounts_page: prepare(&format!(
                "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id > $1 ORDER BY id LIMIT $2"
            ))?,
            transfer: prepare(&format!(
                "SELECT {TRANSFER_COLUMNS} FROM transfers WHERE id = $1"
            ))?,
            // The account's chain of previous-pointers from a starting sequence, newest first,
            // at most $3 links: one recursive query, primary-key lookups only.
            history: prepare(&format!(
                "WITH RECURSIVE chain (sequence, depth) AS (
                   SELECT $2::bigint, 1 WHERE $2::bigint > 0
                   UNION ALL
                   SELECT CASE WHEN t.debit_account = $1::text THEN t.debit_previous
                               ELSE t.credit_previous END,
                          chain.depth + 1
                   FROM chain JOIN transfers AS t ON t.sequence = chain.sequence
                   WHERE chain.depth < $3::bigint
                 )
                 SELECT {TRANSFER_COLUMNS} FROM transfers
                 WHERE sequence IN (SELECT sequence FROM chain)
                 ORDER BY sequence DESC"
            ))?,
            history_links: prepare(
                "SELECT debit_account, credit_account, debit_previous, credit_previous
                 FROM transfers WHERE sequence = $1",
            )?,
            totals: prepare(
                "SELECT currency, exponent, COUNT(*)::BIGINT,
                   SUM(credits_posted::NUMERIC - debits_posted::NUMERIC)::TEXT,
                   SUM(credits_pending::NUMERIC - debits_pending::NUMERIC)::TEXT
                 FROM accounts GROUP BY currency, exponent ORDER BY currency",
            )?,
            record: prepare(
                "SELECT value, version FROM records WHERE namespace = $1 AND key = $2",
            )?,
            records_page: prepare(
                "SELECT key, value, version FROM records
                 WHERE namespace = $1 AND key LIKE $2 ESCAPE '\\' AND key > $3
                 ORDER BY key LIMIT $4",
            )?,
        })
    }
}

/// Why one attempt at a group commit failed: retryable when the database says so.
enum Failure {
    Retry(tokio_postgres::Error),
    Store(StoreError),
    /// The transaction did not even begin: nothing of the group reached the database.
    NotStarted(StoreError),
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Failure {
        Failure::Store(error)
    }
}

/// Whether the database aborted the transaction and the group should be decided again.
fn is_retryable(error: &tokio_postgres::Error) -> bool {
    error.code().is_some_and(|code| {
        *code == SqlState::T_R_SERIALIZATION_FAILURE
            || *code == SqlState::T_R_DEADLOCK_DETECTED
            // Another group created the same account, transfer id or record first: deciding
            // again sees it.
            || *code == SqlState::UNIQUE_VIOLATION
    })
}

impl Failure {
    fn into_store(self) -> StoreError {
        match self {
            Failure::Retry(error) => database_error(error),
            Failure::Store(error) | Failure::NotStarted(error) => error,
        }
    }

    fn from_driver(error: tokio_postgres::Error) -> Failure {
        if is_retryable(&error) {
            Failure::Retry(error)
        } else {
            Failure::Store(database_error(error))
        }
    }
}

/// One group commit's database transaction, seen by [`run_group`].
struct PostgresGroup<'a> {
    client: &'a mut Client,
    statements: &'a Statements,
    /// `BEGIN` is still to be sent: it goes on the wire just before the group's first
    /// statements, in the same round trip.
    begin_pending: bool,
    /// `BEGIN` failed: nothing of the group reached the database (safe to retry on a new
    /// session).
    not_started: Option<StoreError>,
    /// A retryable driver error met inside a step, kept so that the commit loop can retry:
    /// [`GroupTransaction`] steps can only return [`StoreError`].
    retryable: Option<tokio_postgres::Error>,
    /// The records the group found (and locked) at load: written back with an UPDATE, where
    /// the others are INSERTed.
    records_found: HashSet<(String, String)>,
    /// The sequence numbers `load` drew for the group's new transfers.
    drawn: Option<Vec<u64>>,
    /// The answer to the `COMMIT` sent behind the group's write
    /// ([`PostgresGroup::write_and_commit`]); `None` while it has not been sent.
    committed: Option<Result<(), tokio_postgres::Error>>,
    /// How many spare sequence numbers the write draws for the groups after it.
    spare_wanted: i64,
    /// What the group loaded and wrote, for the session to know once it commits.
    learned: Learned,
}

/// The parameters of one statement.
type Parameters<'p> = &'p [Parameter<'p>];

/// One parameter of a statement.
type Parameter<'p> = &'p (dyn tokio_postgres::types::ToSql + Sync);

/// One statement of a pipeline: `None` when there was nothing of its kind to send.
type Step<'p> = Option<(&'p Statement, Parameters<'p>)>;

/// A pipelined statement's answer: `None` for a step not sent.
type Answer = Option<Result<Vec<Row>, tokio_postgres::Error>>;

/// Sends a pipeline's step (see [`PostgresGroup::pipeline`]).
async fn run_step(driver: &tokio_postgres::Client, step: Step<'_>) -> Answer {
    match step {
        Some((statement, parameters)) => Some(driver.query(statement, parameters).await),
        None => None,
    }
}

impl PostgresGroup<'_> {
    /// Sends `BEGIN` if it is still pending, then the (up to three) statements given, all before
    /// waiting for an answer; the server runs them in that order. Answers in the same order.
    fn pipeline(&mut self, steps: [Step<'_>; 3]) -> Result<[Answer; 3], StoreError> {
        let begin = std::mem::take(&mut self.begin_pending);
        let driver = self.client.driver();
        let [first, second, third] = steps;
        // `join!` polls its futures in the order written the first time, and each puts its
        // statement on the wire at its first poll: BEGIN, then the steps, in order.
        let (begun, first, second, third) = self.client.block_on(async {
            tokio::join!(
                async {
                    if begin {
                        Some(driver.batch_execute("BEGIN").await)
                    } else {
                        None
                    }
                },
                run_step(driver, first),
                run_step(driver, second),
                run_step(driver, third),
            )
        });
        if let Some(Err(error)) = begun {
            let message = describe(&error);
            self.not_started = Some(StoreError::Database(message.clone()));
            return Err(StoreError::Database(message));
        }
        Ok([first, second, third])
    }

    /// The group's write with `COMMIT` on the wire right behind it (and `BEGIN` before it, if
    /// still pending): one round trip. A write that fails aborts the transaction, and the
    /// `COMMIT` then rolls it back; the `COMMIT`'s answer is kept for [`commit_once`].
    fn write_and_commit(
        &mut self,
        statement: &Statement,
        parameters: Parameters<'_>,
    ) -> Result<Vec<Row>, StoreError> {
        let begin = std::mem::take(&mut self.begin_pending);
        let driver = self.client.driver();
        // As in `pipeline`: BEGIN, the write, COMMIT, in that order on the wire.
        let (begun, written, committed) = self.client.block_on(async {
            tokio::join!(
                async {
                    if begin {
                        Some(driver.batch_execute("BEGIN").await)
                    } else {
                        None
                    }
                },
                driver.query(statement, parameters),
                driver.batch_execute("COMMIT"),
            )
        });
        self.committed = Some(committed);
        if let Some(Err(error)) = begun {
            return Err(self.failed(error));
        }
        written.map_err(|error| self.failed(error))
    }

    /// The rows of a pipelined statement (none for a step not sent).
    fn answered(&mut self, answer: Answer) -> Result<Vec<Row>, StoreError> {
        match answer {
            Some(Ok(rows)) => Ok(rows),
            Some(Err(error)) => Err(self.failed(error)),
            None => Ok(Vec::new()),
        }
    }

    fn failed(&mut self, error: tokio_postgres::Error) -> StoreError {
        if error.code() == Some(&SqlState::DIVISION_BY_ZERO) {
            // Only the write's row-count check divides (see `Statements::write_all`).
            return corrupt(
                "a part of the group's write changed other than one row per element (rows \
                 vanished during a commit); nothing was committed",
            );
        }
        let store_error = StoreError::Database(describe(&error));
        if is_retryable(&error) {
            self.retryable = Some(error);
        }
        store_error
    }
}

/// Converts an unsigned count to a BIGINT column value.
fn bigint(value: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(value)
        .map_err(|_| StoreError::Database(format!("{what} {value} does not fit a BIGINT column")))
}

/// Converts unsigned counts to BIGINT column values.
fn bigints(values: impl IntoIterator<Item = u64>, what: &str) -> Result<Vec<i64>, StoreError> {
    values
        .into_iter()
        .map(|value| bigint(value, what))
        .collect()
}

/// Reads back a BIGINT that must be non-negative.
fn unsigned(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| corrupt(format!("{what} is negative ({value})")))
}

impl GroupTransaction for PostgresGroup<'_> {
    fn load(&mut self, references: &References) -> Result<Snapshot, StoreError> {
        let mut snapshot = Snapshot::default();
        // Three statements, sent together after `BEGIN` (one round trip); the server runs them
        // in order:
        // 1. The accounts, locked. Every later statement starts after the locks are held, so
        //    it sees every transfer committed on these accounts and draws larger numbers.
        // 2. The transfers named, and the sequence numbers for the new ones, in one statement.
        // 3. The records written, locked.
        let account_ids: Vec<&str> = references.accounts.iter().map(AccountId::as_str).collect();
        let transfer_ids: Vec<&str> = references
            .transfers
            .iter()
            .map(TransferId::as_str)
            .collect();
        let transfer_operations = references.transfer_operations;
        let count = bigint(transfer_operations as u64, "transfer count")?;
        let namespaces: Vec<&str> = references
            .records
            .iter()
            .map(|(namespace, _)| namespace.as_str())
            .collect();
        let keys: Vec<&str> = references
            .records
            .iter()
            .map(|(_, key)| key.as_str())
            .collect();
        let statements = self.statements;
        let accounts_parameters: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&account_ids];
        let transfers_parameters: [&(dyn tokio_postgres::types::ToSql + Sync); 2] =
            [&transfer_ids, &count];
        let records_parameters: [&(dyn tokio_postgres::types::ToSql + Sync); 2] =
            [&namespaces, &keys];
        let [accounts, transfers, records] = self.pipeline([
            (!account_ids.is_empty())
                .then_some((&statements.accounts_locked, &accounts_parameters[..])),
            (!transfer_ids.is_empty() || transfer_operations > 0)
                .then_some((&statements.transfers_and_numbers, &transfers_parameters[..])),
            (!keys.is_empty()).then_some((&statements.record_versions, &records_parameters[..])),
        ])?;
        // The first failure in statement order is the cause (the later ones only say that the
        // transaction was aborted).
        let accounts = self.answered(accounts)?;
        let transfers_sent = transfers.is_some();
        let transfers = self.answered(transfers)?;
        let records = self.answered(records)?;
        for row in accounts {
            let account = account_from_row(&row)?;
            snapshot.accounts.insert(account.id.clone(), account);
        }
        if transfers_sent {
            let mut numbers = Vec::with_capacity(transfer_operations);
            for row in transfers {
                let drawn: Option<i64> =
                    row.try_get(TRANSFER_COLUMN_COUNT).map_err(database_error)?;
                match drawn {
                    Some(number) => numbers.push(unsigned(number, "transfer_sequence")?),
                    None => {
                        let record = transfer_from_row(&row)?;
                        snapshot
                            .transfers
                            .insert(record.transfer.id.clone(), record);
                    }
                }
            }
            if numbers.len() != transfer_operations {
                return Err(corrupt(format!(
                    "asked transfer_sequence for {transfer_operations} numbers and got {}",
                    numbers.len()
                )));
            }
            self.drawn = Some(numbers);
        }
        for row in records {
            let namespace: String = row.try_get(0).map_err(database_error)?;
            let key: String = row.try_get(1).map_err(database_error)?;
            let version: i64 = row.try_get(2).map_err(database_error)?;
            let version = unsigned(version, "record version")?;
            self.records_found.insert((namespace.clone(), key.clone()));
            snapshot.record_versions.insert((namespace, key), version);
        }
        // What the rows were, under their locks: known once the group commits.
        self.learned.accounts = snapshot.accounts.values().cloned().collect();
        self.learned.records = references
            .records
            .iter()
            .map(|key| {
                let version = snapshot.record_versions.get(key).copied().unwrap_or(0);
                (key.clone(), version)
            })
            .collect();
        Ok(snapshot)
    }

    fn sequence_numbers(&mut self, count: usize) -> Result<SequenceNumbers, StoreError> {
        // Drawn by `load`, after the accounts were locked.
        let numbers = self.drawn.take().unwrap_or_default();
        if numbers.len() != count {
            return Err(corrupt(format!(
                "the group has {count} transfers and drew {} sequence numbers",
                numbers.len()
            )));
        }
        Ok(SequenceNumbers::drawn(numbers))
    }

    fn write(&mut self, changes: &Changes) -> Result<(), StoreError> {
        let created = AccountColumns::of(&changes.accounts_created)?;
        let updated = AccountColumns::of(&changes.accounts_updated)?;
        let transfers = TransferColumns::of(&changes.transfers_created)?;
        let resolved_ids: Vec<&str> = changes
            .pending_resolved
            .iter()
            .map(|(id, _)| id.as_str())
            .collect();
        let resolved_states: Vec<&str> = changes
            .pending_resolved
            .iter()
            .map(|(_, state)| state.as_str())
            .collect();
        let (upserts, deletes): (Vec<_>, Vec<_>) = changes
            .records
            .iter()
            .partition(|(_, value, _)| value.is_some());
        let (updates, inserts): (Vec<_>, Vec<_>) = upserts
            .into_iter()
            .partition(|(key, _, _)| self.records_found.contains(key));
        let inserts = RecordColumns::of(&inserts)?;
        let updates = RecordColumns::of(&updates)?;
        let deletes = RecordColumns::of(&deletes)?;
        let expected = [
            bigint(created.ids.len() as u64, "account count")?,
            bigint(updated.ids.len() as u64, "account count")?,
            bigint(transfers.ids.len() as u64, "transfer count")?,
            bigint(resolved_ids.len() as u64, "resolution count")?,
            bigint(inserts.keys.len() as u64, "record count")?,
            bigint(updates.keys.len() as u64, "record count")?,
        ];
        let statement = &self.statements.write_all;
        let spare_wanted = self.spare_wanted;
        let mut parameters: Vec<Parameter<'_>> = vec![
            &created.ids,
            &created.kinds,
            &created.currencies,
            &created.exponents,
            &created.balance_min,
            &created.balance_max,
            &created.sums.debits_pending,
            &created.sums.debits_posted,
            &created.sums.credits_pending,
            &created.sums.credits_posted,
            &created.created_at,
            &created.last_sequences,
            &updated.ids,
        ];
        parameters.extend(updated.changed_parameters());
        parameters.extend(transfers.parameters());
        parameters.extend([&resolved_ids as Parameter<'_>, &resolved_states]);
        parameters.extend(inserts.parameters());
        parameters.extend(updates.parameters());
        parameters.extend([&deletes.namespaces as Parameter<'_>, &deletes.keys]);
        parameters.extend(expected.iter().map(|count| count as Parameter<'_>));
        parameters.push(&spare_wanted);
        let rows = self.write_and_commit(statement, &parameters)?;
        let spare = spare_numbers(&rows, 8)?;
        let learned = &mut self.learned;
        learned
            .accounts
            .extend(changes.accounts_created.iter().cloned());
        learned
            .accounts
            .extend(changes.accounts_updated.iter().cloned());
        learned.records.extend(
            changes
                .records
                .iter()
                .map(|(key, _, version)| (key.clone(), *version)),
        );
        learned.spare = Some(spare);
        // The statement itself checked that each part changed one row per element (or failed,
        // and the COMMIT behind it rolled back). A delete of a record that never existed is
        // allowed (version 0 expected or none), so deletes are not checked.
        Ok(())
    }
}

/// The spare sequence numbers a group's write drew (its one row's column `column`).
fn spare_numbers(rows: &[Row], column: usize) -> Result<Vec<u64>, StoreError> {
    let Some(row) = rows.first() else {
        return Err(corrupt("the group's write answered no row"));
    };
    let drawn: Vec<i64> = row.try_get(column).map_err(database_error)?;
    drawn
        .into_iter()
        .map(|number| unsigned(number, "transfer_sequence"))
        .collect()
}

/// An account's columns, as arrays for `UNNEST`.
struct AccountColumns<'a> {
    ids: Vec<&'a str>,
    kinds: Vec<&'a str>,
    currencies: Vec<&'a str>,
    exponents: Vec<i32>,
    balance_min: Vec<Option<i64>>,
    balance_max: Vec<Option<i64>>,
    sums: AccountSums,
    created_at: Vec<i64>,
    last_sequences: Vec<i64>,
}

impl<'a> AccountColumns<'a> {
    fn of(accounts: &'a [Account]) -> Result<AccountColumns<'a>, StoreError> {
        Ok(AccountColumns {
            ids: accounts.iter().map(|account| account.id.as_str()).collect(),
            kinds: accounts
                .iter()
                .map(|account| account.kind.as_str())
                .collect(),
            currencies: accounts
                .iter()
                .map(|account| account.currency.code())
                .collect(),
            exponents: accounts
                .iter()
                .map(|account| i32::from(account.currency.exponent()))
                .collect(),
            balance_min: accounts
                .iter()
                .map(|account| account.limits.balance_min)
                .collect(),
            balance_max: accounts
                .iter()
                .map(|account| account.limits.balance_max)
                .collect(),
            sums: AccountSums::of(accounts),
            created_at: accounts
                .iter()
                .map(|account| bigint(account.created_at.0, "timestamp"))
                .collect::<Result<Vec<i64>, StoreError>>()?,
            last_sequences: last_sequences(accounts)?,
        })
    }
}

impl AccountColumns<'_> {
    /// The columns a group changes (limits, the four sums, the last sequence), in that order.
    fn changed_parameters(&self) -> [Parameter<'_>; 7] {
        [
            &self.balance_min,
            &self.balance_max,
            &self.sums.debits_pending,
            &self.sums.debits_posted,
            &self.sums.credits_pending,
            &self.sums.credits_posted,
            &self.last_sequences,
        ]
    }
}

/// A new transfer's columns, as arrays for `UNNEST`.
struct TransferColumns<'a> {
    sequences: Vec<i64>,
    ids: Vec<&'a str>,
    debits: Vec<&'a str>,
    credits: Vec<&'a str>,
    amounts: Vec<i64>,
    currencies: Vec<String>,
    kinds: Vec<&'static str>,
    pending_ids: Vec<Option<&'a str>>,
    pending_states: Vec<Option<&'static str>>,
    memos: Vec<&'a str>,
    committed_at: Vec<i64>,
    debit_previous: Vec<i64>,
    credit_previous: Vec<i64>,
}

impl<'a> TransferColumns<'a> {
    fn of(records: &'a [TransferRecord]) -> Result<TransferColumns<'a>, StoreError> {
        let count = records.len();
        let mut columns = TransferColumns {
            sequences: Vec::with_capacity(count),
            ids: Vec::with_capacity(count),
            debits: Vec::with_capacity(count),
            credits: Vec::with_capacity(count),
            amounts: Vec::with_capacity(count),
            currencies: Vec::with_capacity(count),
            kinds: Vec::with_capacity(count),
            pending_ids: Vec::with_capacity(count),
            pending_states: Vec::with_capacity(count),
            memos: Vec::with_capacity(count),
            committed_at: Vec::with_capacity(count),
            debit_previous: Vec::with_capacity(count),
            credit_previous: Vec::with_capacity(count),
        };
        for record in records {
            let transfer = &record.transfer;
            let (kind, pending_id) = offpay_ledger::columns::transfer_kind_columns(&transfer.kind);
            columns.sequences.push(bigint(record.sequence, "sequence")?);
            columns.ids.push(transfer.id.as_str());
            columns.debits.push(transfer.debit_account.as_str());
            columns.credits.push(transfer.credit_account.as_str());
            columns.amounts.push(transfer.amount.minor_signed());
            columns
                .currencies
                .push(transfer.amount.currency().code().to_owned());
            columns.kinds.push(kind);
            columns.pending_ids.push(pending_id);
            columns
                .pending_states
                .push(record.pending_state.map(PendingState::as_str));
            columns.memos.push(transfer.memo.as_str());
            columns
                .committed_at
                .push(bigint(record.committed_at.0, "timestamp")?);
            columns
                .debit_previous
                .push(bigint(record.debit_previous, "sequence")?);
            columns
                .credit_previous
                .push(bigint(record.credit_previous, "sequence")?);
        }
        Ok(columns)
    }
}

impl TransferColumns<'_> {
    /// Every column, in [`TRANSFER_COLUMNS`] order.
    fn parameters(&self) -> [Parameter<'_>; TRANSFER_COLUMN_COUNT] {
        [
            &self.sequences,
            &self.ids,
            &self.debits,
            &self.credits,
            &self.amounts,
            &self.currencies,
            &self.kinds,
            &self.pending_ids,
            &self.pending_states,
            &self.memos,
            &self.committed_at,
            &self.debit_previous,
            &self.credit_previous,
        ]
    }
}

/// Records' columns, as arrays for `UNNEST`.
struct RecordColumns<'a> {
    namespaces: Vec<&'a str>,
    keys: Vec<&'a str>,
    values: Vec<&'a [u8]>,
    versions: Vec<i64>,
}

impl<'a> RecordColumns<'a> {
    fn of(
        records: &[&'a (RecordKey, Option<Vec<u8>>, u64)],
    ) -> Result<RecordColumns<'a>, StoreError> {
        Ok(RecordColumns {
            namespaces: records
                .iter()
                .map(|((namespace, _), _, _)| namespace.as_str())
                .collect(),
            keys: records
                .iter()
                .map(|((_, key), _, _)| key.as_str())
                .collect(),
            values: records
                .iter()
                .map(|(_, value, _)| value.as_deref().unwrap_or_default())
                .collect(),
            versions: bigints(
                records.iter().map(|(_, _, version)| *version),
                "record version",
            )?,
        })
    }
}

impl RecordColumns<'_> {
    /// Namespace, key, value and version.
    fn parameters(&self) -> [Parameter<'_>; 4] {
        [&self.namespaces, &self.keys, &self.values, &self.versions]
    }
}

/// The accounts' last sequences, as BIGINTs.
fn last_sequences(accounts: &[Account]) -> Result<Vec<i64>, StoreError> {
    accounts
        .iter()
        .map(|account| bigint(account.last_sequence, "sequence"))
        .collect()
}

/// The four running sums of some accounts, one array per column.
struct AccountSums {
    debits_pending: Vec<i64>,
    debits_posted: Vec<i64>,
    credits_pending: Vec<i64>,
    credits_posted: Vec<i64>,
}

impl AccountSums {
    fn of(accounts: &[Account]) -> AccountSums {
        AccountSums {
            debits_pending: accounts
                .iter()
                .map(|account| account.debits_pending)
                .collect(),
            debits_posted: accounts
                .iter()
                .map(|account| account.debits_posted)
                .collect(),
            credits_pending: accounts
                .iter()
                .map(|account| account.credits_pending)
                .collect(),
            credits_posted: accounts
                .iter()
                .map(|account| account.credits_posted)
                .collect(),
        }
    }
}

/// Reads an account row (columns in [`ACCOUNT_COLUMNS`] order).
fn account_from_row(row: &Row) -> Result<Account, StoreError> {
    let id: String = row.try_get(0).map_err(database_error)?;
    let kind: String = row.try_get(1).map_err(database_error)?;
    let currency: String = row.try_get(2).map_err(database_error)?;
    let exponent: i32 = row.try_get(3).map_err(database_error)?;
    let balance_min: Option<i64> = row.try_get(4).map_err(database_error)?;
    let balance_max: Option<i64> = row.try_get(5).map_err(database_error)?;
    let mut sums = [0i64; 4];
    for (index, sum) in sums.iter_mut().enumerate() {
        *sum = row.try_get(6 + index).map_err(database_error)?;
    }
    let created_at: i64 = row.try_get(10).map_err(database_error)?;
    let last_sequence: i64 = row.try_get(11).map_err(database_error)?;
    let exponent = u8::try_from(exponent)
        .map_err(|_| corrupt(format!("account {id}: exponent {exponent}")))?;
    Ok(Account {
        kind: AccountKind::parse(&kind)
            .ok_or_else(|| corrupt(format!("account {id}: unknown kind {kind:?}")))?,
        currency: Currency::new(&currency, exponent)
            .map_err(|error| corrupt(format!("account {id}: currency {currency:?}: {error}")))?,
        limits: BalanceLimits {
            balance_min,
            balance_max,
        },
        debits_pending: sums[0],
        debits_posted: sums[1],
        credits_pending: sums[2],
        credits_posted: sums[3],
        created_at: Timestamp(unsigned(created_at, "account creation time")?),
        last_sequence: unsigned(last_sequence, "account last sequence")?,
        id: AccountId::new(id).map_err(corrupt)?,
    })
}

/// Reads a transfer row (columns in [`TRANSFER_COLUMNS`] order).
fn transfer_from_row(row: &Row) -> Result<TransferRecord, StoreError> {
    let sequence: i64 = row.try_get(0).map_err(database_error)?;
    let id: String = row.try_get(1).map_err(database_error)?;
    let debit: String = row.try_get(2).map_err(database_error)?;
    let credit: String = row.try_get(3).map_err(database_error)?;
    let amount: i64 = row.try_get(4).map_err(database_error)?;
    let currency: String = row.try_get(5).map_err(database_error)?;
    let kind: String = row.try_get(6).map_err(database_error)?;
    let pending_id: Option<String> = row.try_get(7).map_err(database_error)?;
    let pending_state: Option<String> = row.try_get(8).map_err(database_error)?;
    let memo: String = row.try_get(9).map_err(database_error)?;
    let committed_at: i64 = row.try_get(10).map_err(database_error)?;
    let debit_previous: i64 = row.try_get(11).map_err(database_error)?;
    let credit_previous: i64 = row.try_get(12).map_err(database_error)?;
    let currency = Currency::from_code(&currency)
        .map_err(|error| corrupt(format!("transfer {id}: currency {currency:?}: {error}")))?;
    let kind = offpay_ledger::columns::transfer_kind_from_columns(&id, &kind, pending_id)?;
    let pending_state = offpay_ledger::columns::pending_state_from_column(&id, pending_state)?;
    let amount = unsigned(amount, "transfer amount")?;
    Ok(TransferRecord {
        transfer: Transfer {
            amount: Amount::from_minor(amount, currency).map_err(corrupt)?,
            id: TransferId::new(id).map_err(corrupt)?,
            debit_account: AccountId::new(debit).map_err(corrupt)?,
            credit_account: AccountId::new(credit).map_err(corrupt)?,
            kind,
            memo,
        },
        pending_state,
        sequence: unsigned(sequence, "transfer sequence")?,
        committed_at: Timestamp(unsigned(committed_at, "transfer commit time")?),
        debit_previous: unsigned(debit_previous, "previous sequence")?,
        credit_previous: unsigned(credit_previous, "previous sequence")?,
    })
}

fn record_version(row: &Row, column: usize) -> Result<u64, StoreError> {
    let version: i64 = row.try_get(column).map_err(database_error)?;
    unsigned(version, "record version")
}

impl LedgerStore for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn known_groups(&self) -> Option<KnownGroups> {
        Some(KnownGroups {
            committed: self.known.committed,
            stale: self.known.stale,
        })
    }

    fn commit(&mut self, batches: &[Batch], now: Timestamp) -> Result<GroupResult, StoreError> {
        let warnings = self.target.warnings.clone();
        let known = std::cell::RefCell::new(std::mem::take(&mut self.known));
        // Captures only shared references: a copy runs on the retry.
        let commit = |client: &mut Client, statements: &Statements| {
            let mut known = known.borrow_mut();
            // First on what the session knows, in one round trip, if it knows enough.
            if let Some(plan) = known.plan(batches, now) {
                match commit_known(client, statements, &warnings, &plan) {
                    Ok(spare) => return Ok(known.committed(plan, spare)),
                    Err(KnownFailure::Stale) => known.met_stale(),
                    Err(KnownFailure::Failed(failure)) => {
                        known.forget();
                        return Err(failure);
                    }
                }
            }
            let mut attempt = 1;
            loop {
                let failure = match commit_once(client, statements, &warnings, batches, now) {
                    Ok((results, learned)) => {
                        known.learn(learned);
                        return Ok(results);
                    }
                    Err(failure) => failure,
                };
                known.forget();
                match failure {
                    Failure::Retry(error) if attempt >= COMMIT_ATTEMPTS_MAX => {
                        return Err(Failure::Store(StoreError::Database(format!(
                            "group commit aborted {attempt} times by the database: {}",
                            describe(&error)
                        ))));
                    }
                    Failure::Retry(_) => attempt += 1,
                    other => return Err(other),
                }
            }
        };
        let outcome = match self.run_once(commit) {
            // The session had died while idle (the database restarted or failed over) and the
            // group never reached the database: once more, on a new session.
            Err(Failure::NotStarted(_)) if self.session_died() => self.run_once(commit),
            other => other,
        };
        self.known = known.into_inner();
        outcome.map_err(Failure::into_store)
    }

    fn account(&mut self, id: &AccountId) -> Result<Option<Account>, StoreError> {
        self.run(|client, statements| {
            client
                .query_opt(&statements.account, &[&id.as_str()])
                .map_err(database_error)?
                .map(|row| account_from_row(&row))
                .transpose()
        })
    }

    fn accounts(
        &mut self,
        after: Option<&AccountId>,
        limit: usize,
    ) -> Result<Vec<Account>, StoreError> {
        let limit = limit.min(RECORD_PAGE_MAX) as i64;
        self.run(|client, statements| {
            client
                .query(
                    &statements.accounts_page,
                    &[&after.map_or("", AccountId::as_str), &limit],
                )
                .map_err(database_error)?
                .iter()
                .map(account_from_row)
                .collect()
        })
    }

    fn transfer(&mut self, id: &TransferId) -> Result<Option<TransferRecord>, StoreError> {
        self.run(|client, statements| {
            client
                .query_opt(&statements.transfer, &[&id.as_str()])
                .map_err(database_error)?
                .map(|row| transfer_from_row(&row))
                .transpose()
        })
    }

    fn history(
        &mut self,
        account: &AccountId,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<TransferRecord>, StoreError> {
        let limit = limit.min(HISTORY_PAGE_MAX) as i64;
        let start: u64 = match before {
            None => self
                .account(account)?
                .map_or(0, |stored| stored.last_sequence),
            Some(sequence) => {
                let sequence = bigint(sequence, "sequence")?;
                let links = self.run(|client, statements| {
                    client
                        .query_opt(&statements.history_links, &[&sequence])
                        .map_err(database_error)
                })?;
                match links {
                    Some(row) => {
                        let debit: String = row.try_get(0).map_err(database_error)?;
                        let credit: String = row.try_get(1).map_err(database_error)?;
                        let debit_previous: i64 = row.try_get(2).map_err(database_error)?;
                        let credit_previous: i64 = row.try_get(3).map_err(database_error)?;
                        if debit == account.as_str() {
                            unsigned(debit_previous, "previous sequence")?
                        } else if credit == account.as_str() {
                            unsigned(credit_previous, "previous sequence")?
                        } else {
                            0
                        }
                    }
                    None => 0,
                }
            }
        };
        if start == 0 || limit == 0 {
            return Ok(Vec::new());
        }
        let start = bigint(start, "sequence")?;
        self.run(|client, statements| {
            client
                .query(&statements.history, &[&account.as_str(), &start, &limit])
                .map_err(database_error)?
                .iter()
                .map(transfer_from_row)
                .collect()
        })
    }

    fn schema_versions(&mut self) -> Result<Option<SchemaVersions>, StoreError> {
        let database: i64 = self.run(|client, _| {
            client
                .query_one(
                    "SELECT COALESCE(MAX(version), 0)::BIGINT FROM schema_migrations",
                    &[],
                )
                .and_then(|row| row.try_get(0))
                .map_err(database_error)
        })?;
        Ok(Some(SchemaVersions {
            database: u64::try_from(database).unwrap_or(0),
            build: MIGRATIONS.len() as u64,
        }))
    }

    /// A session-level advisory lock keyed by a hash of the schema and `name`, so that ledgers in
    /// different schemas of one database do not wait for each other. `lock_timeout` bounds the
    /// wait; a session lost while holding the lock gives it back with the session.
    fn lock_shared_name(&mut self, name: &str, wait: Duration) -> Result<bool, StoreError> {
        let timeout = format!("{}ms", wait.as_millis().max(1));
        let result = self.run(|client, _| {
            client
                .query_one("SELECT set_config('lock_timeout', $1, false)", &[&timeout])
                .map_err(database_error)?;
            match client.query_one(
                "SELECT pg_advisory_lock(hashtextextended(current_schema() || '/' || $1, 0))",
                &[&name],
            ) {
                Ok(_) => Ok(true),
                Err(error) if error.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => Ok(false),
                Err(error) => Err(database_error(error)),
            }
        });
        // The session goes back to waiting without limit, as the store's sessions do. Should
        // that fail, the lock (if taken) is still held and still to be given back: the answer
        // stands, and the failure marks the session for the next call to check.
        let _ = self.run_once(|client, _| {
            client
                .batch_execute("SET lock_timeout = 0")
                .map_err(database_error)
        });
        result
    }

    fn unlock_shared_name(&mut self, name: &str) -> Result<(), StoreError> {
        // Not retried on a new session: a lost session has given the lock back already.
        self.run_once(|client, _| {
            client
                .query_one(
                    "SELECT pg_advisory_unlock(hashtextextended(current_schema() || '/' || $1, 0))",
                    &[&name],
                )
                .map(|_| ())
                .map_err(database_error)
        })
    }

    fn totals(&mut self) -> Result<Vec<CurrencyTotal>, StoreError> {
        let rows = self.run(|client, statements| {
            client
                .query(&statements.totals, &[])
                .map_err(database_error)
        })?;
        rows.iter().map(total_from_row).collect()
    }

    fn record(&mut self, namespace: &str, key: &str) -> Result<Option<Record>, StoreError> {
        self.run(|client, statements| {
            client
                .query_opt(&statements.record, &[&namespace, &key])
                .map_err(database_error)?
                .map(|row| {
                    Ok(Record {
                        namespace: namespace.to_owned(),
                        key: key.to_owned(),
                        value: row.try_get(0).map_err(database_error)?,
                        version: record_version(&row, 1)?,
                    })
                })
                .transpose()
        })
    }

    fn records(
        &mut self,
        namespace: &str,
        key_prefix: &str,
        after_key: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        let limit = limit.min(RECORD_PAGE_MAX) as i64;
        let pattern = offpay_ledger::columns::like_prefix(key_prefix);
        self.run(|client, statements| {
            client
                .query(
                    &statements.records_page,
                    &[&namespace, &pattern, &after_key.unwrap_or(""), &limit],
                )
                .map_err(database_error)?
                .iter()
                .map(|row| {
                    Ok(Record {
                        namespace: namespace.to_owned(),
                        key: row.try_get(0).map_err(database_error)?,
                        value: row.try_get(1).map_err(database_error)?,
                        version: record_version(row, 2)?,
                    })
                })
                .collect()
        })
    }

    fn read_transaction(
        &mut self,
        reads: &mut dyn FnMut(&mut dyn LedgerStore) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.run(|client, _| {
            client
                .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                .map_err(database_error)
        })?;
        self.in_read_transaction = true;
        let outcome = reads(self);
        let end = if outcome.is_ok() {
            "COMMIT"
        } else {
            "ROLLBACK"
        };
        let ended = self.run(|client, _| client.batch_execute(end).map_err(database_error));
        self.in_read_transaction = false;
        outcome.and(ended)
    }
}

/// Reads a per-currency row of the totals query.
fn total_from_row(row: &Row) -> Result<CurrencyTotal, StoreError> {
    let code: String = row.try_get(0).map_err(database_error)?;
    let exponent: i32 = row.try_get(1).map_err(database_error)?;
    let accounts: i64 = row.try_get(2).map_err(database_error)?;
    let posted: String = row.try_get(3).map_err(database_error)?;
    let pending: String = row.try_get(4).map_err(database_error)?;
    let sum = |text: &str| {
        text.parse::<i128>()
            .map_err(|_| corrupt(format!("sum of {code} balances {text:?}")))
    };
    let exponent = u8::try_from(exponent)
        .map_err(|_| corrupt(format!("currency {code}: exponent {exponent}")))?;
    Ok(CurrencyTotal {
        currency: Currency::new(&code, exponent).map_err(corrupt)?,
        accounts: unsigned(accounts, "account count")?,
        posted_sum: sum(&posted)?,
        pending_sum: sum(&pending)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_password_in_urls() {
        assert_eq!(
            password_in_url("postgres://ledger:s3cr%40t@db.internal:5432/offpay").as_deref(),
            Some("s3cr%40t")
        );
        assert_eq!(
            password_in_url("postgresql://ledger:pw@host/db?sslmode=disable").as_deref(),
            Some("pw")
        );
        assert_eq!(password_in_url("postgres://ledger@host/db"), None);
        assert_eq!(password_in_url("host=db user=ledger password=pw"), None);
    }

    #[test]
    fn describes_a_target_without_its_password() {
        for url in [
            "postgres://ledger:hunter2-secret@db.internal:6543/offpay",
            "host=db.internal port=6543 user=ledger password=hunter2-secret dbname=offpay",
        ] {
            let target = Target::parse(url, None).unwrap_or_else(|error| panic!("{error}"));
            assert_eq!(
                target.description,
                "postgres://ledger@db.internal:6543/offpay"
            );
            assert_eq!(target.password.as_deref(), Some("hunter2-secret"));
        }
    }

    #[test]
    fn takes_a_multi_host_url_and_bounds_every_wait() {
        let target = Target::parse(
            "postgres://ledger:pw@127.0.0.1:6001,127.0.0.1:6002/offpay?target_session_attrs=read-write",
            None,
        )
        .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(
            target.description,
            "postgres://ledger@127.0.0.1:6001,127.0.0.1:6002/offpay"
        );
        assert!(target.wants_writes);
        assert_eq!(target.config.get_hosts().len(), 2);
        assert_eq!(target.config.get_ports(), [6001, 6002]);
        assert_eq!(target.config.get_connect_timeout(), Some(&CONNECT_TIMEOUT));
        assert_eq!(
            target.config.get_tcp_user_timeout(),
            Some(&TCP_USER_TIMEOUT)
        );
        assert!(target.config.get_keepalives());
        assert_eq!(target.config.get_keepalives_idle(), KEEPALIVE_IDLE);
        assert_eq!(
            target.config.get_keepalives_interval(),
            Some(KEEPALIVE_INTERVAL)
        );
        assert_eq!(
            target.config.get_keepalives_retries(),
            Some(KEEPALIVE_RETRIES)
        );

        let single = Target::parse("postgres://ledger@db/offpay", None)
            .unwrap_or_else(|error| panic!("{error}"));
        assert!(!single.wants_writes);
    }

    #[test]
    fn keeps_the_timeouts_a_url_sets() {
        let target = Target::parse(
            "postgres://u@h/db?connect_timeout=3&tcp_user_timeout=40&keepalives_idle=60&keepalives_interval=7&keepalives_retries=9",
            None,
        )
        .unwrap_or_else(|error| panic!("{error}"));
        let config = &target.config;
        assert_eq!(config.get_connect_timeout(), Some(&Duration::from_secs(3)));
        assert_eq!(
            config.get_tcp_user_timeout(),
            Some(&Duration::from_secs(40))
        );
        assert_eq!(config.get_keepalives_idle(), Duration::from_secs(60));
        assert_eq!(
            config.get_keepalives_interval(),
            Some(Duration::from_secs(7))
        );
        assert_eq!(config.get_keepalives_retries(), Some(9));
    }

    #[test]
    fn scrubs_passwords_from_messages() {
        assert_eq!(
            scrub("bad url postgres://u:pw1@h".into(), Some("pw1")),
            "bad url postgres://u:********@h"
        );
        assert_eq!(scrub("nothing".into(), None), "nothing");
    }

    #[test]
    fn accepts_only_plain_schema_names() {
        assert!(validate_schema_name("offpay_test_1").is_ok());
        for bad in [
            "",
            "1abc",
            "Upper",
            "a-b",
            "a\"b",
            "a;drop",
            &"x".repeat(64),
        ] {
            assert!(validate_schema_name(bad).is_err(), "{bad:?}");
        }
    }
}
