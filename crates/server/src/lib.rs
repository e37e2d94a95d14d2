//! The offpay operator server. One HTTP service (axum) in front of one ledger writer thread:
//! `/health`, `/metrics`, and the token-authenticated operator API under `/api/v1`. The rails'
//! operator halves (purse sync, SMS gateway, money office, clearing) plug in as further routes.

pub mod api;
pub mod approvals;
pub mod audit;
pub mod auth;
pub mod config;
pub mod error;
pub mod fraud;
pub mod idempotency;
pub mod keyfile;
pub mod ledger;
pub mod metrics;
pub mod rails;
pub mod routes;
pub mod runner;
pub mod tls;
pub mod token;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use offpay_ledger::{LedgerStore, StoreError, Timestamp, verify_conservation};
use offpay_operator::{Clock, Entropy, OsEntropy, SystemClock};
use serde_json::json;

use crate::config::ServerConfig;
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
    /// Counters.
    pub metrics: Metrics,
    /// The rails' server-side state.
    pub rails: rails::Rails,
    /// The operator's time: every rule is handed `now` from here.
    pub clock: Arc<dyn Clock>,
    /// Where fresh secrets come from.
    pub entropy: Arc<dyn Entropy>,
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

/// The writer's store and the reader's connection to the same ledger.
type OpenedStores = (Box<dyn LedgerStore>, Box<dyn LedgerStore>);

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
                Ok((store, reader))
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
        std::fs::create_dir_all(&config.data_dir).map_err(io_error(format!(
            "cannot create data directory {}",
            config.data_dir.display()
        )))?;
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
        let (store, reader) = open_stores_off_runtime(&config)?;
        let (ledger, writer) =
            Ledger::start(store, reader).map_err(io_error("cannot start the ledger writer"))?;
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
            metrics: Metrics::default(),
            rails,
            clock: inputs.clock,
            entropy: inputs.entropy,
        });
        // Before the scheduler or any message: an earlier release's records get their MACs.
        rails::sms::seal_at_start(&state).await.map_err(|error| {
            StartError::Store(StoreError::Database(format!(
                "sealing SMS-TAN records an earlier release wrote: {}",
                error.message
            )))
        })?;
        rails::spawn_background(&state);
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
}

/// All routes.
pub fn router(state: Arc<AppState>) -> Router {
    let (operator, table) = operator_routes().into_parts();
    let guard = auth::Guard {
        state: state.clone(),
        table: Arc::new(table),
    };
    let operator =
        operator.route_layer(axum::middleware::from_fn_with_state(guard, auth::authorize));
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .nest(API_PREFIX, operator)
        .merge(rails::device_routes())
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .with_state(state)
}

async fn count_requests(
    State(state): State<Arc<AppState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    Metrics::add(&state.metrics.http_requests, 1);
    next.run(request).await
}

async fn health(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    axum::Json(
        json!({ "status": "ok", "backend": state.ledger.backend(), "version": env!("CARGO_PKG_VERSION") }),
    )
}

async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        state.metrics.render(state.ledger.backend()),
    )
}

async fn not_found(uri: axum::http::Uri) -> error::ApiError {
    error::ApiError::new(
        StatusCode::NOT_FOUND,
        "no_such_route",
        format!("nothing at {}", uri.path()),
    )
}
