//! The operator API's lists: one cursor style for every list, and the lists of the ledger and of
//! the rails' objects that had only a lookup by id.
//!
//! Every list takes `?limit=` (default [`LIMIT_DEFAULT`], at most [`LIMIT_MAX`]) and `?cursor=`
//! (opaque, from the previous page) and answers `{"items": [...], "next_cursor": "…" | null}`. A
//! list is a walk over the ledger's record pages in key order (or over accounts in id order, or
//! an account's history newest first) that keeps what matches the filters. The ledger has no
//! secondary indexes, so one request reads at most [`SCAN_RECORDS_MAX`] records: a filter that
//! matches little can answer fewer than `limit` items (even none) with a `next_cursor` to go on
//! from. A `null` cursor means the walk reached the end.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use offpay_ledger::{
    AccountId, Amount, Currency, LedgerStore, Record, StoreError, Timestamp, TransferRecord,
};
use offpay_operator::StoredRecord;
use serde_json::{Value, json};

use crate::AppState;
use crate::error::ApiError;

/// Items on a page when the request does not say.
pub const LIMIT_DEFAULT: usize = 50;
/// Most items on one page.
pub const LIMIT_MAX: usize = 500;
/// Most records (or accounts, or history entries) one list request reads.
pub const SCAN_RECORDS_MAX: usize = 10_000;
/// Tag at the start of every cursor (its format version).
const CURSOR_TAG: &str = "c1";

const _: () = assert!(LIMIT_DEFAULT <= LIMIT_MAX && LIMIT_MAX <= SCAN_RECORDS_MAX);
const _: () = assert!(LIMIT_MAX <= offpay_ledger::RECORD_PAGE_MAX);

/// A list request's query: its page and its filters, every other parameter refused.
#[derive(Debug)]
pub struct Params {
    values: BTreeMap<String, String>,
    /// Items wanted.
    pub limit: usize,
    /// The position after which to go on (decoded from the cursor).
    pub after: Option<String>,
}

impl Params {
    /// Reads the query of a list that takes the filters `filters`.
    pub fn parse(
        query: Result<Query<BTreeMap<String, String>>, QueryRejection>,
        filters: &[&str],
    ) -> Result<Params, ApiError> {
        let Query(values) = query
            .map_err(|rejection| ApiError::bad_request("malformed_query", rejection.body_text()))?;
        for name in values.keys() {
            if name != "limit" && name != "cursor" && !filters.contains(&name.as_str()) {
                let mut known = vec!["limit", "cursor"];
                known.extend(filters);
                return Err(ApiError::bad_request(
                    "unknown_parameter",
                    format!(
                        "this list takes no parameter {name:?}; it takes {}",
                        known.join(", ")
                    ),
                ));
            }
        }
        let limit = match values.get("limit").map(String::as_str) {
            None | Some("") => LIMIT_DEFAULT,
            Some(text) => match text.parse::<usize>() {
                Ok(limit) if (1..=LIMIT_MAX).contains(&limit) => limit,
                _ => {
                    return Err(ApiError::bad_request(
                        "invalid_limit",
                        format!("limit {text:?}: give a whole number from 1 to {LIMIT_MAX}"),
                    ));
                }
            },
        };
        let after = match values.get("cursor").map(String::as_str) {
            None | Some("") => None,
            Some(text) => Some(decode_cursor(text)?),
        };
        Ok(Params {
            values,
            limit,
            after,
        })
    }

    /// A filter's value (`None` when absent or empty).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values
            .get(name)
            .map(String::as_str)
            .filter(|value| !value.is_empty())
    }

    /// The cursor position, which must lie under `prefix` (a cursor of another list is refused).
    pub fn after_under(&self, prefix: &str) -> Result<Option<String>, ApiError> {
        match &self.after {
            Some(key) if !key.starts_with(prefix) => Err(invalid_cursor()),
            other => Ok(other.clone()),
        }
    }
}

fn invalid_cursor() -> ApiError {
    ApiError::bad_request(
        "invalid_cursor",
        "the cursor is not one this list gave; start again without a cursor",
    )
}

/// The opaque cursor for a position.
pub fn encode_cursor(position: &str) -> String {
    format!("{CURSOR_TAG}{}", hex::encode(position))
}

/// The position a cursor names.
pub fn decode_cursor(cursor: &str) -> Result<String, ApiError> {
    let hex_text = cursor.strip_prefix(CURSOR_TAG).ok_or_else(invalid_cursor)?;
    let bytes = hex::decode(hex_text).map_err(|_| invalid_cursor())?;
    String::from_utf8(bytes).map_err(|_| invalid_cursor())
}

/// A page of a list.
#[derive(Debug)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Where the next page starts, if the walk did not reach the end.
    pub next: Option<String>,
}

impl Page<Value> {
    /// The answer `{"items": [...], "next_cursor": ...}`.
    pub fn json(self) -> Json<Value> {
        Json(json!({
            "items": self.items,
            "next_cursor": self.next.as_deref().map(encode_cursor),
        }))
    }
}

/// Walks the records of `namespace` under `prefix` after `after`, keeping what `keep` maps to an
/// item, until `limit` items or [`SCAN_RECORDS_MAX`] records read.
pub fn scan_records<T>(
    store: &mut dyn LedgerStore,
    namespace: &str,
    prefix: &str,
    after: Option<String>,
    limit: usize,
    mut keep: impl FnMut(&mut dyn LedgerStore, &Record) -> Result<Option<T>, StoreError>,
) -> Result<Page<T>, StoreError> {
    let mut items = Vec::new();
    let mut after = after;
    let mut read = 0usize;
    loop {
        let want = offpay_ledger::RECORD_PAGE_MAX.min(SCAN_RECORDS_MAX - read);
        let records = store.records(namespace, prefix, after.as_deref(), want)?;
        let full = records.len() == want;
        for record in &records {
            read += 1;
            after = Some(record.key.clone());
            if let Some(item) = keep(store, record)? {
                items.push(item);
                if items.len() == limit {
                    return Ok(Page { items, next: after });
                }
            }
        }
        if !full {
            return Ok(Page { items, next: None });
        }
        if read >= SCAN_RECORDS_MAX {
            return Ok(Page { items, next: after });
        }
    }
}

/// A stored record that does not decode: an error naming its key (never skipped silently).
pub fn record_error(error: offpay_operator::RecordError) -> StoreError {
    crate::ledger::record_store_error(error)
}

// ---------------------------------------------------------------------------------------------
// Times.

/// Milliseconds since the epoch as RFC 3339 UTC with milliseconds, `2026-12-07T01:02:03.456Z`.
pub fn rfc3339(ms: u64) -> String {
    let stamp = offpay_microcheck::UnixSeconds(ms / 1000).stamp();
    format!(
        "{}-{}-{}T{}:{}:{}.{:03}Z",
        &stamp[0..4],
        &stamp[4..6],
        &stamp[6..8],
        &stamp[8..10],
        &stamp[10..12],
        &stamp[12..14],
        ms % 1000
    )
}

/// [`rfc3339`] of a ledger timestamp.
pub fn rfc3339_at(at: Timestamp) -> String {
    rfc3339(at.0)
}

/// Parses RFC 3339 UTC (`2026-12-07T01:02:03Z`, optionally with up to 3 fractional digits) to
/// milliseconds since the epoch; `field` names the parameter in the error.
pub fn parse_rfc3339(text: &str, field: &str) -> Result<u64, ApiError> {
    let bad = || {
        ApiError::bad_request(
            "invalid_time",
            format!(
                "{field} {text:?}: give an RFC 3339 UTC time such as 2026-12-07T01:02:03Z \
                 (or with milliseconds, .456Z)"
            ),
        )
    };
    let body = text
        .strip_suffix('Z')
        .or_else(|| text.strip_suffix('z'))
        .ok_or_else(bad)?;
    let (main, fraction) = match body.split_once('.') {
        Some((main, fraction)) => (main, Some(fraction)),
        None => (body, None),
    };
    let bytes = main.as_bytes();
    if bytes.len() != 19
        || bytes[4] != b'-'
        || bytes[7] != b'-'
        || !matches!(bytes[10], b'T' | b't')
        || bytes[13] != b':'
        || bytes[16] != b':'
    {
        return Err(bad());
    }
    let stamp: String = [
        &main[0..4],
        &main[5..7],
        &main[8..10],
        &main[11..13],
        &main[14..16],
        &main[17..19],
    ]
    .concat();
    let seconds = offpay_microcheck::UnixSeconds::parse_stamp(&stamp).ok_or_else(bad)?;
    let millis = match fraction {
        None => 0,
        Some(digits)
            if (1..=3).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) =>
        {
            format!("{digits:0<3}").parse::<u64>().map_err(|_| bad())?
        }
        Some(_) => return Err(bad()),
    };
    Ok(seconds.0 * 1000 + millis)
}

// ---------------------------------------------------------------------------------------------
// Routes.

/// The list routes of the ledger (the rails' lists are registered by their modules).
pub fn operator_routes() -> crate::routes::OperatorRoutes {
    use crate::routes::{EVERYONE, OperatorRoutes, READ};
    OperatorRoutes::new()
        .get("/accounts", READ, accounts)
        .get("/transfers", READ, transfers)
        .get("/purse/purses", EVERYONE, purses)
        .get("/purse/scheme-key", READ, purse_scheme_key)
        .get("/sms/accounts", EVERYONE, sms_accounts)
        .get("/sms/envelopes", EVERYONE, sms_envelopes)
        .get("/sms/terminals", EVERYONE, sms_terminals)
        .get("/sms/dead-letters", READ, sms_dead_letters)
        .get("/microcheck/payers", EVERYONE, microcheck_payers)
        .get("/microcheck/merchants", EVERYONE, microcheck_merchants)
        .get("/microcheck/deposits", READ, microcheck_deposits)
        .get("/microcheck/strikes", READ, microcheck_strikes)
}

fn parse_currency_filter(text: Option<&str>) -> Result<Option<Currency>, ApiError> {
    text.map(|code| {
        Currency::from_code(code).map_err(|error| {
            ApiError::bad_request("invalid_currency", format!("currency {code:?}: {error}"))
        })
    })
    .transpose()
}

/// `GET /api/v1/accounts?prefix=&currency=`: ledger accounts in id order.
pub async fn accounts(
    State(state): State<Arc<AppState>>,
    query: Result<Query<BTreeMap<String, String>>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let params = Params::parse(query, &["prefix", "currency"])?;
    let currency = parse_currency_filter(params.get("currency"))?;
    let prefix = params.get("prefix").unwrap_or_default().to_owned();
    let after = params
        .after
        .as_deref()
        .map(|text| AccountId::new(text).map_err(|_| invalid_cursor()))
        .transpose()?;
    let limit = params.limit;
    let page = state
        .ledger
        .read(move |store| {
            let mut items = Vec::new();
            let mut after = after;
            let mut read = 0usize;
            loop {
                let want = offpay_ledger::RECORD_PAGE_MAX.min(SCAN_RECORDS_MAX - read);
                let accounts = store.accounts(after.as_ref(), want)?;
                let full = accounts.len() == want;
                for account in &accounts {
                    read += 1;
                    after = Some(account.id.clone());
                    let id = account.id.as_str();
                    // Ids are in order: past the prefix's range nothing more can match.
                    if !prefix.is_empty() && id > prefix.as_str() && !id.starts_with(&prefix) {
                        return Ok(Page { items, next: None });
                    }
                    if id.starts_with(&prefix) && currency.is_none_or(|c| c == account.currency) {
                        items.push(
                            serde_json::to_value(crate::api::AccountView::from(account))
                                .unwrap_or_default(),
                        );
                        if items.len() == limit {
                            return Ok(Page {
                                items,
                                next: after.map(|id| id.to_string()),
                            });
                        }
                    }
                }
                if !full {
                    return Ok(Page { items, next: None });
                }
                if read >= SCAN_RECORDS_MAX {
                    return Ok(Page {
                        items,
                        next: after.map(|id| id.to_string()),
                    });
                }
            }
        })
        .await?;
    Ok(page.json())
}

/// The rail a transfer belongs to, from the accounts it moves money between (each rail names its
/// accounts with its own prefix: `purse:` and `settlement:`, `sms:`, `wallet:`, `mc:`); `ledger`
/// for a transfer between the operator's own accounts (a manual transfer).
pub fn transfer_rail(record: &TransferRecord) -> &'static str {
    let transfer = &record.transfer;
    for account in [&transfer.debit_account, &transfer.credit_account] {
        let id = account.as_str();
        if id.starts_with("purse:") || id.starts_with("settlement:") {
            return "purse";
        }
        if id.starts_with("sms:") {
            return "sms";
        }
        if id.starts_with("wallet:") {
            return "wallet";
        }
        if id.starts_with("mc:") {
            return "microcheck";
        }
    }
    "ledger"
}

/// The rails a transfer can belong to.
pub const TRANSFER_RAILS: [&str; 5] = ["purse", "sms", "wallet", "microcheck", "ledger"];

struct TransferFilter {
    from_ms: Option<u64>,
    to_ms: Option<u64>,
    min: Option<Amount>,
    max: Option<Amount>,
    currency: Option<Currency>,
    rail: Option<String>,
}

impl TransferFilter {
    fn keeps(&self, record: &TransferRecord) -> bool {
        let at = record.committed_at.0;
        let amount = record.transfer.amount;
        let same_currency = |bound: &Amount| bound.currency() == amount.currency();
        self.from_ms.is_none_or(|from| at >= from)
            && self.to_ms.is_none_or(|to| at < to)
            && self
                .min
                .as_ref()
                .is_none_or(|min| same_currency(min) && amount.minor() >= min.minor())
            && self
                .max
                .as_ref()
                .is_none_or(|max| same_currency(max) && amount.minor() <= max.minor())
            && self.currency.is_none_or(|c| c == amount.currency())
            && self
                .rail
                .as_deref()
                .is_none_or(|rail| rail == transfer_rail(record))
    }
}

fn transfer_json(record: &TransferRecord) -> Value {
    let transfer = &record.transfer;
    json!({
        "id": transfer.id.to_string(),
        "sequence": record.sequence,
        "rail": transfer_rail(record),
        "debit_account": transfer.debit_account.to_string(),
        "credit_account": transfer.credit_account.to_string(),
        "amount": transfer.amount.decimal().to_string(),
        "amount_minor": transfer.amount.minor(),
        "currency": transfer.amount.currency().code(),
        "kind": transfer.kind,
        "pending_state": record.pending_state,
        "memo": transfer.memo,
        "committed_at": rfc3339_at(record.committed_at),
    })
}

/// `GET /api/v1/transfers?account=&from=&to=&min=&max=&currency=&rail=`: with `account`, that
/// account's history newest first; without, every account's history in account-id order (each
/// transfer once, under its debit account). `from` is inclusive, `to` exclusive (RFC 3339);
/// `min`/`max` are decimal amounts in `currency` (default the server's).
pub async fn transfers(
    State(state): State<Arc<AppState>>,
    query: Result<Query<BTreeMap<String, String>>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let params = Params::parse(
        query,
        &["account", "from", "to", "min", "max", "currency", "rail"],
    )?;
    let currency = parse_currency_filter(params.get("currency"))?;
    let amount_currency = currency.unwrap_or(state.config.currency);
    let amount = |field: &str| -> Result<Option<Amount>, ApiError> {
        params
            .get(field)
            .map(|text| {
                Amount::parse(text, amount_currency).map_err(|error| {
                    ApiError::bad_request("invalid_amount", format!("{field} {text:?}: {error}"))
                })
            })
            .transpose()
    };
    let rail = params.get("rail").map(str::to_owned);
    if let Some(rail) = &rail
        && !TRANSFER_RAILS.contains(&rail.as_str())
    {
        return Err(ApiError::bad_request(
            "invalid_rail",
            format!("rail {rail:?} is not one of {}", TRANSFER_RAILS.join(", ")),
        ));
    }
    let filter = TransferFilter {
        from_ms: params
            .get("from")
            .map(|text| parse_rfc3339(text, "from"))
            .transpose()?,
        to_ms: params
            .get("to")
            .map(|text| parse_rfc3339(text, "to"))
            .transpose()?,
        min: amount("min")?,
        max: amount("max")?,
        currency,
        rail,
    };
    let account = params
        .get("account")
        .map(|text| {
            AccountId::new(text).map_err(|error| {
                ApiError::bad_request("invalid_account_id", format!("account {text:?}: {error}"))
            })
        })
        .transpose()?;
    // The position: `ACCOUNT SEQUENCE` (the last entry taken, in that account's history), or
    // `ACCOUNT` alone (that account done).
    let position = match params.after.as_deref() {
        None => None,
        Some(text) => {
            let (id, sequence) = match text.split_once(' ') {
                Some((id, sequence)) => (
                    id,
                    Some(sequence.parse::<u64>().map_err(|_| invalid_cursor())?),
                ),
                None => (text, None),
            };
            let id = AccountId::new(id).map_err(|_| invalid_cursor())?;
            if account.as_ref().is_some_and(|account| *account != id) {
                return Err(invalid_cursor());
            }
            Some((id, sequence))
        }
    };
    let limit = params.limit;
    let single = account.clone();
    if let Some(single) = &single {
        let lookup = single.clone();
        let exists = state
            .ledger
            .read(move |store| store.account(&lookup))
            .await?
            .is_some();
        if !exists {
            return Err(ApiError::not_found("account", single.as_str()));
        }
    }
    let page = state
        .ledger
        .read(move |store| {
            let mut items = Vec::new();
            let mut read = 0usize;
            // (account, before): the account being walked and where in its history.
            let mut current: Option<(AccountId, Option<u64>)> = match (&single, position) {
                (Some(account), None) => Some((account.clone(), None)),
                (_, Some((id, Some(sequence)))) => Some((id, Some(sequence))),
                (Some(_), Some((_, None))) => return Ok(Page { items, next: None }),
                (None, Some((id, None))) => next_account(store, Some(&id))?.map(|id| (id, None)),
                (None, None) => next_account(store, None)?.map(|id| (id, None)),
            };
            while let Some((id, before)) = current.take() {
                let want = offpay_ledger::HISTORY_PAGE_MAX
                    .min(SCAN_RECORDS_MAX - read)
                    .max(1);
                let history = store.history(&id, before, want)?;
                let full = history.len() == want;
                let mut last = before;
                for record in &history {
                    read += 1;
                    last = Some(record.sequence);
                    let own = single.is_some() || record.transfer.debit_account == id;
                    if own && filter.keeps(record) {
                        items.push(transfer_json(record));
                        if items.len() == limit {
                            return Ok(Page {
                                items,
                                next: Some(format!("{id} {}", record.sequence)),
                            });
                        }
                    }
                }
                if full {
                    if read >= SCAN_RECORDS_MAX {
                        let next = last.map(|sequence| format!("{id} {sequence}"));
                        return Ok(Page { items, next });
                    }
                    current = Some((id, last));
                    continue;
                }
                // This account is done.
                if single.is_some() {
                    return Ok(Page { items, next: None });
                }
                if read >= SCAN_RECORDS_MAX {
                    return Ok(Page {
                        items,
                        next: Some(id.to_string()),
                    });
                }
                read += 1;
                current = next_account(store, Some(&id))?.map(|id| (id, None));
            }
            Ok(Page { items, next: None })
        })
        .await?;
    Ok(page.json())
}

fn next_account(
    store: &mut dyn LedgerStore,
    after: Option<&AccountId>,
) -> Result<Option<AccountId>, StoreError> {
    Ok(store
        .accounts(after, 1)?
        .into_iter()
        .next()
        .map(|account| account.id))
}

pub(crate) fn ledger_balance(
    store: &mut dyn LedgerStore,
    id: &str,
) -> Result<Option<(i64, Currency)>, StoreError> {
    let Ok(id) = AccountId::new(id) else {
        return Ok(None);
    };
    Ok(store
        .account(&id)?
        .map(|account| (account.balance(), account.currency)))
}

/// The ledger account of a microcheck payer, as the rail names it.
pub(crate) fn payer_ledger_id(name: &str) -> String {
    offpay_microcheck::operator::records::payer_account(name)
        .map(|id| id.as_str().to_owned())
        .unwrap_or_default()
}

/// The ledger account of a microcheck merchant, as the rail names it.
pub(crate) fn merchant_ledger_id(id: &str) -> String {
    offpay_microcheck::operator::records::merchant_account(id)
        .map(|id| id.as_str().to_owned())
        .unwrap_or_default()
}

fn decimal(minor: i64, currency: Currency) -> String {
    offpay_ledger::Decimal::new(i128::from(minor), currency).to_string()
}

/// One purse as a list shows it.
pub fn purse_item(shadow: &offpay_purse::ShadowAccount) -> Value {
    let currency = shadow.limits.max_balance.currency();
    json!({
        "purse_id": shadow.purse_id.0,
        "phone": shadow.phone.to_string(),
        "kind": match shadow.kind {
            offpay_purse::PurseKind::Agent => "agent",
            _ => "customer",
        },
        "state": if shadow.blocked { "blocked" } else { "active" },
        "trust_class": shadow.trust_class.name(),
        "currency": currency.code(),
        "balance": decimal(shadow.balance_minor, currency),
        "balance_minor": shadow.balance_minor,
        "ledger_account": format!("{}{}", offpay_purse::book::ACCOUNT_PREFIX, shadow.phone),
        "last_sync_sequence": shadow.last_sequence,
        "last_sync_at": (shadow.last_sync_at.0 > 0).then(|| rfc3339(shadow.last_sync_at.0.saturating_mul(1000))),
        "api": format!("/api/v1/purse/purses/{}", shadow.phone),
    })
}

fn state_filter(params: &Params, known: &[&str]) -> Result<Option<String>, ApiError> {
    match params.get("state") {
        None => Ok(None),
        Some(state) if known.contains(&state) => Ok(Some(state.to_owned())),
        Some(state) => Err(ApiError::bad_request(
            "invalid_state",
            format!("state {state:?} is not one of {}", known.join(", ")),
        )),
    }
}

/// `GET /api/v1/purse/purses?state=active|blocked&kind=customer|agent`.
pub async fn purses(
    State(state): State<Arc<AppState>>,
    query: Result<Query<BTreeMap<String, String>>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let params = Params::parse(query, &["state", "kind"])?;
    let wanted = state_filter(&params, &["active", "blocked"])?;
    let kind = match params.get("kind") {
        None => None,
        Some(kind @ ("customer" | "agent")) => Some(kind.to_owned()),
        Some(other) => {
            return Err(ApiError::bad_request(
                "invalid_kind",
                format!("kind {other:?} is not customer or agent"),
            ));
        }
    };
    let after = params.after_under(SHADOW_PREFIX)?;
    let limit = params.limit;
    let page = state
        .ledger
        .read(move |store| {
            scan_records(
                store,
                offpay_purse::book::NAMESPACE,
                SHADOW_PREFIX,
                after,
                limit,
                |_, record| {
                    let shadow = offpay_purse::ShadowAccount::decode(&record.key, &record.value)
                        .map_err(record_error)?;
                    let item = purse_item(&shadow);
                    let keep = wanted.as_deref().is_none_or(|w| item["state"] == w)
                        && kind.as_deref().is_none_or(|k| item["kind"] == k);
                    Ok(keep.then_some(item))
                },
            )
        })
        .await?;
    Ok(page.json())
}

/// `GET /api/v1/purse/scheme-key`: the purse rail's scheme-key epochs (the newest distributed,
/// the one payees generate codes with), how many purses were provisioned and how many are blocked.
pub async fn purse_scheme_key(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    const HEADER_KEY: &str = "book";
    let header = state
        .ledger
        .read(|store| {
            store
                .record(offpay_purse::book::NAMESPACE, HEADER_KEY)?
                .map(|record| {
                    offpay_purse::BookHeader::decode(&record.key, &record.value)
                        .map_err(record_error)
                })
                .transpose()
        })
        .await?;
    Ok(Json(match header {
        Some(header) => json!({
            "scheme_epoch": header.scheme_epoch,
            "generation_epoch": header.generation_epoch,
            "purses_provisioned": header.next_purse_id.saturating_sub(1),
            "purses_blocked": header.blocked.len(),
            "currency": header.currency.code(),
        }),
        None => json!({
            "scheme_epoch": null,
            "generation_epoch": null,
            "purses_provisioned": 0,
            "purses_blocked": 0,
            "currency": null,
        }),
    }))
}

/// Key prefix of the purse book's shadow accounts.
pub const SHADOW_PREFIX: &str = "shadow/";

/// One SMS-TAN account as a list shows it.
pub fn sms_account_item(
    record: &offpay_sms_tan::operator::records::AccountRecord,
    balance: Option<(i64, Currency)>,
) -> Value {
    let number = record.receive_number.to_string();
    json!({
        "receive_number": number,
        "state": if record.active { "active" } else { "blocked" },
        "currency": record.currency.code(),
        "balance": balance.map(|(minor, currency)| decimal(minor, currency)),
        "balance_minor": balance.map(|(minor, _)| minor),
        "ledger_account": offpay_sms_tan::operator::records::ledger_account(&record.receive_number).as_str(),
        "bound_phones": record.bound_phones.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
        "notify_phone": record.notify_phone.as_ref().map(|p| p.as_str()),
        "current_envelope": record.current_envelope.map(|euin| euin.to_string()),
        "api": format!("/api/v1/sms/accounts/{number}"),
    })
}

/// `GET /api/v1/sms/accounts?state=active|blocked`.
pub async fn sms_accounts(
    State(state): State<Arc<AppState>>,
    query: Result<Query<BTreeMap<String, String>>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    use offpay_sms_tan::operator::records::{ACCOUNT_PREFIX, AccountRecord, NAMESPACE};
    let params = Params::parse(query, &["state"])?;
    let wanted = state_filter(&params, &["active", "blocked"])?;
    let after = params.after_under(ACCOUNT_PREFIX)?;
    let limit = params.limit;
    let page = state
        .ledger
        .read(move |store| {
            scan_records(
                store,
                NAMESPACE,
                ACCOUNT_PREFIX,
                after,
                limit,
                |store, record| {
                    let account =
                        AccountRecord::decode(&record.key, &record.value).map_err(record_error)?;
                    let active = if account.active { "active" } else { "blocked" };
                    if wanted.as_deref().is_some_and(|w| w != active) {
                        return Ok(None);
                    }
                    let ledger =
                        offpay_sms_tan::operator::records::ledger_account(&account.receive_number);
                    let balance = ledger_balance(store, ledger.as_str())?;
                    Ok(Some(sms_account_item(&account, balance)))
                },
            )
        })
        .await?;
    Ok(page.json())
}

/// Envelope states a list filters on.
pub const ENVELOPE_STATES: [&str; 4] = ["unallocated", "active", "locked", "retired"];

/// One envelope as a list shows it.
pub fn envelope_item(record: &offpay_sms_tan::operator::records::EnvelopeRecord) -> Value {
    let view = &record.view;
    let account = match view.status {
        offpay_sms_tan::EnvelopeStatus::Active { account }
        | offpay_sms_tan::EnvelopeStatus::Locked { account } => Some(account.to_string()),
        _ => None,
    };
    let euin = view.euin.to_string();
    json!({
        "euin": euin,
        "state": offpay_sms_tan::operator::records::status_name(&view.status),
        "account": account,
        "rows": view.rows.get(),
        "free_rows": view.free_rows(),
        "consecutive_failures": view.consecutive_failures,
        "issued_at": rfc3339(record.issued_at_ms),
        "api": format!("/api/v1/sms/envelopes/{euin}"),
    })
}

/// Key prefix of the SMS-TAN envelopes.
pub const ENVELOPE_PREFIX: &str = "env:";

/// `GET /api/v1/sms/envelopes?state=&account=`.
pub async fn sms_envelopes(
    State(state): State<Arc<AppState>>,
    query: Result<Query<BTreeMap<String, String>>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    use offpay_sms_tan::operator::records::{EnvelopeRecord, NAMESPACE};
    let params = Params::parse(query, &["state", "account"])?;
    let wanted = params.get("state").map(str::to_owned);
    if let Some(state) = &wanted
        && !ENVELOPE_STATES.contains(&state.as_str())
    {
        return Err(ApiError::bad_request(
            "invalid_state",
            format!(
                "state {state:?} is not one of {}",
                ENVELOPE_STATES.join(", ")
            ),
        ));
    }
    let account = params.get("account").map(str::to_owned);
    let after = params.after_under(ENVELOPE_PREFIX)?;
    let limit = params.limit;
    let page = state
        .ledger
        .read(move |store| {
            scan_records(
                store,
                NAMESPACE,
                ENVELOPE_PREFIX,
                after,
                limit,
                |_, record| {
                    let envelope =
                        EnvelopeRecord::decode(&record.key, &record.value).map_err(record_error)?;
                    let item = envelope_item(&envelope);
                    let keep = wanted.as_deref().is_none_or(|w| item["state"] == w)
                        && account.as_deref().is_none_or(|a| item["account"] == a);
                    Ok(keep.then_some(item))
                },
            )
        })
        .await?;
    Ok(page.json())
}

/// `GET /api/v1/sms/terminals`: merchants' payment terminals (never their secrets).
pub async fn sms_terminals(
    State(state): State<Arc<AppState>>,
    query: Result<Query<BTreeMap<String, String>>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    use offpay_sms_tan::operator::records::{NAMESPACE, TerminalRecord};
    const TERMINAL_PREFIX: &str = "term:";
    let params = Params::parse(query, &["state"])?;
    let wanted = state_filter(&params, &["active", "withdrawn"])?;
    let after = params.after_under(TERMINAL_PREFIX)?;
    let limit = params.limit;
    let page = state
        .ledger
        .read(move |store| {
            scan_records(
                store,
                NAMESPACE,
                TERMINAL_PREFIX,
                after,
                limit,
                |_, record| {
                    let terminal =
                        TerminalRecord::decode(&record.key, &record.value).map_err(record_error)?;
                    let status = if terminal.active {
                        "active"
                    } else {
                        "withdrawn"
                    };
                    if wanted.as_deref().is_some_and(|w| w != status) {
                        return Ok(None);
                    }
                    Ok(Some(terminal_item(&terminal)))
                },
            )
        })
        .await?;
    Ok(page.json())
}

/// One terminal as a list shows it.
pub fn terminal_item(terminal: &offpay_sms_tan::operator::records::TerminalRecord) -> Value {
    json!({
        "id": terminal.id,
        "payee": terminal.payee.to_string(),
        "state": if terminal.active { "active" } else { "withdrawn" },
        "created_at": rfc3339(terminal.created_at_ms),
        "api": format!("/api/v1/sms/accounts/{}", terminal.payee),
    })
}

/// `GET /api/v1/sms/dead-letters`: outbound messages the gateway gave up on (text never shown:
/// it may hold a TAN), with how many delivery attempts each had.
pub async fn sms_dead_letters(
    State(state): State<Arc<AppState>>,
    query: Result<Query<BTreeMap<String, String>>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    use offpay_sms_tan::operator::records::{DEAD_PREFIX, NAMESPACE};
    let params = Params::parse(query, &[])?;
    let after = params.after_under(DEAD_PREFIX)?;
    let limit = params.limit;
    let page = state
        .ledger
        .read(move |store| {
            scan_records(store, NAMESPACE, DEAD_PREFIX, after, limit, |_, record| {
                let value: Value = serde_json::from_slice(&record.value)
                    .map_err(|error| StoreError::Corrupt(format!("sms/{}: {error}", record.key)))?;
                Ok(Some(queue_item(&record.key, &value)))
            })
        })
        .await?;
    Ok(page.json())
}

/// An SMS queue entry without its text: who, when, how many attempts, the last error.
pub fn queue_item(key: &str, value: &Value) -> Value {
    let mut item = json!({ "key": key });
    if let (Some(item), Some(object)) = (item.as_object_mut(), value.as_object()) {
        for (name, field) in object {
            if matches!(name.as_str(), "text" | "body" | "parts" | "sealed") {
                continue;
            }
            item.insert(name.clone(), field.clone());
        }
    }
    item
}

/// One microcheck payer as a list shows it.
pub fn payer_item(
    payer: &offpay_microcheck::operator::records::PayerRecord,
    balance: Option<(i64, Currency)>,
) -> Value {
    json!({
        "name": payer.name,
        "state": if payer.blocked.is_some() {
            "blocked"
        } else if payer.disputes > 0 {
            "disputed"
        } else {
            "active"
        },
        "adult": payer.adult,
        "disputes": payer.disputes,
        "balance": balance.map(|(minor, currency)| decimal(minor, currency)),
        "currency": balance.map(|(_, currency)| currency.code().to_owned()),
        "ledger_account": payer_ledger_id(&payer.name),
        "api": format!("/api/v1/microcheck/payers/{}", payer.name),
    })
}

/// `GET /api/v1/microcheck/payers`.
pub async fn microcheck_payers(
    State(state): State<Arc<AppState>>,
    query: Result<Query<BTreeMap<String, String>>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    use offpay_microcheck::operator::records::{NAMESPACE, PayerRecord};
    const PAYER_PREFIX: &str = "payer:";
    let params = Params::parse(query, &["prefix"])?;
    let prefix = format!("{PAYER_PREFIX}{}", params.get("prefix").unwrap_or_default());
    let after = params.after_under(&prefix)?;
    let limit = params.limit;
    let page = state
        .ledger
        .read(move |store| {
            scan_records(store, NAMESPACE, &prefix, after, limit, |store, record| {
                let payer =
                    PayerRecord::decode(&record.key, &record.value).map_err(record_error)?;
                let balance = ledger_balance(store, &payer_ledger_id(&payer.name))?;
                Ok(Some(payer_item(&payer, balance)))
            })
        })
        .await?;
    Ok(page.json())
}

/// One microcheck merchant as a list shows it.
pub fn merchant_item(
    merchant: &offpay_microcheck::operator::records::MerchantRecord,
    balance: Option<(i64, Currency)>,
) -> Value {
    json!({
        "id": merchant.id,
        "state": "active",
        "app_domain": merchant.app_domain,
        "location": merchant.location,
        "balance": balance.map(|(minor, currency)| decimal(minor, currency)),
        "currency": balance.map(|(_, currency)| currency.code().to_owned()),
        "ledger_account": merchant_ledger_id(&merchant.id),
        "api": format!("/api/v1/accounts/{}", merchant_ledger_id(&merchant.id)),
    })
}

/// `GET /api/v1/microcheck/merchants`.
pub async fn microcheck_merchants(
    State(state): State<Arc<AppState>>,
    query: Result<Query<BTreeMap<String, String>>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    use offpay_microcheck::operator::records::{MerchantRecord, NAMESPACE};
    const MERCHANT_PREFIX: &str = "merchant:";
    let params = Params::parse(query, &["prefix"])?;
    let prefix = format!(
        "{MERCHANT_PREFIX}{}",
        params.get("prefix").unwrap_or_default()
    );
    let after = params.after_under(&prefix)?;
    let limit = params.limit;
    let page = state
        .ledger
        .read(move |store| {
            scan_records(store, NAMESPACE, &prefix, after, limit, |store, record| {
                let merchant =
                    MerchantRecord::decode(&record.key, &record.value).map_err(record_error)?;
                let balance = ledger_balance(store, &merchant_ledger_id(&merchant.id))?;
                Ok(Some(merchant_item(&merchant, balance)))
            })
        })
        .await?;
    Ok(page.json())
}

/// One microcheck deposit as a list shows it: the merchant, when it arrived, and each
/// microcheck with its payer, amount and fate.
pub fn deposit_item(record: &offpay_microcheck::operator::history::DepositRecord) -> Value {
    let lines: Vec<Value> = record
        .lines
        .iter()
        .map(|line| {
            json!({
                "index": line.index,
                "payer": line.payer,
                "amount": line.amount.map(|a| a.decimal().to_string()),
                "currency": line.amount.map(|a| a.currency().code().to_owned()),
                "offered_at": line.offered_at.map(|s| rfc3339(s.saturating_mul(1000))),
                "state": line.status,
                "code": line.code,
                "reason": line.reason,
                "bounced": line.bounced,
                "flags": line.flags,
            })
        })
        .collect();
    json!({
        "merchant": record.merchant,
        "received_at": rfc3339(record.received_ms),
        "posted": record.posted,
        "refused": record.refused,
        "items": lines,
        "merchant_account": merchant_ledger_id(&record.merchant),
    })
}

/// `GET /api/v1/microcheck/deposits?merchant=&payer=&outcome=posted|refused`: the deposits the
/// CSC kept (the last [`offpay_microcheck::operator::history::DEPOSIT_HISTORY_MAX`] of each
/// merchant), by merchant and newest first within one. `payer` keeps deposits holding one of
/// its microchecks; `outcome` those with at least one microcheck posted (or refused).
pub async fn microcheck_deposits(
    State(state): State<Arc<AppState>>,
    query: Result<Query<BTreeMap<String, String>>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    use offpay_microcheck::operator::history::{DEPOSIT_PREFIX, DepositRecord, deposit_prefix};
    use offpay_microcheck::operator::records::NAMESPACE;
    let params = Params::parse(query, &["merchant", "payer", "outcome"])?;
    let prefix = match params.get("merchant") {
        Some(merchant) => {
            offpay_microcheck::operator::pa::check_name(merchant)
                .map_err(|e| ApiError::bad_request("invalid_name", e.to_string()))?;
            deposit_prefix(merchant)
        }
        None => DEPOSIT_PREFIX.to_owned(),
    };
    let outcome = state_filter_named(&params, "outcome", &["posted", "refused"])?;
    let payer = params.get("payer").map(str::to_owned);
    let after = params.after_under(&prefix)?;
    let limit = params.limit;
    let page = state
        .ledger
        .read(move |store| {
            scan_records(store, NAMESPACE, &prefix, after, limit, |_, record| {
                let deposit =
                    DepositRecord::decode(&record.key, &record.value).map_err(record_error)?;
                let keep = payer
                    .as_deref()
                    .is_none_or(|p| deposit.lines.iter().any(|l| l.payer.as_deref() == Some(p)))
                    && outcome.as_deref().is_none_or(|o| match o {
                        "posted" => deposit.posted > 0,
                        _ => deposit.refused > 0,
                    });
                Ok(keep.then(|| deposit_item(&deposit)))
            })
        })
        .await?;
    Ok(page.json())
}

/// `GET /api/v1/microcheck/strikes?all=true`: each payer's strikes as the PA counts them
/// (disputes recorded by finance, microchecks that bounced at the CSC), what they do to its
/// credentials, and whether customer care blocked it. Without `all`, only payers with a strike
/// or a block.
pub async fn microcheck_strikes(
    State(state): State<Arc<AppState>>,
    query: Result<Query<BTreeMap<String, String>>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    use offpay_microcheck::csc::{CountRecord, bounces_key};
    use offpay_microcheck::operator::records::{NAMESPACE, PayerRecord};
    use offpay_microcheck::operator::{history, pa};
    const PAYER_PREFIX: &str = "payer:";
    let params = Params::parse(query, &["all"])?;
    let all = match params.get("all") {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::bad_request(
                "invalid_all",
                format!("all {other:?} is not true or false"),
            ));
        }
    };
    let after = params.after_under(PAYER_PREFIX)?;
    let limit = params.limit;
    let page = state
        .ledger
        .read(move |store| {
            scan_records(
                store,
                NAMESPACE,
                PAYER_PREFIX,
                after,
                limit,
                |store, record| {
                    let payer =
                        PayerRecord::decode(&record.key, &record.value).map_err(record_error)?;
                    let key = bounces_key(&payer.name);
                    let bounces = store
                        .record(NAMESPACE, &key)?
                        .map(|r| CountRecord::decode(&key, &r.value))
                        .transpose()
                        .map_err(record_error)?;
                    let standing = pa::standing(&payer, bounces.as_ref());
                    if !all && standing.strikes() == 0 && payer.blocked.is_none() {
                        return Ok(None);
                    }
                    Ok(Some(json!({
                        "payer": payer.name,
                        "disputes": standing.disputes,
                        "bounces": standing.bounces,
                        "strikes": standing.strikes(),
                        "strikes_max": offpay_microcheck::limits::STRIKES_MAX,
                        "effect": history::strike_effect(&standing),
                        "blocked": payer.blocked.is_some(),
                        "blocked_at": payer.blocked.as_ref().map(|b| rfc3339(b.at.saturating_mul(1000))),
                        "block_reason": payer.blocked.as_ref().and_then(|b| b.reason.clone()),
                        "api": format!("/api/v1/microcheck/payers/{}", payer.name),
                    })))
                },
            )
        })
        .await?;
    Ok(page.json())
}

fn state_filter_named(
    params: &Params,
    name: &str,
    known: &[&str],
) -> Result<Option<String>, ApiError> {
    match params.get(name) {
        None => Ok(None),
        Some(value) if known.contains(&value) => Ok(Some(value.to_owned())),
        Some(value) => Err(ApiError::bad_request(
            "invalid_filter",
            format!("{name} {value:?} is not one of {}", known.join(", ")),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_utc_with_milliseconds_and_parse_back() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        let ms = 1_796_605_323_456;
        let text = rfc3339(ms);
        assert_eq!(text, "2026-12-07T01:02:03.456Z");
        assert_eq!(parse_rfc3339(&text, "from").unwrap(), ms);
        assert_eq!(
            parse_rfc3339("2026-12-07T01:02:03Z", "from").unwrap(),
            ms - 456
        );
        assert_eq!(
            parse_rfc3339("2026-12-07T01:02:03.4Z", "from").unwrap(),
            ms - 56
        );
        for bad in [
            "2026-12-07",
            "2026-12-07T01:02:03",
            "2026-12-07T01:02:03+01:00",
            "2026-02-30T00:00:00Z",
            "2026-12-07T01:02:03.4567Z",
            "2026-12-07T25:02:03Z",
        ] {
            assert!(parse_rfc3339(bad, "from").is_err(), "{bad}");
        }
    }

    #[test]
    fn cursors_round_trip_and_foreign_text_is_refused() {
        let cursor = encode_cursor("shadow/42");
        assert_eq!(decode_cursor(&cursor).unwrap(), "shadow/42");
        for bad in ["", "zz", "c1zz", "c1ff", "shadow/42"] {
            assert!(decode_cursor(bad).is_err(), "{bad}");
        }
    }
}
