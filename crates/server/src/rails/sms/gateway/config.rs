//! Which SMS gateway sends, and each adapter's settings: `--sms-gateway` (or
//! `OFFPAY_SMS_GATEWAY`, or `gateway =` in `DATA_DIR/sms.toml`) names the adapter; its table in
//! `sms.toml` holds its settings; its secrets are files in the data directory, readable by the
//! owner only. A missing table, file or setting is a start-up error that says what to write.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde::Deserialize;

use super::Gateway;
use super::africastalking::{self, AfricasTalking, AfricasTalkingSettings, Network};
use super::kannel::Kannel;
use super::twilio::{self, Sender, Twilio, TwilioSettings};
use super::webhook::Webhook;
use crate::StartError;
use crate::config::ConfigError;
use crate::rails::sms::KannelConfig;

/// The adapters `--sms-gateway` can name.
pub const GATEWAY_NAMES: &[&str] = &["kannel", "africastalking", "twilio", "webhook"];
/// The webhook secret's default file name in the data directory.
pub const WEBHOOK_SECRET_FILE: &str = "sms-webhook.secret";
/// Bytes of a webhook secret the server creates.
pub const WEBHOOK_SECRET_BYTES: usize = 32;
/// Longest secret file read.
const SECRET_FILE_BYTES_MAX: u64 = 4096;

/// `DATA_DIR/sms.toml` (or the file `OFFPAY_SMS_CONFIG` names).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayFile {
    /// The adapter that sends (overridden by `--sms-gateway`).
    pub gateway: Option<String>,
    /// A PEM file of CA certificates trusted for the aggregators' HTTPS APIs, besides the
    /// system's roots.
    pub ca_file: Option<PathBuf>,
    /// Kannel settings.
    pub kannel: Option<crate::rails::sms::KannelFile>,
    /// Africa's Talking settings.
    pub africastalking: Option<AfricasTalkingFile>,
    /// Twilio settings.
    pub twilio: Option<TwilioFile>,
    /// Generic webhook settings.
    pub webhook: Option<WebhookFile>,
    /// USSD settings (`/ussd/{token}`).
    pub ussd: Option<UssdFile>,
}

/// The `[ussd]` table.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UssdFile {
    /// Addresses or networks (`196.201.214.0/24`) the aggregator's USSD calls may come from
    /// [default: any; the token in the path is checked either way].
    #[serde(default)]
    pub allow_ips: Vec<String>,
}

/// The `[africastalking]` table.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AfricasTalkingFile {
    /// The application's username (`sandbox` in the sandbox).
    pub username: String,
    /// The file holding the API key (relative paths are in the data directory).
    pub api_key_file: PathBuf,
    /// The API's base URL [default: the live API]; `sandbox` for the sandbox.
    pub base_url: Option<String>,
    /// The short code or sender id outgoing SMS come from.
    pub sender: Option<String>,
    /// Addresses or networks (`196.201.214.0/24`) the callbacks may come from [default: any].
    #[serde(default)]
    pub allow_ips: Vec<String>,
}

/// The `[twilio]` table.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioFile {
    /// The account SID (`AC…`).
    pub account_sid: String,
    /// The file holding the auth token (relative paths are in the data directory).
    pub auth_token_file: PathBuf,
    /// The Twilio number that sends.
    pub from: Option<String>,
    /// Or the messaging service that sends.
    pub messaging_service_sid: Option<String>,
    /// This server's URL as Twilio calls it, e.g. `https://pay.example.com`.
    pub public_url: String,
    /// `twiml` (replies in the webhook's answer, the default) or `api` (through the queue).
    pub reply: Option<String>,
    /// The API's base URL [default: the live API].
    pub base_url: Option<String>,
}

/// The `[webhook]` table.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookFile {
    /// The signing secret's file [default: `DATA_DIR/sms-webhook.secret`, created when missing].
    pub secret_file: Option<PathBuf>,
    /// Where queued SMS are POSTed as JSON.
    pub send_url: Option<String>,
    /// Whether the gateway token as `Authorization: Bearer` is still accepted [default: false].
    #[serde(default)]
    pub allow_bearer: bool,
}

/// The adapters of a running server.
#[derive(Debug)]
pub struct Gateways {
    /// Kannel (callbacks always served; sends when configured).
    pub kannel: Arc<Kannel>,
    /// The generic webhook (always served).
    pub webhook: Arc<Webhook>,
    /// Africa's Talking, when configured.
    pub africastalking: Option<Arc<AfricasTalking>>,
    /// Twilio, when configured.
    pub twilio: Option<Arc<Twilio>>,
    /// Networks USSD calls may come from (empty: any).
    pub ussd_allow: Vec<Network>,
    outbound: RwLock<Option<Arc<dyn Gateway>>>,
}

impl Gateways {
    /// The adapter queued SMS go out through (`None`: they wait in the outbox).
    pub fn outbound(&self) -> Option<Arc<dyn Gateway>> {
        self.outbound
            .read()
            .map(|outbound| outbound.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    /// Puts another adapter in charge of sending (the fake gateway of tests).
    pub(crate) fn replace_outbound(&self, gateway: Arc<dyn Gateway>) {
        let mut slot = self
            .outbound
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *slot = Some(gateway);
    }
}

fn invalid(setting: &'static str, message: impl Into<String>) -> StartError {
    StartError::Config(ConfigError::Invalid {
        setting,
        message: message.into(),
    })
}

/// Reads the gateway file (`None` when there is none).
pub fn read_file(path: &Path) -> Result<GatewayFile, StartError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Ok(GatewayFile::default());
        }
        Err(error) => {
            return Err(StartError::Io {
                context: format!("cannot read {}", path.display()),
                source: error,
            });
        }
    };
    toml::from_str(&text).map_err(|error| {
        StartError::Config(ConfigError::Parse {
            path: path.to_owned(),
            message: error.to_string(),
        })
    })
}

/// A secret file's first line: the file must exist and be readable by its owner only.
pub fn read_secret_file(
    data_dir: &Path,
    path: &Path,
    setting: &'static str,
) -> Result<zeroize::Zeroizing<String>, StartError> {
    let path = data_dir.join(path);
    let metadata = std::fs::metadata(&path).map_err(|error| {
        invalid(
            setting,
            format!(
                "cannot read {}: {error} (write the secret there, mode 0600)",
                path.display()
            ),
        )
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if metadata.permissions().mode() & 0o077 != 0 {
            return Err(invalid(
                setting,
                format!("{} may be read by others; chmod 600 it", path.display()),
            ));
        }
    }
    if metadata.len() > SECRET_FILE_BYTES_MAX {
        return Err(invalid(
            setting,
            format!("{} is larger than a secret", path.display()),
        ));
    }
    let bytes =
        zeroize::Zeroizing::new(std::fs::read(&path).map_err(|error| {
            invalid(setting, format!("cannot read {}: {error}", path.display()))
        })?);
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| invalid(setting, format!("{} is not text", path.display())))?;
    let line = text.lines().next().unwrap_or("").trim();
    if line.is_empty() {
        return Err(invalid(setting, format!("{} is empty", path.display())));
    }
    Ok(zeroize::Zeroizing::new(line.to_owned()))
}

fn url(text: &str, setting: &'static str) -> Result<reqwest::Url, StartError> {
    let mut url = reqwest::Url::parse(text)
        .map_err(|error| invalid(setting, format!("{text:?} is not a URL: {error}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(setting, format!("{text:?} is not an http(s) URL")));
    }
    // A base URL ends in `/`, so that joining keeps its path.
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

/// Everything [`build`] needs.
pub struct Inputs<'a> {
    /// The data directory (relative secret paths are in it).
    pub data_dir: &'a Path,
    /// `--sms-gateway` / `OFFPAY_SMS_GATEWAY`.
    pub selected: Option<&'a str>,
    /// The gateway file.
    pub file: &'a GatewayFile,
    /// The gateway token.
    pub gateway_token: &'a str,
    /// Kannel's settings with its credentials read.
    pub kannel: Option<KannelConfig>,
    /// The webhook secret (read or created by the caller when the webhook is configured).
    pub webhook_secret: Option<zeroize::Zeroizing<Vec<u8>>>,
}

impl std::fmt::Debug for Inputs<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inputs")
            .field("data_dir", &self.data_dir)
            .field("selected", &self.selected)
            .finish_non_exhaustive()
    }
}

/// The adapter names the configuration selects (`None`: no sending).
pub fn selected_name(
    selected: Option<&str>,
    file: &GatewayFile,
) -> Result<Option<&'static str>, StartError> {
    let name = selected
        .map(str::to_owned)
        .or_else(|| file.gateway.clone())
        .filter(|name| !name.trim().is_empty());
    match name {
        None if file.kannel.is_some() => Ok(Some("kannel")),
        None => Ok(None),
        Some(name) => GATEWAY_NAMES
            .iter()
            .find(|known| **known == name.trim())
            .copied()
            .map(Some)
            .ok_or_else(|| {
                invalid(
                    "sms gateway",
                    format!(
                        "{name:?} is not an SMS gateway; use one of {}",
                        GATEWAY_NAMES.join(", ")
                    ),
                )
            }),
    }
}

/// Builds the adapters and picks the one that sends.
pub fn build(inputs: Inputs<'_>) -> Result<Gateways, StartError> {
    let selected = selected_name(inputs.selected, inputs.file)?;
    let needs = |table: &str, what: &str| {
        invalid(
            "sms gateway",
            format!(
                "--sms-gateway {table} needs a [{table}] table in DATA_DIR/sms.toml with {what} (see docs/guide/sms-gateways.md)"
            ),
        )
    };
    let kannel_configured = inputs.kannel.is_some();
    let kannel = Arc::new(Kannel::new(inputs.gateway_token, inputs.kannel));
    let webhook_file = inputs.file.webhook.clone();
    let send_url = webhook_file
        .as_ref()
        .and_then(|file| file.send_url.as_deref())
        .map(|text| {
            reqwest::Url::parse(text).map_err(|error| {
                invalid(
                    "webhook.send_url",
                    format!("{text:?} is not a URL: {error}"),
                )
            })
        })
        .transpose()?;
    let webhook = Arc::new(Webhook::new(
        inputs.gateway_token,
        inputs.webhook_secret,
        webhook_file.as_ref().is_none_or(|file| file.allow_bearer),
        send_url.clone(),
    ));
    let africastalking = match &inputs.file.africastalking {
        None => None,
        Some(file) => {
            let api_key = read_secret_file(
                inputs.data_dir,
                &file.api_key_file,
                "africastalking.api_key_file",
            )?;
            let base_url = match file.base_url.as_deref() {
                None => url(africastalking::LIVE_BASE_URL, "africastalking.base_url")?,
                Some("sandbox") => {
                    url(africastalking::SANDBOX_BASE_URL, "africastalking.base_url")?
                }
                Some(text) => url(text, "africastalking.base_url")?,
            };
            let allow = allow_list(&file.allow_ips, "africastalking.allow_ips")?;
            if file.username.trim().is_empty() {
                return Err(invalid(
                    "africastalking.username",
                    "the username is required",
                ));
            }
            Some(Arc::new(AfricasTalking::new(
                inputs.gateway_token,
                AfricasTalkingSettings {
                    base_url,
                    username: file.username.trim().to_owned(),
                    api_key,
                    sender: file.sender.clone(),
                    allow,
                },
            )))
        }
    };
    let twilio = match &inputs.file.twilio {
        None => None,
        Some(file) => {
            let auth_token = read_secret_file(
                inputs.data_dir,
                &file.auth_token_file,
                "twilio.auth_token_file",
            )?;
            let sender = match (&file.from, &file.messaging_service_sid) {
                (Some(from), None) => Sender::From(from.clone()),
                (None, Some(sid)) => Sender::MessagingService(sid.clone()),
                _ => {
                    return Err(invalid(
                        "twilio.from",
                        "give either from (a Twilio number) or messaging_service_sid",
                    ));
                }
            };
            let public = url(&file.public_url, "twilio.public_url")?;
            if public.query().is_some() {
                return Err(invalid(
                    "twilio.public_url",
                    "the public URL takes no query",
                ));
            }
            let reply_twiml = match file.reply.as_deref() {
                None | Some("twiml") => true,
                Some("api") => false,
                Some(other) => {
                    return Err(invalid(
                        "twilio.reply",
                        format!("{other:?}: use twiml or api"),
                    ));
                }
            };
            if !file.account_sid.starts_with("AC") {
                return Err(invalid(
                    "twilio.account_sid",
                    "an account SID starts with AC",
                ));
            }
            Some(Arc::new(Twilio::new(TwilioSettings {
                base_url: url(
                    file.base_url.as_deref().unwrap_or(twilio::LIVE_BASE_URL),
                    "twilio.base_url",
                )?,
                account_sid: file.account_sid.clone(),
                auth_token,
                sender,
                public_url: public.as_str().trim_end_matches('/').to_owned(),
                reply_twiml,
            })))
        }
    };
    let outbound: Option<Arc<dyn Gateway>> = match selected {
        None => None,
        Some("kannel") if kannel_configured => Some(kannel.clone()),
        Some("kannel") => return Err(needs("kannel", "sendsms_url and credentials_file")),
        Some("africastalking") => Some(
            africastalking
                .clone()
                .ok_or_else(|| needs("africastalking", "username and api_key_file"))?,
        ),
        Some("twilio") => Some(twilio.clone().ok_or_else(|| {
            needs(
                "twilio",
                "account_sid, auth_token_file, from (or messaging_service_sid) and public_url",
            )
        })?),
        Some("webhook") if send_url.is_some() => Some(webhook.clone()),
        Some("webhook") => return Err(needs("webhook", "send_url")),
        Some(other) => {
            return Err(invalid(
                "sms gateway",
                format!("{other:?} is not an SMS gateway"),
            ));
        }
    };
    let ussd_allow = allow_list(
        inputs
            .file
            .ussd
            .as_ref()
            .map_or(&[][..], |file| &file.allow_ips[..]),
        "ussd.allow_ips",
    )?;
    Ok(Gateways {
        kannel,
        webhook,
        africastalking,
        twilio,
        ussd_allow,
        outbound: RwLock::new(outbound),
    })
}

/// An allow-list's networks, at most [`africastalking::ALLOWED_NETWORKS_MAX`], each read by
/// [`Network::parse`]; `setting` names the list in the error.
fn allow_list(texts: &[String], setting: &'static str) -> Result<Vec<Network>, StartError> {
    if texts.len() > africastalking::ALLOWED_NETWORKS_MAX {
        return Err(invalid(
            setting,
            format!("at most {} entries", africastalking::ALLOWED_NETWORKS_MAX),
        ));
    }
    texts
        .iter()
        .map(|text| Network::parse(text))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|message| invalid(setting, message))
}

/// The HTTP client for the aggregators' APIs: rustls, the system's roots, and the CA file when
/// one is configured.
pub fn http_client(
    data_dir: &Path,
    file: &GatewayFile,
    timeout: std::time::Duration,
) -> Result<reqwest::Client, StartError> {
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none());
    if let Some(ca_file) = &file.ca_file {
        let path = data_dir.join(ca_file);
        let pem = std::fs::read(&path).map_err(|error| {
            invalid(
                "ca_file",
                format!("cannot read {}: {error}", path.display()),
            )
        })?;
        let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|error| {
            invalid("ca_file", format!("{} is not PEM: {error}", path.display()))
        })?;
        if certificates.is_empty() {
            return Err(invalid(
                "ca_file",
                format!("{} holds no certificate", path.display()),
            ));
        }
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
    }
    builder.build().map_err(|error| StartError::Io {
        context: "cannot build the SMS gateway client".into(),
        source: std::io::Error::other(error.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> GatewayFile {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn the_selection_is_explicit_or_kannel_when_configured() {
        assert_eq!(selected_name(None, &GatewayFile::default()).unwrap(), None);
        let kannel = file("[kannel]\nsendsms_url = \"http://k/\"\ncredentials_file = \"c\"\n");
        assert_eq!(selected_name(None, &kannel).unwrap(), Some("kannel"));
        assert_eq!(
            selected_name(Some("twilio"), &kannel).unwrap(),
            Some("twilio")
        );
        let error = selected_name(Some("infobip"), &kannel).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("kannel, africastalking, twilio, webhook"),
            "{error}"
        );
    }

    #[test]
    fn a_ca_file_must_hold_certificates() {
        let directory = tempfile::tempdir().unwrap();
        let with = |name: &str| GatewayFile {
            ca_file: Some(PathBuf::from(name)),
            ..GatewayFile::default()
        };
        let timeout = std::time::Duration::from_secs(1);
        let error = http_client(directory.path(), &with("missing.pem"), timeout)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("ca_file") && error.contains("missing.pem"),
            "{error}"
        );
        std::fs::write(directory.path().join("empty.pem"), "not a certificate\n").unwrap();
        let error = http_client(directory.path(), &with("empty.pem"), timeout)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("no certificate") || error.contains("not PEM"),
            "{error}"
        );
        assert!(http_client(directory.path(), &GatewayFile::default(), timeout).is_ok());
    }

    #[test]
    fn an_incomplete_configuration_says_what_is_missing() {
        let directory = tempfile::tempdir().unwrap();
        let build_with = |selected: &str, file: &GatewayFile| {
            build(Inputs {
                data_dir: directory.path(),
                selected: Some(selected),
                file,
                gateway_token: "token",
                kannel: None,
                webhook_secret: None,
            })
        };
        let empty = GatewayFile::default();
        let error = build_with("twilio", &empty).unwrap_err().to_string();
        assert!(
            error.contains("[twilio]") && error.contains("public_url"),
            "{error}"
        );
        let error = build_with("kannel", &empty).unwrap_err().to_string();
        assert!(error.contains("[kannel]"), "{error}");
        let at = file("[africastalking]\nusername = \"sandbox\"\napi_key_file = \"at.key\"\n");
        let error = build_with("africastalking", &at).unwrap_err().to_string();
        assert!(error.contains("at.key"), "{error}");
        std::fs::write(directory.path().join("at.key"), "key\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(
                directory.path().join("at.key"),
                std::fs::Permissions::from_mode(0o644),
            )
            .unwrap();
            let error = build_with("africastalking", &at).unwrap_err().to_string();
            assert!(error.contains("chmod 600"), "{error}");
            std::fs::set_permissions(
                directory.path().join("at.key"),
                std::fs::Permissions::from_mode(0o600),
            )
            .unwrap();
        }
        let built = build_with("africastalking", &at).unwrap();
        assert_eq!(built.outbound().unwrap().name(), "africastalking");
        // The key is nowhere in Debug.
        assert!(!format!("{built:?}").contains("key\n"));
        assert!(!format!("{built:?}").contains("\"key\""));
    }
}
