//! Rail 2, SMS-TAN: the operator half of the SMS payment scheme (`offpay-sms-tan`) wired to the
//! ledger. Gateways (Kannel's `get-url` and `sendsms` with delivery reports, and a generic
//! webhook) bring SMS in and take replies out through a durable queue; the engine's outcome of
//! each SMS — envelope bookkeeping, account data, postings, replies — commits as one ledger batch.
//! Also here: the operator API for SMS accounts and envelopes, the merchant terminal API, the web
//! statement page, and the scheduler for scheduled payments and expired callbacks.
//!
//! Keys and secrets: the envelope master key is `DATA_DIR/sms-master.key` (32 bytes, mode 0600,
//! created on first start; a KMS/HSM later), the gateway token `DATA_DIR/sms-gateway.token`.
//! Neither is ever logged or shown by `Debug`.

pub mod gateway;
pub mod operator;
pub mod process;
pub mod records;
pub mod web;

use offpay_operator::Entropy;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use axum::Router;
use offpay_ledger::{Amount, Currency};
use offpay_sms_tan::{Engine, EngineConfig, ExchangeRate, FeeSchedule, MasterKey};
use serde::{Deserialize, Serialize};

use crate::config::ServerConfig;
use crate::error::ApiError;
use crate::{AppState, StartError};

/// The master key file's name in the data directory.
pub const MASTER_KEY_FILE: &str = "sms-master.key";
/// The gateway token file's name in the data directory.
pub const GATEWAY_TOKEN_FILE: &str = "sms-gateway.token";
/// The optional gateway configuration file's name in the data directory.
pub const GATEWAY_CONFIG_FILE: &str = "sms.toml";
/// Gateway token length in bytes before hex encoding.
pub const GATEWAY_TOKEN_BYTES: usize = 32;
/// The EUIN prefix used unless the operator sets another.
pub const DEFAULT_EUIN_PREFIX: u16 = 263;

/// The operator's settings for this rail, stored as a record and editable through the API.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Settings {
    /// Format version.
    pub version: u32,
    /// Fees per level, one entry per currency.
    pub fees: Vec<FeeSetting>,
    /// Default dialback threshold per currency.
    pub dialback_defaults: Vec<AmountSetting>,
    /// Exchange rates.
    pub rates: Vec<RateSetting>,
    /// Currencies the operator tags hard (may be converted out of).
    pub hard_currencies: Vec<String>,
    /// The operator's time zone, minutes east of UTC.
    pub utc_offset_minutes: i32,
    /// EUIN prefix for printed envelopes.
    pub euin_prefix: u16,
    /// Printed on envelopes.
    pub operator_name: String,
    /// Printed on envelopes: where payers send SMS.
    pub sms_number: String,
    /// The server's currency (not stored; from the configuration).
    #[serde(skip, default = "default_currency")]
    pub server_currency: Currency,
}

fn default_currency() -> Currency {
    Currency::KES
}

/// Fees of one currency, decimal text.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FeeSetting {
    /// ISO 4217.
    pub currency: String,
    /// Low level.
    pub low: String,
    /// Middle level.
    pub middle: String,
    /// High level (callback).
    pub high: String,
}

/// An amount in a currency, decimal text.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AmountSetting {
    /// ISO 4217.
    pub currency: String,
    /// Decimal.
    pub amount: String,
}

/// An exchange rate: one minor unit of `from` is `numerator / denominator` minor units of `to`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RateSetting {
    /// From.
    pub from: String,
    /// To.
    pub to: String,
    /// Numerator.
    pub numerator: u64,
    /// Denominator.
    pub denominator: u64,
}

impl Settings {
    /// Defaults: no fees, no default threshold, no rates, UTC.
    pub fn defaults(server_currency: Currency) -> Settings {
        Settings {
            version: records::FORMAT_VERSION,
            fees: Vec::new(),
            dialback_defaults: Vec::new(),
            rates: Vec::new(),
            hard_currencies: Vec::new(),
            utc_offset_minutes: 0,
            euin_prefix: DEFAULT_EUIN_PREFIX,
            operator_name: "offpay".to_owned(),
            sms_number: "your operator's SMS number".to_owned(),
            server_currency,
        }
    }

    /// The engine configuration these settings describe.
    pub fn engine_config(&self) -> Result<EngineConfig, ApiError> {
        let currency = |code: &str| {
            Currency::from_code(code).map_err(|error| {
                ApiError::bad_request("invalid_currency", format!("currency {code:?}: {error}"))
            })
        };
        let amount = |text: &str, code: &str| -> Result<Amount, ApiError> {
            Amount::parse(text, currency(code)?).map_err(|error| {
                ApiError::bad_request("invalid_amount", format!("amount {text:?}: {error}"))
            })
        };
        let mut fees = Vec::new();
        for fee in &self.fees {
            fees.push(FeeSchedule {
                low: amount(&fee.low, &fee.currency)?,
                middle: amount(&fee.middle, &fee.currency)?,
                high: amount(&fee.high, &fee.currency)?,
            });
        }
        let mut dialback_defaults = Vec::new();
        for default in &self.dialback_defaults {
            dialback_defaults.push(amount(&default.amount, &default.currency)?);
        }
        let mut rates = Vec::new();
        for rate in &self.rates {
            rates.push(ExchangeRate {
                from: currency(&rate.from)?,
                to: currency(&rate.to)?,
                numerator: rate.numerator,
                denominator: rate.denominator,
            });
        }
        for code in &self.hard_currencies {
            currency(code)?;
        }
        if self.utc_offset_minutes.abs() > 14 * 60 {
            return Err(ApiError::bad_request(
                "invalid_offset",
                "utc_offset_minutes must be within -840..=840",
            ));
        }
        Ok(EngineConfig {
            fees,
            dialback_defaults,
            rates,
            utc_offset_minutes: self.utc_offset_minutes,
        })
    }
}

/// Where and how to reach Kannel's `sendsms` (from `DATA_DIR/sms.toml`, or the file named by
/// `OFFPAY_SMS_CONFIG`). Without it, queued SMS wait in the outbox (see the operator API).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayFile {
    /// Kannel settings.
    pub kannel: Option<KannelFile>,
}

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

/// Kannel's sendsms settings with the credentials loaded. `Debug` hides the password.
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
    /// Messages re-run after a compare-and-set conflict.
    pub reruns: AtomicU64,
    /// SMS handed to Kannel.
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
    engine: RwLock<Arc<Engine>>,
    settings: RwLock<Arc<Settings>>,
    settings_loaded: AtomicBool,
    gateway_token: Secret,
    kannel: Option<KannelConfig>,
    http: reqwest::Client,
    wake: tokio::sync::Notify,
    /// Counters.
    pub metrics: SmsMetrics,
    fingerprint: [u8; 8],
    /// Envelope and account records of this process's recent commits.
    pub cache: Arc<process::RecordCache>,
    operator_ready: std::sync::Mutex<Vec<Currency>>,
}

fn io_error(context: String) -> impl FnOnce(std::io::Error) -> StartError {
    move |source| StartError::Io { context, source }
}

/// Reads a secret file, or creates it with `bytes` random bytes (hex) and mode 0600.
fn load_or_create_secret(
    path: &Path,
    bytes: usize,
    entropy: &dyn Entropy,
) -> Result<String, StartError> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let text = text.trim().to_owned();
            if text.len() != bytes * 2 || !text.bytes().all(|byte| byte.is_ascii_hexdigit()) {
                return Err(StartError::Io {
                    context: format!("{}", path.display()),
                    source: std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("expected {} hex digits", bytes * 2),
                    ),
                });
            }
            Ok(text)
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let mut random = vec![0u8; bytes];
            entropy.fill(&mut random).map_err(|error| StartError::Io {
                context: "no randomness for a new key".into(),
                source: std::io::Error::other(error.to_string()),
            })?;
            let text = hex::encode(&random);
            random.fill(0);
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options
                .open(path)
                .map_err(io_error(format!("cannot create {}", path.display())))?;
            file.write_all(text.as_bytes())
                .and_then(|()| file.write_all(b"\n"))
                .and_then(|()| file.sync_all())
                .map_err(io_error(format!("cannot write {}", path.display())))?;
            Ok(text)
        }
        Err(error) => Err(StartError::Io {
            context: format!("cannot read {}", path.display()),
            source: error,
        }),
    }
}

fn load_kannel(config: &ServerConfig) -> Result<Option<KannelConfig>, StartError> {
    let path = std::env::var_os("OFFPAY_SMS_CONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| config.data_dir.join(GATEWAY_CONFIG_FILE));
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => {
            return Err(StartError::Io {
                context: format!("cannot read {}", path.display()),
                source: error,
            });
        }
    };
    let file: GatewayFile = toml::from_str(&text).map_err(|error| {
        StartError::Config(crate::config::ConfigError::Parse {
            path: path.clone(),
            message: error.to_string(),
        })
    })?;
    let Some(kannel) = file.kannel else {
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
    Ok(Some(KannelConfig {
        sendsms_url: kannel.sendsms_url,
        username: username.to_owned(),
        password: password.to_owned(),
        dlr_base_url: kannel.dlr_base_url,
        sender: kannel.sender,
    }))
}

impl SmsRail {
    /// Loads or creates the master key and the gateway token, and reads the gateway file.
    pub fn start(config: &ServerConfig, inputs: &crate::Inputs) -> Result<SmsRail, StartError> {
        let entropy = inputs.entropy.as_ref();
        let master = load_or_create_secret(
            &config.data_dir.join(MASTER_KEY_FILE),
            MasterKey::BYTES,
            entropy,
        )?;
        let gateway_token = load_or_create_secret(
            &config.data_dir.join(GATEWAY_TOKEN_FILE),
            GATEWAY_TOKEN_BYTES,
            entropy,
        )?;
        let settings = Settings::defaults(config.currency);
        let engine = build_engine(&master, &settings).map_err(|error| {
            StartError::Config(crate::config::ConfigError::Invalid {
                setting: "sms master key",
                message: error.message,
            })
        })?;
        let fingerprint = engine.master().fingerprint();
        let kannel = load_kannel(config)?;
        let http = reqwest::Client::builder()
            .timeout(gateway::SEND_TIMEOUT)
            .build()
            .map_err(|error| StartError::Io {
                context: "cannot build the SMS gateway client".into(),
                source: std::io::Error::other(error.to_string()),
            })?;
        tracing::info!(
            fingerprint = %hex::encode(fingerprint),
            kannel = kannel.is_some(),
            "sms-tan rail ready (master key fingerprint)"
        );
        Ok(SmsRail {
            master: Secret(master),
            engine: RwLock::new(Arc::new(engine)),
            settings: RwLock::new(Arc::new(settings)),
            settings_loaded: AtomicBool::new(false),
            gateway_token: Secret(gateway_token),
            kannel,
            http,
            wake: tokio::sync::Notify::new(),
            metrics: SmsMetrics::default(),
            fingerprint,
            cache: Arc::new(process::RecordCache::new(inputs.clock.clone())),
            operator_ready: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// The engine with the current settings.
    pub fn engine(&self) -> Arc<Engine> {
        match self.engine.read() {
            Ok(engine) => engine.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The current settings.
    pub fn settings(&self) -> Arc<Settings> {
        match self.settings.read() {
            Ok(settings) => settings.clone(),
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

    /// Installs new settings (validated) and rebuilds the engine.
    pub fn install(
        &self,
        mut settings: Settings,
        server_currency: Currency,
    ) -> Result<(), ApiError> {
        settings.server_currency = server_currency;
        let engine = build_engine(&self.master.0, &settings)?;
        if let Ok(mut slot) = self.engine.write() {
            *slot = Arc::new(engine);
        }
        if let Ok(mut slot) = self.settings.write() {
            *slot = Arc::new(settings);
        }
        self.settings_loaded.store(true, Ordering::Release);
        Ok(())
    }

    /// Loads the stored settings once (before the first message).
    pub async fn ensure_settings(&self, state: &Arc<AppState>) -> Result<(), ApiError> {
        if self.settings_loaded.load(Ordering::Acquire) {
            return Ok(());
        }
        let stored = state
            .ledger
            .read(|store| process::get::<Settings>(store, records::SETTINGS_KEY))
            .await?;
        let settings = stored
            .map(|(settings, _)| settings)
            .unwrap_or_else(|| Settings::defaults(state.config.currency));
        self.install(settings, state.config.currency)
    }

    /// Currencies whose operator accounts (float, suspense, fees) are known to exist.
    pub fn operator_ready(&self) -> Vec<Currency> {
        self.operator_ready
            .lock()
            .map(|ready| ready.clone())
            .unwrap_or_default()
    }

    /// Notes that the operator accounts of `currency` exist.
    pub fn mark_operator_ready(&self, currency: Currency) {
        if let Ok(mut ready) = self.operator_ready.lock()
            && !ready.contains(&currency)
        {
            ready.push(currency);
        }
    }

    /// Wakes the outbound queue worker.
    pub fn wake_outbound(&self) {
        self.wake.notify_one();
    }
}

fn build_engine(master_hex: &str, settings: &Settings) -> Result<Engine, ApiError> {
    let mut bytes = hex::decode(master_hex)
        .map_err(|_| ApiError::bad_request("bad_master_key", "the master key is not hex"))?;
    let master = MasterKey::from_slice(&bytes);
    bytes.fill(0);
    let master = master
        .map_err(|_| ApiError::bad_request("bad_master_key", "the master key must be 32 bytes"))?;
    Engine::new(settings.engine_config()?, master)
        .map_err(|error| ApiError::bad_request("invalid_settings", format!("{error:?}")))
}

/// Routes gateways, terminals and account holders call.
pub fn device_routes() -> Router<Arc<AppState>> {
    gateway::routes().merge(web::routes())
}

/// Operator routes (mounted under `/api/v1`, behind the operator token).
pub fn operator_routes() -> Router<Arc<AppState>> {
    operator::routes()
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
