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

use std::collections::HashMap;

use offpay_keynote::{Principal, SignatureCache};
use offpay_money::Amount;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::auth::fingerprint;
use crate::compliance::{Approval, Payment, Signatures, check_with, verify_payment};
use crate::error::Refusal;
use crate::limits::{CLOCK_SKEW_SECONDS_MAX, DEPOSIT_ITEMS_MAX, PAYER_RECENT_MAX};
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
/// [`Prepared::keys`] names, and updated in memory as items clear (so items of one deposit see
/// each other).
#[derive(Clone, Debug, Default)]
pub struct ClearingState {
    /// Payers by key fingerprint.
    pub payers: HashMap<String, PayerAccount>,
    /// Nonces of this merchant already deposited → the microcheck hash deposited.
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
#[derive(Clone, Debug, PartialEq)]
pub struct RecordChange {
    /// Key.
    pub key: String,
    /// Document.
    pub value: Value,
    /// Refuse the whole item if the record exists (nonce uniqueness, enforced by the ledger).
    pub create_only: bool,
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
    /// Records.
    pub records: Vec<RecordChange>,
    /// Findings.
    pub findings: Vec<Finding>,
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
}

/// Most threads [`prepare`] verifies with.
pub const PREPARE_THREADS_MAX: usize = 16;

/// The state keys a deposit will read.
#[derive(Debug, Default)]
pub struct Keys {
    /// Payer key fingerprints.
    pub payers: Vec<String>,
    /// Nonces.
    pub nonces: Vec<String>,
    /// Dates.
    pub dates: Vec<String>,
}

/// The transfer id of a microcheck: deterministic in (merchant, nonce), so a retried deposit
/// posts once.
pub fn transfer_id(merchant: &str, nonce: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"offpay-microcheck transfer v1\0");
    hasher.update(merchant.as_bytes());
    hasher.update([0]);
    hasher.update(nonce.as_bytes());
    format!("mc:{}", &hex::encode(hasher.finalize())[..40])
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
    let mut credentials: HashMap<&str, std::sync::Arc<offpay_keynote::Assertion>> = HashMap::new();
    let mut prepared: Vec<Prepared> = items
        .iter()
        .enumerate()
        .map(|(offset, item)| {
            let parsed = item.offer.terms().and_then(|terms| {
                let mut shared = Vec::with_capacity(item.credentials.len());
                let mut fresh = Vec::new();
                for text in &item.credentials {
                    match credentials.get(text.as_str()) {
                        Some(assertion) => shared.push(Some(assertion.clone())),
                        None => {
                            shared.push(None);
                            fresh.push(text.clone());
                        }
                    }
                }
                let mut payment = Payment::parse(&item.microcheck, &fresh)?;
                let mut parsed_fresh = std::mem::take(&mut payment.credentials).into_iter();
                for (slot, text) in shared.iter_mut().zip(&item.credentials) {
                    if slot.is_none()
                        && let Some(assertion) = parsed_fresh.next()
                    {
                        credentials.insert(text.as_str(), assertion.clone());
                        *slot = Some(assertion);
                    }
                }
                payment.credentials = shared.into_iter().flatten().collect();
                Ok((terms, payment))
            });
            Prepared {
                index: first_index + offset,
                nonce: Some(item.offer.nonce.clone()),
                parsed,
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

impl Prepared {
    /// The payer fingerprint, if the item parsed.
    pub fn payer_fingerprint(&self) -> Option<String> {
        self.parsed
            .as_ref()
            .ok()
            .map(|(_, payment)| fingerprint(payment.payer()))
    }
}

/// The keys the items will read.
pub fn keys(prepared: &[Prepared]) -> Keys {
    let mut keys = Keys::default();
    for item in prepared {
        if let Ok((terms, payment)) = &item.parsed {
            let payer = fingerprint(payment.payer());
            if !keys.payers.contains(&payer) {
                keys.payers.push(payer);
            }
            keys.nonces.push(terms.offer.nonce.clone());
            if !keys.dates.contains(&terms.offer.date) {
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

/// What [`clear`] works out for an item on all cores before deciding items in order: the
/// microcheck's hash, the payer's fingerprint, and the compliance check run with the purchase
/// number the item will have if every earlier item of the deposit clears (the usual case). The
/// in-order pass reuses that answer only when the number turns out the same, so the outcome is
/// exactly that of checking item by item.
#[derive(Debug, Default)]
struct Precomputed {
    hash: String,
    payer_fingerprint: String,
    transfer_id: String,
    memo: String,
    check: Option<(u32, Result<Approval, Refusal>)>,
}

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
    merchant: &MerchantAccount,
    prepared: &[Prepared],
    fingerprints: &[String],
    state: &ClearingState,
    now: UnixSeconds,
) -> Vec<Option<u32>> {
    let merchant_id = &merchant.policy.merchant;
    let mut counts: HashMap<(&str, &str), u32> = HashMap::new();
    let mut nonces: std::collections::HashSet<&str> = std::collections::HashSet::new();
    prepared
        .iter()
        .zip(fingerprints)
        .map(|(item, payer_fingerprint)| {
            let (terms, _) = item.parsed.as_ref().ok()?;
            let offer = &terms.offer;
            if offer.merchant != *merchant_id
                || terms.time > now.plus(CLOCK_SKEW_SECONDS_MAX)
                || state.deposited.contains_key(&offer.nonce)
                || !nonces.insert(offer.nonce.as_str())
            {
                return None;
            }
            let payer = state.payers.get(payer_fingerprint)?;
            let count = counts
                .entry((payer.name.as_str(), offer.date.as_str()))
                .or_insert_with(|| {
                    state
                        .payer_merchant_day
                        .get(&(payer.name.clone(), merchant_id.clone(), offer.date.clone()))
                        .copied()
                        .unwrap_or(0)
                });
            *count = count.saturating_add(1);
            Some(*count)
        })
        .collect()
}

/// Clears a deposit by `merchant` at `now`. Items are decided in order and independently: a
/// bad one is refused with its reason and the others clear. The per-item work that does not
/// depend on earlier items (hashing, the compliance check, serialising the records) runs on
/// all cores; only the state updates run in order.
pub fn clear(
    merchant: &MerchantAccount,
    rules: FraudRules,
    prepared: Vec<Prepared>,
    state: &mut ClearingState,
    now: UnixSeconds,
) -> Vec<ItemOutcome> {
    let threads = clear_threads(prepared.len());
    let mut work: Vec<(&Prepared, Precomputed)> = prepared
        .iter()
        .map(|item| (item, Precomputed::default()))
        .collect();
    par_for_each(&mut work, threads, |(item, pre)| {
        if let Ok((terms, payment)) = &item.parsed {
            pre.transfer_id = transfer_id(&merchant.policy.merchant, &terms.offer.nonce);
            pre.memo = memo(&terms.offer);
            pre.hash = microcheck_hash(
                core::str::from_utf8(payment.microcheck.text()).unwrap_or_default(),
            );
            pre.payer_fingerprint = fingerprint(payment.payer());
        }
    });
    let fingerprints: Vec<String> = work
        .iter_mut()
        .map(|(_, pre)| std::mem::take(&mut pre.payer_fingerprint))
        .collect();
    let speculated = speculate_purchases(merchant, &prepared, &fingerprints, state, now);
    let mut work: Vec<(&Prepared, Option<u32>, Precomputed)> = work
        .into_iter()
        .zip(fingerprints)
        .zip(speculated)
        .map(|(((item, mut pre), payer_fingerprint), count)| {
            pre.payer_fingerprint = payer_fingerprint;
            (item, count, pre)
        })
        .collect();
    par_for_each(&mut work, threads, |(item, count, pre)| {
        if let (Some(count), Ok((terms, payment))) = (*count, &item.parsed) {
            let approval = check_with(
                &merchant.policy,
                terms,
                payment,
                count,
                Signatures::Verified,
            );
            pre.check = Some((count, approval));
        }
    });
    let precomputed: Vec<Precomputed> = work.into_iter().map(|(_, _, pre)| pre).collect();
    let mut outcomes: Vec<(ItemOutcome, Option<Vec<RecentPurchase>>)> = prepared
        .iter()
        .zip(precomputed)
        .map(|(item, pre)| {
            let index = item.index;
            let nonce = item.nonce.clone();
            let mut findings = Vec::new();
            match clear_one(merchant, rules, item, pre, state, now, &mut findings) {
                Ok((mut clearance, recent)) => {
                    clearance.findings = findings;
                    (ItemOutcome::Cleared(Box::new(clearance)), Some(recent))
                }
                Err(refusal) => (
                    ItemOutcome::Refused {
                        index,
                        nonce,
                        refusal,
                        findings,
                    },
                    None,
                ),
            }
        })
        .collect();
    // The payer's recent purchases as they stood after each item, serialised once per item
    // on all cores (the in-order pass only snapshots the typed list).
    // Freeing the parsed items is work too: spread it over the cores with the serialising.
    let mut prepared: Vec<Option<Prepared>> = prepared.into_iter().map(Some).collect();
    let mut finishing: Vec<_> = outcomes.iter_mut().zip(prepared.iter_mut()).collect();
    par_for_each(&mut finishing, threads, |((outcome, recent), item)| {
        drop(item.take());
        if let (ItemOutcome::Cleared(clearance), Some(recent)) = (outcome, recent.take())
            && let Some(change) = clearance
                .records
                .iter_mut()
                .find(|change| change.key.starts_with(RECENT_KEY_PREFIX))
        {
            change.value = serde_json::to_value(&recent).unwrap_or(Value::Null);
        }
    });
    outcomes.into_iter().map(|(outcome, _)| outcome).collect()
}

/// Key prefix of the record holding a payer's recent purchases.
const RECENT_KEY_PREFIX: &str = "recent:";

/// Decides one item in order; the cleared item's recent-purchase record is left `null`, with
/// the typed list returned beside it for [`clear`] to serialise.
fn clear_one(
    merchant: &MerchantAccount,
    rules: FraudRules,
    item: &Prepared,
    pre: Precomputed,
    state: &mut ClearingState,
    now: UnixSeconds,
    findings: &mut Vec<Finding>,
) -> Result<(Clearance, Vec<RecentPurchase>), Refusal> {
    let (terms, payment) = item.parsed.as_ref().map_err(Clone::clone)?;
    let offer = &terms.offer;
    let merchant_id = merchant.policy.merchant.clone();
    if offer.merchant != merchant_id {
        return Err(Refusal::UnknownMerchant {
            merchant: offer.merchant.clone(),
        });
    }
    if terms.time > now.plus(CLOCK_SKEW_SECONDS_MAX) {
        findings.push(Finding {
            kind: "post_dated",
            subject: merchant_id.clone(),
            summary: format!(
                "microcheck {} is dated {}, after it reached the CSC at {now}",
                offer.nonce, terms.time
            ),
            evidence: json!({ "nonce": offer.nonce, "timestamp": offer.timestamp,
                              "received": now.stamp(), "merchant": merchant_id }),
            discriminator: offer.nonce.clone(),
        });
        return Err(Refusal::DatedInFuture {
            time: terms.time.to_string(),
            received: now.to_string(),
        });
    }
    let hash = pre.hash;
    if let Some(previous) = state.deposited.get(&offer.nonce) {
        return Err(if *previous == hash {
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
    debug_assert_eq!(pre.payer_fingerprint, fingerprint(payer_key));
    let payer_fingerprint = pre.payer_fingerprint;
    let payer = state
        .payers
        .get(&payer_fingerprint)
        .cloned()
        .ok_or_else(|| Refusal::UnknownPayer {
            payer_key: payer_fingerprint.clone(),
        })?;
    let day_key = (payer.name.clone(), merchant_id.clone(), offer.date.clone());
    let purchases_today = state
        .payer_merchant_day
        .get(&day_key)
        .copied()
        .unwrap_or(0)
        .saturating_add(1);
    // `prepare` verified every signature of this payment.
    let approval = match pre.check {
        Some((count, approval)) if count == purchases_today => approval,
        _ => check_with(
            &merchant.policy,
            terms,
            payment,
            purchases_today,
            Signatures::Verified,
        ),
    }?;

    // Accepted: everything below only adds data and findings.
    let amount = terms.amount;
    let amount_signed = i64::try_from(amount.minor()).unwrap_or(i64::MAX);
    let bounced = payer.available_minor < amount_signed;
    let debit = if bounced {
        let count = state.bounces.entry(payer.name.clone()).or_default();
        *count += 1;
        Debit::Bounced(payer.name.clone())
    } else {
        if let Some(account) = state.payers.get_mut(&payer_fingerprint) {
            account.available_minor -= amount_signed;
        }
        Debit::Payer(payer.name.clone())
    };
    state.deposited.insert(offer.nonce.clone(), hash.clone());
    state.payer_merchant_day.insert(day_key, purchases_today);
    let machine_day = state
        .merchant_day
        .entry((merchant_id.clone(), offer.date.clone()))
        .or_default();
    *machine_day += 1;
    let machine_day = *machine_day;
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
    let recent = state.recent.entry(payer.name.clone()).or_default();
    for earlier in recent.iter() {
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
    recent.push(RecentPurchase {
        merchant: merchant_id.clone(),
        location: merchant.location,
        time: terms.time,
        nonce: offer.nonce.clone(),
    });
    recent.sort_by_key(|r| r.time);
    if recent.len() > PAYER_RECENT_MAX {
        let excess = recent.len() - PAYER_RECENT_MAX;
        recent.drain(..excess);
    }
    let recent_snapshot = recent.clone();
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
    let transfer_id = pre.transfer_id;
    let mut records = vec![
        RecordChange {
            key: format!("nonce:{merchant_id}:{}", offer.nonce),
            value: json!({ "v": 1, "payer": payer.name, "amount": offer.amount, "currency": offer.currency,
                           "microcheck_sha256": hash, "transfer_id": transfer_id, "deposited": now.stamp(),
                           "bounced": bounced }),
            create_only: true,
        },
        RecordChange {
            key: format!(
                "charge:{}:{}:{merchant_id}:{}",
                payer.name, offer.timestamp, offer.nonce
            ),
            value: json!({ "v": 1, "merchant": merchant_id, "nonce": offer.nonce, "product": offer.product,
                           "amount": offer.amount, "currency": offer.currency, "timestamp": offer.timestamp,
                           "transfer_id": transfer_id, "bounced": bounced,
                           "credential_serial": approval.credential.as_ref().and_then(|c| c.serial.clone()) }),
            create_only: true,
        },
        RecordChange {
            key: format!("pmday:{}:{merchant_id}:{}", payer.name, offer.date),
            value: json!({ "count": purchases_today }),
            create_only: false,
        },
        RecordChange {
            key: format!("mday:{merchant_id}:{}", offer.date),
            value: json!({ "count": machine_day }),
            create_only: false,
        },
        RecordChange {
            key: format!("{RECENT_KEY_PREFIX}{}", payer.name),
            value: Value::Null,
            create_only: false,
        },
    ];
    if bounced {
        records.push(RecordChange {
            key: format!("bounces:{}", payer.name),
            value: json!({ "count": state.bounces.get(&payer.name).copied().unwrap_or(1) }),
            create_only: false,
        });
    }
    Ok((
        Clearance {
            index: item.index,
            nonce: offer.nonce.clone(),
            transfer_id,
            debit,
            merchant: merchant_id,
            amount,
            memo: pre.memo,
            records,
            findings: Vec::new(),
        },
        recent_snapshot,
    ))
}
