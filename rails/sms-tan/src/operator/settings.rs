//! The operator's settings for this rail: fees per level and currency, default dialback
//! thresholds, exchange rates, which currencies are hard, the time zone, and what is printed on
//! envelopes. Stored as one record ([`SETTINGS_KEY`]);
//! the operator API reads and writes them as a [`SettingsForm`] (amounts as decimal text).
//!
//! Format versions of the stored record: 1 (the first release) kept the form as is, amounts as
//! decimal text; 2 keeps amounts as `{"currency", "minor"}`. Version 1 records are still read.

use offpay_ledger::{Amount, Currency};
use offpay_operator::record::{check_version, corrupt};
use offpay_operator::{RecordError, StoredRecord};
use serde::{Deserialize, Serialize};

use crate::account::{CurrencyClass, ExchangeRate, FeeSchedule};
use crate::engine::EngineConfig;
use crate::keys::MasterKey;
use crate::operator::OperatorError;
use crate::operator::records::{NAMESPACE, SETTINGS_KEY};

/// The EUIN prefix used unless the operator sets another.
pub const DEFAULT_EUIN_PREFIX: u16 = 263;
/// The furthest a time zone is from UTC, in minutes (UTC+14, UTC-12 and everything between).
pub const UTC_OFFSET_MINUTES_MAX: i32 = 14 * 60;
/// Format version of the stored settings this release writes.
pub const SETTINGS_FORMAT_VERSION: u32 = 2;
/// The settings form's version (its shape has not changed since the first release).
pub const FORM_VERSION: u32 = 1;
/// Most fee schedules, default thresholds, rates or hard currencies the settings hold.
pub const SETTINGS_ENTRIES_MAX: usize = 64;

/// The operator's settings, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Fees per level, one schedule per currency.
    pub fees: Vec<FeeSchedule>,
    /// Default dialback threshold per currency.
    pub dialback_defaults: Vec<Amount>,
    /// Per currency, the largest payment a row with a printed (imported, seed-format) recipe may
    /// authorise ([`EngineConfig::printed_recipe_max`]; not listed: below 1,000 major units).
    pub printed_recipe_max: Vec<Amount>,
    /// Exchange rates.
    pub rates: Vec<ExchangeRate>,
    /// Currencies the operator tags hard (may be converted out of).
    pub hard_currencies: Vec<Currency>,
    /// The operator's time zone, minutes east of UTC.
    pub utc_offset_minutes: i32,
    /// EUIN prefix for printed envelopes.
    pub euin_prefix: u16,
    /// Printed on envelopes.
    pub operator_name: String,
    /// Printed on envelopes: where payers send SMS.
    pub sms_number: String,
}

impl Default for Settings {
    /// No fees, no default threshold, no rates, UTC.
    fn default() -> Settings {
        Settings {
            fees: Vec::new(),
            dialback_defaults: Vec::new(),
            printed_recipe_max: Vec::new(),
            rates: Vec::new(),
            hard_currencies: Vec::new(),
            utc_offset_minutes: 0,
            euin_prefix: DEFAULT_EUIN_PREFIX,
            operator_name: "offpay".to_owned(),
            sms_number: "your operator's SMS number".to_owned(),
        }
    }
}

impl Settings {
    /// The engine configuration these settings describe.
    pub fn engine_config(&self) -> EngineConfig {
        EngineConfig {
            fees: self.fees.clone(),
            dialback_defaults: self.dialback_defaults.clone(),
            printed_recipe_max: self.printed_recipe_max.clone(),
            rates: self.rates.clone(),
            utc_offset_minutes: self.utc_offset_minutes,
            // The server's `--default-language` ([`crate::operator::Operator::with_default_language`]).
            default_language: offpay_text::Language::default(),
        }
    }

    /// Whether payments may convert out of `currency`.
    pub fn class_of(&self, currency: Currency) -> CurrencyClass {
        if self.hard_currencies.contains(&currency) {
            CurrencyClass::Hard
        } else {
            CurrencyClass::Soft
        }
    }

    /// The form the operator API shows.
    pub fn form(&self) -> SettingsForm {
        let text = |amount: &Amount| amount.decimal().to_string();
        SettingsForm {
            version: FORM_VERSION,
            fees: self
                .fees
                .iter()
                .map(|schedule| FeeSetting {
                    currency: schedule.low.currency().code().to_owned(),
                    low: text(&schedule.low),
                    middle: text(&schedule.middle),
                    high: text(&schedule.high),
                })
                .collect(),
            dialback_defaults: self
                .dialback_defaults
                .iter()
                .map(|amount| AmountSetting {
                    currency: amount.currency().code().to_owned(),
                    amount: text(amount),
                })
                .collect(),
            printed_recipe_max: self
                .printed_recipe_max
                .iter()
                .map(|amount| AmountSetting {
                    currency: amount.currency().code().to_owned(),
                    amount: text(amount),
                })
                .collect(),
            rates: self.rates.iter().map(RateSetting::of).collect(),
            hard_currencies: self
                .hard_currencies
                .iter()
                .map(|currency| currency.code().to_owned())
                .collect(),
            utc_offset_minutes: self.utc_offset_minutes,
            euin_prefix: self.euin_prefix,
            operator_name: self.operator_name.clone(),
            sms_number: self.sms_number.clone(),
        }
    }

    fn stored(&self) -> SettingsV2 {
        SettingsV2 {
            version: SETTINGS_FORMAT_VERSION,
            fees: self
                .fees
                .iter()
                .map(|schedule| FeesV2 {
                    low: schedule.low,
                    middle: schedule.middle,
                    high: schedule.high,
                })
                .collect(),
            dialback_defaults: self.dialback_defaults.clone(),
            printed_recipe_max: self.printed_recipe_max.clone(),
            rates: self.rates.iter().map(RateSetting::of).collect(),
            hard_currencies: self.hard_currencies.clone(),
            utc_offset_minutes: self.utc_offset_minutes,
            euin_prefix: self.euin_prefix,
            operator_name: self.operator_name.clone(),
            sms_number: self.sms_number.clone(),
            mac: String::new(),
        }
    }
}

/// The settings as the operator API reads and writes them (and as format version 1 stored them):
/// amounts as decimal text in their currency.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SettingsForm {
    /// Form version ([`FORM_VERSION`]).
    pub version: u32,
    /// Fees per level, one entry per currency.
    pub fees: Vec<FeeSetting>,
    /// Default dialback threshold per currency.
    pub dialback_defaults: Vec<AmountSetting>,
    /// Per currency, the largest payment a row with a printed (imported, seed-format) recipe
    /// may authorise (absent: below 1,000 major units).
    #[serde(default)]
    pub printed_recipe_max: Vec<AmountSetting>,
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

impl RateSetting {
    fn of(rate: &ExchangeRate) -> RateSetting {
        RateSetting {
            from: rate.from.code().to_owned(),
            to: rate.to.code().to_owned(),
            numerator: rate.numerator,
            denominator: rate.denominator,
        }
    }

    fn rate(&self) -> Result<ExchangeRate, OperatorError> {
        let rate = ExchangeRate {
            from: currency(&self.from)?,
            to: currency(&self.to)?,
            numerator: self.numerator,
            denominator: self.denominator,
        };
        if rate.numerator == 0 || rate.denominator == 0 || rate.from == rate.to {
            return Err(OperatorError::invalid(
                "invalid_settings",
                format!(
                    "rate {} to {}: numerator and denominator above zero, two currencies",
                    self.from, self.to
                ),
            ));
        }
        Ok(rate)
    }
}

fn currency(code: &str) -> Result<Currency, OperatorError> {
    Currency::from_code(code).map_err(|error| {
        OperatorError::invalid("invalid_currency", format!("currency {code:?}: {error}"))
    })
}

fn amount(text: &str, code: &str) -> Result<Amount, OperatorError> {
    Amount::parse(text, currency(code)?).map_err(|error| {
        OperatorError::invalid("invalid_amount", format!("amount {text:?}: {error}"))
    })
}

fn bounded<T>(what: &str, entries: &[T]) -> Result<(), OperatorError> {
    if entries.len() > SETTINGS_ENTRIES_MAX {
        return Err(OperatorError::invalid(
            "invalid_settings",
            format!("at most {SETTINGS_ENTRIES_MAX} {what}"),
        ));
    }
    Ok(())
}

impl SettingsForm {
    /// The settings this form describes, validated: currencies, amounts, rates, time zone.
    pub fn settings(&self) -> Result<Settings, OperatorError> {
        bounded("fee schedules", &self.fees)?;
        bounded("dialback defaults", &self.dialback_defaults)?;
        bounded("printed-recipe caps", &self.printed_recipe_max)?;
        bounded("rates", &self.rates)?;
        bounded("hard currencies", &self.hard_currencies)?;
        let fees = self
            .fees
            .iter()
            .map(|fee| {
                Ok(FeeSchedule {
                    low: amount(&fee.low, &fee.currency)?,
                    middle: amount(&fee.middle, &fee.currency)?,
                    high: amount(&fee.high, &fee.currency)?,
                })
            })
            .collect::<Result<_, OperatorError>>()?;
        let dialback_defaults = self
            .dialback_defaults
            .iter()
            .map(|default| amount(&default.amount, &default.currency))
            .collect::<Result<_, _>>()?;
        let printed_recipe_max = self
            .printed_recipe_max
            .iter()
            .map(|cap| amount(&cap.amount, &cap.currency))
            .collect::<Result<_, _>>()?;
        let rates = self
            .rates
            .iter()
            .map(RateSetting::rate)
            .collect::<Result<_, _>>()?;
        let hard_currencies = self
            .hard_currencies
            .iter()
            .map(|code| currency(code))
            .collect::<Result<_, _>>()?;
        if self.utc_offset_minutes.abs() > UTC_OFFSET_MINUTES_MAX {
            return Err(OperatorError::invalid(
                "invalid_offset",
                format!(
                    "utc_offset_minutes must be within -{UTC_OFFSET_MINUTES_MAX}..={UTC_OFFSET_MINUTES_MAX}"
                ),
            ));
        }
        Ok(Settings {
            fees,
            dialback_defaults,
            printed_recipe_max,
            rates,
            hard_currencies,
            utc_offset_minutes: self.utc_offset_minutes,
            euin_prefix: self.euin_prefix,
            operator_name: self.operator_name.clone(),
            sms_number: self.sms_number.clone(),
        })
    }
}

#[derive(Serialize, Deserialize)]
struct FeesV2 {
    low: Amount,
    middle: Amount,
    high: Amount,
}

#[derive(Serialize, Deserialize)]
struct SettingsV2 {
    version: u32,
    fees: Vec<FeesV2>,
    dialback_defaults: Vec<Amount>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    printed_recipe_max: Vec<Amount>,
    rates: Vec<RateSetting>,
    hard_currencies: Vec<Currency>,
    utc_offset_minutes: i32,
    euin_prefix: u16,
    operator_name: String,
    sms_number: String,
    /// MAC of the rest ([`SealedSettings`]; absent in records written before it).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    mac: String,
}

#[derive(Deserialize)]
struct VersionOnly {
    version: u32,
}

#[derive(Deserialize)]
struct MacOnly {
    #[serde(default)]
    mac: String,
}

/// The operator's settings as stored, with their MAC under a key derived from the master key:
/// fees, limits, dialback defaults or the printed-recipe ceiling a database administrator changed
/// (a higher `printed_recipe_max` lets a seed-format row authorise more than its checksum can
/// bound) do not match, and the rail runs on none of them. The server reads the settings through
/// this type; [`Settings`] alone still reads and writes the record without its MAC (tests, tools).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedSettings {
    /// The settings.
    pub settings: Settings,
    /// Their MAC ([`SealedSettings::seal`]); all zeros: none (written before settings had one).
    pub mac: [u8; 32],
}

impl SealedSettings {
    /// Record kind in its MAC.
    pub const MAC_KIND: &'static str = "operator-settings";

    fn mac_content(settings: &Settings) -> Vec<u8> {
        // Plain numbers, codes and names: serialising cannot fail.
        serde_json::to_vec(&settings.stored()).unwrap_or_default()
    }

    /// `settings` with the MAC the operator's code writes them with.
    pub fn seal(settings: Settings, master: &MasterKey) -> SealedSettings {
        let mac = master.record_mac(Self::MAC_KIND, SETTINGS_KEY, &Self::mac_content(&settings));
        SealedSettings { settings, mac }
    }

    /// Whether the settings are the ones the operator's code wrote.
    pub fn authentic(&self, master: &MasterKey) -> bool {
        master.record_mac_matches(
            Self::MAC_KIND,
            SETTINGS_KEY,
            &Self::mac_content(&self.settings),
            &self.mac,
        )
    }
}

impl StoredRecord for SealedSettings {
    const NAMESPACE: &'static str = NAMESPACE;
    const FORMAT_VERSION: u32 = SETTINGS_FORMAT_VERSION;

    fn encode(&self, key: &str) -> Result<Vec<u8>, RecordError> {
        let mut stored = self.settings.stored();
        if self.mac != [0; 32] {
            stored.mac = hex::encode(self.mac);
        }
        serde_json::to_vec(&stored).map_err(|error| RecordError::Encode {
            namespace: NAMESPACE,
            key: key.to_owned(),
            message: error.to_string(),
        })
    }

    fn decode(key: &str, bytes: &[u8]) -> Result<SealedSettings, RecordError> {
        let settings = Settings::decode(key, bytes)?;
        // A missing or malformed MAC reads as one that does not match.
        let mac = serde_json::from_slice::<MacOnly>(bytes)
            .ok()
            .and_then(|found| hex::decode(found.mac).ok())
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .unwrap_or([0; 32]);
        Ok(SealedSettings { settings, mac })
    }
}

impl StoredRecord for Settings {
    const NAMESPACE: &'static str = NAMESPACE;
    const FORMAT_VERSION: u32 = SETTINGS_FORMAT_VERSION;

    fn encode(&self, key: &str) -> Result<Vec<u8>, RecordError> {
        serde_json::to_vec(&self.stored()).map_err(|error| RecordError::Encode {
            namespace: NAMESPACE,
            key: key.to_owned(),
            message: error.to_string(),
        })
    }

    fn decode(key: &str, bytes: &[u8]) -> Result<Settings, RecordError> {
        let version = serde_json::from_slice::<VersionOnly>(bytes)
            .map_err(|error| corrupt::<Self>(key, error))?
            .version;
        check_version::<Self>(key, version)?;
        let settings = if version <= 1 {
            let form: SettingsForm =
                serde_json::from_slice(bytes).map_err(|error| corrupt::<Self>(key, error))?;
            form.settings()
                .map_err(|error| corrupt::<Self>(key, error))?
        } else {
            let stored: SettingsV2 =
                serde_json::from_slice(bytes).map_err(|error| corrupt::<Self>(key, error))?;
            let rates = stored
                .rates
                .iter()
                .map(RateSetting::rate)
                .collect::<Result<_, _>>()
                .map_err(|error| corrupt::<Self>(key, error))?;
            let fees = stored
                .fees
                .into_iter()
                .map(|fees| FeeSchedule {
                    low: fees.low,
                    middle: fees.middle,
                    high: fees.high,
                })
                .collect();
            Settings {
                fees,
                dialback_defaults: stored.dialback_defaults,
                printed_recipe_max: stored.printed_recipe_max,
                rates,
                hard_currencies: stored.hard_currencies,
                utc_offset_minutes: stored.utc_offset_minutes,
                euin_prefix: stored.euin_prefix,
                operator_name: stored.operator_name,
                sms_number: stored.sms_number,
            }
        };
        let consistent = settings
            .fees
            .iter()
            .all(|schedule| schedule.currency().is_some())
            && settings.utc_offset_minutes.abs() <= UTC_OFFSET_MINUTES_MAX;
        if !consistent {
            return Err(corrupt::<Self>(
                key,
                "fees in mixed currencies or time zone out of range",
            ));
        }
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form() -> SettingsForm {
        serde_json::from_str(
            r#"{"version":1,"fees":[{"currency":"KES","low":"10","middle":"15","high":"25"}],
                "dialback_defaults":[{"currency":"KES","amount":"500000"}],
                "rates":[{"from":"USD","to":"KES","numerator":129,"denominator":1}],
                "hard_currencies":["USD"],"utc_offset_minutes":180,"euin_prefix":263,
                "operator_name":"offpay","sms_number":"+254700000000"}"#,
        )
        .unwrap()
    }

    #[test]
    fn settings_stored_by_the_first_release_are_read_and_written_in_version_2() {
        let key = "cfg:settings";
        let v1 = serde_json::to_vec(&form()).unwrap();
        let settings = Settings::decode(key, &v1).unwrap();
        assert_eq!(
            settings.fees[0].high,
            Amount::parse("25", Currency::KES).unwrap()
        );
        assert_eq!(settings.class_of(Currency::USD), CurrencyClass::Hard);
        assert_eq!(settings.class_of(Currency::KES), CurrencyClass::Soft);
        let v2 = settings.encode(key).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&v2).unwrap();
        assert_eq!(json["version"], 2);
        assert_eq!(json["fees"][0]["high"]["minor"], 2500);
        assert_eq!(Settings::decode(key, &v2).unwrap(), settings);
        assert_eq!(settings.form().fees[0].high, "25.00");
    }

    #[test]
    fn the_form_is_validated() {
        let mut bad = form();
        bad.utc_offset_minutes = 15 * 60;
        assert!(matches!(
            bad.settings(),
            Err(OperatorError::Invalid {
                code: "invalid_offset",
                ..
            })
        ));
        let mut bad = form();
        bad.fees[0].low = "1.234".into();
        assert!(matches!(
            bad.settings(),
            Err(OperatorError::Invalid {
                code: "invalid_amount",
                ..
            })
        ));
        let mut bad = form();
        bad.hard_currencies.push("XYZ1".into());
        assert!(matches!(
            bad.settings(),
            Err(OperatorError::Invalid {
                code: "invalid_currency",
                ..
            })
        ));
        let mut bad = form();
        bad.rates[0].denominator = 0;
        assert!(bad.settings().is_err());
    }
}
