//! Server configuration: defaults, then a TOML file, then `OFFPAY_*` environment variables, then
//! command-line flags. Secrets (a database password) belong in a file or the environment, never
//! on the command line, and never in logs: [`ServerConfig`]'s `Debug` redacts the database URL.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use offpay_ledger::Currency;
use offpay_operator::phone::Country;
use serde::Deserialize;

/// Default data directory, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = "./offpay-data";
/// Default listen address: loopback only, so a fresh install is not reachable from the network.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// SQLite file name inside the data directory.
pub const SQLITE_FILE_NAME: &str = "offpay.sqlite";
/// Token file name inside the data directory.
pub const TOKEN_FILE_NAME: &str = "admin.token";

/// The configuration file's shape. Every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Data directory.
    pub data_dir: Option<PathBuf>,
    /// Listen address, e.g. `127.0.0.1:8080`.
    pub listen: Option<String>,
    /// Database URL (`sqlite://PATH` or `postgres://...`).
    pub database_url: Option<String>,
    /// A file holding the database URL (so that its password stays out of the config file).
    pub database_url_file: Option<PathBuf>,
    /// Default currency for new accounts and amounts (ISO 4217).
    pub currency: Option<String>,
    /// TLS certificate chain (PEM), to serve HTTPS without a proxy; with `tls_key`.
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// Creating more value than this (decimal, in each currency's units) needs a second user.
    pub approval_above: Option<String>,
    /// The country whose national form phone numbers are read in (ISO 3166, e.g. `KE`).
    pub default_country: Option<String>,
    /// The language of customer texts for accounts that chose none (`en`, `sw`, `fr`).
    pub default_language: Option<String>,
    /// How long an approval waits before it expires, e.g. `24h` ([`Retention`]).
    pub approval_ttl: Option<String>,
    /// How long idempotency records are kept, e.g. `7d` ([`Retention`]).
    pub idempotency_retention: Option<String>,
    /// How long closed approvals are kept, e.g. `90d` ([`Retention`]).
    pub approval_retention: Option<String>,
}

/// Values given on the command line (`None` where a flag was not given).
#[derive(Debug, Default)]
pub struct Overrides {
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--listen`.
    pub listen: Option<String>,
    /// `--database-url`.
    pub database_url: Option<String>,
    /// `--config`.
    pub config_file: Option<PathBuf>,
    /// `--approval-above`.
    pub approval_above: Option<String>,
    /// `--default-country`.
    pub default_country: Option<String>,
    /// `--approval-ttl`, `--idempotency-retention`, `--approval-retention`.
    pub retention: RetentionOverrides,
}

/// The retention flags ([`Retention`]), as given on the command line.
#[derive(Debug, Default)]
pub struct RetentionOverrides {
    /// `--approval-ttl`.
    pub approval_ttl: Option<String>,
    /// `--idempotency-retention`.
    pub idempotency_retention: Option<String>,
    /// `--approval-retention`.
    pub approval_retention: Option<String>,
}

/// Default time a pending approval stays approvable: one day.
pub const DEFAULT_APPROVAL_TTL_MS: u64 = 24 * HOUR_MS;
/// Default time an idempotency record is kept: seven days, far beyond any client's retries
/// (`offpay admin` retries for seconds; an integration retrying a lost answer for days is
/// already an incident).
pub const DEFAULT_IDEMPOTENCY_RETENTION_MS: u64 = 7 * DAY_MS;
/// Default time a closed (approved, refused, expired) approval is kept after it closed: 90 days.
/// Its audit entries keep what it did for good.
pub const DEFAULT_APPROVAL_RETENTION_MS: u64 = 90 * DAY_MS;
/// The shortest idempotency retention accepted: one day, so that no client's retry of a lost
/// answer can outlive its key.
pub const IDEMPOTENCY_RETENTION_MIN_MS: u64 = DAY_MS;
const HOUR_MS: u64 = 3_600_000;
const DAY_MS: u64 = 24 * HOUR_MS;

/// How long approvals wait and how long operator records are kept before the background pruning
/// pass ([`crate::idempotency::prune`]) removes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// A pending approval expires this long after it was asked for (`approval_ttl`).
    pub approval_ttl_ms: u64,
    /// Idempotency records older than this are removed (`idempotency_retention`); at least
    /// [`IDEMPOTENCY_RETENTION_MIN_MS`] and at least the approval TTL (a pending approval's
    /// requester may retry their request until it expires and must get the same approval).
    pub idempotency_ms: u64,
    /// Approvals closed longer ago than this are removed (`approval_retention`).
    pub closed_approvals_ms: u64,
}

impl Default for Retention {
    fn default() -> Retention {
        Retention {
            approval_ttl_ms: DEFAULT_APPROVAL_TTL_MS,
            idempotency_ms: DEFAULT_IDEMPOTENCY_RETENTION_MS,
            closed_approvals_ms: DEFAULT_APPROVAL_RETENTION_MS,
        }
    }
}

/// A duration such as `90s`, `30m`, `24h` or `7d` (a whole number and one unit), in
/// milliseconds.
pub fn parse_duration(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let unit_ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => HOUR_MS,
        "d" => DAY_MS,
        _ => return None,
    };
    number.checked_mul(unit_ms).filter(|ms| *ms > 0)
}

impl Retention {
    /// The retention from flags, then the environment (`OFFPAY_APPROVAL_TTL`,
    /// `OFFPAY_IDEMPOTENCY_RETENTION`, `OFFPAY_APPROVAL_RETENTION`), then the file.
    fn resolve(
        overrides: RetentionOverrides,
        file: &FileConfig,
        environment: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Retention, ConfigError> {
        let one = |setting: &'static str,
                   flag: Option<String>,
                   variable: &str,
                   from_file: &Option<String>,
                   default: u64|
         -> Result<u64, ConfigError> {
            match flag
                .or_else(|| environment(variable))
                .or_else(|| from_file.clone())
            {
                None => Ok(default),
                Some(text) => parse_duration(&text).ok_or_else(|| ConfigError::Invalid {
                    setting,
                    message: format!(
                        "{text:?} is not a duration like 90s, 30m, 24h or 7d (a whole number above 0 and a unit)"
                    ),
                }),
            }
        };
        let retention = Retention {
            approval_ttl_ms: one(
                "approval_ttl",
                overrides.approval_ttl,
                "OFFPAY_APPROVAL_TTL",
                &file.approval_ttl,
                DEFAULT_APPROVAL_TTL_MS,
            )?,
            idempotency_ms: one(
                "idempotency_retention",
                overrides.idempotency_retention,
                "OFFPAY_IDEMPOTENCY_RETENTION",
                &file.idempotency_retention,
                DEFAULT_IDEMPOTENCY_RETENTION_MS,
            )?,
            closed_approvals_ms: one(
                "approval_retention",
                overrides.approval_retention,
                "OFFPAY_APPROVAL_RETENTION",
                &file.approval_retention,
                DEFAULT_APPROVAL_RETENTION_MS,
            )?,
        };
        let floor = retention.approval_ttl_ms.max(IDEMPOTENCY_RETENTION_MIN_MS);
        if retention.idempotency_ms < floor {
            return Err(ConfigError::Invalid {
                setting: "idempotency_retention",
                message: format!(
                    "idempotency records must be kept at least {} hours (one day, and at least the approval TTL): a client retrying a lost answer must still find its key",
                    floor / HOUR_MS
                ),
            });
        }
        Ok(retention)
    }
}

/// The resolved configuration.
#[derive(Clone)]
pub struct ServerConfig {
    /// Where the SQLite file, the token and keys live.
    pub data_dir: PathBuf,
    /// Where HTTP listens.
    pub listen: SocketAddr,
    /// `None`: SQLite inside `data_dir`.
    pub database_url: Option<String>,
    /// Default currency.
    pub currency: Currency,
    /// Serve HTTPS with this certificate and key (`None`: plain HTTP, for a proxy in front).
    pub tls: Option<crate::tls::TlsFiles>,
    /// Creating more value than this (compared as a decimal number in each currency's units)
    /// needs a second user's approval ([`crate::approvals`]).
    pub approval_above: offpay_ledger::Amount,
    /// The SMS gateway that sends (`--sms-gateway`, `OFFPAY_SMS_GATEWAY`; `None`: as
    /// `DATA_DIR/sms.toml` says).
    pub sms_gateway: Option<String>,
    /// Phone numbers written in national form (`0711000003`) are read in this country.
    pub default_country: Country,
    /// The language of customer texts (SMS, web pages, envelopes) for accounts that chose none
    /// (`OFFPAY_DEFAULT_LANGUAGE`, `default_language`, the CLI's `--default-language`).
    pub default_language: offpay_text::Language,
    /// Approval expiry and how long operator records are kept ([`Retention`]).
    pub retention: Retention,
}

impl fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerConfig")
            .field("data_dir", &self.data_dir)
            .field("listen", &self.listen)
            .field("database", &self.database_url.as_deref().map(redact_url))
            .field("currency", &self.currency)
            .field("tls", &self.tls)
            .field("approval_above", &self.approval_above)
            .field("sms_gateway", &self.sms_gateway)
            .field("default_country", &self.default_country)
            .field("default_language", &self.default_language)
            .field("retention", &self.retention)
            .finish()
    }
}

/// A configuration problem, said so that the operator can fix it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The config file is not valid TOML or has unknown keys.
    #[error("config file {path}: {message}")]
    Parse {
        /// File.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A value is invalid.
    #[error("{setting}: {message}")]
    Invalid {
        /// Which setting.
        setting: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// The country named, or else the one country that uses `currency`; a server whose currency
/// several countries share (XOF, EUR, USD) must name it, as must one whose code is unknown.
pub fn default_country(named: Option<String>, currency: Currency) -> Result<Country, ConfigError> {
    match named.filter(|code| !code.trim().is_empty()) {
        Some(code) => Country::parse(&code).map_err(|error| ConfigError::Invalid {
            setting: "default_country",
            message: error.to_string(),
        }),
        None => Country::of_currency(currency.code()).ok_or_else(|| ConfigError::Invalid {
            setting: "default_country",
            message: format!(
                "the server's currency {} is not one country's: name the country whose national \
                 phone numbers customers write, e.g. --default-country SN (or OFFPAY_DEFAULT_COUNTRY, \
                 or default_country in the config file)",
                currency.code()
            ),
        }),
    }
}

/// Hides the password of a URL such as `postgres://user:secret@host/db`, or
/// `postgres://user@db1:5432,db2:5432/db?password=secret&target_session_attrs=read-write`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (before_query, query) = match rest.split_once('?') {
        Some((before, query)) => (before, Some(query)),
        None => (rest, None),
    };
    let (authority, path) = match before_query.find('/') {
        Some(slash) => before_query.split_at(slash),
        None => (before_query, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((credentials, host)) if credentials.contains(':') => {
            let user = credentials.split(':').next().unwrap_or("");
            format!("{user}:<redacted>@{host}")
        }
        _ => authority.to_owned(),
    };
    let mut redacted = format!("{scheme}://{authority}{path}");
    if let Some(query) = query {
        let parameters: Vec<&str> = query
            .split('&')
            .map(|parameter| {
                if parameter.starts_with("password=") {
                    "password=<redacted>"
                } else {
                    parameter
                }
            })
            .collect();
        redacted.push('?');
        redacted.push_str(&parameters.join("&"));
    }
    redacted
}

impl ServerConfig {
    /// Resolves the configuration from `overrides`, the config file they name, and `environment`
    /// (a lookup function, so tests need not touch the process environment).
    pub fn resolve(
        overrides: Overrides,
        environment: &dyn Fn(&str) -> Option<String>,
    ) -> Result<ServerConfig, ConfigError> {
        let file = match &overrides.config_file {
            Some(path) => read_file_config(path)?,
            None => FileConfig::default(),
        };
        let retention = Retention::resolve(overrides.retention, &file, environment)?;
        let data_dir = overrides
            .data_dir
            .or_else(|| environment("OFFPAY_DATA_DIR").map(PathBuf::from))
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let listen_text = overrides
            .listen
            .or_else(|| environment("OFFPAY_LISTEN"))
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let listen = listen_text
            .parse::<SocketAddr>()
            .map_err(|error| ConfigError::Invalid {
                setting: "listen",
                message: format!("{listen_text:?} is not an address like 127.0.0.1:8080 ({error})"),
            })?;
        let url_from_file = match environment("OFFPAY_DATABASE_URL_FILE")
            .map(PathBuf::from)
            .or(file.database_url_file)
        {
            Some(path) => Some(
                std::fs::read_to_string(&path)
                    .map_err(|source| ConfigError::Read {
                        path: path.clone(),
                        source,
                    })?
                    .trim()
                    .to_owned(),
            ),
            None => None,
        };
        let database_url = overrides
            .database_url
            .or_else(|| environment("OFFPAY_DATABASE_URL"))
            .or(url_from_file)
            .or(file.database_url)
            .filter(|url| !url.is_empty());
        let currency_text = environment("OFFPAY_CURRENCY")
            .or(file.currency)
            .unwrap_or_else(|| "KES".to_owned());
        let currency =
            Currency::from_code(&currency_text).map_err(|error| ConfigError::Invalid {
                setting: "currency",
                message: format!("{currency_text:?}: {error}"),
            })?;
        let tls_cert = environment("OFFPAY_TLS_CERT")
            .map(PathBuf::from)
            .or(file.tls_cert);
        let tls_key = environment("OFFPAY_TLS_KEY")
            .map(PathBuf::from)
            .or(file.tls_key);
        let tls = tls_files(tls_cert, tls_key)?;
        let approval_text = overrides
            .approval_above
            .or_else(|| environment("OFFPAY_APPROVAL_ABOVE"))
            .or(file.approval_above)
            .unwrap_or_else(|| crate::approvals::DEFAULT_APPROVAL_ABOVE.to_owned());
        let approval_above =
            offpay_ledger::Amount::parse(&approval_text, currency).map_err(|error| {
                ConfigError::Invalid {
                    setting: "approval_above",
                    message: format!(
                        "{approval_text:?} is not an amount in {} ({error})",
                        currency.code()
                    ),
                }
            })?;
        let default_country = default_country(
            overrides
                .default_country
                .or_else(|| environment("OFFPAY_DEFAULT_COUNTRY"))
                .or(file.default_country),
            currency,
        )?;
        let default_language =
            match environment("OFFPAY_DEFAULT_LANGUAGE").or(file.default_language) {
                Some(text) => text
                    .parse()
                    .map_err(|error: offpay_text::UnknownLanguage| ConfigError::Invalid {
                        setting: "default_language",
                        message: format!("{text:?}: {error}"),
                    })?,
                None => offpay_text::Language::En,
            };
        Ok(ServerConfig {
            data_dir,
            listen,
            database_url,
            currency,
            tls,
            approval_above,
            sms_gateway: environment("OFFPAY_SMS_GATEWAY").filter(|name| !name.is_empty()),
            default_country,
            default_language,
            retention,
        })
    }

    /// The SQLite file used when no database URL is configured.
    pub fn sqlite_path(&self) -> PathBuf {
        self.data_dir.join(SQLITE_FILE_NAME)
    }

    /// The operator token file.
    pub fn token_path(&self) -> PathBuf {
        self.data_dir.join(TOKEN_FILE_NAME)
    }
}

/// Both TLS files, or neither.
pub fn tls_files(
    certificate: Option<PathBuf>,
    key: Option<PathBuf>,
) -> Result<Option<crate::tls::TlsFiles>, ConfigError> {
    match (certificate, key) {
        (Some(certificate), Some(key)) => Ok(Some(crate::tls::TlsFiles { certificate, key })),
        (None, None) => Ok(None),
        (Some(_), None) => Err(ConfigError::Invalid {
            setting: "tls_key",
            message: "a TLS certificate needs its key (tls_key, OFFPAY_TLS_KEY or --tls-key)"
                .to_owned(),
        }),
        (None, Some(_)) => Err(ConfigError::Invalid {
            setting: "tls_cert",
            message: "a TLS key needs its certificate (tls_cert, OFFPAY_TLS_CERT or --tls-cert)"
                .to_owned(),
        }),
    }
}

fn read_file_config(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|error| ConfigError::Parse {
        path: path.to_owned(),
        message: error.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_environment(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn retention_reads_durations_and_refuses_keys_forgotten_before_a_retry() {
        assert_eq!(parse_duration("90s"), Some(90_000));
        assert_eq!(parse_duration("30m"), Some(1_800_000));
        assert_eq!(parse_duration("24h"), Some(DEFAULT_APPROVAL_TTL_MS));
        assert_eq!(parse_duration("7d"), Some(DEFAULT_IDEMPOTENCY_RETENTION_MS));
        for bad in [
            "",
            "7",
            "d",
            "0h",
            "1.5h",
            "-1d",
            "3w",
            "99999999999999999999d",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
        let resolve = |overrides: RetentionOverrides| {
            ServerConfig::resolve(
                Overrides {
                    retention: overrides,
                    ..Overrides::default()
                },
                &no_environment,
            )
        };
        let config = resolve(RetentionOverrides::default()).unwrap();
        assert_eq!(config.retention, Retention::default());
        let config = resolve(RetentionOverrides {
            approval_ttl: Some("2h".into()),
            idempotency_retention: Some("2d".into()),
            approval_retention: Some("30d".into()),
        })
        .unwrap();
        assert_eq!(config.retention.approval_ttl_ms, 2 * HOUR_MS);
        assert_eq!(config.retention.idempotency_ms, 2 * DAY_MS);
        assert_eq!(config.retention.closed_approvals_ms, 30 * DAY_MS);
        // Shorter than a day, or than the approval TTL: a retry could outlive its key.
        for (ttl, keys) in [("1h", "12h"), ("3d", "2d")] {
            let error = resolve(RetentionOverrides {
                approval_ttl: Some(ttl.into()),
                idempotency_retention: Some(keys.into()),
                approval_retention: None,
            })
            .unwrap_err();
            assert!(
                matches!(
                    error,
                    ConfigError::Invalid {
                        setting: "idempotency_retention",
                        ..
                    }
                ),
                "{error}"
            );
        }
        let error = resolve(RetentionOverrides {
            approval_ttl: Some("soon".into()),
            ..RetentionOverrides::default()
        })
        .unwrap_err();
        assert!(error.to_string().contains("approval_ttl"), "{error}");
    }

    #[test]
    fn defaults_match_the_documentation() {
        let config = ServerConfig::resolve(Overrides::default(), &no_environment).unwrap();
        assert_eq!(config.data_dir, PathBuf::from("./offpay-data"));
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.currency, Currency::KES);
        assert!(config.database_url.is_none());
        assert_eq!(config.default_country.code(), "KE");
    }

    /// The default country: named (flag, environment, file), or the one country of the
    /// server's currency; a shared currency without one, or an unknown code, stops the start.
    #[test]
    fn the_default_country_is_named_or_the_currency_s() {
        let with = |environment: &[(&str, &str)]| {
            let environment: Vec<(String, String)> = environment
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .collect();
            ServerConfig::resolve(Overrides::default(), &move |name| {
                environment
                    .iter()
                    .find(|(key, _)| key == name)
                    .map(|(_, value)| value.clone())
            })
        };
        let uganda = with(&[("OFFPAY_CURRENCY", "UGX")]).unwrap();
        assert_eq!(uganda.default_country.code(), "UG");
        let senegal =
            with(&[("OFFPAY_CURRENCY", "XOF"), ("OFFPAY_DEFAULT_COUNTRY", "sn")]).unwrap();
        assert_eq!(senegal.default_country.code(), "SN");
        let shared = with(&[("OFFPAY_CURRENCY", "XOF")]).unwrap_err().to_string();
        assert!(
            shared.starts_with("default_country: the server's currency XOF is not one country's"),
            "{shared}"
        );
        let unknown = with(&[("OFFPAY_DEFAULT_COUNTRY", "XX")])
            .unwrap_err()
            .to_string();
        assert!(
            unknown.contains("\"XX\" is not a country code"),
            "{unknown}"
        );
        let flag = ServerConfig::resolve(
            Overrides {
                default_country: Some("TZ".into()),
                ..Overrides::default()
            },
            &|name| (name == "OFFPAY_DEFAULT_COUNTRY").then(|| "UG".to_owned()),
        )
        .unwrap();
        assert_eq!(flag.default_country.code(), "TZ");
    }

    #[test]
    fn flags_beat_environment_beat_file() {
        let directory = tempfile::tempdir().unwrap();
        let file = directory.path().join("offpay.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9000\"\ncurrency = \"UGX\"\ndata_dir = \"/from-file\"\n",
        )
        .unwrap();
        let environment = |name: &str| (name == "OFFPAY_DATA_DIR").then(|| "/from-env".to_owned());
        let config = ServerConfig::resolve(
            Overrides {
                config_file: Some(file.clone()),
                listen: Some("127.0.0.1:7000".into()),
                ..Overrides::default()
            },
            &environment,
        )
        .unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:7000");
        assert_eq!(config.data_dir, PathBuf::from("/from-env"));
        assert_eq!(config.currency, Currency::UGX);
    }

    #[test]
    fn bad_values_are_named() {
        let error = ServerConfig::resolve(
            Overrides {
                listen: Some("localhost".into()),
                ..Overrides::default()
            },
            &no_environment,
        )
        .unwrap_err();
        assert!(error.to_string().starts_with("listen:"), "{error}");
        let directory = tempfile::tempdir().unwrap();
        let file = directory.path().join("offpay.toml");
        std::fs::write(&file, "lissen = 1\n").unwrap();
        let error = ServerConfig::resolve(
            Overrides {
                config_file: Some(file),
                ..Overrides::default()
            },
            &no_environment,
        )
        .unwrap_err();
        assert!(error.to_string().contains("lissen"), "{error}");
    }

    #[test]
    fn database_passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://offpay:s3cret@db:5432/ledger"),
            "postgres://offpay:<redacted>@db:5432/ledger"
        );
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1/test"),
            "postgres://postgres@127.0.0.1/test"
        );
        // A primary and its standby: every host kept, the options too.
        let failover =
            "postgres://offpay@10.0.0.1:5432,10.0.0.2:5433/ledger?target_session_attrs=read-write";
        assert_eq!(redact_url(failover), failover);
        assert_eq!(
            redact_url("postgres://offpay:pw@db1,db2:6432/ledger?target_session_attrs=read-write"),
            "postgres://offpay:<redacted>@db1,db2:6432/ledger?target_session_attrs=read-write"
        );
        assert_eq!(
            redact_url("postgres://offpay@db1,db2/ledger?password=s3cret&connect_timeout=5"),
            "postgres://offpay@db1,db2/ledger?password=<redacted>&connect_timeout=5"
        );
        let config = ServerConfig {
            data_dir: PathBuf::from("d"),
            listen: "127.0.0.1:1".parse().unwrap(),
            database_url: Some("postgres://u:s3cret@h/db".into()),
            currency: Currency::KES,
            tls: None,
            approval_above: offpay_ledger::Amount::parse("100000", Currency::KES).unwrap(),
            sms_gateway: None,
            default_country: Country::parse("KE").unwrap(),
            default_language: offpay_text::Language::Sw,
            retention: Retention::default(),
        };
        assert!(!format!("{config:?}").contains("s3cret"));
    }
}
