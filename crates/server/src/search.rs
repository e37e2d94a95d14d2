//! One search box over every rail (`GET /api/v1/search?q=`) and the customer view
//! (`GET /api/v1/customers/{phone}`): every rail's object for a phone, with balances, the ledger
//! accounts behind them and the fraud cases that name them.
//!
//! The ledger has no secondary indexes. Exact keys are looked up directly (a purse by phone goes
//! through the purse book's phone index; an account number, an envelope, a wallet, a terminal, a
//! ledger account by their record keys); names are matched by key prefix; phones bound to SMS-TAN
//! accounts and envelopes of an account are found by a scan of at most [`crate::lists::SCAN_RECORDS_MAX`]
//! records each, and fraud cases by a scan of at most [`crate::lists::SCAN_RECORDS_MAX`] flags (the answer says
//! when a scan stopped short: `"complete": false`).
//!
//! Phones are matched through [`phone_candidates`] alone: the operator's normaliser, E.164 with
//! the default country, as the rails store them.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use offpay_ledger::{AccountId, LedgerStore, StoreError};
use offpay_operator::StoredRecord;
use offpay_operator::phone::{Country, normalise};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::error::ApiError;
use crate::lists::{
    SHADOW_PREFIX, envelope_item, merchant_item, payer_item, purse_item, record_error,
    sms_account_item, terminal_item,
};

/// Most results of one search.
pub const RESULTS_MAX: usize = 50;
/// Longest query, in bytes.
pub const QUERY_BYTES_MAX: usize = 100;

/// The search routes: readable by every role that reads the rails' queues.
pub fn operator_routes() -> crate::routes::OperatorRoutes {
    use crate::routes::{OperatorRoutes, READ};
    OperatorRoutes::new()
        .get("/search", READ, search)
        .get("/customers/{phone}", READ, customer)
}

/// The phone number a typed text means, in the form the rails store it (E.164, read with the
/// operator's default country: `0711 000 003`, `254711000003` and `+254711000003` are one
/// customer; [`offpay_operator::phone::normalise`], the normaliser every door of the rails uses).
/// Empty when the text is not a phone number.
pub fn phone_candidates(q: &str, country: Country) -> Vec<String> {
    match normalise(q, country) {
        Ok(number) => vec![number.as_str().to_owned()],
        Err(_) => Vec::new(),
    }
}

/// Query of `GET /api/v1/search`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchQuery {
    /// What was typed.
    q: String,
}

fn hit(kind: &str, rail: &str, id: &str, label: String, state: &Value, api: &Value) -> Value {
    json!({
        "kind": kind,
        "rail": rail,
        "id": id,
        "label": label,
        "state": state,
        "api": api,
    })
}

/// `GET /api/v1/search?q=`: phone, account number, envelope number, wallet id, purse id, payer
/// or merchant name, terminal id, ledger account id.
pub async fn search(
    State(state): State<Arc<AppState>>,
    query: Result<Query<SearchQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query
        .map_err(|rejection| ApiError::bad_request("malformed_query", rejection.body_text()))?;
    let q = query.q.trim().to_owned();
    if q.is_empty() || q.len() > QUERY_BYTES_MAX {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("q: type 1 to {QUERY_BYTES_MAX} bytes (a phone, a number, an id or a name)"),
        ));
    }
    let phones = phone_candidates(&q, state.config.default_country);
    let lookup = q.clone();
    let (mut items, wallet) = state
        .ledger
        .read(move |store| {
            let mut items = Vec::new();
            let q = lookup;
            for phone in &phones {
                if let Some(shadow) = purse_by_phone(store, phone)? {
                    let item = purse_item(&shadow);
                    items.push(hit(
                        "purse",
                        "purse",
                        item["phone"].as_str().unwrap_or_default(),
                        format!(
                            "purse {} ({})",
                            item["phone"].as_str().unwrap_or_default(),
                            item["kind"].as_str().unwrap_or_default()
                        ),
                        &item["state"],
                        &item["api"],
                    ));
                }
            }
            if !phones.is_empty() {
                let (accounts, _) = sms_accounts_of(store, &phones)?;
                for (account, balance) in accounts {
                    let item = sms_account_item(&account, balance);
                    items.push(sms_hit(&item));
                }
            }
            if q.bytes().all(|b| b.is_ascii_digit())
                && let Some(shadow) = read_decoded::<offpay_purse::ShadowAccount>(
                    store,
                    offpay_purse::book::NAMESPACE,
                    &format!("{SHADOW_PREFIX}{q}"),
                )?
            {
                let item = purse_item(&shadow);
                items.push(hit(
                    "purse",
                    "purse",
                    item["phone"].as_str().unwrap_or_default(),
                    format!(
                        "purse id {q} ({})",
                        item["phone"].as_str().unwrap_or_default()
                    ),
                    &item["state"],
                    &item["api"],
                ));
            }
            if let Ok(number) = offpay_sms_tan::operator::admin::account_number(&q) {
                use offpay_sms_tan::operator::records::{AccountRecord, NAMESPACE, account_key};
                if let Some(account) =
                    read_decoded::<AccountRecord>(store, NAMESPACE, &account_key(&number))?
                {
                    let ledger = offpay_sms_tan::operator::records::ledger_account(&number);
                    let balance = crate::lists::ledger_balance(store, ledger.as_str())?;
                    items.push(sms_hit(&sms_account_item(&account, balance)));
                }
            }
            if let Ok(euin) = offpay_sms_tan::operator::admin::parse_euin(&q) {
                use offpay_sms_tan::operator::records::{EnvelopeRecord, NAMESPACE, envelope_key};
                if let Some(envelope) =
                    read_decoded::<EnvelopeRecord>(store, NAMESPACE, &envelope_key(&euin))?
                {
                    let item = envelope_item(&envelope);
                    let id = item["euin"].as_str().unwrap_or_default().to_owned();
                    items.push(hit(
                        "envelope",
                        "sms",
                        &id,
                        format!("envelope {id}"),
                        &item["state"],
                        &item["api"],
                    ));
                }
            }
            {
                use offpay_sms_tan::operator::records::{NAMESPACE, TerminalRecord, terminal_key};
                if let Some(terminal) =
                    read_decoded::<TerminalRecord>(store, NAMESPACE, &terminal_key(&q))?
                {
                    let item = terminal_item(&terminal);
                    items.push(hit(
                        "terminal",
                        "sms",
                        &terminal.id,
                        format!(
                            "terminal {} of account {}",
                            terminal.id,
                            item["payee"].as_str().unwrap_or_default()
                        ),
                        &item["state"],
                        &item["api"],
                    ));
                }
            }
            let wallet = if q.len() == 32 && q.bytes().all(|b| b.is_ascii_hexdigit()) {
                let key = format!("wallet:{}", q.to_ascii_lowercase());
                store
                    .record(offpay_wallet::operator::NAMESPACE, &key)?
                    .map(|_| q.to_ascii_lowercase())
            } else {
                None
            };
            {
                use offpay_microcheck::operator::records::{
                    MerchantRecord, NAMESPACE, PayerRecord,
                };
                for record in store.records(NAMESPACE, &format!("payer:{q}"), None, RESULTS_MAX)? {
                    let payer =
                        PayerRecord::decode(&record.key, &record.value).map_err(record_error)?;
                    let balance = crate::lists::ledger_balance(
                        store,
                        &crate::lists::payer_ledger_id(&payer.name),
                    )?;
                    let item = payer_item(&payer, balance);
                    items.push(hit(
                        "microcheck_payer",
                        "microcheck",
                        &payer.name,
                        format!("payer {}", payer.name),
                        &item["state"],
                        &item["api"],
                    ));
                }
                for record in
                    store.records(NAMESPACE, &format!("merchant:{q}"), None, RESULTS_MAX)?
                {
                    let merchant =
                        MerchantRecord::decode(&record.key, &record.value).map_err(record_error)?;
                    let item = merchant_item(&merchant, None);
                    items.push(hit(
                        "merchant",
                        "microcheck",
                        &merchant.id,
                        format!("merchant {} ({})", merchant.id, merchant.app_domain),
                        &item["state"],
                        &item["api"],
                    ));
                }
            }
            if let Ok(id) = AccountId::new(q.as_str())
                && let Some(account) = store.account(&id)?
            {
                let balance =
                    offpay_ledger::Decimal::new(i128::from(account.balance()), account.currency);
                items.push(hit(
                    "ledger_account",
                    "ledger",
                    id.as_str(),
                    format!("ledger account {id}: {balance} {}", account.currency.code()),
                    &json!(account.kind),
                    &json!(format!("/api/v1/accounts/{id}")),
                ));
            }
            Ok((items, wallet))
        })
        .await?;
    if let Some(wallet) = wallet
        && let Ok(id) = crate::rails::wallet::parse_wallet_id(&wallet)
        && let Some(item) = crate::rails::wallet::wallet_item(&state, id).await?
    {
        items.push(hit(
            "wallet",
            "wallet",
            &wallet,
            format!("wallet {wallet}"),
            &item["state"],
            &item["api"],
        ));
    }
    let mut seen = BTreeSet::new();
    items.retain(|item| seen.insert((item["kind"].to_string(), item["id"].to_string())));
    items.truncate(RESULTS_MAX);
    Ok(Json(json!({ "items": items, "next_cursor": null })))
}

fn sms_hit(item: &Value) -> Value {
    let number = item["receive_number"].as_str().unwrap_or_default();
    hit(
        "sms_account",
        "sms",
        number,
        format!(
            "SMS-TAN account {number}: {} {}",
            item["balance"].as_str().unwrap_or("?"),
            item["currency"].as_str().unwrap_or_default()
        ),
        &item["state"],
        &item["api"],
    )
}

fn read_decoded<R: StoredRecord>(
    store: &mut dyn LedgerStore,
    namespace: &str,
    key: &str,
) -> Result<Option<R>, StoreError> {
    store
        .record(namespace, key)?
        .map(|record| R::decode(&record.key, &record.value).map_err(record_error))
        .transpose()
}

/// The purse of a phone (`+` and digits), through the purse book's phone index.
fn purse_by_phone(
    store: &mut dyn LedgerStore,
    phone: &str,
) -> Result<Option<offpay_purse::ShadowAccount>, StoreError> {
    use offpay_purse::book::{NAMESPACE, PhoneIndex};
    let Some(index) = read_decoded::<PhoneIndex>(store, NAMESPACE, &format!("phone/{phone}"))?
    else {
        return Ok(None);
    };
    read_decoded(store, NAMESPACE, &format!("{SHADOW_PREFIX}{}", index.0))
}

type SmsAccount = (
    offpay_sms_tan::operator::records::AccountRecord,
    Option<(i64, offpay_ledger::Currency)>,
);

/// The SMS-TAN accounts a phone is bound to or notified at: a scan of at most
/// [`crate::lists::SCAN_RECORDS_MAX`] accounts; the flag says whether the scan covered them all.
fn sms_accounts_of(
    store: &mut dyn LedgerStore,
    phones: &[String],
) -> Result<(Vec<SmsAccount>, bool), StoreError> {
    use offpay_sms_tan::operator::records::{ACCOUNT_PREFIX, AccountRecord, NAMESPACE};
    let page = crate::lists::scan_records(
        store,
        NAMESPACE,
        ACCOUNT_PREFIX,
        None,
        RESULTS_MAX,
        |store, record| {
            let account =
                AccountRecord::decode(&record.key, &record.value).map_err(record_error)?;
            let linked = account
                .bound_phones
                .iter()
                .chain(account.notify_phone.iter())
                .any(|phone| phones.iter().any(|wanted| wanted == phone.as_str()));
            if !linked {
                return Ok(None);
            }
            let ledger = offpay_sms_tan::operator::records::ledger_account(&account.receive_number);
            let balance = crate::lists::ledger_balance(store, ledger.as_str())?;
            Ok(Some((account, balance)))
        },
    )?;
    Ok((page.items, page.next.is_none()))
}

/// `GET /api/v1/customers/{phone}`: everything the rails hold for one phone.
pub async fn customer(
    State(state): State<Arc<AppState>>,
    Path(phone): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let phones = match normalise(&phone, state.config.default_country) {
        Ok(number) => vec![number.as_str().to_owned()],
        Err(error) => {
            return Err(ApiError::bad_request(
                "invalid_phone",
                format!("{phone:?} is not a phone number: {error}"),
            ));
        }
    };
    let lookup = phones.clone();
    let view = state
        .ledger
        .read(move |store| {
            let phones = lookup;
            let mut subjects: BTreeSet<String> = phones.iter().cloned().collect();
            let mut ledger_ids: Vec<String> = Vec::new();
            let mut purses = Vec::new();
            for phone in &phones {
                if let Some(shadow) = purse_by_phone(store, phone)? {
                    subjects.insert(shadow.purse_id.0.to_string());
                    let phone = shadow.phone.to_string();
                    ledger_ids.push(format!("purse:{phone}"));
                    ledger_ids.push(format!("settlement:{phone}"));
                    purses.push(purse_item(&shadow));
                }
            }
            let (accounts, accounts_complete) = sms_accounts_of(store, &phones)?;
            let numbers: BTreeSet<String> = accounts
                .iter()
                .map(|(account, _)| account.receive_number.to_string())
                .collect();
            let mut sms_accounts = Vec::new();
            for (account, balance) in &accounts {
                subjects.insert(account.receive_number.to_string());
                ledger_ids.push(
                    offpay_sms_tan::operator::records::ledger_account(&account.receive_number)
                        .as_str()
                        .to_owned(),
                );
                sms_accounts.push(sms_account_item(account, *balance));
            }
            let mut envelopes = Vec::new();
            let mut envelopes_complete = true;
            if !numbers.is_empty() {
                use offpay_sms_tan::operator::records::{EnvelopeRecord, NAMESPACE};
                let page = crate::lists::scan_records(
                    store,
                    NAMESPACE,
                    crate::lists::ENVELOPE_PREFIX,
                    None,
                    crate::lists::LIMIT_MAX,
                    |_, record| {
                        let envelope = EnvelopeRecord::decode(&record.key, &record.value)
                            .map_err(record_error)?;
                        let item = envelope_item(&envelope);
                        let mine = item["account"].as_str().is_some_and(|a| numbers.contains(a));
                        Ok(mine.then_some(item))
                    },
                )?;
                envelopes_complete = page.next.is_none();
                for item in &page.items {
                    if let Some(euin) = item["euin"].as_str() {
                        subjects.insert(euin.to_owned());
                    }
                }
                envelopes = page.items;
            }
            let mut ledger_accounts = Vec::new();
            for id in &ledger_ids {
                if let Ok(account_id) = AccountId::new(id.as_str())
                    && let Some(account) = store.account(&account_id)?
                {
                    subjects.insert(id.clone());
                    ledger_accounts
                        .push(serde_json::to_value(crate::api::AccountView::from(&account)).unwrap_or_default());
                }
            }
            let flags = crate::lists::scan_records(
                store,
                crate::fraud::NAMESPACE,
                "",
                None,
                crate::lists::LIMIT_MAX,
                |_, record| {
                    let flag = crate::fraud::FraudFlag::decode(&record.key, &record.value)
                        .map_err(record_error)?;
                    let open = flag.state().ok() != Some(crate::fraud::CaseState::Cleared);
                    Ok((open && subjects.contains(&flag.subject))
                        .then(|| crate::fraud::flag_json(&record.key, &flag)))
                },
            )?;
            let found = !purses.is_empty() || !sms_accounts.is_empty();
            Ok(found.then(|| {
                json!({
                    "phone": phones[0],
                    "purses": purses,
                    "sms_accounts": sms_accounts,
                    "envelopes": envelopes,
                    "ledger_accounts": ledger_accounts,
                    "fraud_flags": flags.items,
                    "complete": accounts_complete && envelopes_complete && flags.next.is_none(),
                    "not_linked": [
                        {
                            "rail": "wallet",
                            "why": "a device wallet is issued to a device's keys, not to a phone number; find it by its wallet id",
                        },
                        {
                            "rail": "microcheck",
                            "why": "a microcheck payer is registered by name and device key, with no phone number; find it by its name",
                        },
                    ],
                })
            }))
        })
        .await?;
    view.map(Json).ok_or_else(|| {
        ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "unknown_customer",
            format!("no purse and no SMS-TAN account is linked to {}", phones[0]),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_candidates_are_the_numbers_every_spelling_means() {
        let kenya = Country::parse("KE").unwrap();
        for spelling in [
            "+254 700-000 001",
            "00254700000001",
            "254700000001",
            "0700 000 001",
        ] {
            assert_eq!(
                phone_candidates(spelling, kenya),
                vec!["+254700000001"],
                "{spelling}"
            );
        }
        for not_a_phone in ["", "alice", "12345", "+1234567890123456", "25470000000a"] {
            assert!(
                phone_candidates(not_a_phone, kenya).is_empty(),
                "{not_a_phone}"
            );
        }
    }
}
