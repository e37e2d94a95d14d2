//! Rail 2, SMS-TAN: the routes of the SMS payment scheme and their mapping onto its operator half
//! (`offpay_sms_tan::operator`, where every rule lives). Gateways (Kannel's `get-url` and
//! `sendsms` with delivery reports, and a generic webhook) bring SMS in and take replies out
//! through a durable queue; each SMS is loaded, decided and committed by the runner as one ledger
//! batch. Also here: the operator API for SMS accounts and envelopes, the merchant terminal API,
//! the web statement page, and the scheduler's loop.
//!
//! Keys and secrets: the envelope master key is `DATA_DIR/keys/sms-master.key` (32 bytes, mode
//! 0600 in a 0700 directory, created on first start; a KMS/HSM later) — not in the directory of
//! the database, so a copy of the database directory does not carry it; `OFFPAY_SMS_MASTER_KEY`
//! names another file. A key left by an older release at `DATA_DIR/sms-master.key` is still
//! used (with a warning to move it). The gateway token is `DATA_DIR/sms-gateway.token`. Neither
//! is ever logged or shown by `Debug`.

pub mod cache;
pub mod gateway;
pub mod inbound;
pub mod language;
pub mod operator;
pub use operator::seal_at_start;
pub mod web;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::http::StatusCode;
use offpay_ledger::{Currency, Refusal};
use offpay_operator::{Entropy, RecordError};
use offpay_sms_tan::MasterKey;
use offpay_sms_tan::operator::apply::Summary;
use offpay_sms_tan::operator::records::SETTINGS_KEY;
use offpay_sms_tan::operator::settings::SealedSettings;
use offpay_sms_tan::operator::{Operator, OperatorError, Settings};
use serde::Deserialize;

use crate::config::ServerConfig;
use crate::error::ApiError;
use crate::keyfile;
use crate::ledger::LedgerError;
use crate::runner::RunError;
use crate::{AppState, StartError};

/// The master key file's name.
pub const MASTER_KEY_FILE: &str = "sms-master.key";
/// The directory of key files under the data directory (apart from the database).
pub const KEY_DIRECTORY: &str = "keys";

/// Where the master key is read from (or created): `OFFPAY_SMS_MASTER_KEY` if set, else
/// `DATA_DIR/keys/sms-master.key`, unless only an older release's `DATA_DIR/sms-master.key`
/// exists.
pub fn master_key_path(data_dir: &Path) -> Result<PathBuf, StartError> {
    if let Some(path) = std::env::var_os("OFFPAY_SMS_MASTER_KEY") {
        return Ok(PathBuf::from(path));
    }
    let directory = data_dir.join(KEY_DIRECTORY);
    let path = directory.join(MASTER_KEY_FILE);
    let legacy = data_dir.join(MASTER_KEY_FILE);
    if !path.exists() && legacy.exists() {
        tracing::warn!(
            path = %legacy.display(),
            "the sms master key sits beside the database; move it to {}",
            path.display()
        );
        return Ok(legacy);
    }
    if !directory.exists() {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder
            .create(&directory)
            .map_err(|source| StartError::Io {
                context: format!("cannot create {}", directory.display()),
                source,
            })?;
    }
    Ok(path)
}
/// The gateway token file's name in the data directory.
pub const GATEWAY_TOKEN_FILE: &str = "sms-gateway.token";
/// The optional gateway configuration file's name in the data directory.
pub const GATEWAY_CONFIG_FILE: &str = "sms.toml";
/// Gateway token length in bytes before hex encoding.
pub const GATEWAY_TOKEN_BYTES: usize = 32;

/// The `[kannel]` table.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KannelFile {
    /// e.g. `http://127.0.0.1:13013/cgi-bin/sendsms`.
    pub sendsms_url: String,
    /// A file whose first line is `username:password` of Kannel's sendsms user.
    pub credentials_file: PathBuf,
    /// How Kannel reaches this server for delivery reports, e.g. `http://127.0.0.1:8080`.
    pub dlr_base_url: Option<String>,
    /// Sender number or name on outgoing SMS.
    pub sender: Option<String>,
}

/// Kannel's sendsms settings with the credentials loaded (from the `[kannel]` table of
/// `DATA_DIR/sms.toml`, or the file named by `OFFPAY_SMS_CONFIG`). `Debug` hides the password.
#[derive(Clone)]
pub struct KannelConfig {
    /// The sendsms URL.
    pub sendsms_url: String,
    /// Username.
    pub username: String,
    /// Password.
    pub password: String,
    /// Base URL for delivery reports.
    pub dlr_base_url: Option<String>,
    /// Sender.
    pub sender: Option<String>,
}

impl std::fmt::Debug for KannelConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KannelConfig")
            .field("sendsms_url", &self.sendsms_url)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Counters of this rail.
#[derive(Debug, Default)]
pub struct SmsMetrics {
    /// Inbound SMS processed.
    pub inbound: AtomicU64,
    /// Gateway retries answered from the dedupe record.
    pub duplicates: AtomicU64,
    /// Messages loaded and decided again after a refused commit.
    pub reruns: AtomicU64,
    /// SMS handed to the gateway.
    pub sent: AtomicU64,
    /// Failed send attempts.
    pub send_failures: AtomicU64,
}

struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// This rail's server-side state.
#[derive(Debug)]
pub struct SmsRail {
    master: Secret,
    operator: RwLock<Arc<Operator>>,
    settings_loaded: AtomicBool,
    gateway_token: Secret,
    gateways: gateway::config::Gateways,
    http: reqwest::Client,
    wake: tokio::sync::Notify,
    /// Counters.
    pub metrics: SmsMetrics,
    fingerprint: [u8; 8],
    /// Envelope and account records of this process's recent reads and commits.
    pub cache: Arc<cache::RecordCache>,
    operator_ready: std::sync::Mutex<Vec<Currency>>,
    default_language: offpay_text::Language,
}

fn io_error(context: String) -> impl FnOnce(std::io::Error) -> StartError {
    move |source| StartError::Io { context, source }
}

/// Reads a secret file, or creates it with `bytes` random bytes (hex) and mode 0600.
fn load_or_create_secret(
    path: &Path,
    bytes: usize,
    entropy: &dyn Entropy,
) -> Result<zeroize::Zeroizing<String>, StartError> {
    let (contents, _) = keyfile::read_or_create(path, || keyfile::random_hex_line(entropy, bytes))
        .map_err(keyfile::start_error("secret file", path))?;
    keyfile::hex_text(&contents, bytes, "secret file")
        .map_err(keyfile::start_error("secret file", path))
}

fn gateway_file_path(config: &ServerConfig) -> PathBuf {
    std::env::var_os("OFFPAY_SMS_CONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| config.data_dir.join(GATEWAY_CONFIG_FILE))
}

fn load_kannel(file: &gateway::config::GatewayFile) -> Result<Option<KannelConfig>, StartError> {
    let Some(kannel) = file.kannel.clone() else {
        return Ok(None);
    };
    let credentials = std::fs::read_to_string(&kannel.credentials_file).map_err(io_error(
        format!("cannot read {}", kannel.credentials_file.display()),
    ))?;
    let line = credentials.lines().next().unwrap_or("").trim();
    let Some((username, password)) = line.split_once(':') else {
        return Err(StartError::Config(crate::config::ConfigError::Invalid {
            setting: "kannel.credentials_file",
            message: "the first line must be username:password".into(),
        }));
    };
    if reqwest::Url::parse(&kannel.sendsms_url).is_err() {
        return Err(StartError::Config(crate::config::ConfigError::Invalid {
            setting: "kannel.sendsms_url",
            message: format!("{:?} is not a URL", kannel.sendsms_url),
        }));
    }
    Ok(Some(KannelConfig {
        sendsms_url: kannel.sendsms_url,
        username: username.to_owned(),
        password: password.to_owned(),
        dlr_base_url: kannel.dlr_base_url,
        sender: kannel.sender,
    }))
}

fn master_key(master_hex: &str) -> Result<MasterKey, OperatorError> {
    let invalid = || OperatorError::Invalid {
        code: "bad_master_key",
        message: "the master key must be 32 bytes of hex".into(),
    };
    let mut bytes = hex::decode(master_hex).map_err(|_| invalid())?;
    let master = MasterKey::from_slice(&bytes);
    bytes.fill(0);
    master.map_err(|_| invalid())
}

impl SmsRail {
    /// Loads or creates the master key and the gateway token, and reads the gateway file.
    pub fn start(config: &ServerConfig, inputs: &crate::Inputs) -> Result<SmsRail, StartError> {
        let entropy = inputs.entropy.as_ref();
        let master = load_or_create_secret(
            &master_key_path(&config.data_dir)?,
            MasterKey::BYTES,
            entropy,
        )?;
        let gateway_token = load_or_create_secret(
            &config.data_dir.join(GATEWAY_TOKEN_FILE),
            GATEWAY_TOKEN_BYTES,
            entropy,
        )?;
        let operator = master_key(&master)
            .and_then(|key| {
                Operator::new(
                    key,
                    Settings::default(),
                    config.currency,
                    config.default_country,
                )
            })
            .map(|operator| operator.with_default_language(config.default_language))
            .map_err(|error| {
                StartError::Config(crate::config::ConfigError::Invalid {
                    setting: "sms master key",
                    message: error.to_string(),
                })
            })?;
        let fingerprint = operator.master().fingerprint();
        let file = gateway::config::read_file(&gateway_file_path(config))?;
        let kannel = load_kannel(&file)?;
        let webhook_secret = if file.webhook.is_some()
            || gateway::config::selected_name(config.sms_gateway.as_deref(), &file)?
                == Some("webhook")
        {
            let path = file
                .webhook
                .as_ref()
                .and_then(|webhook| webhook.secret_file.clone())
                .unwrap_or_else(|| PathBuf::from(gateway::config::WEBHOOK_SECRET_FILE));
            let path = config.data_dir.join(path);
            let secret =
                load_or_create_secret(&path, gateway::config::WEBHOOK_SECRET_BYTES, entropy)?;
            Some(zeroize::Zeroizing::new(secret.as_bytes().to_vec()))
        } else {
            None
        };
        let gateways = gateway::config::build(gateway::config::Inputs {
            data_dir: &config.data_dir,
            selected: config.sms_gateway.as_deref(),
            file: &file,
            gateway_token: &gateway_token,
            kannel,
            webhook_secret,
        })?;
        let http = gateway::config::http_client(&config.data_dir, &file, gateway::SEND_TIMEOUT)?;
        tracing::info!(
            fingerprint = %hex::encode(fingerprint),
            gateway = gateways.outbound().map_or("none", |gateway| gateway.name()),
            "sms-tan rail ready (master key fingerprint)"
        );
        Ok(SmsRail {
            master: Secret(master.as_str().to_owned()),
            operator: RwLock::new(Arc::new(operator)),
            settings_loaded: AtomicBool::new(false),
            gateway_token: Secret(gateway_token.as_str().to_owned()),
            gateways,
            http,
            wake: tokio::sync::Notify::new(),
            metrics: SmsMetrics::default(),
            fingerprint,
            cache: Arc::new(cache::RecordCache::new(inputs.clock.clone())),
            operator_ready: std::sync::Mutex::new(Vec::new()),
            default_language: config.default_language,
        })
    }

    /// The operator half with the current settings.
    pub fn operator(&self) -> Arc<Operator> {
        match self.operator.read() {
            Ok(operator) => operator.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The master key's public fingerprint.
    pub fn fingerprint(&self) -> [u8; 8] {
        self.fingerprint
    }

    /// Whether `presented` is the gateway token (constant time).
    pub fn gateway_token_matches(&self, presented: &str) -> bool {
        subtle::ConstantTimeEq::ct_eq(self.gateway_token.0.as_bytes(), presented.as_bytes()).into()
    }

    /// Whether a USSD call from `peer` may be served: the `[ussd] allow_ips` list is empty, or
    /// `peer` is in one of its networks (a caller of unknown address is then refused).
    pub fn ussd_peer_allowed(&self, peer: Option<std::net::IpAddr>) -> bool {
        let allow = &self.gateways.ussd_allow;
        allow.is_empty()
            || peer.is_some_and(|peer| allow.iter().any(|network| network.contains(peer)))
    }

    /// The operator half for `settings` (they are refused if the engine cannot run on them).
    pub fn operator_for(
        &self,
        settings: Settings,
        config: &ServerConfig,
    ) -> Result<Operator, OperatorError> {
        Operator::new(
            master_key(&self.master.0)?,
            settings,
            config.currency,
            config.default_country,
        )
        .map(|operator| operator.with_default_language(self.default_language))
    }

    /// Puts `operator` (built by [`SmsRail::operator_for`]) in force.
    pub fn install(&self, operator: Operator) {
        if let Ok(mut slot) = self.operator.write() {
            *slot = Arc::new(operator);
        }
        self.settings_loaded.store(true, Ordering::Release);
    }

    /// Loads the stored settings once (before the first message).
    pub async fn ensure_settings(&self, state: &Arc<AppState>) -> Result<(), ApiError> {
        if self.settings_loaded.load(Ordering::Acquire) {
            return Ok(());
        }
        let stored = state
            .ledger
            .read(|store| {
                Ok(offpay_operator::Loaded::<SealedSettings>::read(
                    store,
                    SETTINGS_KEY,
                ))
            })
            .await?
            .map_err(SmsFailure::from)?;
        let master = master_key(&self.master.0).map_err(SmsFailure::from)?;
        let settings = match stored.value {
            Some(sealed) if sealed.authentic(&master) => sealed.settings,
            Some(sealed) => return Err(settings_tampered(state, &sealed).await),
            None => Settings::default(),
        };
        let operator = self
            .operator_for(settings, &state.config)
            .map_err(SmsFailure::from)?;
        self.install(operator);
        Ok(())
    }

    /// Reads the stored settings again before the next message (after they were sealed).
    pub fn forget_settings(&self) {
        self.settings_loaded.store(false, Ordering::Release);
    }

    /// Currencies whose operator accounts (float, suspense, fees) are known to exist.
    pub fn operator_ready(&self) -> Vec<Currency> {
        self.operator_ready
            .lock()
            .map(|ready| ready.clone())
            .unwrap_or_default()
    }

    /// Sends queued SMS through `gateway` from now on: for tests, with
    /// [`gateway::fake::FakeGateway`] (no configuration selects it).
    pub fn replace_outbound_for_tests(&self, gateway: Arc<dyn gateway::Gateway>) {
        self.gateways.replace_outbound(gateway);
        self.wake_outbound();
    }

    /// The adapter queued SMS go out through, if any.
    pub fn outbound_gateway(&self) -> Option<Arc<dyn gateway::Gateway>> {
        self.gateways.outbound()
    }

    /// Wakes the outbound queue worker.
    pub fn wake_outbound(&self) {
        self.wake.notify_one();
    }

    /// What to do once a decision's effects are committed: keep the records it wrote in the read
    /// cache, note the operator accounts that now exist, and wake the sender for queued
    /// replies.
    pub fn committed(&self, summary: &Summary) {
        self.cache.keep_written(&summary.written);
        if let Ok(mut ready) = self.operator_ready.lock() {
            for currency in &summary.operator_currencies {
                if !ready.contains(currency) {
                    ready.push(*currency);
                }
            }
        }
        if summary.queued > 0 {
            self.wake_outbound();
        }
    }
}

/// A ledger refusal that means a balance read at load changed before the commit: decide again.
pub fn balance_changed(refusal: &Refusal) -> bool {
    matches!(refusal, Refusal::InsufficientFunds { .. })
}

/// Stored settings whose MAC does not match (fees, limits, dialback defaults or the printed-recipe
/// ceiling changed in the database): the rail runs on none of them. Raised once in the fraud
/// queue (`record_tampered`, keyed by what was stored) and answered 503 `settings_tampered`, so a
/// gateway keeps the message and delivers it again once an operator stored the settings anew.
async fn settings_tampered(state: &Arc<AppState>, sealed: &SealedSettings) -> ApiError {
    let now = state.now();
    let evidence = serde_json::json!({ "kind": SealedSettings::MAC_KIND, "key": SETTINGS_KEY,
        "claimed": sealed.settings.form() });
    let discriminator = offpay_sms_tan::operator::records::short_hash(&evidence.to_string());
    let flag = offpay_operator::FraudFlag::new(
        offpay_sms_tan::operator::apply::FRAUD_RAIL,
        "record_tampered",
        SETTINGS_KEY,
        format!(
            "stored {} record {SETTINGS_KEY} does not match its MAC: written or changed outside \
             the operator's code; refused, the rail runs on none of it",
            SealedSettings::MAC_KIND
        ),
        evidence,
        now,
    );
    let raised = crate::runner::run(
        &state.ledger,
        now,
        || async { Ok::<(), SmsFailure>(()) },
        |()| {
            let mut effects = offpay_operator::Effects::new();
            effects.flag(&flag, &discriminator);
            Ok::<_, SmsFailure>(offpay_operator::Decision::commit(effects, ()))
        },
    )
    .await;
    if let Err(SmsFailure(error)) = raised {
        tracing::error!(code = %error.code, "could not raise the tampered settings flag");
    }
    tracing::error!(
        "the stored SMS-TAN settings do not match their MAC; the rail answers nothing until an \
         operator stores them again"
    );
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "settings_tampered",
        "the stored SMS-TAN settings do not match their MAC (changed in the database); an \
         operator must store them again",
    )
    .with_retry_after(60)
}

/// Why an SMS route failed, on the way to its HTTP answer.
#[derive(Debug)]
pub struct SmsFailure(pub ApiError);

impl From<SmsFailure> for ApiError {
    fn from(failure: SmsFailure) -> ApiError {
        failure.0
    }
}

impl From<ApiError> for SmsFailure {
    fn from(error: ApiError) -> SmsFailure {
        SmsFailure(error)
    }
}

impl From<LedgerError> for SmsFailure {
    fn from(error: LedgerError) -> SmsFailure {
        SmsFailure(error.into())
    }
}

impl From<RunError> for SmsFailure {
    fn from(error: RunError) -> SmsFailure {
        SmsFailure(match error {
            RunError::Ledger(error) => error.into(),
            RunError::Refused(refusal) => ApiError::refused(&refusal),
            other @ (RunError::Contention | RunError::CredentialsChanged) => {
                crate::runner::api_error(other)
            }
        })
    }
}

impl From<RecordError> for SmsFailure {
    fn from(error: RecordError) -> SmsFailure {
        match error {
            RecordError::Store(error) => SmsFailure(LedgerError::from(error).into()),
            other => {
                tracing::error!(error = %other, "sms record");
                SmsFailure(ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "corrupt_record",
                    other.to_string(),
                ))
            }
        }
    }
}

impl From<OperatorError> for SmsFailure {
    fn from(error: OperatorError) -> SmsFailure {
        SmsFailure(match error {
            OperatorError::Invalid { code, message } => ApiError::bad_request(code, message),
            OperatorError::NotFound { what, id } => ApiError::not_found(what, &id),
            OperatorError::Conflict { code, message } => {
                ApiError::new(StatusCode::CONFLICT, code, message)
            }
            OperatorError::Unprocessable { code, message } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
            }
            OperatorError::Record(error) => return SmsFailure::from(error),
            other => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                other.to_string(),
            ),
        })
    }
}

/// Routes gateways, terminals and account holders call.
pub fn device_routes() -> Router<Arc<AppState>> {
    gateway::routes().merge(web::routes())
}

/// Operator routes (mounted under `/api/v1`, behind the operator token).
pub fn operator_routes() -> crate::routes::OperatorRoutes {
    operator::routes().merge(language::routes())
}

/// Background work: the outbound queue worker and the scheduler (scheduled payments, expired
/// callbacks, expired web sessions).
pub fn spawn_background(state: &Arc<AppState>) {
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return;
    };
    handle.spawn(gateway::outbound_worker(Arc::downgrade(state)));
    handle.spawn(operator::scheduler(Arc::downgrade(state)));
}
