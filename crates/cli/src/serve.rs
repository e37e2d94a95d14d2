//! `offpay serve`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use offpay_server::Server;
use offpay_server::config::{Overrides, ServerConfig};

use crate::exit;

/// Where and how to serve.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Data directory: SQLite file, operator token, keys [default: ./offpay-data]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Database URL: sqlite://PATH or postgres://USER@HOST/DB (put a password in
    /// OFFPAY_DATABASE_URL or a file named by database_url_file, not on the command line)
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// TOML configuration file
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Serve HTTPS with this certificate chain (PEM; with --tls-key); SIGHUP reads it again
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The TLS certificate's private key (PEM)
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Creating more value than this (a float, a charge, a transfer out of the operator's
    /// float) needs a second user's approval [env: OFFPAY_APPROVAL_ABOVE] [default: 100000]
    #[arg(long, value_name = "AMOUNT")]
    pub approval_above: Option<String>,
    /// The SMS gateway that sends queued SMS: kannel, africastalking, twilio or webhook; its
    /// settings are its table in DATA_DIR/sms.toml, its secrets files in the data directory
    /// (docs/guide/sms-gateways.md) [env: OFFPAY_SMS_GATEWAY] [default: kannel when sms.toml has
    /// a kannel table, else none: replies wait in the outbox]
    #[arg(long, value_name = "NAME", value_parser = ["kannel", "africastalking", "twilio", "webhook"])]
    pub sms_gateway: Option<String>,
    /// The country whose national phone numbers customers write (ISO 3166: KE, TZ, SN …);
    /// `0711000003` is read as a number there [env: OFFPAY_DEFAULT_COUNTRY] [default: the
    /// country of the server's currency, when only one country uses it]
    #[arg(long, value_name = "CODE")]
    pub default_country: Option<String>,
    /// Language of customer texts (SMS replies, web pages, envelopes) for accounts that chose
    /// none: en, sw or fr [env: OFFPAY_DEFAULT_LANGUAGE] [default: en]
    #[arg(long, value_name = "LANG")]
    pub default_language: Option<offpay_text::Language>,
    /// Approval expiry and how long operator records are kept.
    #[command(flatten)]
    pub retention: RetentionArgs,
}

/// `--approval-ttl`, `--idempotency-retention`, `--approval-retention`.
#[derive(Debug, Default, Args)]
pub struct RetentionArgs {
    /// How long an approval waits for a second user before it expires (90s, 30m, 24h, 7d …)
    /// [env: OFFPAY_APPROVAL_TTL] [default: 24h]
    #[arg(long, value_name = "DURATION")]
    pub approval_ttl: Option<String>,
    /// How long idempotency keys are remembered (at least 1d and the approval TTL)
    /// [env: OFFPAY_IDEMPOTENCY_RETENTION] [default: 7d]
    #[arg(long, value_name = "DURATION")]
    pub idempotency_retention: Option<String>,
    /// How long closed (approved, refused, expired) approvals are kept before they are pruned;
    /// their audit entries stay [env: OFFPAY_APPROVAL_RETENTION] [default: 90d]
    #[arg(long, value_name = "DURATION")]
    pub approval_retention: Option<String>,
}

impl ServeArgs {
    pub fn resolve(self) -> Result<ServerConfig, offpay_server::config::ConfigError> {
        let overrides = Overrides {
            data_dir: self.data_dir,
            listen: self.listen,
            database_url: self.database_url,
            config_file: self.config,
            approval_above: self.approval_above,
            default_country: self.default_country,
            retention: offpay_server::config::RetentionOverrides {
                approval_ttl: self.retention.approval_ttl,
                idempotency_retention: self.retention.idempotency_retention,
                approval_retention: self.retention.approval_retention,
            },
        };
        let mut config = ServerConfig::resolve(overrides, &|name| std::env::var(name).ok())?;
        if let Some(files) = offpay_server::config::tls_files(self.tls_cert, self.tls_key)? {
            config.tls = Some(files);
        }
        if self.sms_gateway.is_some() {
            config.sms_gateway = self.sms_gateway;
        }
        if let Some(language) = self.default_language {
            config.default_language = language;
        }
        Ok(config)
    }
}

pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
    say("shutting down: finishing requests and queued ledger work");
}

/// Says `message` to the operator on stderr: a plain line, or with `OFFPAY_LOG_FORMAT=json` a
/// log event like every other line (at a target the log filter always lets through), so that
/// JSON logs hold no plain line.
pub fn say(message: &str) {
    if crate::json_logs() {
        tracing::info!(target: crate::NOTICE_TARGET, "{message}");
    } else {
        eprintln!("{message}");
    }
}

/// Reports an error that ends the command, as [`say`] does.
pub fn say_error(message: &str) {
    if crate::json_logs() {
        tracing::error!(target: crate::NOTICE_TARGET, "{message}");
    } else {
        eprintln!("{message}");
    }
}

/// Prints where things are, so that an operator knows what just happened.
pub fn announce(server: &Server, config: &ServerConfig) {
    let address = server
        .local_addr()
        .map_or_else(|_| config.listen.to_string(), |address| address.to_string());
    let database = match &config.database_url {
        Some(url) => offpay_server::config::redact_url(url),
        None => format!("sqlite {}", config.sqlite_path().display()),
    };
    let scheme = if server.serves_tls() { "https" } else { "http" };
    say(&format!(
        "offpay {} listening on {scheme}://{address} (ledger: {database})",
        env!("CARGO_PKG_VERSION")
    ));
    let token = config.token_path();
    if server.token_created() {
        say(&format!(
            "operator API token written to {} (mode 0600)",
            token.display()
        ));
    } else {
        say(&format!("operator API token: {}", token.display()));
    }
}

pub fn run(args: ServeArgs) -> ExitCode {
    let config = match args.resolve() {
        Ok(config) => config,
        Err(error) => {
            say_error(&format!("offpay serve: {error}"));
            return exit::code(exit::USAGE);
        }
    };
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(error) => {
            say_error(&format!(
                "offpay serve: cannot start the async runtime: {error}"
            ));
            return exit::code(exit::FAILURE);
        }
    };
    runtime.block_on(async move {
        let server = match Server::start(config.clone()).await {
            Ok(server) => server,
            Err(error) => {
                say_error(&format!("offpay serve: {error}"));
                return exit::for_start(&error);
            }
        };
        announce(&server, &config);
        match server.run(shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                say_error(&format!("offpay serve: {error}"));
                exit::for_start(&error)
            }
        }
    })
}

/// `offpay healthcheck`: asks a server whether it is live (`/health`) or ready (`/ready`), for
/// container health checks and scripts; says nothing on success.
#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// The URL to ask
    #[arg(
        long,
        value_name = "URL",
        default_value = "http://127.0.0.1:8080/health"
    )]
    pub url: String,
    /// Seconds to wait for the answer
    #[arg(long, value_name = "SECONDS", default_value_t = 5)]
    pub timeout: u64,
}

/// 0 when the server answers 2xx, 6 (unavailable) otherwise, with the reason on stderr.
pub fn healthcheck(args: &HealthcheckArgs) -> ExitCode {
    let client = crate::client::http_builder().and_then(|builder| {
        builder
            .timeout(std::time::Duration::from_secs(args.timeout))
            .build()
            .map_err(|error| error.to_string())
    });
    let client = match client {
        Ok(client) => client,
        Err(message) => {
            eprintln!("offpay healthcheck: {message}");
            return exit::code(exit::USAGE);
        }
    };
    match client.get(&args.url).send() {
        Ok(response) if response.status().is_success() => ExitCode::SUCCESS,
        Ok(response) => {
            let status = response.status();
            let body = response.text().unwrap_or_default();
            eprintln!("offpay healthcheck: {} answered {status}: {body}", args.url);
            exit::code(exit::UNAVAILABLE)
        }
        Err(error) => {
            eprintln!(
                "offpay healthcheck: {}: {}",
                args.url,
                crate::client::error_chain(&error)
            );
            exit::code(exit::UNAVAILABLE)
        }
    }
}
