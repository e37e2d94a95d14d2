//! The records the Provisioning Agent and the CSC keep in the ledger, all in the rail's
//! namespace ([`NAMESPACE`]), each a typed [`StoredRecord`] with a format version. A stored
//! value that does not decode is an error naming its key; records written by earlier releases
//! (format 0: before records carried a version; strategy format 1 and charge formats 1 and 2,
//! which held amounts as decimal text) still read.
//!
//! | key | record |
//! | --- | --- |
//! | `strategy` | [`StrategyRecord`] |
//! | `payer:<name>` | [`PayerRecord`] |
//! | `payerkey:<fingerprint>` | [`PayerKeyRecord`] |
//! | `merchant:<id>` | [`MerchantRecord`] |
//! | `lastdeposit:<merchant>` | [`LastDepositRecord`] |
//! | `pmday:<payer>:<merchant>:<date>`, `mday:<merchant>:<date>`, `bounces:<payer>` | [`CountRecord`] |
//! | `recent:<payer>` | [`RecentRecord`] |
//! | `charge:<payer>:<timestamp>:<merchant>:<nonce>` | [`Charge`] |
//! | `online:<payer>` | [`OnlineRecord`] |
//! | `deposit:<merchant>:<newest-first time>:<nonce>` | [`super::history::DepositRecord`] |

use offpay_keynote::{Encoding, Principal};
use offpay_ledger::{AccountId, Amount, Currency, Operation, RecordWrite};
use offpay_operator::record::{check_version, corrupt, decode_json, encode_json};
use offpay_operator::{RecordError, StoredRecord};
use serde::{Deserialize, Serialize};

use crate::csc::{
    self, CLEARING_RECORD_VERSION, ChargeRecord, CountRecord, Location, RecentPurchase,
    RecentRecord, STORED_CHARGE_VERSION, StoredCharge,
};
use crate::strategy::{STRATEGY_VERSION, Strategy, Tier};

/// The ledger record namespace of this rail.
pub const NAMESPACE: &str = "microcheck";
/// Key of the PA's risk strategy.
pub const STRATEGY_KEY: &str = "strategy";
/// Format version of payer and merchant records.
pub const RECORD_VERSION: u32 = 1;
/// Format version of [`StrategyRecord`]: 2 holds amounts as [`Amount`]; 1 was the operator
/// API's [`Strategy`] document, amounts as decimal text.
pub const STRATEGY_RECORD_VERSION: u32 = 2;
/// Format version of [`LastDepositRecord`] (0: written before records carried a version).
pub const INDEX_RECORD_VERSION: u32 = 1;
/// Format version of [`PayerKeyRecord`]: 2 may carry `retired_at`; 1 and 0 (before records
/// carried a version) never do.
pub const PAYER_KEY_RECORD_VERSION: u32 = 2;
/// Format version of [`OnlineRecord`].
pub const ONLINE_RECORD_VERSION: u32 = 1;

/// Key of a payer's online-credential record (day count and holds).
pub fn online_key(name: &str) -> String {
    format!("online:{name}")
}

/// Key of a payer's record.
pub fn payer_key(name: &str) -> String {
    format!("payer:{name}")
}

/// Key of the record naming the payer whose key has `fingerprint`.
pub fn payer_key_key(fingerprint: &str) -> String {
    format!("payerkey:{fingerprint}")
}

/// Key of a merchant's record.
pub fn merchant_key(id: &str) -> String {
    format!("merchant:{id}")
}

/// Key of a merchant's last deposit time.
pub fn last_deposit_key(merchant: &str) -> String {
    format!("lastdeposit:{merchant}")
}

/// Key prefix of a payer's charges (its statement is this range).
pub fn charges_prefix(payer: &str) -> String {
    format!("charge:{payer}:")
}

/// A payer's ledger account (`mc:payer:<name>`).
pub fn payer_account(name: &str) -> Result<AccountId, offpay_ledger::IdError> {
    AccountId::new(format!("mc:payer:{name}"))
}

/// A merchant's ledger account (`mc:merchant:<id>`).
pub fn merchant_account(id: &str) -> Result<AccountId, offpay_ledger::IdError> {
    AccountId::new(format!("mc:merchant:{id}"))
}

/// A public key as records hold it: its KeyNote identifier, base64.
pub fn key_identifier(key: &Principal) -> String {
    String::from_utf8_lossy(&key.to_identifier(Encoding::Base64)).into_owned()
}

/// The write that stores `record` under `key` whatever is there (the operator's own settings,
/// idempotent indexes); decisions on state they read use [`offpay_operator::Loaded::write`].
pub fn put<R: StoredRecord>(key: &str, record: &R) -> Result<Operation, RecordError> {
    Ok(Operation::PutRecord(RecordWrite {
        namespace: R::NAMESPACE.to_owned(),
        key: key.to_owned(),
        value: Some(record.encode(key)?),
        expected_version: None,
    }))
}

/// The write that stores `record` under `key` only if no record is there.
pub fn create<R: StoredRecord>(key: &str, record: &R) -> Result<Operation, RecordError> {
    Ok(Operation::PutRecord(RecordWrite {
        namespace: R::NAMESPACE.to_owned(),
        key: key.to_owned(),
        value: Some(record.encode(key)?),
        expected_version: Some(0),
    }))
}

/// The write that removes the record under `key` in this rail's namespace, whatever is there.
pub fn remove(key: &str) -> Operation {
    Operation::PutRecord(RecordWrite {
        namespace: NAMESPACE.to_owned(),
        key: key.to_owned(),
        value: None,
        expected_version: None,
    })
}

fn parse_principal<R: StoredRecord>(key: &str, text: &str) -> Result<Principal, RecordError> {
    Principal::parse(text.as_bytes()).map_err(|error| corrupt::<R>(key, error))
}

/// A payer registered by the operator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayerRecord {
    /// [`RECORD_VERSION`].
    pub v: u32,
    /// Name (its account is [`payer_account`]).
    pub name: String,
    /// The device's public key, [`key_identifier`].
    pub key: String,
    /// Whether the payer gets adulthood credentials.
    pub adult: bool,
    /// Product classes the payer may buy (`None`: all).
    pub classes: Option<Vec<String>>,
    /// Microchecks the payer disputed.
    pub disputes: u32,
    /// Set while customer care holds the payer blocked (a lost or stolen device, a fraud case):
    /// the PA then issues it nothing online ([`super::pa::check_not_blocked`]). Absent in
    /// records written before blocks existed, which read as not blocked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked: Option<PayerBlock>,
}

/// Why and since when a payer is blocked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PayerBlock {
    /// When the block was set, Unix seconds (the operator's clock).
    pub at: u64,
    /// Why, as the operator wrote it (at most [`BLOCK_REASON_BYTES_MAX`] bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Longest reason recorded with a payer's block, in bytes.
pub const BLOCK_REASON_BYTES_MAX: usize = 200;

impl PayerRecord {
    /// The device's public key (checked when the record was read).
    pub fn principal(&self) -> Result<Principal, RecordError> {
        parse_principal::<PayerRecord>(&payer_key(&self.name), &self.key)
    }
}

impl StoredRecord for PayerRecord {
    const NAMESPACE: &'static str = NAMESPACE;
    const FORMAT_VERSION: u32 = RECORD_VERSION;
    fn encode(&self, key: &str) -> Result<Vec<u8>, RecordError> {
        encode_json(self, key)
    }
    fn decode(key: &str, bytes: &[u8]) -> Result<Self, RecordError> {
        let record: PayerRecord = decode_json(key, bytes)?;
        check_version::<PayerRecord>(key, record.v)?;
        parse_principal::<PayerRecord>(key, &record.key)?;
        Ok(record)
    }
}

/// Which payer a key belongs to: how a deposited microcheck finds its payer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayerKeyRecord {
    /// [`PAYER_KEY_RECORD_VERSION`] (0: written before versions).
    #[serde(default)]
    pub v: u32,
    /// The payer's name.
    pub name: String,
    /// When the payer reported this key's device lost and registered another (Unix seconds):
    /// microchecks it signed still clear when deposited within
    /// [`crate::limits::LOST_KEY_DEPOSIT_WINDOW_SECONDS`] of this; it can no longer ask the PA
    /// for anything. Absent: the payer's current key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired_at: Option<u64>,
}

impl PayerKeyRecord {
    /// The record naming `name`.
    pub fn new(name: &str) -> PayerKeyRecord {
        PayerKeyRecord {
            v: PAYER_KEY_RECORD_VERSION,
            name: name.to_owned(),
            retired_at: None,
        }
    }

    /// The record of `name`'s key retired at `at` (Unix seconds).
    pub fn retired(name: &str, at: u64) -> PayerKeyRecord {
        PayerKeyRecord {
            retired_at: Some(at),
            ..PayerKeyRecord::new(name)
        }
    }
}

/// The amount of one online (transaction-specific) credential, held against the payer's balance
/// until the CSC has cleared its microcheck or [`crate::limits::TRANSACTION_HOLD_SECONDS`] after
/// the credential expired.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnlineHold {
    /// The offer's merchant.
    pub merchant: String,
    /// The offer's nonce.
    pub nonce: String,
    /// The offer's timestamp (`YYYYMMDDhhmmss`), part of the charge record's key.
    pub timestamp: String,
    /// The amount, minor units of the strategy's currency.
    pub amount_minor: u64,
    /// Unix seconds after which the hold lapses.
    pub until: u64,
}

/// A payer's online credentials (`online:<payer>`): how many were issued on `date` (the rate
/// limit) and the amounts still held against the balance.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnlineRecord {
    /// [`ONLINE_RECORD_VERSION`].
    pub v: u32,
    /// `YYYYMMDD` (UTC) of `issued`.
    pub date: String,
    /// Online credentials issued on `date`.
    pub issued: u32,
    /// Holds, at most [`crate::limits::TRANSACTION_HOLDS_MAX`].
    pub holds: Vec<OnlineHold>,
}

impl StoredRecord for OnlineRecord {
    const NAMESPACE: &'static str = NAMESPACE;
    const FORMAT_VERSION: u32 = ONLINE_RECORD_VERSION;
    fn encode(&self, key: &str) -> Result<Vec<u8>, RecordError> {
        encode_json(self, key)
    }
    fn decode(key: &str, bytes: &[u8]) -> Result<Self, RecordError> {
        let record: OnlineRecord = decode_json(key, bytes)?;
        check_version::<OnlineRecord>(key, record.v)?;
        if record.holds.len() > crate::limits::TRANSACTION_HOLDS_MAX {
            return Err(corrupt::<OnlineRecord>(key, "too many holds"));
        }
        Ok(record)
    }
}

impl StoredRecord for PayerKeyRecord {
    const NAMESPACE: &'static str = NAMESPACE;
    const FORMAT_VERSION: u32 = PAYER_KEY_RECORD_VERSION;
    fn encode(&self, key: &str) -> Result<Vec<u8>, RecordError> {
        encode_json(self, key)
    }
    fn decode(key: &str, bytes: &[u8]) -> Result<Self, RecordError> {
        let record: PayerKeyRecord = decode_json(key, bytes)?;
        check_version::<PayerKeyRecord>(key, record.v)?;
        Ok(record)
    }
}

/// A merchant (a vending machine) registered by the operator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MerchantRecord {
    /// [`RECORD_VERSION`].
    pub v: u32,
    /// Merchant id (its account is [`merchant_account`]).
    pub id: String,
    /// The machine's public key, [`key_identifier`].
    pub key: String,
    /// Application domain it sells in.
    pub app_domain: String,
    /// Where it is.
    pub location: Location,
}

impl MerchantRecord {
    /// The machine's public key (checked when the record was read).
    pub fn principal(&self) -> Result<Principal, RecordError> {
        parse_principal::<MerchantRecord>(&merchant_key(&self.id), &self.key)
    }
}

impl StoredRecord for MerchantRecord {
    const NAMESPACE: &'static str = NAMESPACE;
    const FORMAT_VERSION: u32 = RECORD_VERSION;
    fn encode(&self, key: &str) -> Result<Vec<u8>, RecordError> {
        encode_json(self, key)
    }
    fn decode(key: &str, bytes: &[u8]) -> Result<Self, RecordError> {
        let record: MerchantRecord = decode_json(key, bytes)?;
        check_version::<MerchantRecord>(key, record.v)?;
        parse_principal::<MerchantRecord>(key, &record.key)?;
        Ok(record)
    }
}

/// When a merchant's last deposit arrived (for the `backdated_after_expiry` rule).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastDepositRecord {
    /// [`INDEX_RECORD_VERSION`] (0: written before versions).
    #[serde(default)]
    pub v: u32,
    /// Unix seconds.
    pub at: u64,
}

impl LastDepositRecord {
    /// A deposit received at `at` (Unix seconds).
    pub fn new(at: u64) -> LastDepositRecord {
        LastDepositRecord {
            v: INDEX_RECORD_VERSION,
            at,
        }
    }
}

impl StoredRecord for LastDepositRecord {
    const NAMESPACE: &'static str = NAMESPACE;
    const FORMAT_VERSION: u32 = INDEX_RECORD_VERSION;
    fn encode(&self, key: &str) -> Result<Vec<u8>, RecordError> {
        encode_json(self, key)
    }
    fn decode(key: &str, bytes: &[u8]) -> Result<Self, RecordError> {
        let record: LastDepositRecord = decode_json(key, bytes)?;
        check_version::<LastDepositRecord>(key, record.v)?;
        Ok(record)
    }
}

impl StoredRecord for CountRecord {
    const NAMESPACE: &'static str = NAMESPACE;
    const FORMAT_VERSION: u32 = CLEARING_RECORD_VERSION;
    fn encode(&self, key: &str) -> Result<Vec<u8>, RecordError> {
        encode_json(self, key)
    }
    fn decode(key: &str, bytes: &[u8]) -> Result<Self, RecordError> {
        let record: CountRecord = decode_json(key, bytes)?;
        check_version::<CountRecord>(key, record.v)?;
        Ok(record)
    }
}

impl StoredRecord for RecentRecord {
    const NAMESPACE: &'static str = NAMESPACE;
    const FORMAT_VERSION: u32 = CLEARING_RECORD_VERSION;
    fn encode(&self, key: &str) -> Result<Vec<u8>, RecordError> {
        encode_json(self, key)
    }
    fn decode(key: &str, bytes: &[u8]) -> Result<Self, RecordError> {
        // Format 0 was the bare list.
        if bytes.trim_ascii_start().first() == Some(&b'[') {
            let purchases: Vec<RecentPurchase> = serde_json::from_slice(bytes)
                .map_err(|error| corrupt::<RecentRecord>(key, error))?;
            return Ok(RecentRecord { v: 0, purchases });
        }
        let record: RecentRecord = decode_json(key, bytes)?;
        check_version::<RecentRecord>(key, record.v)?;
        Ok(record)
    }
}

/// One credential tier as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredTier {
    /// Name.
    pub name: String,
    /// Largest amount per purchase.
    pub amount_max: Amount,
    /// How long the credential lasts.
    pub validity_seconds: u64,
    /// Purchases per merchant per day.
    pub per_merchant_day_max: u32,
}

/// The PA's risk strategy as stored (format 2): the operator API's [`Strategy`] with its
/// amounts as [`Amount`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StrategyRecord {
    /// [`STRATEGY_RECORD_VERSION`].
    pub version: u32,
    /// Application domain of every credential.
    pub app_domain: String,
    /// Currency.
    pub currency: Currency,
    /// Tiers.
    pub tiers: Vec<StoredTier>,
    /// Validity of merchant credentials.
    pub merchant_validity_seconds: u64,
    /// Validity of adulthood credentials.
    pub adulthood_validity_seconds: u64,
    /// Largest amount a transaction-specific credential may cover (zero: none).
    pub transaction_amount_max: Amount,
    /// How long a transaction-specific credential lasts.
    pub transaction_validity_seconds: u64,
    /// Transaction-specific credentials per payer per day (absent in records written before
    /// it existed: [`crate::strategy::TRANSACTION_DAY_DEFAULT`]).
    #[serde(default = "transaction_day_default")]
    pub transaction_day_max: u32,
    /// Purchases one machine may take in a day before it is flagged.
    pub machine_day_purchases_max: u32,
    /// The fastest a payer can travel between machines, km/h.
    pub travel_speed_kmh_max: u32,
}

fn transaction_day_default() -> u32 {
    crate::strategy::TRANSACTION_DAY_DEFAULT
}

impl StrategyRecord {
    /// The stored form of `strategy` (validated by the caller); an error when its currency or an
    /// amount does not parse.
    pub fn from_strategy(strategy: &Strategy) -> Result<StrategyRecord, crate::Error> {
        let currency = strategy.currency()?;
        let amount = |text: &str, what: &str| {
            Amount::parse(text, currency)
                .map_err(|e| crate::Error::Usage(format!("{what} {text:?}: {e}")))
        };
        Ok(StrategyRecord {
            version: STRATEGY_RECORD_VERSION,
            app_domain: strategy.app_domain.clone(),
            currency,
            tiers: strategy
                .tiers
                .iter()
                .map(|tier| {
                    Ok(StoredTier {
                        name: tier.name.clone(),
                        amount_max: amount(&tier.amount_max, "amount_max")?,
                        validity_seconds: tier.validity_seconds,
                        per_merchant_day_max: tier.per_merchant_day_max,
                    })
                })
                .collect::<Result<_, crate::Error>>()?,
            merchant_validity_seconds: strategy.merchant_validity_seconds,
            adulthood_validity_seconds: strategy.adulthood_validity_seconds,
            transaction_amount_max: amount(
                &strategy.transaction_amount_max,
                "transaction_amount_max",
            )?,
            transaction_validity_seconds: strategy.transaction_validity_seconds,
            transaction_day_max: strategy.transaction_day_max,
            machine_day_purchases_max: strategy.machine_day_purchases_max,
            travel_speed_kmh_max: strategy.travel_speed_kmh_max,
        })
    }

    /// The strategy as the operator API shows it.
    pub fn strategy(&self) -> Strategy {
        Strategy {
            version: STRATEGY_VERSION,
            app_domain: self.app_domain.clone(),
            currency: self.currency.code().to_owned(),
            tiers: self
                .tiers
                .iter()
                .map(|tier| Tier {
                    name: tier.name.clone(),
                    amount_max: tier.amount_max.decimal().to_string(),
                    validity_seconds: tier.validity_seconds,
                    per_merchant_day_max: tier.per_merchant_day_max,
                })
                .collect(),
            merchant_validity_seconds: self.merchant_validity_seconds,
            adulthood_validity_seconds: self.adulthood_validity_seconds,
            transaction_amount_max: self.transaction_amount_max.decimal().to_string(),
            transaction_validity_seconds: self.transaction_validity_seconds,
            transaction_day_max: self.transaction_day_max,
            machine_day_purchases_max: self.machine_day_purchases_max,
            travel_speed_kmh_max: self.travel_speed_kmh_max,
        }
    }
}

impl StoredRecord for StrategyRecord {
    const NAMESPACE: &'static str = NAMESPACE;
    const FORMAT_VERSION: u32 = STRATEGY_RECORD_VERSION;
    fn encode(&self, key: &str) -> Result<Vec<u8>, RecordError> {
        encode_json(self, key)
    }
    fn decode(key: &str, bytes: &[u8]) -> Result<Self, RecordError> {
        #[derive(Deserialize)]
        struct Version {
            version: u32,
        }
        let Version { version } =
            serde_json::from_slice(bytes).map_err(|error| corrupt::<StrategyRecord>(key, error))?;
        check_version::<StrategyRecord>(key, version)?;
        let record = if version == 1 {
            let strategy: Strategy = serde_json::from_slice(bytes)
                .map_err(|error| corrupt::<StrategyRecord>(key, error))?;
            StrategyRecord::from_strategy(&strategy)
                .map_err(|error| corrupt::<StrategyRecord>(key, error))?
        } else {
            decode_json::<StrategyRecord>(key, bytes)?
        };
        record
            .strategy()
            .validate()
            .map_err(|error| corrupt::<StrategyRecord>(key, error))?;
        Ok(record)
    }
}

/// A charge record as read: the payer, time, merchant and nonce its key names, and the stored
/// charge (whatever format it was written in).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Charge {
    /// The payer.
    pub payer: String,
    /// The offer's time (`YYYYMMDDHHMMSS`).
    pub timestamp: String,
    /// Merchant.
    pub merchant: String,
    /// Nonce.
    pub nonce: String,
    /// The format it was stored in (1, 2 or 3).
    pub format: u32,
    /// The stored charge, in the current format.
    pub stored: StoredCharge,
    /// The ledger transfer (format 1 stored its own; later ones follow from merchant and nonce).
    pub transfer_id: String,
}

impl Charge {
    /// The statement line.
    pub fn statement_line(&self) -> ChargeRecord {
        ChargeRecord {
            v: self.format,
            merchant: self.merchant.clone(),
            nonce: self.nonce.clone(),
            product: self.stored.product.clone(),
            amount: self.stored.amount.decimal().to_string(),
            currency: self.stored.amount.currency().code().to_owned(),
            timestamp: self.timestamp.clone(),
            transfer_id: self.transfer_id.clone(),
            bounced: self.stored.bounced,
            credential_serial: self.stored.credential_serial.clone(),
            microcheck_sha256: self.stored.microcheck_sha256.clone(),
            deposited: self.stored.deposited.clone(),
        }
    }
}

/// Format 2 of a charge: format 3 with the amount as decimal text and its currency apart.
#[derive(Deserialize)]
struct ChargeFormat2 {
    product: String,
    amount: String,
    currency: String,
    bounced: bool,
    #[serde(default)]
    credential_serial: Option<String>,
    microcheck_sha256: String,
    deposited: String,
}

fn decimal_amount(amount: &str, currency: &str) -> Result<Amount, String> {
    let currency = Currency::from_code(currency).map_err(|e| e.to_string())?;
    Amount::parse(amount, currency).map_err(|e| e.to_string())
}

impl StoredRecord for Charge {
    const NAMESPACE: &'static str = NAMESPACE;
    const FORMAT_VERSION: u32 = STORED_CHARGE_VERSION;
    fn encode(&self, key: &str) -> Result<Vec<u8>, RecordError> {
        serde_json::to_vec(&self.stored).map_err(|error| RecordError::Encode {
            namespace: NAMESPACE,
            key: key.to_owned(),
            message: error.to_string(),
        })
    }
    fn decode(key: &str, bytes: &[u8]) -> Result<Self, RecordError> {
        #[derive(Deserialize)]
        struct Version {
            v: u32,
        }
        let bad = |error: &dyn std::fmt::Display| corrupt::<Charge>(key, error);
        let Version { v } = serde_json::from_slice(bytes).map_err(|e| bad(&e))?;
        check_version::<Charge>(key, v)?;
        // charge:{payer}:{timestamp}:{merchant}:{nonce}; only the nonce may hold a colon.
        let mut parts = key
            .strip_prefix("charge:")
            .ok_or_else(|| bad(&"not a charge key"))?
            .splitn(4, ':');
        let (Some(payer), Some(timestamp), Some(merchant), Some(nonce)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad(&"a charge key has four parts"));
        };
        let mut transfer_id = csc::transfer_id(merchant, nonce);
        let stored = match v {
            1 => {
                let whole: ChargeRecord = serde_json::from_slice(bytes).map_err(|e| bad(&e))?;
                transfer_id = whole.transfer_id;
                StoredCharge {
                    v: STORED_CHARGE_VERSION,
                    product: whole.product,
                    amount: decimal_amount(&whole.amount, &whole.currency).map_err(|e| bad(&e))?,
                    bounced: whole.bounced,
                    credential_serial: whole.credential_serial,
                    microcheck_sha256: whole.microcheck_sha256,
                    deposited: whole.deposited,
                }
            }
            2 => {
                let old: ChargeFormat2 = serde_json::from_slice(bytes).map_err(|e| bad(&e))?;
                StoredCharge {
                    v: STORED_CHARGE_VERSION,
                    product: old.product,
                    amount: decimal_amount(&old.amount, &old.currency).map_err(|e| bad(&e))?,
                    bounced: old.bounced,
                    credential_serial: old.credential_serial,
                    microcheck_sha256: old.microcheck_sha256,
                    deposited: old.deposited,
                }
            }
            STORED_CHARGE_VERSION => serde_json::from_slice(bytes).map_err(|e| bad(&e))?,
            other => return Err(bad(&format!("unknown charge format {other}"))),
        };
        Ok(Charge {
            payer: payer.to_owned(),
            timestamp: timestamp.to_owned(),
            merchant: merchant.to_owned(),
            nonce: nonce.to_owned(),
            format: v,
            stored,
            transfer_id,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

    use offpay_ledger::{Batch, LedgerStore, MemoryStore, Operation, RecordWrite, Timestamp};
    use offpay_operator::Loaded;

    use super::*;

    const NONCE: &str = "006955b9005a5a5a5a5a5a5a5a5a5a5a";

    fn store_with(key: &str, value: &[u8]) -> MemoryStore {
        let mut store = MemoryStore::new();
        let results = store
            .commit(
                &[Batch {
                    operations: vec![Operation::PutRecord(RecordWrite {
                        namespace: NAMESPACE.into(),
                        key: key.into(),
                        value: Some(value.to_vec()),
                        expected_version: None,
                    })],
                }],
                Timestamp(1),
            )
            .unwrap();
        assert!(results.iter().all(Result::is_ok));
        store
    }

    fn read<R: StoredRecord>(key: &str, value: &[u8]) -> Result<R, RecordError> {
        let mut store = store_with(key, value);
        Loaded::<R>::read(&mut store, key).map(|loaded| loaded.value.unwrap())
    }

    fn line(v: u32) -> ChargeRecord {
        ChargeRecord {
            v,
            merchant: "vm-1".into(),
            nonce: NONCE.into(),
            product: "Pocari Sweat".into(),
            amount: "0.83".into(),
            currency: "KES".into(),
            timestamp: "20260101000000".into(),
            transfer_id: csc::transfer_id("vm-1", NONCE),
            bounced: false,
            credential_serial: Some("s1".into()),
            microcheck_sha256: "ab".repeat(32),
            deposited: "20260101010000".into(),
        }
    }

    fn key() -> String {
        csc::charge_key("alice", "20260101000000", "vm-1", NONCE)
    }

    #[test]
    fn a_charge_of_each_format_reads_back_whole_from_its_key() {
        // Format 3, as this release writes it: the amount in minor units with its currency.
        let stored = StoredCharge {
            v: STORED_CHARGE_VERSION,
            product: "Pocari Sweat".into(),
            amount: Amount::from_minor(83, Currency::KES).unwrap(),
            bounced: false,
            credential_serial: Some("s1".into()),
            microcheck_sha256: "ab".repeat(32),
            deposited: "20260101010000".into(),
        };
        let value = serde_json::to_vec(&stored).unwrap();
        assert!(
            String::from_utf8_lossy(&value).contains(r#""amount":{"currency":"KES","minor":83}"#),
            "{}",
            String::from_utf8_lossy(&value)
        );
        let charge: Charge = read(&key(), &value).unwrap();
        assert_eq!(charge.statement_line(), line(3));
        assert_eq!(charge.encode(&key()).unwrap(), value);
        // Format 2, the slim record of the previous release: amount as text.
        let format_2 = br#"{"v":2,"product":"Pocari Sweat","amount":"0.83","currency":"KES","bounced":false,"credential_serial":"s1","microcheck_sha256":"abababababababababababababababababababababababababababababababab","deposited":"20260101010000"}"#;
        let charge: Charge = read(&key(), format_2).unwrap();
        assert_eq!(charge.statement_line(), line(2));
        assert_eq!(charge.stored, stored);
        // Format 1, the whole statement line, with a transfer id of its own.
        let mut whole = line(1);
        whole.transfer_id = "mc:older-scheme".into();
        let charge: Charge = read(&key(), &serde_json::to_vec(&whole).unwrap()).unwrap();
        assert_eq!(charge.statement_line(), whole);
    }

    #[test]
    fn a_charge_that_does_not_decode_is_an_error_naming_its_key() {
        for bad in [&br#"{"v":4}"#[..], b"not json", br#"{"v":2,"product":"x"}"#] {
            let error = read::<Charge>(&key(), bad).unwrap_err();
            assert!(error.to_string().contains(&key()), "{error}");
        }
        let stored = br#"{"v":3,"product":"x","amount":{"currency":"KES","minor":1},"bounced":false,"microcheck_sha256":"","deposited":""}"#;
        assert!(read::<Charge>("charge:alice:2026", stored).is_err());
        assert!(read::<Charge>(&key(), stored).is_ok());
    }

    #[test]
    fn the_strategy_is_stored_in_minor_units_and_format_1_still_reads() {
        let strategy = Strategy::default_for(Currency::KES);
        let record = StrategyRecord::from_strategy(&strategy).unwrap();
        let bytes = record.encode(STRATEGY_KEY).unwrap();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        assert!(
            text.contains(r#""amount_max":{"currency":"KES","minor":500}"#),
            "{text}"
        );
        let back: StrategyRecord = read(STRATEGY_KEY, &bytes).unwrap();
        assert_eq!(back.strategy(), strategy);
        // What the previous release stored: the API document itself, amounts as text.
        let format_1 = serde_json::to_vec(&strategy).unwrap();
        let old: StrategyRecord = read(STRATEGY_KEY, &format_1).unwrap();
        assert_eq!(old, record);
    }

    #[test]
    fn a_strategy_that_does_not_decode_is_an_error_naming_its_key_not_the_default() {
        for bad in [&b"{}"[..], b"[1]", br#"{"version":1,"app_domain":"vend"}"#] {
            let error = read::<StrategyRecord>(STRATEGY_KEY, bad).unwrap_err();
            assert!(error.to_string().contains("microcheck/strategy"), "{error}");
        }
        assert!(matches!(
            read::<StrategyRecord>(STRATEGY_KEY, br#"{"version":3}"#),
            Err(RecordError::TooNew { found: 3, .. })
        ));
        // A stored strategy that no longer validates is refused, not used.
        let mut strategy = Strategy::default_for(Currency::KES);
        strategy.tiers.clear();
        let error = read::<StrategyRecord>(STRATEGY_KEY, &serde_json::to_vec(&strategy).unwrap())
            .unwrap_err();
        assert!(error.to_string().contains("strategy"), "{error}");
    }

    #[test]
    fn records_written_before_versions_still_read() {
        let key_record: PayerKeyRecord = read("payerkey:ab", br#"{"name":"alice"}"#).unwrap();
        assert_eq!(key_record.name, "alice");
        let last: LastDepositRecord = read("lastdeposit:vm-1", br#"{"at":1767225600}"#).unwrap();
        assert_eq!(last.at, 1_767_225_600);
        let count: CountRecord = read("pmday:alice:vm-1:20260101", br#"{"count":3}"#).unwrap();
        assert_eq!(count.count, 3);
        let recent: RecentRecord = read(
            "recent:alice",
            br#"[{"merchant":"vm-1","location":{"latitude_micro":0,"longitude_micro":0},"time":5,"nonce":"n"}]"#,
        )
        .unwrap();
        assert_eq!(recent.purchases.len(), 1);
        assert_eq!(recent.purchases[0].time.0, 5);
        let recent: RecentRecord = read("recent:alice", br#"{"v":1,"purchases":[]}"#).unwrap();
        assert!(recent.purchases.is_empty());
        assert!(read::<CountRecord>("mday:vm-1:20260101", br#"{"v":1}"#).is_err());
        assert!(read::<RecentRecord>("recent:alice", b"[1]").is_err());
    }

    #[test]
    fn payer_and_merchant_records_check_their_key() {
        let key = offpay_keynote::PrivateKey::ed25519_from_seed(&[4; 32]).principal();
        let payer = PayerRecord {
            v: RECORD_VERSION,
            name: "alice".into(),
            key: key_identifier(&key),
            adult: true,
            classes: None,
            disputes: 1,
            blocked: None,
        };
        let bytes = payer.encode("payer:alice").unwrap();
        let back: PayerRecord = read("payer:alice", &bytes).unwrap();
        assert_eq!(back.principal().unwrap(), key);
        let broken = br#"{"v":1,"name":"alice","key":"ed25519-base64:***","adult":false,"classes":null,"disputes":0}"#;
        let error = read::<PayerRecord>("payer:alice", broken).unwrap_err();
        assert!(
            error.to_string().contains("microcheck/payer:alice"),
            "{error}"
        );
    }
}
