//! The offpay operator server. One HTTP service (axum) in front of one ledger writer thread:
//! `/health`, `/ready`, `/metrics`, and the token-authenticated operator API under `/api/v1`. The rails'
//! operator halves (purse sync, SMS gateway, money office, clearing) plug in as further routes.

pub mod api;
pub mod approvals;
pub mod audit;
pub mod auth;
pub mod config;
pub mod console;
pub mod datadir;
pub mod error;
pub mod fraud;
pub mod idempotency;
pub mod keyfile;
pub mod ledger;
pub mod lists;
pub mod metrics;
pub mod openapi;
pub mod rails;
pub mod routes;
pub mod runner;
pub mod search;
pub mod tls;
pub mod token;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use offpay_ledger::{LedgerStore, StoreError, Timestamp, verify_conservation};
use offpay_operator::{Clock, Entropy, OsEntropy, SystemClock};
use serde_json::json;
use tracing::Instrument;

use crate::config::ServerConfig;
use crate::datadir::DataDirLock;
use crate::ledger::{Ledger, LedgerThread};
use crate::metrics::Metrics;
use crate::token::AdminToken;

/// Everything a request handler may need.
#[derive(Debug)]
pub struct AppState {
    /// Resolved configuration.
    pub config: ServerConfig,
    /// The ledger writer.
    pub ledger: Ledger,
    /// The operator token.
    pub token: AdminToken,
    /// The audit log's chain key.
    pub audit: Arc<audit::AuditChain>,
    /// Operator callers whose tokens a full check let in ([`auth::CallerCache`]).
    pub callers: Arc<auth::CallerCache>,
    /// Counters.
    pub metrics: Metrics,
    /// The rails' server-side state.
    pub rails: rails::Rails,
    /// The operator's time: every rule is handed `now` from here.
    pub clock: Arc<dyn Clock>,
    /// Where fresh secrets come from.
    pub entropy: Arc<dyn Entropy>,
    /// The data directory's lock, held while the state lives.
    pub data_dir_lock: DataDirLock,
}

impl AppState {
    /// The time now, as the server's clock says.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }
}

/// The time and randomness a server runs on. [`Inputs::real`] is the only place the wall clock
/// and the operating system's random source are constructed; tests and the simulator pass a
/// `ManualClock` and a `SeededEntropy`.
#[derive(Clone, Debug)]
pub struct Inputs {
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// The entropy source.
    pub entropy: Arc<dyn Entropy>,
}

impl Inputs {
    /// The machine's wall clock and the operating system's random number generator.
    pub fn real() -> Inputs {
        Inputs {
            clock: Arc::new(SystemClock),
            entropy: Arc::new(OsEntropy),
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// Configuration problem.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// The database could not be opened or is inconsistent.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// File system or network problem.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The TLS certificate or key could not be loaded or used (the message names the file).
    #[error("{0}")]
    Tls(String),
    /// Another process holds the data directory (the message names the lock file and its pid).
    #[error(transparent)]
    DataDirLocked(#[from] datadir::LockError),
}

fn io_error(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> StartError {
    let context = context.into();
    move |source| StartError::Io { context, source }
}

/// Opens the ledger store the configuration names: SQLite in the data directory by default,
/// `sqlite://PATH` for another file, `postgres://...` for PostgreSQL.
pub fn open_store(config: &ServerConfig) -> Result<Box<dyn LedgerStore>, StartError> {
    match config.database_url.as_deref() {
        None => Ok(Box::new(offpay_ledger_sqlite::SqliteStore::open(
            &config.sqlite_path(),
        )?)),
        Some(url) => open_store_url(url),
    }
}

/// Opens a store from a URL (also used by `offpay bench ledger`).
pub fn open_store_url(url: &str) -> Result<Box<dyn LedgerStore>, StartError> {
    if let Some(path) = sqlite_url_path(url) {
        return Ok(Box::new(offpay_ledger_sqlite::SqliteStore::open(path)?));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return open_postgres(url);
    }
    Err(StartError::Config(config::ConfigError::Invalid {
        setting: "database_url",
        message: format!(
            "{} is neither sqlite://PATH nor postgres://... (PostgreSQL, CockroachDB, YugabyteDB)",
            config::redact_url(url)
        ),
    }))
}

fn open_postgres(url: &str) -> Result<Box<dyn LedgerStore>, StartError> {
    Ok(Box::new(offpay_ledger_postgres::PostgresStore::open(url)?))
}

/// Opens a second connection to the store the configuration names, for the ledger's reader
/// thread (SQLite: query-only). Call after [`open_store`], which creates and migrates it.
pub fn open_reader(config: &ServerConfig) -> Result<Box<dyn LedgerStore>, StartError> {
    let path = match config.database_url.as_deref() {
        None => config.sqlite_path(),
        Some(url) => match sqlite_url_path(url) {
            Some(path) => path.to_owned(),
            None => return open_store_url(url),
        },
    };
    Ok(Box::new(offpay_ledger_sqlite::SqliteStore::open_reader(
        &path,
    )?))
}

/// A third connection for the locks the server's processes share ([`Ledger::lock_shared`]), for
/// a PostgreSQL ledger (several servers may use one database); `None` for SQLite, which one
/// process owns (its data directory is locked).
pub fn open_lock_connection(
    config: &ServerConfig,
) -> Result<Option<Box<dyn LedgerStore>>, StartError> {
    match config.database_url.as_deref() {
        Some(url) if sqlite_url_path(url).is_none() => open_store_url(url).map(Some),
        _ => Ok(None),
    }
}

/// The writer's store, the reader's connection to the same ledger, and the lock connection.
type OpenedStores = (
    Box<dyn LedgerStore>,
    Box<dyn LedgerStore>,
    Option<Box<dyn LedgerStore>>,
);

/// Opens the writer's and the reader's stores and checks conservation, on a thread of its own:
/// the PostgreSQL client is blocking and runs its own small runtime, which must not be started
/// (or dropped) on one of the server's async threads.
fn open_stores_off_runtime(config: &ServerConfig) -> Result<OpenedStores, StartError> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let mut store = open_store(config)?;
                let totals = verify_conservation(store.as_mut())?;
                tracing::info!(
                    backend = store.backend(),
                    currencies = totals.len(),
                    "ledger opened; balances sum to zero"
                );
                let reader = open_reader(config)?;
                let locks = open_lock_connection(config)?;
                Ok((store, reader, locks))
            })
            .join()
            .unwrap_or_else(|_| {
                Err(StartError::Io {
                    context: "opening the ledger".into(),
                    source: std::io::Error::other("the thread opening the ledger panicked"),
                })
            })
    })
}

/// The file a `sqlite://PATH` (or `sqlite:PATH`) URL names.
fn sqlite_url_path(url: &str) -> Option<&std::path::Path> {
    url.strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .map(std::path::Path::new)
}

/// A server ready to run: the listener is bound, the store open, the token in place.
#[derive(Debug)]
pub struct Server {
    state: Arc<AppState>,
    listener: tokio::net::TcpListener,
    writer: LedgerThread,
    token_created: bool,
    /// The certificate when the server terminates TLS itself.
    certificate: Option<Arc<tls::ServerCertificate>>,
}

impl Server {
    /// Prepares everything on the real clock and random source: data directory, token, store
    /// (checked: balances sum to zero), listener.
    pub async fn start(config: ServerConfig) -> Result<Server, StartError> {
        Server::start_with(config, Inputs::real()).await
    }

    /// [`Server::start`] with the given clock and entropy.
    pub async fn start_with(config: ServerConfig, inputs: Inputs) -> Result<Server, StartError> {
        keyfile::create_private_dir_all(&config.data_dir).map_err(io_error(format!(
            "cannot create data directory {}",
            config.data_dir.display()
        )))?;
        restrict_data_dir(&config.data_dir);
        // Before anything in the directory is read or written: a second server stops here.
        let data_dir_lock = DataDirLock::acquire(&config.data_dir)?;
        if let Some(path) = sqlite_file(&config) {
            private_sqlite_files(&path)
                .map_err(io_error(format!("cannot create {}", path.display())))?;
        }
        // The certificate first: a wrong file should stop the start before anything is created.
        let certificate = match &config.tls {
            Some(files) => Some(Arc::new(
                tls::ServerCertificate::load(files.clone()).map_err(StartError::Tls)?,
            )),
            None => None,
        };
        let token_path = config.token_path();
        let (token, token_created) =
            AdminToken::load_or_create(&token_path, inputs.entropy.as_ref())
                .map_err(io_error(format!("operator token {}", token_path.display())))?;
        let audit = audit::AuditChain::load_or_create(&config.data_dir, inputs.entropy.as_ref())
            .map_err(io_error(format!(
                "audit chain key {}",
                config.data_dir.join(audit::CHAIN_KEY_FILE).display()
            )))?;
        let (store, reader, locks) = open_stores_off_runtime(&config)?;
        let (ledger, writer) = Ledger::start_with_locks(store, reader, locks)
            .map_err(io_error("cannot start the ledger writer"))?;
        if auth::bootstrap(&ledger, token.reveal(), inputs.clock.now()).await? {
            tracing::info!(
                user = auth::BOOTSTRAP_USER,
                "no operator users yet: created user admin (role admin) with the token in {}",
                token_path.display()
            );
        }
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(io_error(format!("cannot listen on {}", config.listen)))?;
        let rails = rails::Rails::start(&config, &inputs)?;
        let state = Arc::new(AppState {
            config,
            ledger,
            token,
            audit: Arc::new(audit),
            callers: Arc::default(),
            metrics: Metrics::default(),
            rails,
            clock: inputs.clock,
            entropy: inputs.entropy,
            data_dir_lock,
        });
        // Before the scheduler or any message: an earlier release's records get their MACs.
        rails::sms::seal_at_start(&state).await.map_err(|error| {
            StartError::Store(StoreError::Database(format!(
                "sealing SMS-TAN records an earlier release wrote: {}",
                error.message
            )))
        })?;
        rails::purse::seal_at_start(&state).await.map_err(|error| {
            StartError::Store(StoreError::Database(format!(
                "sealing purse records an earlier release wrote: {error}"
            )))
        })?;
        rails::spawn_background(&state);
        idempotency::spawn_pruning(&state);
        Ok(Server {
            state,
            listener,
            writer,
            token_created,
            certificate,
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }

    /// Whether it serves HTTPS (terminates TLS itself).
    pub fn serves_tls(&self) -> bool {
        self.certificate.is_some()
    }

    /// Whether this start created the operator token file.
    pub fn token_created(&self) -> bool {
        self.token_created
    }

    /// The shared state (for tests that drive the router directly).
    pub fn state(&self) -> Arc<AppState> {
        self.state.clone()
    }

    /// Serves until `shutdown` resolves, then finishes in-flight requests and queued ledger work.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartError> {
        let Server {
            state,
            listener,
            writer,
            certificate,
            ..
        } = self;
        let app = router(state);
        match certificate {
            Some(certificate) => {
                let acceptor = certificate.acceptor().map_err(StartError::Tls)?;
                #[cfg(unix)]
                tls::reload_on_hangup(certificate.clone())
                    .map_err(io_error("cannot watch for SIGHUP"))?;
                let listener = tls::TlsListener::spawn(listener, acceptor)
                    .map_err(io_error("cannot listen for TLS"))?;
                axum::serve(
                    listener,
                    app.into_make_service_with_connect_info::<auth::RemoteAddr>(),
                )
                .with_graceful_shutdown(shutdown)
                .await
                .map_err(io_error("HTTPS server failed"))?;
            }
            None => axum::serve(
                listener,
                app.into_make_service_with_connect_info::<auth::RemoteAddr>(),
            )
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(io_error("HTTP server failed"))?,
        }
        // The router (and with it every Ledger handle) is gone; the writer drains and stops.
        tokio::task::spawn_blocking(move || writer.join())
            .await
            .ok();
        Ok(())
    }
}

/// Where the operator API lives.
pub const API_PREFIX: &str = "/api/v1";

/// Every operator route with the roles that may call it: the table the auth middleware checks
/// and the route walk in the tests goes through.
pub fn operator_routes() -> routes::OperatorRoutes {
    api::operator_routes()
        .merge(auth::operator_routes())
        .merge(audit::operator_routes())
        .merge(approvals::operator_routes())
        .merge(rails::operator_routes())
        .merge(lists::operator_routes())
        .merge(fraud::operator_routes())
        .merge(search::operator_routes())
        .merge(openapi::operator_routes())
}

/// Narrows a data directory that others may enter (made before, by hand or by a tool) to 0700,
/// saying so; leaves it as it is, with a warning, when that is not allowed.
fn restrict_data_dir(data_dir: &std::path::Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let Ok(metadata) = std::fs::metadata(data_dir) else {
            return;
        };
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 == 0 {
            return;
        }
        match std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700)) {
            Ok(()) => tracing::warn!(
                data_dir = %data_dir.display(),
                was = format!("{mode:o}"),
                "the data directory was open to others; made it 0700"
            ),
            Err(error) => tracing::warn!(
                data_dir = %data_dir.display(),
                mode = format!("{mode:o}"),
                %error,
                "the data directory is open to others and cannot be made 0700"
            ),
        }
    }
}

/// The SQLite file the configuration names, if the ledger is in SQLite.
fn sqlite_file(config: &ServerConfig) -> Option<std::path::PathBuf> {
    match config.database_url.as_deref() {
        None => Some(config.sqlite_path()),
        Some(url) => sqlite_url_path(url).map(std::path::Path::to_path_buf),
    }
}

/// Creates the SQLite file empty with mode 0600 if it does not exist yet (SQLite gives its WAL
/// and shared-memory files the database file's mode), and narrows an existing database and its
/// WAL and shared-memory files to 0600.
fn private_sqlite_files(path: &std::path::Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    drop(options.open(path)?);
    #[cfg(unix)]
    for suffix in ["", "-wal", "-shm"] {
        use std::os::unix::fs::PermissionsExt;
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        match std::fs::set_permissions(&name, std::fs::Permissions::from_mode(0o600)) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
            _ => {}
        }
    }
    Ok(())
}

/// All routes.
pub fn router(state: Arc<AppState>) -> Router {
    let (operator, table) = operator_routes().into_parts();
    let table = Arc::new(table);
    let guard = auth::Guard {
        state: state.clone(),
        table: table.clone(),
    };
    let operator =
        operator.route_layer(axum::middleware::from_fn_with_state(guard, auth::authorize));
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .nest(API_PREFIX, operator)
        .merge(rails::device_routes())
        .merge(console::routes(table))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            observe_request,
        ))
        .with_state(state)
}

/// The request-id header, taken from the client when sane and returned on every response.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// Longest request id taken from a client.
pub const REQUEST_ID_LENGTH_MAX: usize = 64;
/// Random bytes in a request id the server makes (shown as hex).
const REQUEST_ID_BYTES: usize = 8;

/// The client's request id if it is 1 to [`REQUEST_ID_LENGTH_MAX`] characters of letters,
/// digits, `-`, `_`, `.` and `:` (safe in a header and a log line), else a fresh one.
fn request_id(state: &AppState, headers: &HeaderMap) -> String {
    let given = headers
        .get(REQUEST_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .filter(|id| {
            (1..=REQUEST_ID_LENGTH_MAX).contains(&id.len())
                && id
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || b"-_.:".contains(&byte))
        });
    if let Some(id) = given {
        return id.to_owned();
    }
    let mut bytes = [0u8; REQUEST_ID_BYTES];
    match state.entropy.fill(&mut bytes) {
        Ok(()) => hex::encode(bytes),
        // An id is for finding log lines, not a secret: a counter will do if entropy fails.
        Err(_) => format!("n{}", state.ledger.groups_done()),
    }
}

/// Every request: a request id (in a tracing span around its handling, so that each log line
/// it causes carries the id, and in the response header), and its metrics by route template —
/// the path the router matched (`/api/v1/accounts/{id}`), never the raw URI — and status.
async fn observe_request(
    State(state): State<Arc<AppState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let method: &'static str = match request.method().as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "PATCH" => "PATCH",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    };
    let id = request_id(&state, request.headers());
    let span = tracing::info_span!("request", request_id = %id, method, route = %route);
    let mut response = next.run(request).instrument(span.clone()).await;
    let elapsed = started.elapsed();
    let status = response.status();
    state.metrics.http_requests.add(
        &[
            ("route", &route),
            ("method", method),
            ("status", status.as_str()),
        ],
        1,
    );
    state
        .metrics
        .http_latency
        .with(&[("route", &route)])
        .observe_duration(elapsed);
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    span.in_scope(|| {
        tracing::debug!(
            status = status.as_u16(),
            duration_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            "request answered"
        );
    });
    response
}

async fn health(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    axum::Json(
        json!({ "status": "ok", "backend": state.ledger.backend(), "version": env!("CARGO_PKG_VERSION") }),
    )
}

/// How long `/ready` and `/metrics` wait for the ledger's reader.
pub const LEDGER_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the server is not ready, as `/ready` names it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct NotReady {
    /// `ledger`, `writer` or `migrations`.
    pub check: &'static str,
    /// What is wrong.
    pub message: String,
}

/// The readiness checks: the ledger answers a read through its reader (the schema version, a
/// cheap query), the writer thread runs, and the database's schema is this build's. Each
/// failing check is named.
pub async fn readiness(ledger: &Ledger) -> Vec<NotReady> {
    let mut problems = Vec::new();
    if !ledger.writer_alive() {
        problems.push(NotReady {
            check: "writer",
            message: "the ledger writer thread has stopped; restart the server".into(),
        });
    }
    let probe = ledger.read(|store| store.schema_versions());
    match tokio::time::timeout(LEDGER_PROBE_TIMEOUT, probe).await {
        Ok(Ok(Some(versions))) if !versions.current() => problems.push(NotReady {
            check: "migrations",
            message: format!(
                "the database is at schema version {}, this build at {}",
                versions.database, versions.build
            ),
        }),
        Ok(Ok(_)) => {}
        Ok(Err(error)) => problems.push(NotReady {
            check: "ledger",
            message: format!("the ledger cannot be read: {error}"),
        }),
        Err(_) => problems.push(NotReady {
            check: "ledger",
            message: format!(
                "the ledger did not answer a read within {} ms",
                LEDGER_PROBE_TIMEOUT.as_millis()
            ),
        }),
    }
    problems
}

/// `200 {"status": "ready"}`, or `503 {"status": "not_ready", "not_ready": [{check, message}]}`.
async fn ready(State(state): State<Arc<AppState>>) -> axum::response::Response {
    let problems = readiness(&state.ledger).await;
    if problems.is_empty() {
        axum::Json(json!({ "status": "ready", "backend": state.ledger.backend() })).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({ "status": "not_ready", "not_ready": problems })),
        )
            .into_response()
    }
}

/// Most SMS outbox and dead-letter records counted at one scrape; a larger queue shows as this.
pub const SMS_QUEUE_COUNT_MAX: usize = 100_000;

/// Counts the records under `prefix` in the SMS namespace, up to [`SMS_QUEUE_COUNT_MAX`].
fn count_sms_records(store: &mut dyn LedgerStore, prefix: &str) -> Result<u64, StoreError> {
    let mut counted = 0usize;
    let mut after: Option<String> = None;
    while counted < SMS_QUEUE_COUNT_MAX {
        let page = store.records(
            offpay_sms_tan::operator::records::NAMESPACE,
            prefix,
            after.as_deref(),
            offpay_ledger::RECORD_PAGE_MAX,
        )?;
        counted += page.len();
        match page.last() {
            Some(last) if page.len() == offpay_ledger::RECORD_PAGE_MAX => {
                after = Some(last.key.clone());
            }
            _ => break,
        }
    }
    Ok(counted.min(SMS_QUEUE_COUNT_MAX) as u64)
}

async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    use offpay_sms_tan::operator::records::{DEAD_PREFIX, OUTBOUND_PREFIX};
    use std::sync::atomic::Ordering::Relaxed;
    let queues = state.ledger.read(|store| {
        Ok((
            count_sms_records(store, OUTBOUND_PREFIX)?,
            count_sms_records(store, DEAD_PREFIX)?,
        ))
    });
    let (sms_outbox, sms_dead_letters) =
        match tokio::time::timeout(LEDGER_PROBE_TIMEOUT, queues).await {
            Ok(Ok((outbox, dead))) => (Some(outbox), Some(dead)),
            _ => (None, None),
        };
    let sms = &state.rails.sms.metrics;
    let gauges = metrics::Gauges {
        backend: state.ledger.backend(),
        writer_queue_depth: state.ledger.queue_depth() as u64,
        writer_alive: state.ledger.writer_alive(),
        sms_outbox,
        sms_dead_letters,
        sms_counters: [
            (
                "offpay_sms_inbound_total",
                "Inbound SMS processed.",
                sms.inbound.load(Relaxed),
            ),
            (
                "offpay_sms_inbound_duplicates_total",
                "Gateway retries of an inbound SMS answered from the dedupe record.",
                sms.duplicates.load(Relaxed),
            ),
            (
                "offpay_sms_inbound_reruns_total",
                "Inbound SMS decided again after a refused commit.",
                sms.reruns.load(Relaxed),
            ),
            (
                "offpay_sms_sent_total",
                "Outbound SMS handed to the gateway.",
                sms.sent.load(Relaxed),
            ),
            (
                "offpay_sms_send_failures_total",
                "Failed attempts to hand an outbound SMS to the gateway.",
                sms.send_failures.load(Relaxed),
            ),
        ],
    };
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(state.ledger.metrics(), &gauges),
    )
}

async fn not_found(uri: axum::http::Uri) -> error::ApiError {
    error::ApiError::new(
        StatusCode::NOT_FOUND,
        "no_such_route",
        format!("nothing at {}", uri.path()),
    )
}

#[cfg(test)]
mod tests {
    use offpay_ledger::{
        Account, AccountId, Batch, CurrencyTotal, GroupResult, MemoryStore, Record, TransferId,
        TransferRecord,
    };

    use super::*;

    /// A store whose commit panics, as a bug in a backend would: the writer thread dies.
    struct PanicsOnCommit(MemoryStore);

    impl LedgerStore for PanicsOnCommit {
        fn backend(&self) -> &'static str {
            "memory"
        }
        fn commit(&mut self, _: &[Batch], _: Timestamp) -> Result<GroupResult, StoreError> {
            panic!("a backend bug")
        }
        fn account(&mut self, id: &AccountId) -> Result<Option<Account>, StoreError> {
            self.0.account(id)
        }
        fn accounts(
            &mut self,
            after: Option<&AccountId>,
            limit: usize,
        ) -> Result<Vec<Account>, StoreError> {
            self.0.accounts(after, limit)
        }
        fn transfer(&mut self, id: &TransferId) -> Result<Option<TransferRecord>, StoreError> {
            self.0.transfer(id)
        }
        fn history(
            &mut self,
            account: &AccountId,
            before: Option<u64>,
            limit: usize,
        ) -> Result<Vec<TransferRecord>, StoreError> {
            self.0.history(account, before, limit)
        }
        fn totals(&mut self) -> Result<Vec<CurrencyTotal>, StoreError> {
            self.0.totals()
        }
        fn record(&mut self, namespace: &str, key: &str) -> Result<Option<Record>, StoreError> {
            self.0.record(namespace, key)
        }
        fn records(
            &mut self,
            namespace: &str,
            key_prefix: &str,
            after_key: Option<&str>,
            limit: usize,
        ) -> Result<Vec<Record>, StoreError> {
            self.0.records(namespace, key_prefix, after_key, limit)
        }
        fn read_transaction(
            &mut self,
            reads: &mut dyn FnMut(&mut dyn LedgerStore) -> Result<(), StoreError>,
        ) -> Result<(), StoreError> {
            reads(self)
        }
    }

    #[tokio::test]
    async fn a_dead_writer_thread_makes_the_server_not_ready() {
        let (ledger, _threads) = Ledger::start(
            Box::new(PanicsOnCommit(MemoryStore::new())),
            Box::new(MemoryStore::new()),
        )
        .unwrap();
        assert_eq!(readiness(&ledger).await, vec![]);
        let commit = ledger.commit(vec![Batch::default()], Timestamp(1)).await;
        assert!(commit.is_err(), "the panicking writer answers nothing");
        assert!(!ledger.writer_alive());
        let problems = readiness(&ledger).await;
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].check, "writer");
    }
}
