//! The Provisioning Agent's decisions (seed 004 §1.2, §2.3): registering payers and merchants,
//! recording disputes, and issuing credentials — a payer's offline credentials from the risk
//! strategy (lowered for disputed and bounced microchecks), adulthood credentials, online
//! transaction-specific credentials, merchant credentials and sub-PA delegations. Each takes the
//! records the server loaded and the time, and returns the effects to commit and the answer.

use std::sync::atomic::{AtomicU64, Ordering};

use offpay_keynote::{Principal, PrivateKey};
use offpay_ledger::LedgerStore;
use offpay_ledger::{AccountKind, Amount, BalanceLimits, NewAccount, Operation};
use offpay_operator::{Effects, Loaded, RecordError};
use serde::Deserialize;
use serde_json::{Value, json};

use super::OperatorError;
use super::records::{
    self, MerchantRecord, ONLINE_RECORD_VERSION, OnlineHold, OnlineRecord, PayerKeyRecord,
    PayerRecord, RECORD_VERSION, StrategyRecord, key_identifier, merchant_account, payer_account,
};
use crate::auth::fingerprint;
use crate::credential::{self, DelegationTemplate, TransactionTemplate};
use crate::csc::{CountRecord, Location};
use crate::error::Refusal;
use crate::limits::{
    CLOCK_SKEW_SECONDS_MAX, MERCHANT_VALIDITY_SECONDS_MAX, TRANSACTION_HOLD_SECONDS,
    TRANSACTION_HOLDS_MAX,
};
use crate::offer::{ADULT_CLASS, Offer, valid_label, valid_merchant_id};
use crate::strategy::{Standing, Strategy};
use crate::time::UnixSeconds;

/// Digits after the point a registered location may have (micro-degrees).
pub const LOCATION_FRACTION_DIGITS_MAX: usize = 6;
/// Digits before the point of a registered location.
pub const LOCATION_WHOLE_DIGITS_MAX: usize = 3;
/// Micro-degrees in a degree (10^[`LOCATION_FRACTION_DIGITS_MAX`]).
const MICRO_PER_DEGREE: i64 = 1_000_000;
const _: () = assert!(MICRO_PER_DEGREE == 10_i64.pow(LOCATION_FRACTION_DIGITS_MAX as u32));
/// Largest latitude, degrees.
pub const LATITUDE_MAX: i64 = 90;
/// Largest longitude, degrees.
pub const LONGITUDE_MAX: i64 = 180;

/// The Provisioning Agent: its key, the age key that signs adulthood credentials, and the
/// counter that makes credential serials unique within this process.
pub struct Pa {
    pa: PrivateKey,
    age: PrivateKey,
    serial: AtomicU64,
}

impl std::fmt::Debug for Pa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pa")
            .field("pa", &fingerprint(&self.pa.principal()))
            .field("age", &fingerprint(&self.age.principal()))
            .finish_non_exhaustive()
    }
}

/// The operator registers a payer (a new device key for an existing payer replaces the old).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterPayer {
    /// Name.
    pub name: String,
    /// The device's public key.
    pub key: String,
    /// Whether the payer gets adulthood credentials.
    #[serde(default)]
    pub adult: bool,
    /// Product classes the payer may buy (`None`: all).
    pub classes: Option<Vec<String>>,
}

/// The operator records a disputed microcheck.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dispute {
    /// The disputed microcheck's nonce, for the record.
    pub nonce: Option<String>,
}

/// The operator registers a merchant.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterMerchant {
    /// Merchant id.
    pub id: String,
    /// The machine's public key.
    pub key: String,
    /// Application domain (default: the strategy's).
    pub app_domain: Option<String>,
    /// Decimal degrees, e.g. "-1.2921".
    pub latitude: Option<String>,
    /// Decimal degrees.
    pub longitude: Option<String>,
}

/// The operator delegates to a sub-PA.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DelegateSubPa {
    /// The sub-PA's public key.
    pub key: String,
    /// Largest amount it may let a credential cover, decimal.
    pub amount_max: String,
    /// How long the delegation lasts.
    pub validity_seconds: u64,
}

/// A payer or merchant name: 1 to 32 letters, digits, `_ . -`.
pub fn check_name(name: &str) -> Result<(), OperatorError> {
    if valid_merchant_id(name) {
        Ok(())
    } else {
        Err(OperatorError::invalid(
            "invalid_name",
            format!("{name:?}: 1 to 32 letters, digits, _ . -"),
        ))
    }
}

/// A device's public key as the operator gives it.
pub fn parse_key(text: &str) -> Result<Principal, OperatorError> {
    let principal = Principal::parse(text.trim().as_bytes())
        .map_err(|e| OperatorError::invalid("invalid_key", e.to_string()))?;
    if principal.algorithm().is_none() {
        return Err(OperatorError::invalid(
            "invalid_key",
            "give a public key such as ed25519-base64:...",
        ));
    }
    Ok(principal)
}

/// Decimal degrees (`-1.2921`) as micro-degrees, at most `limit` degrees either way; absent is 0.
pub fn parse_degrees(text: Option<&str>, limit: i64, what: &str) -> Result<i64, OperatorError> {
    let Some(text) = text else { return Ok(0) };
    let bad = || OperatorError::invalid("invalid_location", format!("{what} {text:?}"));
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty()
        || fraction.len() > LOCATION_FRACTION_DIGITS_MAX
        || !whole
            .bytes()
            .chain(fraction.bytes())
            .all(|b| b.is_ascii_digit())
        || whole.len() > LOCATION_WHOLE_DIGITS_MAX
    {
        return Err(bad());
    }
    let whole: i64 = whole.parse().map_err(|_| bad())?;
    let fraction: i64 = format!("{fraction:0<LOCATION_FRACTION_DIGITS_MAX$}")
        .parse()
        .map_err(|_| bad())?;
    let micro = whole * MICRO_PER_DEGREE + fraction;
    if micro > limit * MICRO_PER_DEGREE {
        return Err(bad());
    }
    Ok(if negative { -micro } else { micro })
}

/// The strategy in force: the stored one, or the default in the server's currency when the
/// operator has set none. (A stored one that does not decode is an error when it is read.)
pub fn strategy_in_force(
    stored: Option<&StrategyRecord>,
    default_currency: offpay_ledger::Currency,
) -> Strategy {
    stored.map_or_else(
        || Strategy::default_for(default_currency),
        StrategyRecord::strategy,
    )
}

/// The operator sets the strategy: validated, stored with its amounts in minor units.
pub fn set_strategy(strategy: &Strategy) -> Result<Operation, OperatorError> {
    strategy.validate().map_err(OperatorError::usage)?;
    let record = StrategyRecord::from_strategy(strategy).map_err(OperatorError::usage)?;
    Ok(records::put(records::STRATEGY_KEY, &record)?)
}

/// What the PA knows of a payer: disputes and classes from its record, bounces from the CSC's
/// counter.
pub fn standing(payer: &PayerRecord, bounces: Option<&CountRecord>) -> Standing {
    Standing {
        disputes: payer.disputes,
        bounces: bounces.map_or(0, |count| count.count),
        classes: payer.classes.clone(),
    }
}

/// A payer's registration: the records and accounts to write, and the answer. `existing` is the
/// payer's record as read; `operator_accounts` the operator's own accounts in the strategy's
/// currency (created with the first registration). A new key for an existing payer (a lost
/// device) retires the old key at `now`: it can no longer ask the PA for anything, and the
/// microchecks it signed still clear when the machines deposit them within
/// [`crate::limits::LOST_KEY_DEPOSIT_WINDOW_SECONDS`] (an approved microcheck is paid).
pub fn register_payer(
    request: &RegisterPayer,
    existing: &Loaded<PayerRecord>,
    strategy: &Strategy,
    operator_accounts: Vec<Operation>,
    now: UnixSeconds,
) -> Result<(Effects, Value), OperatorError> {
    check_name(&request.name)?;
    let key = parse_key(&request.key)?;
    if let Some(classes) = &request.classes
        && (classes.is_empty() || !classes.iter().all(|c| valid_label(c)))
    {
        return Err(OperatorError::invalid(
            "invalid_classes",
            "product classes are lower-case labels",
        ));
    }
    let currency = strategy.currency().map_err(OperatorError::usage)?;
    let record = PayerRecord {
        v: RECORD_VERSION,
        name: request.name.clone(),
        key: key_identifier(&key),
        adult: request.adult,
        classes: request.classes.clone(),
        disputes: existing.value.as_ref().map_or(0, |p| p.disputes),
        // A new device key does not lift a block: only unblocking does.
        blocked: existing.value.as_ref().and_then(|p| p.blocked.clone()),
    };
    let account = payer_account(&request.name)
        .map_err(|e| OperatorError::invalid("invalid_name", e.to_string()))?;
    let mut effects = Effects::new();
    effects.create_accounts(operator_accounts);
    effects.create_account(NewAccount {
        id: account.clone(),
        kind: AccountKind::Customer,
        currency,
        limits: BalanceLimits {
            balance_min: Some(0),
            balance_max: None,
        },
    });
    effects.write(existing.write(&record)?);
    if let Some(old) = &existing.value
        && let Ok(old) = old.principal()
        && old != key
    {
        effects.write(records::put(
            &records::payer_key_key(&fingerprint(&old)),
            &PayerKeyRecord::retired(&request.name, now.0),
        )?);
    }
    effects.write(records::put(
        &records::payer_key_key(&fingerprint(&key)),
        &PayerKeyRecord::new(&request.name),
    )?);
    let answer = json!({
        "payer": record.name, "account": account.to_string(), "key_fingerprint": fingerprint(&key),
        "adult": record.adult, "classes": record.classes,
    });
    Ok((effects, answer))
}

/// A payer as the operator API shows it; `balance` is its account's (minor units, currency), if
/// it has one.
pub fn payer_view(
    payer: &PayerRecord,
    standing: &Standing,
    balance: Option<(i64, offpay_ledger::Currency)>,
) -> Value {
    json!({
        "payer": payer.name,
        "key_fingerprint": payer.principal().map(|k| fingerprint(&k)).unwrap_or_default(),
        "adult": payer.adult, "classes": payer.classes, "disputes": standing.disputes,
        "bounces": standing.bounces, "strikes": standing.strikes(),
        "blocked": payer.blocked.is_some(),
        "blocked_at": payer.blocked.as_ref().map(|b| rfc3339_seconds(b.at)),
        "block_reason": payer.blocked.as_ref().and_then(|b| b.reason.clone()),
        "balance": balance
            .map(|(minor, currency)| offpay_ledger::Decimal::new(i128::from(minor), currency).to_string()),
        "currency": balance.map(|(_, currency)| currency.code().to_owned()),
    })
}

/// Unix seconds as RFC 3339 UTC, `2026-12-07T01:02:03Z`.
pub fn rfc3339_seconds(seconds: u64) -> String {
    let stamp = UnixSeconds(seconds).stamp();
    format!(
        "{}-{}-{}T{}:{}:{}Z",
        &stamp[0..4],
        &stamp[4..6],
        &stamp[6..8],
        &stamp[8..10],
        &stamp[10..12],
        &stamp[12..14]
    )
}

/// A disputed microcheck: one more strike for the payer.
pub fn dispute(
    payer: &Loaded<PayerRecord>,
    request: &Dispute,
) -> Result<(Effects, Value), OperatorError> {
    let name = payer.key.strip_prefix("payer:").unwrap_or(&payer.key);
    let mut record = payer.value.clone().ok_or_else(|| OperatorError::NotFound {
        what: "payer",
        id: name.to_owned(),
    })?;
    record.disputes = record.disputes.saturating_add(1);
    let mut effects = Effects::new();
    effects.write(payer.write(&record)?);
    let answer =
        json!({ "payer": record.name, "disputes": record.disputes, "nonce": request.nonce });
    Ok((effects, answer))
}

/// The operator blocks or unblocks a payer (customer care: a lost or stolen device, a fraud
/// case).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockRequest {
    /// Why, for the record (at most [`records::BLOCK_REASON_BYTES_MAX`] bytes).
    #[serde(default)]
    pub reason: Option<String>,
}

/// Refuses a blocked payer anything from the PA online: offline credentials, an online
/// (transaction-specific) credential. What it signed offline before is another matter: see
/// [`set_blocked`].
pub fn check_not_blocked(payer: &PayerRecord) -> Result<(), OperatorError> {
    match &payer.blocked {
        None => Ok(()),
        Some(block) => Err(OperatorError::Forbidden {
            code: "payer_blocked",
            message: format!(
                "payer {} is blocked since {} by customer care: no credentials are issued to it until it is unblocked",
                payer.name,
                UnixSeconds(block.at)
            ),
        }),
    }
}

/// Blocks (`blocked`) or unblocks the payer in `payer` at `now`. A block stops the PA issuing
/// the payer credentials online ([`check_not_blocked`]); the microchecks it signed offline under
/// credentials issued before still clear and are paid to the merchants from the payer's
/// account, as the seed promises for every approved microcheck (the exposure after the block is
/// what those credentials allow until they expire; the CSC flags each microcheck dated after the
/// block, `spent_after_block`). Blocking a blocked payer keeps the first block's time;
/// unblocking one that is not blocked changes nothing. Returns the effects and the record as it
/// now stands.
pub fn set_blocked(
    payer: &Loaded<PayerRecord>,
    blocked: bool,
    request: &BlockRequest,
    now: UnixSeconds,
) -> Result<(Effects, PayerRecord), OperatorError> {
    let name = payer.key.strip_prefix("payer:").unwrap_or(&payer.key);
    let mut record = payer.value.clone().ok_or_else(|| OperatorError::NotFound {
        what: "payer",
        id: name.to_owned(),
    })?;
    let reason = request
        .reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty());
    if let Some(reason) = reason
        && (reason.len() > records::BLOCK_REASON_BYTES_MAX || reason.chars().any(char::is_control))
    {
        return Err(OperatorError::invalid(
            "invalid_reason",
            format!(
                "the reason is at most {} bytes of text without control characters",
                records::BLOCK_REASON_BYTES_MAX
            ),
        ));
    }
    let mut effects = Effects::new();
    match (blocked, &record.blocked) {
        (true, None) => {
            record.blocked = Some(records::PayerBlock {
                at: now.0,
                reason: reason.map(str::to_owned),
            });
            effects.write(payer.write(&record)?);
        }
        (false, Some(_)) => {
            record.blocked = None;
            effects.write(payer.write(&record)?);
        }
        _ => {}
    }
    Ok((effects, record))
}

/// A merchant's registration: its record (the location parsed, the domain defaulting to the
/// strategy's) and the accounts to create.
pub fn register_merchant(
    request: &RegisterMerchant,
    strategy: &Strategy,
    operator_accounts: Vec<Operation>,
) -> Result<(Effects, MerchantRecord), OperatorError> {
    check_name(&request.id)?;
    let key = parse_key(&request.key)?;
    let app_domain = request
        .app_domain
        .clone()
        .unwrap_or_else(|| strategy.app_domain.clone());
    if !valid_label(&app_domain) {
        return Err(OperatorError::invalid(
            "invalid_app_domain",
            "a lower-case label",
        ));
    }
    let location = Location {
        latitude_micro: parse_degrees(request.latitude.as_deref(), LATITUDE_MAX, "latitude")?,
        longitude_micro: parse_degrees(request.longitude.as_deref(), LONGITUDE_MAX, "longitude")?,
    };
    let currency = strategy.currency().map_err(OperatorError::usage)?;
    let record = MerchantRecord {
        v: RECORD_VERSION,
        id: request.id.clone(),
        key: key_identifier(&key),
        app_domain,
        location,
    };
    let account = merchant_account(&request.id)
        .map_err(|e| OperatorError::invalid("invalid_merchant", e.to_string()))?;
    let mut effects = Effects::new();
    effects.create_accounts(operator_accounts);
    effects.create_account(NewAccount {
        id: account,
        kind: AccountKind::Merchant,
        currency,
        limits: BalanceLimits {
            balance_min: Some(0),
            balance_max: None,
        },
    });
    effects.write(records::put(&records::merchant_key(&request.id), &record)?);
    Ok((effects, record))
}

fn text(assertion: &offpay_keynote::Assertion) -> String {
    String::from_utf8_lossy(assertion.text()).into_owned()
}

/// What the PA reads to decide on an online credential ([`Pa::transaction`]).
#[derive(Debug)]
pub struct TransactionState {
    /// The payer.
    pub payer: PayerRecord,
    /// Its standing.
    pub standing: Standing,
    /// Its online record as read.
    pub online: Loaded<OnlineRecord>,
    /// What its account can pay, minor units.
    pub available_minor: i64,
    /// For each hold of `online`, whether the CSC has cleared its microcheck.
    pub cleared: Vec<bool>,
}

/// Reads what [`Pa::transaction`] decides on for `name` (`None`: no such payer).
pub fn load_transaction(
    store: &mut dyn LedgerStore,
    name: &str,
) -> Result<Option<TransactionState>, RecordError> {
    let Some(payer) = Loaded::<PayerRecord>::read(store, &records::payer_key(name))?.value else {
        return Ok(None);
    };
    let bounces = Loaded::<CountRecord>::read(store, &crate::csc::bounces_key(name))?.value;
    let online = Loaded::<OnlineRecord>::read(store, &records::online_key(name))?;
    let mut cleared = Vec::new();
    for hold in online.value.iter().flat_map(|record| &record.holds) {
        let key = crate::csc::charge_key(name, &hold.timestamp, &hold.merchant, &hold.nonce);
        cleared.push(store.record(records::NAMESPACE, &key)?.is_some());
    }
    let available_minor = match payer_account(name) {
        Ok(account) => store.account(&account)?.map_or(0, |a| a.available()),
        Err(_) => 0,
    };
    let standing = standing(&payer, bounces.as_ref());
    Ok(Some(TransactionState {
        payer,
        standing,
        online,
        available_minor,
        cleared,
    }))
}

impl Pa {
    /// The PA with its key and the age key.
    pub fn new(pa: PrivateKey, age: PrivateKey) -> Pa {
        Pa {
            pa,
            age,
            serial: AtomicU64::new(0),
        }
    }

    /// The PA's public key.
    pub fn principal(&self) -> Principal {
        self.pa.principal()
    }

    /// The age key's public key.
    pub fn age_principal(&self) -> Principal {
        self.age.principal()
    }

    fn pa_identifier(&self) -> String {
        key_identifier(&self.pa.principal())
    }

    fn age_identifier(&self) -> String {
        key_identifier(&self.age.principal())
    }

    /// A credential serial unique within this process: the time of issue and a counter.
    fn next_serial(&self, now: UnixSeconds) -> String {
        let n = self.serial.fetch_add(1, Ordering::Relaxed);
        format!("c{}-{n}", now.0)
    }

    /// What devices need to trust this PA.
    pub fn info(&self, strategy: &Strategy) -> Value {
        json!({
            "pa_key": self.pa_identifier(), "age_key": self.age_identifier(),
            "app_domain": strategy.app_domain, "currency": strategy.currency,
        })
    }

    /// A merchant's credential at `now` and what the machine needs to trust payers.
    pub fn merchant_answer(
        &self,
        record: &MerchantRecord,
        strategy: &Strategy,
        now: UnixSeconds,
    ) -> Result<Value, OperatorError> {
        let key = record.principal()?;
        let credential = credential::issue_merchant(
            &self.pa,
            &key,
            &record.id,
            &record.app_domain,
            now.minus(CLOCK_SKEW_SECONDS_MAX),
            now.plus(strategy.merchant_validity_seconds),
        )
        .map_err(OperatorError::usage)?;
        Ok(json!({
            "merchant": record.id, "account": format!("mc:merchant:{}", record.id),
            "app_domain": record.app_domain, "currency": strategy.currency,
            "pa_key": self.pa_identifier(), "age_key": self.age_identifier(),
            "merchant_credential": text(&credential),
        }))
    }

    /// A delegation to a sub-PA at `now`.
    pub fn delegate(
        &self,
        request: &DelegateSubPa,
        strategy: &Strategy,
        now: UnixSeconds,
    ) -> Result<Value, OperatorError> {
        let key = parse_key(&request.key)?;
        let currency = strategy.currency().map_err(OperatorError::usage)?;
        let amount_max = Amount::parse(&request.amount_max, currency)
            .map_err(|e| OperatorError::invalid("invalid_amount", e.to_string()))?;
        if request.validity_seconds > MERCHANT_VALIDITY_SECONDS_MAX {
            return Err(OperatorError::invalid("invalid_validity", "too long"));
        }
        let delegation = credential::issue_delegation(
            &self.pa,
            &key,
            &DelegationTemplate {
                serial: self.next_serial(now),
                app_domain: strategy.app_domain.clone(),
                currency,
                amount_max,
                not_before: now.minus(CLOCK_SKEW_SECONDS_MAX),
                not_after: now.plus(request.validity_seconds),
            },
        )
        .map_err(OperatorError::usage)?;
        Ok(json!({ "delegation": text(&delegation), "pa_key": self.pa_identifier() }))
    }

    /// A payer's offline credentials at `now`: one per tier of the strategy, lowered by its
    /// strikes (none at the limit), and an adulthood credential for an adult who gets any.
    pub fn refresh(
        &self,
        payer: &PayerRecord,
        standing: &Standing,
        strategy: &Strategy,
        now: UnixSeconds,
    ) -> Result<Value, OperatorError> {
        check_not_blocked(payer)?;
        let key = payer.principal()?;
        let templates = strategy
            .payer_templates(standing, now, &self.next_serial(now))
            .map_err(OperatorError::usage)?;
        let mut credentials = Vec::with_capacity(templates.len() + 1);
        for template in &templates {
            let issued =
                credential::issue_payer(&self.pa, &key, template).map_err(OperatorError::usage)?;
            credentials.push(text(&issued));
        }
        if payer.adult && !templates.is_empty() {
            let adult = credential::issue_adulthood(
                &self.age,
                &key,
                &strategy.app_domain,
                now.minus(CLOCK_SKEW_SECONDS_MAX),
                now.plus(strategy.adulthood_validity_seconds),
            )
            .map_err(OperatorError::usage)?;
            credentials.push(text(&adult));
        }
        let tiers: Vec<Value> = templates
            .iter()
            .map(|t| json!({ "tier": t.tier, "amount_max": t.amount_max.decimal().to_string(),
                             "not_after": t.not_after.stamp(), "per_merchant_day_max": t.per_merchant_day_max }))
            .collect();
        Ok(json!({
            "payer": payer.name, "credentials": credentials, "tiers": tiers,
            "strikes": standing.strikes(), "pa_key": self.pa_identifier(), "age_key": self.age_identifier(),
            "app_domain": strategy.app_domain, "currency": strategy.currency,
        }))
    }

    /// A transaction-specific (online) credential for the offer in `body` at `now`, if the
    /// strategy allows it for this payer (seed 004 §3.3: fetched when the offline limits are
    /// exceeded). It follows the same strategy as the offline credentials: the payer's strikes,
    /// product classes and adulthood; the strategy's online limit and daily count per payer; and
    /// funds — the payer's balance less the amounts of earlier online credentials not yet
    /// cleared must cover it, and its amount is held against the balance in turn ([`OnlineRecord`]),
    /// so an online credential is never paid from the operator's suspense account. The effects
    /// write the payer's online record, conditional on the version read.
    pub fn transaction(
        &self,
        state: &TransactionState,
        strategy: &Strategy,
        body: &Value,
        now: UnixSeconds,
    ) -> Result<(Effects, Value, Offer), OperatorError> {
        let forbidden =
            |code: &'static str, message: String| OperatorError::Forbidden { code, message };
        let offer: Offer = serde_json::from_value(body["offer"].clone())
            .map_err(|e| OperatorError::invalid("malformed", format!("offer: {e}")))?;
        let terms = offer.terms().map_err(OperatorError::Refused)?;
        if offer.app_domain != strategy.app_domain {
            return Err(forbidden(
                "wrong_domain",
                format!("this PA issues for {:?}", strategy.app_domain),
            ));
        }
        let (payer, standing) = (&state.payer, &state.standing);
        check_not_blocked(payer)?;
        strategy
            .transaction_allowed(standing, terms.amount)
            .map_err(|message| forbidden("transaction_refused", message))?;
        if let Some(classes) = &standing.classes
            && !classes.contains(&offer.product_class)
            && !crate::reverts::reverted(crate::reverts::ONLINE_CLASSES)
        {
            let refusal = Refusal::ProductClassNotAllowed {
                class: offer.product_class.clone(),
                allowed: classes.join(", "),
            };
            return Err(forbidden("product_class_not_allowed", refusal.to_string()));
        }
        if offer.product_class == ADULT_CLASS
            && !payer.adult
            && !crate::reverts::reverted(crate::reverts::ONLINE_CLASSES)
        {
            return Err(forbidden(
                "adulthood_required",
                Refusal::AdulthoodRequired.to_string(),
            ));
        }
        let today = now.date();
        let mut record = state.online.value.clone().unwrap_or_default();
        record.v = ONLINE_RECORD_VERSION;
        // Holds whose microcheck has cleared, or that have lapsed, are let go.
        let mut holds = Vec::with_capacity(record.holds.len() + 1);
        for (hold, cleared) in record.holds.iter().zip(&state.cleared) {
            if !*cleared && hold.until > now.0 {
                holds.push(hold.clone());
            }
        }
        let repeat = holds
            .iter()
            .any(|hold| hold.merchant == offer.merchant && hold.nonce == offer.nonce);
        if !repeat {
            let issued_today = if record.date == today {
                record.issued
            } else {
                0
            };
            if issued_today >= strategy.transaction_day_max
                && !crate::reverts::reverted(crate::reverts::ONLINE_RATE)
            {
                return Err(forbidden(
                    "transaction_rate_limited",
                    format!(
                        "{} has had {issued_today} online credentials today, the most the strategy allows",
                        payer.name
                    ),
                ));
            }
            let held: u64 = holds.iter().map(|hold| hold.amount_minor).sum();
            let available = u64::try_from(state.available_minor).unwrap_or(0);
            let amount = terms.amount.minor();
            if available.saturating_sub(held) < amount
                && !crate::reverts::reverted(crate::reverts::ONLINE_FUNDS)
            {
                let currency = terms.amount.currency();
                let words = |minor: u64| {
                    Amount::from_minor(minor, currency)
                        .map_or_else(|_| minor.to_string(), |a| a.decimal().to_string())
                };
                return Err(forbidden(
                    "insufficient_funds",
                    format!(
                        "{}'s balance of {} {currency} ({} {currency} of it held for earlier online purchases) does not cover {} {currency}",
                        payer.name,
                        words(available),
                        words(held),
                        terms.amount.decimal()
                    ),
                ));
            }
            if holds.len() >= TRANSACTION_HOLDS_MAX {
                return Err(forbidden(
                    "transaction_rate_limited",
                    format!("{TRANSACTION_HOLDS_MAX} online purchases are waiting to be deposited"),
                ));
            }
            let not_after = now.plus(strategy.transaction_validity_seconds);
            holds.push(OnlineHold {
                merchant: offer.merchant.clone(),
                nonce: offer.nonce.clone(),
                timestamp: offer.timestamp.clone(),
                amount_minor: amount,
                until: not_after.plus(TRANSACTION_HOLD_SECONDS).0,
            });
            record.issued = issued_today.saturating_add(1);
            record.date = today;
        }
        record.holds = holds;
        let issued = credential::issue_transaction(
            &self.pa,
            &payer.principal()?,
            &TransactionTemplate {
                serial: self.next_serial(now),
                app_domain: strategy.app_domain.clone(),
                currency: terms.amount.currency(),
                amount: terms.amount,
                merchant: offer.merchant.clone(),
                nonce: offer.nonce.clone(),
                product_class: offer.product_class.clone(),
                not_before: now.minus(CLOCK_SKEW_SECONDS_MAX),
                not_after: now.plus(strategy.transaction_validity_seconds),
            },
        )
        .map_err(OperatorError::usage)?;
        let mut effects = Effects::new();
        effects.write(state.online.write(&record)?);
        Ok((effects, json!({ "credential": text(&issued) }), offer))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

    use offpay_ledger::{Currency, LedgerStore, MemoryStore, Timestamp};
    use offpay_operator::StoredRecord;

    use super::*;
    use crate::compliance::{Payment, check};
    use crate::policy::MerchantPolicy;

    const NOW: UnixSeconds = UnixSeconds(1_767_225_600);

    fn pa() -> Pa {
        Pa::new(
            PrivateKey::ed25519_from_seed(&[1; 32]),
            PrivateKey::ed25519_from_seed(&[2; 32]),
        )
    }

    fn device(seed: u8) -> PrivateKey {
        PrivateKey::ed25519_from_seed(&[seed; 32])
    }

    fn commit(store: &mut MemoryStore, effects: Effects) {
        let results = store.commit(&effects.into_batches(), Timestamp(1)).unwrap();
        assert!(results.iter().all(Result::is_ok), "{results:?}");
    }

    fn register(store: &mut MemoryStore, name: &str, key: &PrivateKey, adult: bool) -> Value {
        let strategy = Strategy::default_for(Currency::KES);
        let existing = Loaded::<PayerRecord>::read(store, &records::payer_key(name)).unwrap();
        let (effects, answer) = register_payer(
            &RegisterPayer {
                name: name.into(),
                key: key_identifier(&key.principal()),
                adult,
                classes: None,
            },
            &existing,
            &strategy,
            Vec::new(),
            NOW,
        )
        .unwrap();
        commit(store, effects);
        answer
    }

    fn payer(store: &mut MemoryStore, name: &str) -> Loaded<PayerRecord> {
        Loaded::read(store, &records::payer_key(name)).unwrap()
    }

    #[test]
    fn a_blocked_payer_is_issued_nothing_until_unblocked_and_a_new_key_keeps_the_block() {
        let mut store = MemoryStore::new();
        let pa = pa();
        let strategy = Strategy::default_for(Currency::KES);
        register(&mut store, "alice", &device(3), false);
        let standing = Standing::default();
        let record = payer(&mut store, "alice").value.unwrap();
        assert!(pa.refresh(&record, &standing, &strategy, NOW).is_ok());

        let reason = BlockRequest {
            reason: Some(" phone stolen ".into()),
        };
        let (effects, blocked) =
            set_blocked(&payer(&mut store, "alice"), true, &reason, NOW).unwrap();
        commit(&mut store, effects);
        let block = blocked.blocked.clone().unwrap();
        assert_eq!(
            (block.at, block.reason.as_deref()),
            (NOW.0, Some("phone stolen"))
        );
        let record = payer(&mut store, "alice").value.unwrap();
        assert_eq!(record, blocked);
        let error = pa.refresh(&record, &standing, &strategy, NOW).unwrap_err();
        assert_eq!(
            (error.code().as_str(), error.fault()),
            ("payer_blocked", super::super::Fault::Forbidden)
        );
        assert!(error.to_string().contains("alice"), "{error}");
        // Blocking again keeps the first block's time; nothing is written.
        let (effects, again) = set_blocked(
            &payer(&mut store, "alice"),
            true,
            &BlockRequest::default(),
            NOW.plus(60),
        )
        .unwrap();
        assert!(effects.into_batches().is_empty());
        assert_eq!(again.blocked, Some(block));
        // A new device key for a blocked payer: still blocked.
        register(&mut store, "alice", &device(4), false);
        let record = payer(&mut store, "alice").value.unwrap();
        assert!(record.blocked.is_some());
        assert!(pa.refresh(&record, &standing, &strategy, NOW).is_err());

        let (effects, unblocked) = set_blocked(
            &payer(&mut store, "alice"),
            false,
            &BlockRequest::default(),
            NOW,
        )
        .unwrap();
        commit(&mut store, effects);
        assert_eq!(unblocked.blocked, None);
        let record = payer(&mut store, "alice").value.unwrap();
        assert!(pa.refresh(&record, &standing, &strategy, NOW).is_ok());
    }

    #[test]
    fn a_block_of_nobody_or_with_a_bad_reason_is_refused_and_changes_nothing() {
        let mut store = MemoryStore::new();
        register(&mut store, "alice", &device(3), false);
        let error = set_blocked(
            &payer(&mut store, "bob"),
            true,
            &BlockRequest::default(),
            NOW,
        )
        .unwrap_err();
        assert_eq!(error.fault(), super::super::Fault::NotFound);
        for reason in ["x".repeat(201), "line\nbreak".to_owned()] {
            let request = BlockRequest {
                reason: Some(reason),
            };
            let error = set_blocked(&payer(&mut store, "alice"), true, &request, NOW).unwrap_err();
            assert_eq!(error.code(), "invalid_reason");
        }
        assert!(payer(&mut store, "alice").value.unwrap().blocked.is_none());
    }

    #[test]
    fn a_new_key_for_a_payer_retires_the_old_and_keeps_its_disputes() {
        let mut store = MemoryStore::new();
        let (old, new) = (device(3), device(4));
        register(&mut store, "alice", &old, false);
        let (effects, answer) =
            dispute(&payer(&mut store, "alice"), &Dispute { nonce: None }).unwrap();
        commit(&mut store, effects);
        assert_eq!(answer["disputes"], 1);
        let answer = register(&mut store, "alice", &new, false);
        assert_eq!(answer["key_fingerprint"], fingerprint(&new.principal()));
        assert_eq!(payer(&mut store, "alice").value.unwrap().disputes, 1);
        // The old key still names alice, retired at the report: the microchecks it signed are
        // still paid (issue 20: deleting it left merchants unpaid).
        let old_key = records::payer_key_key(&fingerprint(&old.principal()));
        let index = store.record(records::NAMESPACE, &old_key).unwrap().unwrap();
        assert_eq!(
            PayerKeyRecord::decode(&old_key, &index.value).unwrap(),
            PayerKeyRecord::retired("alice", NOW.0)
        );
        let new_key = records::payer_key_key(&fingerprint(&new.principal()));
        let index = store.record(records::NAMESPACE, &new_key).unwrap().unwrap();
        assert_eq!(
            PayerKeyRecord::decode(&new_key, &index.value).unwrap(),
            PayerKeyRecord::new("alice")
        );
        assert!(payer_account("alice").is_ok());
    }

    #[test]
    fn a_dispute_decided_on_a_stale_read_does_not_commit() {
        let mut store = MemoryStore::new();
        register(&mut store, "alice", &device(3), false);
        let read = payer(&mut store, "alice");
        let (first, _) = dispute(&read, &Dispute { nonce: None }).unwrap();
        let (second, _) = dispute(&read, &Dispute { nonce: None }).unwrap();
        commit(&mut store, first);
        let results = store.commit(&second.into_batches(), Timestamp(2)).unwrap();
        assert!(
            results.iter().any(Result::is_err),
            "the second must decide again"
        );
        let missing = Loaded::<PayerRecord>::read(&mut store, "payer:bob").unwrap();
        assert!(matches!(
            dispute(&missing, &Dispute { nonce: None }),
            Err(OperatorError::NotFound { what: "payer", .. })
        ));
    }

    #[test]
    fn credentials_follow_the_strategy_and_strikes_lower_them() {
        let mut store = MemoryStore::new();
        let key = device(3);
        register(&mut store, "alice", &key, true);
        let record = payer(&mut store, "alice").value.unwrap();
        let strategy = Strategy::default_for(Currency::KES);
        let clean = standing(&record, None);
        let answer = pa().refresh(&record, &clean, &strategy, NOW).unwrap();
        // Two tiers and an adulthood credential.
        assert_eq!(answer["credentials"].as_array().unwrap().len(), 3);
        assert_eq!(answer["tiers"][0]["amount_max"], "5.00");
        let struck = standing(&record, Some(&CountRecord::new(1)));
        let answer = pa().refresh(&record, &struck, &strategy, NOW).unwrap();
        assert_eq!(answer["tiers"][0]["amount_max"], "2.50");
        assert_eq!(answer["strikes"], 1);
        let out = standing(&record, Some(&CountRecord::new(3)));
        let answer = pa().refresh(&record, &out, &strategy, NOW).unwrap();
        assert!(
            answer["credentials"].as_array().unwrap().is_empty(),
            "no adulthood alone"
        );
    }

    fn online_offer(amount: &str, domain: &str, class: &str, seed: u8) -> Value {
        let mut offer = Offer {
            merchant: "vm-1".into(),
            product: "soda".into(),
            product_class: class.into(),
            amount: amount.into(),
            currency: "KES".into(),
            app_domain: domain.into(),
            date: NOW.date(),
            timestamp: NOW.stamp(),
            nonce: crate::offer::machine_nonce(NOW, &[seed; 16]),
        };
        offer.nonce.make_ascii_lowercase();
        json!({ "offer": offer })
    }

    /// Asks the PA for an online credential for alice, whose account can pay `available`
    /// (minor units), and commits what it decides.
    fn ask_online(
        store: &mut MemoryStore,
        strategy: &Strategy,
        available: i64,
        body: &Value,
        now: UnixSeconds,
    ) -> Result<(Value, Offer), OperatorError> {
        let mut state = load_transaction(store, "alice").unwrap().unwrap();
        state.available_minor = available;
        let (effects, answer, offer) = pa().transaction(&state, strategy, body, now)?;
        commit(store, effects);
        Ok((answer, offer))
    }

    #[test]
    fn an_online_credential_is_for_the_offer_within_the_limit() {
        let mut store = MemoryStore::new();
        let key = device(3);
        register(&mut store, "alice", &key, false);
        let strategy = Strategy::default_for(Currency::KES);
        let (answer, offer_made) = ask_online(
            &mut store,
            &strategy,
            100_000,
            &online_offer("12.00", "vend", "drink", 1),
            NOW,
        )
        .unwrap();
        let credential = answer["credential"].as_str().unwrap().to_owned();
        // The machine accepts a microcheck covered by it.
        let terms = offer_made.terms().unwrap();
        let microcheck = crate::microcheck::write(&key, &terms).unwrap();
        let policy = MerchantPolicy::new("vm-1", "vend", &pa().principal(), None).unwrap();
        let microcheck = String::from_utf8(microcheck.text().to_vec()).unwrap();
        let payment = Payment::parse(&microcheck, &[credential]).unwrap();
        let mut cache = offpay_keynote::SignatureCache::new();
        check(&policy, &terms, &payment, 1, &mut cache).unwrap();
        let too_much = ask_online(
            &mut store,
            &strategy,
            100_000,
            &online_offer("51.00", "vend", "drink", 2),
            NOW,
        );
        assert_eq!(too_much.unwrap_err().code(), "transaction_refused");
        let elsewhere = ask_online(
            &mut store,
            &strategy,
            100_000,
            &online_offer("1.00", "food", "drink", 3),
            NOW,
        );
        assert_eq!(elsewhere.unwrap_err().code(), "wrong_domain");
    }

    #[test]
    fn an_online_credential_keeps_the_payers_classes_and_the_adulthood_rule() {
        let mut store = MemoryStore::new();
        let strategy = Strategy::default_for(Currency::KES);
        let existing =
            Loaded::<PayerRecord>::read(&mut store, &records::payer_key("alice")).unwrap();
        let (effects, _) = register_payer(
            &RegisterPayer {
                name: "alice".into(),
                key: key_identifier(&device(3).principal()),
                adult: false,
                classes: Some(vec!["food".into()]),
            },
            &existing,
            &strategy,
            Vec::new(),
            NOW,
        )
        .unwrap();
        commit(&mut store, effects);
        let drink = ask_online(
            &mut store,
            &strategy,
            100_000,
            &online_offer("12.00", "vend", "drink", 1),
            NOW,
        );
        assert_eq!(drink.unwrap_err().code(), "product_class_not_allowed");
        ask_online(
            &mut store,
            &strategy,
            100_000,
            &online_offer("12.00", "vend", "food", 2),
            NOW,
        )
        .unwrap();
        // An adult product for a payer the operator did not register as an adult.
        let mut store = MemoryStore::new();
        register(&mut store, "alice", &device(3), false);
        let adult = ask_online(
            &mut store,
            &strategy,
            100_000,
            &online_offer("12.00", "vend", "adult", 3),
            NOW,
        );
        assert_eq!(adult.unwrap_err().code(), "adulthood_required");
    }

    #[test]
    fn online_credentials_are_paid_from_the_payers_funds_which_they_hold() {
        let mut store = MemoryStore::new();
        register(&mut store, "alice", &device(3), false);
        let strategy = Strategy::default_for(Currency::KES);
        // Nothing in the account: nothing online (issue 20 saw four of 20.00 on 0.00).
        let unfunded = ask_online(
            &mut store,
            &strategy,
            0,
            &online_offer("20.00", "vend", "drink", 1),
            NOW,
        );
        let error = unfunded.unwrap_err();
        assert_eq!(error.code(), "insufficient_funds");
        assert!(error.to_string().contains("0.00 KES"), "{error}");
        // 30.00 covers one of 20.00; the second finds 20.00 of it held.
        let body = online_offer("20.00", "vend", "drink", 2);
        ask_online(&mut store, &strategy, 3000, &body, NOW).unwrap();
        let second = ask_online(
            &mut store,
            &strategy,
            3000,
            &online_offer("20.00", "vend", "drink", 3),
            NOW,
        );
        let error = second.unwrap_err();
        assert_eq!(error.code(), "insufficient_funds");
        assert!(
            error.to_string().contains("20.00 KES of it held"),
            "{error}"
        );
        // Asking again for the same offer holds nothing more.
        ask_online(&mut store, &strategy, 3000, &body, NOW).unwrap();
        let record =
            Loaded::<OnlineRecord>::read(&mut store, &records::online_key("alice")).unwrap();
        assert_eq!(record.value.unwrap().holds.len(), 1);
        // Once the CSC has cleared the first microcheck (its charge record exists and the
        // balance is 10.00), the hold is let go and 10.00 is there to spend.
        let offer: Offer = serde_json::from_value(body["offer"].clone()).unwrap();
        let mut effects = Effects::new();
        effects.write(Operation::PutRecord(offpay_ledger::RecordWrite {
            namespace: records::NAMESPACE.into(),
            key: crate::csc::charge_key("alice", &offer.timestamp, &offer.merchant, &offer.nonce),
            value: Some(b"cleared".to_vec()),
            expected_version: None,
        }));
        commit(&mut store, effects);
        ask_online(
            &mut store,
            &strategy,
            1000,
            &online_offer("10.00", "vend", "drink", 4),
            NOW,
        )
        .unwrap();
        // An uncleared hold lapses a week after its credential expired.
        let later = NOW.plus(strategy.transaction_validity_seconds + TRANSACTION_HOLD_SECONDS + 1);
        let mut online = online_offer("10.00", "vend", "drink", 5);
        online["offer"]["timestamp"] = json!(later.stamp());
        online["offer"]["date"] = json!(later.date());
        ask_online(&mut store, &strategy, 1000, &online, later).unwrap();
    }

    #[test]
    fn online_credentials_are_limited_per_payer_per_day() {
        let mut store = MemoryStore::new();
        register(&mut store, "alice", &device(3), false);
        let mut strategy = Strategy::default_for(Currency::KES);
        strategy.transaction_day_max = 2;
        for seed in 1..=2 {
            ask_online(
                &mut store,
                &strategy,
                100_000,
                &online_offer("1.00", "vend", "drink", seed),
                NOW,
            )
            .unwrap();
        }
        let third = ask_online(
            &mut store,
            &strategy,
            100_000,
            &online_offer("1.00", "vend", "drink", 3),
            NOW,
        );
        assert_eq!(third.unwrap_err().code(), "transaction_rate_limited");
        let tomorrow = NOW.plus(crate::time::SECONDS_PER_DAY);
        let mut next = online_offer("1.00", "vend", "drink", 4);
        next["offer"]["timestamp"] = json!(tomorrow.stamp());
        next["offer"]["date"] = json!(tomorrow.date());
        ask_online(&mut store, &strategy, 100_000, &next, tomorrow).unwrap();
    }

    #[test]
    fn merchants_and_sub_pas_get_credentials_from_the_pa() {
        let strategy = Strategy::default_for(Currency::KES);
        let machine = device(5);
        let (_, record) = register_merchant(
            &RegisterMerchant {
                id: "vm-1".into(),
                key: key_identifier(&machine.principal()),
                app_domain: None,
                latitude: Some("-1.2921".into()),
                longitude: Some("36.8219".into()),
            },
            &strategy,
            Vec::new(),
        )
        .unwrap();
        assert_eq!(record.location.latitude_micro, -1_292_100);
        assert_eq!(record.app_domain, "vend");
        let answer = pa().merchant_answer(&record, &strategy, NOW).unwrap();
        assert!(
            answer["merchant_credential"]
                .as_str()
                .unwrap()
                .contains("vm-1")
        );
        let sub = device(6);
        let request = DelegateSubPa {
            key: key_identifier(&sub.principal()),
            amount_max: "2.00".into(),
            validity_seconds: 3600,
        };
        let answer = pa().delegate(&request, &strategy, NOW).unwrap();
        assert!(answer["delegation"].as_str().unwrap().contains("Licensees"));
        let too_long = DelegateSubPa {
            validity_seconds: MERCHANT_VALIDITY_SECONDS_MAX + 1,
            ..request
        };
        assert_eq!(
            pa().delegate(&too_long, &strategy, NOW).unwrap_err().code(),
            "invalid_validity"
        );
    }

    #[test]
    fn names_keys_and_places_are_checked() {
        assert_eq!(check_name("no spaces").unwrap_err().code(), "invalid_name");
        assert_eq!(parse_key("nonsense").unwrap_err().code(), "invalid_key");
        assert_eq!(
            parse_degrees(Some("90"), 90, "latitude").unwrap(),
            90_000_000
        );
        assert_eq!(
            parse_degrees(Some("-0.5"), 90, "latitude").unwrap(),
            -500_000
        );
        assert_eq!(parse_degrees(None, 90, "latitude").unwrap(), 0);
        for bad in ["90.000001", "1.1234567", "abc", "", "1000", "-"] {
            assert!(parse_degrees(Some(bad), 90, "latitude").is_err(), "{bad}");
        }
    }
}
