//! The Clearing and Settlement Center's rules (seed 004 §2.4, §3.4), as pure functions over a
//! snapshot the server loads: re-run the merchant's compliance check, refuse a nonce deposited
//! before, decide the postings (payer debit, merchant credit; a bounced microcheck is paid from
//! suspense and counts against the payer), and look for fraud patterns, each with its evidence:
//!
//! - `machine_day_volume`: more purchases at one machine in a day than the strategy allows;
//! - `impossible_travel`: the same payer at two machines farther apart than anyone could travel
//!   in the time between the purchases;
//! - `backdated_after_expiry`: deposited after its credential expired, and dated before the
//!   merchant's previous deposit (which an honest machine would have included) — the merchant
//!   pre-dating checks written after expiry (seed 004 §2.4);
//! - `post_dated`: dated later than it reached the CSC (refused).
//!
//! Postings and record writes are plain data with deterministic ids, so a retried deposit maps
//! onto the same ledger transfers and records and posts once.
//!
//! Each cleared microcheck carries only its own record (the payer's charge, which also spends
//! its nonce); the counters and recent purchases it changes belong to the deposit, and
//! [`state_records`] writes them once for any set of cleared microchecks, from a
//! [`ClearingState`] that [`ClearingState::apply`] brought up to date with exactly that set. A
//! caller can so post a whole deposit as one ledger batch and, if the ledger refuses it, post
//! parts of it, each part with counters that count exactly what has posted.

use std::collections::{BTreeSet, HashMap};

use offpay_keynote::{Principal, SignatureCache};
use offpay_money::Amount;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::auth::fingerprint;
use crate::compliance::{Approval, Payment, Signatures, check_with, verify_payment};
use crate::error::Refusal;
use crate::limits::{
    DEPOSIT_ITEMS_MAX, LOST_KEY_DEPOSIT_WINDOW_SECONDS, MACHINE_CLOCK_AHEAD_SECONDS_MAX,
    NONCE_TIME_BYTES, PAYER_RECENT_MAX, PAYMENT_CREDENTIALS_MAX,
};
use crate::machine::SaleRecord;
use crate::offer::{Offer, OfferTerms};
use crate::policy::MerchantPolicy;
use crate::time::UnixSeconds;

/// Distance below which two machines count as the same place for the travel rule, km.
pub const TRAVEL_DISTANCE_MIN_KM: f64 = 5.0;
/// Longest memo written on a posting, bytes.
pub const MEMO_BYTES_MAX: usize = 200;

/// One microcheck as deposited: the offer, the microcheck, the credentials.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DepositItem {
    /// The offer (the action attribute set).
    pub offer: Offer,
    /// The microcheck.
    pub microcheck: String,
    /// The credentials presented with it.
    pub credentials: Vec<String>,
}

/// Most bytes of credentials a deposit's items may present in all, written out: what a deposit
/// with every credential inline could carry in the largest request the CSC takes.
pub const DEPOSIT_CREDENTIAL_BYTES_MAX: usize = 32 * 1024 * 1024;

/// A deposit as a merchant sends it: each distinct credential once, in `credentials`, and items
/// that point at them by position (`credential_refs`) — a machine's deposit repeats a few
/// payers' credentials hundreds of times, and the link to the CSC may be slow and dear. An item
/// may also carry credentials inline (`credentials`), before the referenced ones.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DepositBody {
    /// Distinct credentials of the deposit.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub credentials: Vec<String>,
    /// The microchecks.
    pub items: Vec<PackedItem>,
}

/// One microcheck of a [`DepositBody`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackedItem {
    /// The offer.
    pub offer: Offer,
    /// The microcheck.
    pub microcheck: String,
    /// Credentials written out here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub credentials: Vec<String>,
    /// Positions in [`DepositBody::credentials`] of the other credentials presented with it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub credential_refs: Vec<usize>,
}

impl DepositBody {
    /// Packs `items`, writing each distinct credential once.
    pub fn pack(items: &[DepositItem]) -> DepositBody {
        let mut positions: HashMap<&str, usize> = HashMap::new();
        let mut credentials = Vec::new();
        let items = items
            .iter()
            .map(|item| PackedItem {
                offer: item.offer.clone(),
                microcheck: item.microcheck.clone(),
                credentials: Vec::new(),
                credential_refs: item
                    .credentials
                    .iter()
                    .map(|text| {
                        *positions.entry(text.as_str()).or_insert_with(|| {
                            credentials.push(text.clone());
                            credentials.len() - 1
                        })
                    })
                    .collect(),
            })
            .collect();
        DepositBody { credentials, items }
    }

    /// The items with their credentials written out; refused whole when the deposit is too
    /// large, an item presents too many credentials or points past the table, or the
    /// credentials written out would exceed [`DEPOSIT_CREDENTIAL_BYTES_MAX`] (what a deposit with
    /// every credential inline could carry).
    pub fn unpack(self) -> Result<Vec<DepositItem>, Refusal> {
        if self.items.len() > DEPOSIT_ITEMS_MAX {
            return Err(Refusal::malformed(
                "deposit",
                format!("more than {DEPOSIT_ITEMS_MAX} microchecks"),
            ));
        }
        if self.credentials.len() > DEPOSIT_ITEMS_MAX * PAYMENT_CREDENTIALS_MAX {
            return Err(Refusal::malformed("deposit", "too many credentials"));
        }
        let table = self.credentials;
        let mut written = 0usize;
        self.items
            .into_iter()
            .enumerate()
            .map(|(index, item)| {
                if item.credentials.len() + item.credential_refs.len() > PAYMENT_CREDENTIALS_MAX {
                    return Err(Refusal::malformed(
                        "deposit",
                        format!(
                            "microcheck {index} presents more than {PAYMENT_CREDENTIALS_MAX} credentials"
                        ),
                    ));
                }
                let mut credentials = item.credentials;
                for position in item.credential_refs {
                    let text = table.get(position).ok_or_else(|| {
                        Refusal::malformed(
                            "deposit",
                            format!(
                                "microcheck {index} refers to credential {position}, but the deposit has {}",
                                table.len()
                            ),
                        )
                    })?;
                    credentials.push(text.clone());
                }
                written += credentials.iter().map(String::len).sum::<usize>();
                if written > DEPOSIT_CREDENTIAL_BYTES_MAX {
                    return Err(Refusal::malformed(
                        "deposit",
                        format!(
                            "the credentials written out exceed {DEPOSIT_CREDENTIAL_BYTES_MAX} bytes"
                        ),
                    ));
                }
                Ok(DepositItem {
                    offer: item.offer,
                    microcheck: item.microcheck,
                    credentials,
                })
            })
            .collect()
    }
}

impl From<&SaleRecord> for DepositItem {
    fn from(record: &SaleRecord) -> DepositItem {
        DepositItem {
            offer: record.offer.clone(),
            microcheck: record.microcheck.clone(),
            credentials: record.credentials.clone(),
        }
    }
}

/// A place, in millionths of a degree.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    /// Latitude × 10⁶.
    pub latitude_micro: i64,
    /// Longitude × 10⁶.
    pub longitude_micro: i64,
}

impl Location {
    /// Great-circle distance in km (haversine, mean Earth radius). Floating point is fine here:
    /// it is geography for a fraud heuristic, never money.
    pub fn distance_km(&self, other: &Location) -> f64 {
        let radians = |micro: i64| (micro as f64 / 1e6).to_radians();
        let (lat1, lat2) = (radians(self.latitude_micro), radians(other.latitude_micro));
        let dlat = lat2 - lat1;
        let dlon = radians(other.longitude_micro) - radians(self.longitude_micro);
        let a = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlon / 2.0).sin().powi(2);
        2.0 * 6371.0 * a.sqrt().min(1.0).asin()
    }
}

/// A recent purchase of a payer (for the travel rule).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecentPurchase {
    /// Merchant.
    pub merchant: String,
    /// Where the merchant is.
    pub location: Location,
    /// When (the offer's time).
    pub time: UnixSeconds,
    /// Nonce.
    pub nonce: String,
}

/// A registered payer, as clearing needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PayerAccount {
    /// The payer's name (its ledger account is derived from it).
    pub name: String,
    /// What the payer's account can still pay, minor units.
    pub available_minor: i64,
    /// When the payer reported the device holding this key lost (`None`: its current key).
    pub retired_at: Option<UnixSeconds>,
    /// When customer care blocked the payer (`None`: not blocked). Its microchecks still clear
    /// (they were approved under credentials issued before the block); each dated after the
    /// block is flagged `spent_after_block`.
    pub blocked_at: Option<UnixSeconds>,
    /// What the PA holds of `available_minor` for the payer's online (transaction-specific)
    /// credentials whose microchecks have not cleared. A microcheck pays from the balance less
    /// the holds of the others: an online one finds the money the PA counted on, and an offline
    /// one deposited first cannot spend it (it bounces instead).
    pub held_online: Vec<HeldOnline>,
}

/// An amount the PA holds for one online credential, until its microcheck clears or `until`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldOnline {
    /// The offer's merchant.
    pub merchant: String,
    /// The offer's nonce.
    pub nonce: String,
    /// The amount held, minor units.
    pub amount_minor: u64,
    /// When the hold lapses (the credential expired [`crate::limits::TRANSACTION_HOLD_SECONDS`]
    /// before).
    pub until: UnixSeconds,
}

impl PayerAccount {
    /// What a microcheck of `merchant` with `nonce` may take from the account at `now`: the
    /// available balance less every hold still in force except this microcheck's own.
    pub fn available_for(&self, merchant: &str, nonce: &str, now: UnixSeconds) -> i64 {
        let held: u64 = self
            .held_online
            .iter()
            .filter(|hold| hold.until > now && !(hold.merchant == merchant && hold.nonce == nonce))
            .map(|hold| hold.amount_minor)
            .fold(0, u64::saturating_add);
        self.available_minor
            .saturating_sub(i64::try_from(held).unwrap_or(i64::MAX))
    }

    /// Lets go the hold of `merchant`'s microcheck `nonce` (it cleared).
    pub fn release_hold(&mut self, merchant: &str, nonce: &str) {
        self.held_online
            .retain(|hold| !(hold.merchant == merchant && hold.nonce == nonce));
    }
}

/// The depositing merchant.
#[derive(Clone, Debug)]
pub struct MerchantAccount {
    /// Its policy (id, domain, trusted keys).
    pub policy: MerchantPolicy,
    /// Where it is.
    pub location: Location,
    /// When its previous deposit arrived.
    pub last_deposit_at: Option<UnixSeconds>,
}

/// The fraud thresholds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FraudRules {
    /// Purchases at one machine in a day before a flag.
    pub machine_day_purchases_max: u32,
    /// Fastest plausible travel, km/h.
    pub travel_speed_kmh_max: u32,
}

/// Everything a deposit reads and changes, loaded by the caller for the keys
/// [`keys`] names, and updated in memory as items clear (so items of one deposit see
/// each other).
#[derive(Clone, Debug, Default)]
pub struct ClearingState {
    /// Payers by key fingerprint.
    pub payers: HashMap<String, PayerAccount>,
    /// Spent nonces of this merchant → the hash of the microcheck that spent each: those the
    /// caller loaded, and those cleared so far. (The server loads none: the ledger's create-only
    /// charge records refuse a second deposit, and it reads them only then.)
    pub deposited: HashMap<String, String>,
    /// Purchases per (payer name, merchant, date) already cleared.
    pub payer_merchant_day: HashMap<(String, String, String), u32>,
    /// Purchases per (merchant, date) already cleared.
    pub merchant_day: HashMap<(String, String), u32>,
    /// Recent purchases per payer name.
    pub recent: HashMap<String, Vec<RecentPurchase>>,
    /// Bounced microchecks per payer name.
    pub bounces: HashMap<String, u32>,
}

/// Who pays a cleared microcheck.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Debit {
    /// The payer's account.
    Payer(String),
    /// The operator's suspense account: the payer could not cover it (bounced); the PA
    /// guaranteed the merchant.
    Bounced(String),
}

/// A record to write in the rail's namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordChange {
    /// Key.
    pub key: String,
    /// The document, JSON.
    pub value: Vec<u8>,
    /// Refuse the whole batch if the record exists (nonce uniqueness, enforced by the ledger).
    pub create_only: bool,
}

/// A charge as the payer's statement shows it (the statement API's line). The ledger keeps it
/// under its [`charge_key`] (`charge:<payer>:<timestamp>:<merchant>:<nonce>`), whose existence
/// proves the nonce spent: as a [`StoredCharge`] since format 3 (format 2 held the amount as a
/// decimal string, format 1 this whole record); the operator half reads every format back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargeRecord {
    /// Format version of the stored record (1, 2 or 3).
    pub v: u32,
    /// Merchant.
    pub merchant: String,
    /// Nonce.
    pub nonce: String,
    /// Product.
    pub product: String,
    /// Amount, decimal, as in the offer.
    pub amount: String,
    /// Currency, as in the offer.
    pub currency: String,
    /// The offer's time (`YYYYMMDDHHMMSS`).
    pub timestamp: String,
    /// The ledger transfer.
    pub transfer_id: String,
    /// Paid from suspense because the payer could not cover it.
    pub bounced: bool,
    /// Serial of the payment credential that covered it, when it is in this rail's format.
    pub credential_serial: Option<String>,
    /// SHA-256 of the microcheck's text, hex: tells a second deposit of this microcheck from
    /// another microcheck reusing its nonce.
    pub microcheck_sha256: String,
    /// When it was deposited (`YYYYMMDDHHMMSS`).
    pub deposited: String,
}

/// What the ledger stores of a charge (format 3), under its [`charge_key`]: the key already
/// names the payer, the offer's time, the merchant and the nonce, and the transfer id follows
/// from merchant and nonce ([`transfer_id`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredCharge {
    /// Format version ([`STORED_CHARGE_VERSION`]).
    pub v: u32,
    /// Product.
    pub product: String,
    /// Amount.
    pub amount: Amount,
    /// Paid from suspense.
    pub bounced: bool,
    /// Serial of the payment credential that covered it, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_serial: Option<String>,
    /// SHA-256 of the microcheck's text, hex.
    pub microcheck_sha256: String,
    /// When it was deposited (`YYYYMMDDHHMMSS`).
    pub deposited: String,
}

/// Format version of [`StoredCharge`]: 3 holds the amount as [`Amount`] (minor units and
/// currency); 2 held it as decimal text.
pub const STORED_CHARGE_VERSION: u32 = 3;

/// Format version of the clearing counters ([`CountRecord`]) and of a payer's recent purchases.
/// Records written before records carried a version read as version 0.
pub const CLEARING_RECORD_VERSION: u32 = 1;

/// A counter record (`pmday:…`, `mday:…`, `bounces:…`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountRecord {
    /// Format version ([`CLEARING_RECORD_VERSION`]; 0 when written before versions).
    #[serde(default)]
    pub v: u32,
    /// The count.
    pub count: u32,
}

impl CountRecord {
    /// `count`, in the format this release writes.
    pub fn new(count: u32) -> CountRecord {
        CountRecord {
            v: CLEARING_RECORD_VERSION,
            count,
        }
    }
}

/// A payer's recent purchases as stored (`recent:…`), oldest first; format 0 was the bare list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecentRecord {
    /// Format version ([`CLEARING_RECORD_VERSION`]).
    pub v: u32,
    /// The purchases.
    pub purchases: Vec<RecentPurchase>,
}

/// [`RecentRecord`] borrowing its list, to write without copying it.
#[derive(Serialize)]
struct RecentRecordRef<'a> {
    v: u32,
    purchases: &'a [RecentPurchase],
}

fn json_bytes(value: &impl Serialize) -> Vec<u8> {
    // Plain structs of strings, numbers and booleans: serialising them cannot fail.
    serde_json::to_vec(value).unwrap_or_else(|_| b"null".to_vec())
}

/// A fraud finding, with its evidence.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    /// Kind (see the module documentation).
    pub kind: &'static str,
    /// Whom it is about.
    pub subject: String,
    /// One line.
    pub summary: String,
    /// What shows it.
    pub evidence: Value,
    /// Makes the same finding raised twice one flag.
    pub discriminator: String,
}

/// A microcheck the CSC accepts: post it together with its records and findings, atomically.
#[derive(Clone, Debug)]
pub struct Clearance {
    /// Position in the deposit.
    pub index: usize,
    /// Nonce.
    pub nonce: String,
    /// Deterministic transfer id (`mc:` + 40 hex digits).
    pub transfer_id: String,
    /// Who pays.
    pub debit: Debit,
    /// Merchant credited.
    pub merchant: String,
    /// Amount.
    pub amount: Amount,
    /// Statement memo.
    pub memo: String,
    /// The payer's key fingerprint.
    pub payer_fingerprint: String,
    /// The offer's date (`YYYYMMDD`).
    pub date: String,
    /// The offer's timestamp (`YYYYMMDDHHMMSS`), as written.
    pub timestamp: String,
    /// The offer's time.
    pub time: UnixSeconds,
    /// SHA-256 of the microcheck's text, hex.
    pub microcheck_sha256: String,
    /// Serial of the payment credential that covered it, when it is in this rail's format.
    pub credential_serial: Option<String>,
    /// This microcheck's own record: the payer's charge (create-only).
    pub records: Vec<RecordChange>,
    /// Findings.
    pub findings: Vec<Finding>,
}

impl Clearance {
    /// The payer's name.
    pub fn payer(&self) -> &str {
        match &self.debit {
            Debit::Payer(name) | Debit::Bounced(name) => name,
        }
    }

    /// Whether the payer could not cover it (paid from suspense).
    pub fn bounced(&self) -> bool {
        matches!(self.debit, Debit::Bounced(_))
    }
}

impl ClearingState {
    /// Brings the state up to date with a cleared microcheck of `merchant`: its nonce is
    /// spent, the day counters count it, it joins the payer's recent purchases, and the payer's
    /// available balance (or bounce count) reflects it. [`clear`] calls this for every item it
    /// clears; a caller that posts only some of them rebuilds the state with it.
    pub fn apply(&mut self, merchant: &MerchantAccount, clearance: &Clearance) {
        let merchant_id = &merchant.policy.merchant;
        let payer = clearance.payer();
        self.deposited
            .insert(clearance.nonce.clone(), clearance.microcheck_sha256.clone());
        let day = self
            .payer_merchant_day
            .entry((
                payer.to_owned(),
                merchant_id.clone(),
                clearance.date.clone(),
            ))
            .or_default();
        *day = day.saturating_add(1);
        let machine_day = self
            .merchant_day
            .entry((merchant_id.clone(), clearance.date.clone()))
            .or_default();
        *machine_day = machine_day.saturating_add(1);
        if clearance.bounced() {
            let bounces = self.bounces.entry(payer.to_owned()).or_default();
            *bounces = bounces.saturating_add(1);
        }
        // Every key of the payer pays from the one account and its holds.
        let amount = i64::try_from(clearance.amount.minor()).unwrap_or(i64::MAX);
        for account in self.payers.values_mut().filter(|a| a.name == payer) {
            if !clearance.bounced() {
                account.available_minor = account.available_minor.saturating_sub(amount);
            }
            account.release_hold(merchant_id, &clearance.nonce);
        }
        let recent = self.recent.entry(payer.to_owned()).or_default();
        recent.push(RecentPurchase {
            merchant: merchant_id.clone(),
            location: merchant.location,
            time: clearance.time,
            nonce: clearance.nonce.clone(),
        });
        recent.sort_by_key(|r| r.time);
        if recent.len() > PAYER_RECENT_MAX {
            let excess = recent.len() - PAYER_RECENT_MAX;
            recent.drain(..excess);
        }
    }
}

/// Key of a payer's per-merchant day counter.
pub fn payer_merchant_day_key(payer: &str, merchant: &str, date: &str) -> String {
    format!("pmday:{payer}:{merchant}:{date}")
}

/// Key of a merchant's day counter.
pub fn merchant_day_key(merchant: &str, date: &str) -> String {
    format!("mday:{merchant}:{date}")
}

/// Key of a payer's recent purchases.
pub fn recent_key(payer: &str) -> String {
    format!("recent:{payer}")
}

/// Key of a payer's bounce counter.
pub fn bounces_key(payer: &str) -> String {
    format!("bounces:{payer}")
}

/// Key of a cleared microcheck's charge record. Every part of it is fixed by the signed
/// microcheck (its payer, time, merchant and nonce), so a second deposit of the microcheck meets
/// the record, which is written create-only; another microcheck reusing the nonce needs the
/// same transfer id (derived from merchant and nonce alone) with other terms, which the ledger
/// refuses. Keys lead with the payer and the time, so a payer's statement is one range, and a
/// deposit's records land in few places of the ledger's record index.
pub fn charge_key(payer: &str, timestamp: &str, merchant: &str, nonce: &str) -> String {
    format!("charge:{payer}:{timestamp}:{merchant}:{nonce}")
}

/// One of the shared records a deposit changes (for one merchant): what it counts or lists,
/// named without the merchant, whose id completes the key.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StateRecord {
    /// A payer's purchases at the merchant on a date (`pmday:…`).
    PayerDay {
        /// Payer name.
        payer: String,
        /// `YYYYMMDD`.
        date: String,
    },
    /// The merchant's purchases on a date (`mday:…`).
    MerchantDay {
        /// `YYYYMMDD`.
        date: String,
    },
    /// A payer's recent purchases (`recent:…`).
    Recent {
        /// Payer name.
        payer: String,
    },
    /// A payer's bounced microchecks (`bounces:…`).
    Bounces {
        /// Payer name.
        payer: String,
    },
}

impl StateRecord {
    /// The shared records the microchecks `cleared` (all of one merchant) change: each payer's
    /// day counter at the merchant, the merchant's day counters, each payer's recent purchases
    /// and, for payers with a bounce among them, their bounce count. Sorted, each once.
    pub fn changed_by<'a>(cleared: impl IntoIterator<Item = &'a Clearance>) -> Vec<StateRecord> {
        let mut set: BTreeSet<StateRecord> = BTreeSet::new();
        for clearance in cleared {
            let payer = clearance.payer();
            set.insert(StateRecord::PayerDay {
                payer: payer.to_owned(),
                date: clearance.date.clone(),
            });
            set.insert(StateRecord::MerchantDay {
                date: clearance.date.clone(),
            });
            set.insert(StateRecord::Recent {
                payer: payer.to_owned(),
            });
            if clearance.bounced() {
                set.insert(StateRecord::Bounces {
                    payer: payer.to_owned(),
                });
            }
        }
        set.into_iter().collect()
    }

    /// Its record key, at `merchant`.
    pub fn key(&self, merchant: &str) -> String {
        match self {
            StateRecord::PayerDay { payer, date } => payer_merchant_day_key(payer, merchant, date),
            StateRecord::MerchantDay { date } => merchant_day_key(merchant, date),
            StateRecord::Recent { payer } => recent_key(payer),
            StateRecord::Bounces { payer } => bounces_key(payer),
        }
    }

    /// Its value as it stands in `state`, serialised as the ledger stores it.
    pub fn value(&self, state: &ClearingState, merchant: &str) -> Vec<u8> {
        let count =
            |count: Option<&u32>| json_bytes(&CountRecord::new(count.copied().unwrap_or(0)));
        match self {
            StateRecord::PayerDay { payer, date } => count(state.payer_merchant_day.get(&(
                payer.clone(),
                merchant.to_owned(),
                date.clone(),
            ))),
            StateRecord::MerchantDay { date } => {
                count(state.merchant_day.get(&(merchant.to_owned(), date.clone())))
            }
            StateRecord::Recent { payer } => json_bytes(&RecentRecordRef {
                v: CLEARING_RECORD_VERSION,
                purchases: state.recent.get(payer).map(Vec::as_slice).unwrap_or(&[]),
            }),
            StateRecord::Bounces { payer } => count(state.bounces.get(payer)),
        }
    }

    /// Copies its value at `merchant` from `from` into `to` (removing it from `to` where `from`
    /// has none).
    pub fn copy(&self, merchant: &str, from: &ClearingState, to: &mut ClearingState) {
        fn set<K: std::hash::Hash + Eq, V: Clone>(
            to: &mut HashMap<K, V>,
            key: K,
            value: Option<&V>,
        ) {
            match value {
                Some(value) => {
                    to.insert(key, value.clone());
                }
                None => {
                    to.remove(&key);
                }
            }
        }
        match self {
            StateRecord::PayerDay { payer, date } => {
                let key = (payer.clone(), merchant.to_owned(), date.clone());
                let value = from.payer_merchant_day.get(&key);
                set(&mut to.payer_merchant_day, key, value);
            }
            StateRecord::MerchantDay { date } => {
                let key = (merchant.to_owned(), date.clone());
                let value = from.merchant_day.get(&key);
                set(&mut to.merchant_day, key, value);
            }
            StateRecord::Recent { payer } => {
                set(&mut to.recent, payer.clone(), from.recent.get(payer));
            }
            StateRecord::Bounces { payer } => {
                set(&mut to.bounces, payer.clone(), from.bounces.get(payer));
            }
        }
    }
}

/// The shared records the microchecks `cleared` (all of `merchant`) change
/// ([`StateRecord::changed_by`]), as they stand in `state`. Written once for the set, not once
/// per microcheck. `state` must include the set (see [`ClearingState::apply`]).
pub fn state_records<'a>(
    state: &ClearingState,
    merchant: &str,
    cleared: impl IntoIterator<Item = &'a Clearance>,
) -> Vec<RecordChange> {
    StateRecord::changed_by(cleared)
        .iter()
        .map(|record| RecordChange {
            key: record.key(merchant),
            value: record.value(state, merchant),
            create_only: false,
        })
        .collect()
}

/// The decision on one deposited microcheck.
#[derive(Clone, Debug)]
pub enum ItemOutcome {
    /// Post it.
    Cleared(Box<Clearance>),
    /// Refused; findings (if any) are still raised.
    Refused {
        /// Position in the deposit.
        index: usize,
        /// Nonce, when the offer had one.
        nonce: Option<String>,
        /// Why.
        refusal: Refusal,
        /// Findings.
        findings: Vec<Finding>,
    },
}

/// A deposit item parsed and its signatures verified, before any state is consulted.
#[derive(Debug)]
pub struct Prepared {
    index: usize,
    nonce: Option<String>,
    parsed: Result<(OfferTerms, Payment), Refusal>,
    /// Worked out with the parse, on the same cores: hash, fingerprint, transfer id, memo.
    derived: Derived,
}

impl Prepared {
    /// Its position in the deposit.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The fingerprint of the payer key that signed it (`None`: it did not parse).
    pub fn payer_fingerprint(&self) -> Option<&str> {
        self.parsed
            .as_ref()
            .ok()
            .map(|_| self.derived.payer_fingerprint.as_str())
    }

    /// Its amount (`None`: it did not parse).
    pub fn amount(&self) -> Option<Amount> {
        self.parsed.as_ref().ok().map(|(terms, _)| terms.amount)
    }

    /// When the machine made the offer (`None`: it did not parse).
    pub fn time(&self) -> Option<UnixSeconds> {
        self.parsed.as_ref().ok().map(|(terms, _)| terms.time)
    }
}

/// What [`prepare`] derives from a parsed item, which does not depend on any state.
#[derive(Debug, Default)]
struct Derived {
    hash: String,
    payer_fingerprint: String,
    transfer_id: String,
    memo: String,
}

/// Most threads [`prepare`] verifies with.
pub const PREPARE_THREADS_MAX: usize = 16;

/// The state keys a deposit will read.
#[derive(Debug, Default)]
pub struct Keys {
    /// Payer key fingerprints.
    pub payers: Vec<String>,
    /// Dates.
    pub dates: Vec<String>,
}

/// The transfer id of a microcheck: deterministic in (merchant, nonce), so a retried deposit
/// posts once and another microcheck reusing the nonce meets the first one's transfer.
///
/// `mc:`, 8 hex digits of SHA-256(merchant), the nonce's leading time digits
/// ([`crate::offer::machine_nonce`]), then 30 hex digits of SHA-256(merchant, nonce). A machine's
/// transfers share a prefix and sort by sale time, so the ledger files a deposit's thousand
/// transfers at the end of that machine's run of its id index, a few pages, instead of writing a
/// page of the index for each of them.
pub fn transfer_id(merchant: &str, nonce: &str) -> String {
    let machine = Sha256::digest(merchant.as_bytes());
    let mut hasher = Sha256::new();
    hasher.update(b"offpay-microcheck transfer v2\0");
    hasher.update(merchant.as_bytes());
    hasher.update([0]);
    hasher.update(nonce.as_bytes());
    let time = nonce.get(..2 * NONCE_TIME_BYTES).unwrap_or(nonce);
    format!(
        "mc:{}{time}{}",
        &hex::encode(&machine[..4]),
        &hex::encode(hasher.finalize())[..30]
    )
}

/// SHA-256 of a microcheck's text, hex.
pub fn microcheck_hash(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// Parses every item (bounded; a credential shared by many items is parsed once per worker) and
/// verifies all signatures — Ed25519 in batches — on up to `threads` threads, each with its own
/// [`SignatureCache`]. An item whose signatures fail comes back already refused.
pub fn prepare(items: &[DepositItem], threads: usize) -> Result<Vec<Prepared>, Refusal> {
    if items.len() > DEPOSIT_ITEMS_MAX {
        return Err(Refusal::malformed(
            "deposit",
            format!("more than {DEPOSIT_ITEMS_MAX} microchecks"),
        ));
    }
    let threads = threads.clamp(1, PREPARE_THREADS_MAX);
    let chunk = items.len().div_ceil(threads).max(1);
    let mut prepared: Vec<Prepared> = Vec::with_capacity(items.len());
    std::thread::scope(|scope| {
        let workers: Vec<_> = items
            .chunks(chunk)
            .enumerate()
            .map(|(number, part)| scope.spawn(move || prepare_chunk(part, number * chunk)))
            .collect();
        for worker in workers {
            match worker.join() {
                Ok(part) => prepared.extend(part),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
    });
    Ok(prepared)
}

fn prepare_chunk(items: &[DepositItem], first_index: usize) -> Vec<Prepared> {
    type Parsed = (
        std::sync::Arc<offpay_keynote::Assertion>,
        Option<std::sync::Arc<crate::credential::CredentialClaims>>,
    );
    // Keyed by the credential's whole text (a kilobyte, looked up twice per item): foldhash,
    // seeded per map, hashes it several times faster than the standard SipHash.
    let mut credentials: HashMap<&str, Parsed, foldhash::fast::RandomState> = HashMap::default();
    let mut programs = offpay_keynote::ParseCache::new();
    let mut fingerprints: HashMap<Principal, String> = HashMap::new();
    let mut prepared: Vec<Prepared> = items
        .iter()
        .enumerate()
        .map(|(offset, item)| {
            let parsed = item.offer.terms().and_then(|terms| {
                let fresh: Vec<String> = item
                    .credentials
                    .iter()
                    .filter(|text| !credentials.contains_key(text.as_str()))
                    .cloned()
                    .collect();
                let mut payment = Payment::parse_with(&item.microcheck, &fresh, &mut programs)?;
                let parsed_fresh = std::mem::take(&mut payment.credentials)
                    .into_iter()
                    .zip(std::mem::take(&mut payment.claims));
                for (text, parsed) in fresh.iter().zip(parsed_fresh) {
                    if let Some(original) = item.credentials.iter().find(|t| *t == text) {
                        credentials.insert(original.as_str(), parsed);
                    }
                }
                for text in &item.credentials {
                    if let Some((assertion, claims)) = credentials.get(text.as_str()) {
                        payment.credentials.push(assertion.clone());
                        payment.claims.push(claims.clone());
                    }
                }
                Ok((terms, payment))
            });
            let derived = match &parsed {
                Ok((terms, payment)) => {
                    let payer = payment.payer();
                    let payer_fingerprint = match fingerprints.get(payer) {
                        Some(known) => known.clone(),
                        None => {
                            let computed = fingerprint(payer);
                            fingerprints.insert(payer.clone(), computed.clone());
                            computed
                        }
                    };
                    Derived {
                        hash: hex::encode(payment.microcheck.hash().0),
                        payer_fingerprint,
                        transfer_id: transfer_id(&terms.offer.merchant, &terms.offer.nonce),
                        memo: memo(&terms.offer),
                    }
                }
                Err(_) => Derived::default(),
            };
            Prepared {
                index: first_index + offset,
                nonce: Some(item.offer.nonce.clone()),
                parsed,
                derived,
            }
        })
        .collect();
    let mut cache = SignatureCache::new();
    let untrusted: Vec<&offpay_keynote::Assertion> = prepared
        .iter()
        .filter_map(|p| p.parsed.as_ref().ok())
        .flat_map(|(_, payment)| payment.untrusted())
        .collect();
    cache.verify_batch(&untrusted);
    for item in &mut prepared {
        if let Ok((_, payment)) = &item.parsed
            && let Err(refusal) = verify_payment(payment, &mut cache)
        {
            item.parsed = Err(refusal);
        }
    }
    prepared
}

/// The keys the items will read.
pub fn keys(prepared: &[Prepared]) -> Keys {
    let mut keys = Keys::default();
    let mut payers = std::collections::HashSet::new();
    let mut dates = std::collections::HashSet::new();
    for item in prepared {
        if let Ok((terms, _)) = &item.parsed {
            let payer = &item.derived.payer_fingerprint;
            if payers.insert(payer.as_str()) {
                keys.payers.push(payer.clone());
            }
            if dates.insert(terms.offer.date.as_str()) {
                keys.dates.push(terms.offer.date.clone());
            }
        }
    }
    keys
}

fn memo(offer: &Offer) -> String {
    let mut memo = format!(
        "microcheck {} {} at {}",
        &offer.nonce[..8.min(offer.nonce.len())],
        offer.product,
        offer.merchant
    );
    memo.truncate(MEMO_BYTES_MAX);
    memo
}

/// The refused items of a deposit that may have been cleared before — the same microchecks
/// deposited twice are usually refused by a counter (their purchase numbers are now past the
/// credential's daily count) before the ledger could say they were spent: by position in
/// `outcomes`, the key of the charge record each would have and its microcheck's SHA-256. The
/// caller reads those records and, with [`crate::operator::clearing::relabel_spent`], names
/// each refusal for what it is.
pub fn refused_charge_keys(
    prepared: &[Prepared],
    outcomes: &[ItemOutcome],
    state: &ClearingState,
) -> Vec<(usize, String, String)> {
    outcomes
        .iter()
        .enumerate()
        .filter_map(|(position, outcome)| {
            let ItemOutcome::Refused { refusal, .. } = outcome else {
                return None;
            };
            if matches!(
                refusal,
                Refusal::AlreadyDeposited { .. } | Refusal::ReplayedNonce { .. }
            ) {
                return None;
            }
            let item = prepared.get(position)?;
            let (terms, _) = item.parsed.as_ref().ok()?;
            let payer = state.payers.get(&item.derived.payer_fingerprint)?;
            let offer = &terms.offer;
            Some((
                position,
                charge_key(&payer.name, &offer.timestamp, &offer.merchant, &offer.nonce),
                item.derived.hash.clone(),
            ))
        })
        .collect()
}

/// The compliance check [`clear`] runs for an item on all cores before deciding items in order,
/// with the purchase number the item will have if every earlier item of the deposit clears (the
/// usual case): (that number, the answer). The in-order pass reuses the answer only when the
/// number turns out the same, so the outcome is exactly that of checking item by item.
type SpeculativeCheck = Option<(u32, Result<Approval, Refusal>)>;

/// Threads for the parallel parts of [`clear`].
fn clear_threads(items: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    cores.clamp(1, PREPARE_THREADS_MAX).min(items.max(1))
}

/// Runs `work` over `items` in contiguous chunks on up to `threads` threads.
fn par_for_each<T: Send>(items: &mut [T], threads: usize, work: impl Fn(&mut T) + Sync) {
    if threads <= 1 || items.len() < 2 {
        items.iter_mut().for_each(&work);
        return;
    }
    let chunk = items.len().div_ceil(threads).max(1);
    let work = &work;
    std::thread::scope(|scope| {
        let workers: Vec<_> = items
            .chunks_mut(chunk)
            .map(|part| scope.spawn(move || part.iter_mut().for_each(work)))
            .collect();
        for worker in workers {
            if let Err(panic) = worker.join() {
                std::panic::resume_unwind(panic);
            }
        }
    });
}

/// The purchase number (per payer, merchant and day) each item gets if every earlier item
/// that passes the cheap in-order checks clears.
fn speculate_purchases(
    merchant_id: &str,
    prepared: &[Prepared],
    state: &ClearingState,
    now: UnixSeconds,
) -> Vec<Option<u32>> {
    let mut counts: HashMap<(&str, &str), u32> = HashMap::new();
    let mut nonces: std::collections::HashSet<&str> = std::collections::HashSet::new();
    prepared
        .iter()
        .map(|item| {
            let (terms, _) = item.parsed.as_ref().ok()?;
            let offer = &terms.offer;
            if offer.merchant != *merchant_id
                || terms.time > now.plus(clock_ahead_max())
                || state.deposited.contains_key(&offer.nonce)
                || !nonces.insert(offer.nonce.as_str())
            {
                return None;
            }
            let payer = state.payers.get(&item.derived.payer_fingerprint)?;
            let count = counts
                .entry((payer.name.as_str(), offer.date.as_str()))
                .or_insert_with(|| {
                    state
                        .payer_merchant_day
                        .get(&(
                            payer.name.clone(),
                            merchant_id.to_owned(),
                            offer.date.clone(),
                        ))
                        .copied()
                        .unwrap_or(0)
                });
            *count = count.saturating_add(1);
            Some(*count)
        })
        .collect()
}

/// The compliance checks of a deposit, run on all cores before its items are decided (see
/// [`check`] and [`clear_checked`]).
#[derive(Debug)]
pub struct Checks(Vec<SpeculativeCheck>);

/// Runs the KeyNote compliance check of every item of a deposit on all cores, each with the
/// purchase number it will have if `snapshot` is current and every earlier item clears. Needs no
/// lock: [`clear_checked`] reuses an answer only when the item's purchase number, decided in
/// order against the state as it then stands, is the same, and checks again otherwise; so a
/// stale snapshot costs time, never a different outcome.
pub fn check(
    policy: &MerchantPolicy,
    prepared: &[Prepared],
    snapshot: &ClearingState,
    now: UnixSeconds,
) -> Checks {
    let threads = clear_threads(prepared.len());
    let speculated = speculate_purchases(&policy.merchant, prepared, snapshot, now);
    let mut work: Vec<(&Prepared, Option<u32>, SpeculativeCheck)> = prepared
        .iter()
        .zip(speculated)
        .map(|(item, count)| (item, count, None))
        .collect();
    par_for_each(&mut work, threads, |(item, count, check)| {
        if let (Some(count), Ok((terms, payment))) = (*count, &item.parsed) {
            let approval = check_with(policy, terms, payment, count, Signatures::Verified);
            *check = Some((count, approval));
        }
    });
    Checks(work.into_iter().map(|(_, _, check)| check).collect())
}

/// Clears a deposit by `merchant` at `now`: [`check`] against `state`, then [`clear_checked`].
pub fn clear(
    merchant: &MerchantAccount,
    rules: FraudRules,
    prepared: Vec<Prepared>,
    state: &mut ClearingState,
    now: UnixSeconds,
) -> Vec<ItemOutcome> {
    let checks = check(&merchant.policy, &prepared, state, now);
    clear_checked(merchant, rules, &prepared, &checks, state, now)
}

/// Decides a deposit by `merchant` at `now` against `state`, with the compliance checks
/// [`check`] ran. Items are decided in order and independently: a bad one is refused with its
/// reason and the others clear. Besides the checks, the per-item work that does not depend on
/// earlier items (serialising the records; hashes were worked out by [`prepare`]) runs on all
/// cores; only the decisions and state updates run in order.
///
/// Neither `prepared` nor `checks` is used up: a caller whose posting fails can decide the
/// deposit again against a fresher state.
///
/// # Panics
/// If `checks` is not of this deposit (another number of items).
pub fn clear_checked(
    merchant: &MerchantAccount,
    rules: FraudRules,
    prepared: &[Prepared],
    checks: &Checks,
    state: &mut ClearingState,
    now: UnixSeconds,
) -> Vec<ItemOutcome> {
    assert_eq!(checks.0.len(), prepared.len(), "checks of another deposit");
    let threads = clear_threads(prepared.len());
    let mut outcomes: Vec<ItemOutcome> = prepared
        .iter()
        .zip(&checks.0)
        .map(|(item, check)| {
            let index = item.index;
            let nonce = item.nonce.clone();
            let mut findings = Vec::new();
            match clear_one(merchant, rules, item, check, state, now, &mut findings) {
                Ok(mut clearance) => {
                    clearance.findings = findings;
                    state.apply(merchant, &clearance);
                    ItemOutcome::Cleared(Box::new(clearance))
                }
                Err(refusal) => ItemOutcome::Refused {
                    index,
                    nonce,
                    refusal,
                    findings,
                },
            }
        })
        .collect();
    // Serialising each cleared item's records on all cores.
    let mut finishing: Vec<_> = outcomes.iter_mut().zip(prepared).collect();
    par_for_each(&mut finishing, threads, |(outcome, item)| {
        if let (
            ItemOutcome::Cleared(clearance),
            Prepared {
                parsed: Ok((terms, _)),
                ..
            },
        ) = (&mut **outcome, &**item)
        {
            clearance.records = item_records(clearance, &terms.offer, now);
        }
    });
    outcomes
}

/// Decides one item in order, against `state` as it stands before the item (the caller applies
/// a cleared item to it).
fn clear_one(
    merchant: &MerchantAccount,
    rules: FraudRules,
    item: &Prepared,
    check: &SpeculativeCheck,
    state: &ClearingState,
    now: UnixSeconds,
    findings: &mut Vec<Finding>,
) -> Result<Clearance, Refusal> {
    let (terms, payment) = item.parsed.as_ref().map_err(Clone::clone)?;
    let offer = &terms.offer;
    let merchant_id = merchant.policy.merchant.clone();
    if offer.merchant != merchant_id {
        return Err(Refusal::UnknownMerchant {
            merchant: offer.merchant.clone(),
        });
    }
    if terms.time > now.plus(clock_ahead_max()) {
        findings.push(Finding {
            kind: "post_dated",
            subject: merchant_id.clone(),
            summary: format!(
                "the machine's clock may be wrong, or the microcheck is post-dated: {merchant_id}'s microcheck {} is dated {}, more than {} after it reached the clearing center at {now}",
                offer.nonce,
                terms.time,
                crate::time::duration_words(MACHINE_CLOCK_AHEAD_SECONDS_MAX)
            ),
            evidence: json!({ "nonce": offer.nonce, "timestamp": offer.timestamp,
                              "received": now.stamp(), "merchant": merchant_id }),
            discriminator: offer.nonce.clone(),
        });
        return Err(Refusal::DatedInFuture {
            tolerance: crate::time::duration_words(MACHINE_CLOCK_AHEAD_SECONDS_MAX),
            time: terms.time.to_string(),
            received: now.to_string(),
        });
    }
    let derived = &item.derived;
    if let Some(previous) = state.deposited.get(&offer.nonce) {
        return Err(if *previous == derived.hash {
            Refusal::AlreadyDeposited {
                nonce: offer.nonce.clone(),
            }
        } else {
            Refusal::ReplayedNonce {
                nonce: offer.nonce.clone(),
            }
        });
    }
    let payer_key: &Principal = payment.payer();
    debug_assert_eq!(derived.payer_fingerprint, fingerprint(payer_key));
    let payer = state
        .payers
        .get(&derived.payer_fingerprint)
        .ok_or_else(|| Refusal::UnknownPayer {
            payer_key: derived.payer_fingerprint.clone(),
        })?;
    if let Some(retired) = payer.retired_at {
        // A key whose device was reported lost: what it signed is paid when the machine
        // deposits it within the window (the compliance check below still holds it to the
        // credentials issued before the report); later deposits are the merchant's to bear.
        let window = match crate::reverts::reverted(crate::reverts::LOST_KEY_DEPOSIT_WINDOW) {
            true => 0,
            false => LOST_KEY_DEPOSIT_WINDOW_SECONDS,
        };
        let deadline = retired.plus(window);
        if now > deadline {
            return Err(Refusal::DepositedTooLate {
                retired: retired.to_string(),
                deadline: deadline.to_string(),
            });
        }
    }
    let day_key = (payer.name.clone(), merchant_id.clone(), offer.date.clone());
    let purchases_today = state
        .payer_merchant_day
        .get(&day_key)
        .copied()
        .unwrap_or(0)
        .saturating_add(1);
    // `prepare` verified every signature of this payment.
    let approval = match check {
        Some((count, approval)) if *count == purchases_today => approval.clone(),
        _ => check_with(
            &merchant.policy,
            terms,
            payment,
            purchases_today,
            Signatures::Verified,
        ),
    }?;

    // Accepted: everything below only adds data and findings.
    if let Some(retired) = payer.retired_at
        && terms.time > retired
    {
        findings.push(Finding {
            kind: "spent_after_loss_report",
            subject: payer.name.clone(),
            summary: format!(
                "{}'s device, reported lost at {retired}, paid {merchant_id} at {}: charged to {} within the credentials issued before the report",
                payer.name, terms.time, payer.name
            ),
            evidence: json!({ "payer": payer.name, "merchant": merchant_id, "nonce": offer.nonce,
                              "timestamp": offer.timestamp, "reported_lost": retired.stamp(),
                              "amount": terms.amount.decimal().to_string(),
                              "currency": terms.amount.currency().code() }),
            discriminator: offer.nonce.clone(),
        });
    }
    if let Some(blocked) = payer.blocked_at
        && terms.time > blocked
    {
        findings.push(Finding {
            kind: "spent_after_block",
            subject: payer.name.clone(),
            summary: format!(
                "{} was blocked at {blocked} and paid {merchant_id} at {} with a credential issued before the block: the merchant is paid and {} charged",
                payer.name, terms.time, payer.name
            ),
            evidence: json!({ "payer": payer.name, "merchant": merchant_id, "nonce": offer.nonce,
                              "timestamp": offer.timestamp, "blocked": blocked.stamp(),
                              "amount": terms.amount.decimal().to_string(),
                              "currency": terms.amount.currency().code() }),
            discriminator: offer.nonce.clone(),
        });
    }
    let amount = terms.amount;
    let amount_signed = i64::try_from(amount.minor()).unwrap_or(i64::MAX);
    // The holds of the payer's other online credentials are not this microcheck's to spend.
    let bounced = payer.available_for(&merchant_id, &offer.nonce, now) < amount_signed;
    let debit = if bounced {
        Debit::Bounced(payer.name.clone())
    } else {
        Debit::Payer(payer.name.clone())
    };
    let machine_day = state
        .merchant_day
        .get(&(merchant_id.clone(), offer.date.clone()))
        .copied()
        .unwrap_or(0)
        .saturating_add(1);
    if machine_day > rules.machine_day_purchases_max {
        findings.push(Finding {
            kind: "machine_day_volume",
            subject: merchant_id.clone(),
            summary: format!(
                "{machine_day} purchases at {merchant_id} on {}, more than the {} expected",
                offer.date, rules.machine_day_purchases_max
            ),
            evidence: json!({ "merchant": merchant_id, "date": offer.date, "purchases": machine_day,
                              "max": rules.machine_day_purchases_max, "latest_nonce": offer.nonce }),
            discriminator: offer.date.clone(),
        });
    }
    let recent = state
        .recent
        .get(&payer.name)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    for earlier in recent {
        if earlier.merchant == merchant_id {
            continue;
        }
        let distance = earlier.location.distance_km(&merchant.location);
        let seconds = terms.time.0.abs_diff(earlier.time.0);
        let reachable_km = f64::from(rules.travel_speed_kmh_max) * seconds as f64 / 3600.0;
        if distance > TRAVEL_DISTANCE_MIN_KM && distance > reachable_km {
            let speed = if seconds == 0 {
                "unbounded".to_owned()
            } else {
                format!("{:.0}", distance * 3600.0 / seconds as f64)
            };
            findings.push(Finding {
                kind: "impossible_travel",
                subject: payer.name.clone(),
                summary: format!(
                    "payer {} bought at {} and {} ({distance:.0} km apart) {seconds} s apart",
                    payer.name, earlier.merchant, merchant_id
                ),
                evidence: json!({
                    "payer": payer.name,
                    "first": { "merchant": earlier.merchant, "time": earlier.time.stamp(), "nonce": earlier.nonce },
                    "second": { "merchant": merchant_id, "time": offer.timestamp, "nonce": offer.nonce },
                    "distance_km": format!("{distance:.1}"),
                    "seconds": seconds,
                    "implied_speed_kmh": speed,
                    "max_speed_kmh": rules.travel_speed_kmh_max,
                }),
                discriminator: offer.nonce.clone(),
            });
            break;
        }
    }
    if let Some(credential) = &approval.credential
        && let Some(not_after) = credential.not_after
        && now >= not_after
        && merchant
            .last_deposit_at
            .is_some_and(|previous| terms.time < previous)
    {
        findings.push(Finding {
            kind: "backdated_after_expiry",
            subject: merchant_id.clone(),
            summary: format!(
                "microcheck {} dated {} was held back past the merchant's previous deposit and deposited after its credential expired",
                offer.nonce, terms.time
            ),
            evidence: json!({
                "nonce": offer.nonce, "payer": payer.name, "timestamp": offer.timestamp,
                "credential_serial": credential.serial, "credential_not_after": not_after.stamp(),
                "previous_deposit": merchant.last_deposit_at.map(UnixSeconds::stamp),
                "deposited": now.stamp(),
            }),
            discriminator: offer.nonce.clone(),
        });
    }
    Ok(Clearance {
        index: item.index,
        nonce: offer.nonce.clone(),
        transfer_id: derived.transfer_id.clone(),
        debit,
        merchant: merchant_id,
        amount,
        memo: derived.memo.clone(),
        payer_fingerprint: derived.payer_fingerprint.clone(),
        date: offer.date.clone(),
        timestamp: offer.timestamp.clone(),
        time: terms.time,
        microcheck_sha256: derived.hash.clone(),
        credential_serial: approval.credential.and_then(|c| c.serial.clone()),
        records: Vec::new(),
        findings: Vec::new(),
    })
}

/// A cleared microcheck's own record: the payer's charge ([`StoredCharge`]), written
/// create-only so that the ledger refuses a second deposit of it.
fn item_records(clearance: &Clearance, offer: &Offer, now: UnixSeconds) -> Vec<RecordChange> {
    vec![RecordChange {
        key: charge_key(
            clearance.payer(),
            &offer.timestamp,
            &clearance.merchant,
            &offer.nonce,
        ),
        value: json_bytes(&StoredCharge {
            v: STORED_CHARGE_VERSION,
            product: offer.product.clone(),
            amount: clearance.amount,
            bounced: clearance.bounced(),
            credential_serial: clearance.credential_serial.clone(),
            microcheck_sha256: clearance.microcheck_sha256.clone(),
            deposited: now.stamp(),
        }),
        create_only: true,
    }]
}

/// How far ahead of the CSC a machine's clock may run ([`MACHINE_CLOCK_AHEAD_SECONDS_MAX`]; none
/// with the simulator's switch reverted).
fn clock_ahead_max() -> u64 {
    match crate::reverts::reverted(crate::reverts::CLOCK_TOLERANCE) {
        true => 0,
        false => MACHINE_CLOCK_AHEAD_SECONDS_MAX,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

    use super::*;

    #[test]
    fn clearing_records_are_written_with_their_format_version() {
        let mut state = ClearingState::default();
        state
            .payer_merchant_day
            .insert(("alice".into(), "vm-1".into(), "20260101".into()), 2);
        let day = StateRecord::PayerDay {
            payer: "alice".into(),
            date: "20260101".into(),
        };
        assert_eq!(day.value(&state, "vm-1"), br#"{"v":1,"count":2}"#.to_vec());
        let recent = StateRecord::Recent {
            payer: "alice".into(),
        };
        assert_eq!(
            recent.value(&state, "vm-1"),
            br#"{"v":1,"purchases":[]}"#.to_vec()
        );
    }
}
