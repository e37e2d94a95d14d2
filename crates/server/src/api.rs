//! The operator API (`/api/v1`, bearer-token authenticated, JSON): accounts, transfer batches,
//! balances, history, totals.

use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use offpay_ledger::{
    Account, AccountId, AccountKind, Amount, BalanceLimits, Batch, Currency, NewAccount, Operation,
    Outcome, TransferId, TransferKind, TransferRecord,
};
use offpay_ledger::{HISTORY_PAGE_MAX, Transfer};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::AppState;
use crate::error::ApiError;

/// `Json<T>` whose rejections answer in the API's error format.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    Json<T>: FromRequest<S, Rejection = axum::extract::rejection::JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Json(value) = Json::<T>::from_request(request, state).await?;
        Ok(ApiJson(value))
    }
}

/// The ledger routes of the operator API.
pub fn operator_routes() -> crate::routes::OperatorRoutes {
    use crate::routes::{FINANCE, OperatorRoutes, READ};
    OperatorRoutes::new()
        .post("/accounts", FINANCE, create_account)
        .get("/accounts/{id}", READ, get_account)
        .get("/accounts/{id}/history", READ, account_history)
        .post("/transfers", FINANCE, post_transfers)
        .creates_value(transfers_value)
        .get("/transfers/{id}", READ, get_transfer)
        .get("/totals", READ, totals)
}

/// The value a batch of manual transfers creates (for four eyes): the largest sum, per
/// currency, debited from the operator's float accounts (`operator:float…`).
fn transfers_value(state: &AppState, body: &Value) -> Result<Option<Amount>, String> {
    let mut largest: Option<Amount> = None;
    let mut sums: Vec<Amount> = Vec::new();
    for transfer in body["transfers"].as_array().into_iter().flatten() {
        let debit = transfer["debit_account"].as_str().unwrap_or_default();
        if !debit.starts_with(crate::rails::OPERATOR_FLOAT) {
            continue;
        }
        let currency = match transfer["currency"].as_str() {
            Some(code) => Currency::from_code(code).map_err(|error| error.to_string())?,
            None => state.config.currency,
        };
        let text = transfer["amount"]
            .as_str()
            .ok_or("a transfer has no amount")?;
        let amount = Amount::parse(text, currency).map_err(|error| error.to_string())?;
        match sums.iter_mut().find(|sum| sum.currency() == currency) {
            Some(sum) => *sum = sum.checked_add(amount).map_err(|error| error.to_string())?,
            None => sums.push(amount),
        }
    }
    for sum in sums {
        if largest.is_none_or(|largest| crate::approvals::decimal_above(sum, largest)) {
            largest = Some(sum);
        }
    }
    Ok(largest)
}

fn parse_account_id(text: &str) -> Result<AccountId, ApiError> {
    AccountId::new(text).map_err(|error| {
        ApiError::bad_request(
            "invalid_account_id",
            format!("account id {text:?}: {error}"),
        )
    })
}

fn parse_currency(text: Option<&str>, default: Currency) -> Result<Currency, ApiError> {
    match text {
        None => Ok(default),
        Some(code) => Currency::from_code(code).map_err(|error| {
            ApiError::bad_request("invalid_currency", format!("currency {code:?}: {error}"))
        }),
    }
}

/// A signed decimal limit such as `"-500.00"`, or `"none"` for no limit.
fn parse_limit(text: &str, currency: Currency, field: &str) -> Result<Option<i64>, ApiError> {
    if text.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let amount = Amount::parse(digits, currency).map_err(|error| {
        ApiError::bad_request("invalid_amount", format!("{field} {text:?}: {error}"))
    })?;
    let minor = amount.minor_signed();
    Ok(Some(if negative { -minor } else { minor }))
}

/// Body of `POST /api/v1/accounts`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateAccountRequest {
    id: String,
    kind: String,
    currency: Option<String>,
    /// Decimal, may be negative, or `"none"`; default from the kind.
    balance_min: Option<String>,
    /// Decimal or `"none"` (the default).
    balance_max: Option<String>,
}

/// An account as the API shows it.
#[derive(Debug, Serialize)]
pub struct AccountView {
    id: String,
    kind: AccountKind,
    currency: String,
    balance: String,
    balance_minor: i64,
    available: String,
    available_minor: i64,
    debits_pending_minor: i64,
    credits_pending_minor: i64,
    balance_min_minor: Option<i64>,
    balance_max_minor: Option<i64>,
    created_at_ms: u64,
}

impl From<&Account> for AccountView {
    fn from(account: &Account) -> AccountView {
        let decimal = |minor: i64| {
            offpay_ledger::Decimal::new(i128::from(minor), account.currency).to_string()
        };
        AccountView {
            id: account.id.to_string(),
            kind: account.kind,
            currency: account.currency.code().to_owned(),
            balance: decimal(account.balance()),
            balance_minor: account.balance(),
            available: decimal(account.available()),
            available_minor: account.available(),
            debits_pending_minor: account.debits_pending,
            credits_pending_minor: account.credits_pending,
            balance_min_minor: account.limits.balance_min,
            balance_max_minor: account.limits.balance_max,
            created_at_ms: account.created_at.0,
        }
    }
}

/// `POST /api/v1/accounts`: 201 when created, 200 when the same account existed, 409 when the id
/// is taken by another definition.
pub async fn create_account(
    State(state): State<Arc<AppState>>,
    ApiJson(request): ApiJson<CreateAccountRequest>,
) -> Result<Response, ApiError> {
    let id = parse_account_id(&request.id)?;
    let kind = AccountKind::parse(&request.kind).ok_or_else(|| {
        let known: Vec<&str> = AccountKind::ALL.iter().map(|kind| kind.as_str()).collect();
        ApiError::bad_request(
            "invalid_kind",
            format!("kind {:?} is not one of {}", request.kind, known.join(", ")),
        )
    })?;
    let currency = parse_currency(request.currency.as_deref(), state.config.currency)?;
    let balance_min = match &request.balance_min {
        Some(text) => parse_limit(text, currency, "balance_min")?,
        None => kind.default_balance_min(),
    };
    let balance_max = match &request.balance_max {
        Some(text) => parse_limit(text, currency, "balance_max")?,
        None => None,
    };
    let definition = NewAccount {
        id: id.clone(),
        kind,
        currency,
        limits: BalanceLimits {
            balance_min,
            balance_max,
        },
    };
    let outcome = commit_single(
        &state,
        Batch {
            operations: vec![Operation::CreateAccount(definition)],
        },
    )
    .await?;
    let account = state
        .ledger
        .read(move |store| store.account(&id))
        .await?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "account vanished after creation",
            )
        })?;
    let status = if outcome.first() == Some(&Outcome::AccountCreated) {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(AccountView::from(&account))).into_response())
}

/// Commits one batch through the runner's commit (so an operator's request gets its audit entry
/// in the same batch). The batch must leave room for the entry: see [`OPERATOR_BATCH_MAX`].
async fn commit_single(state: &AppState, batch: Batch) -> Result<Vec<Outcome>, ApiError> {
    // A conflict means nothing committed (another action took the audit chain's head first):
    // the same batch is sent again, at most `ATTEMPTS_MAX` times in all.
    let mut attempt = 1;
    let result = loop {
        let mut effects = offpay_operator::Effects::new();
        for operation in batch.operations.iter().cloned() {
            match operation {
                Operation::Transfer(transfer) => effects.post(transfer),
                Operation::CreateAccount(account) => effects.create_account(account),
                other => effects.write(other),
            }
        }
        match crate::runner::commit(&state.ledger, effects, state.now()).await {
            Ok(offpay_operator::Attempt::Conflict) if attempt < crate::runner::ATTEMPTS_MAX => {
                attempt += 1;
            }
            other => break other,
        }
    };
    match result {
        // Batches and transfers are counted by the ledger's writer, for every path alike.
        Ok(offpay_operator::Attempt::Done(outcomes)) => Ok(outcomes),
        Ok(offpay_operator::Attempt::Conflict) => Err(ApiError::busy(
            "another operator action committed at the same moment; nothing was applied: send the \
             same request again",
        )),
        Err(crate::runner::RunError::Refused(refusal)) => Err(ApiError::refused(&refusal)),
        Err(error) => Err(crate::runner::api_error(error)),
    }
}

/// Most transfers in one `POST /api/v1/transfers`: a ledger batch less room for the writes an
/// operator's request adds to it (its audit entry and the chain head, its idempotency record, the
/// approval it closes), so the batch stays one atomic ledger batch.
pub const OPERATOR_BATCH_MAX: usize = offpay_ledger::BATCH_OPERATIONS_MAX - OPERATOR_WRITES_MAX;
/// Writes an operator's request adds to its commit.
pub const OPERATOR_WRITES_MAX: usize = 8;

/// `GET /api/v1/accounts/{id}`.
pub async fn get_account(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<AccountView>, ApiError> {
    let account_id = parse_account_id(&id)?;
    let account = state
        .ledger
        .read(move |store| store.account(&account_id))
        .await?;
    account
        .map(|account| Json(AccountView::from(&account)))
        .ok_or_else(|| ApiError::not_found("account", &id))
}

/// Query of `GET /api/v1/accounts/{id}/history`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// Continue after this sequence (the last entry of the previous page).
    before: Option<u64>,
    limit: Option<usize>,
}

/// One line of a statement.
#[derive(Debug, Serialize)]
pub struct HistoryEntry {
    sequence: u64,
    id: String,
    direction: &'static str,
    counterparty: String,
    amount: String,
    amount_minor: u64,
    kind: TransferKind,
    pending_state: Option<offpay_ledger::PendingState>,
    memo: String,
    committed_at_ms: u64,
}

/// `GET /api/v1/accounts/{id}/history?before=SEQUENCE&limit=N`: newest first; `next_before` is
/// the cursor of the next page.
pub async fn account_history(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    query: Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query
        .map_err(|rejection| ApiError::bad_request("malformed_query", rejection.body_text()))?;
    let account_id = parse_account_id(&id)?;
    let limit = query.limit.unwrap_or(100).clamp(1, HISTORY_PAGE_MAX);
    let lookup = account_id.clone();
    let (account, records) = state
        .ledger
        .read(move |store| {
            let account = store.account(&lookup)?;
            let records = match account {
                Some(_) => store.history(&lookup, query.before, limit)?,
                None => Vec::new(),
            };
            Ok((account, records))
        })
        .await?;
    let account = account.ok_or_else(|| ApiError::not_found("account", &id))?;
    let entries: Vec<HistoryEntry> = records
        .iter()
        .map(|record| history_entry(&account_id, record))
        .collect();
    let next_before = (entries.len() == limit)
        .then(|| entries.last().map(|entry| entry.sequence))
        .flatten();
    Ok(Json(
        json!({ "account": AccountView::from(&account), "entries": entries, "next_before": next_before }),
    ))
}

fn history_entry(account: &AccountId, record: &TransferRecord) -> HistoryEntry {
    let transfer = &record.transfer;
    let debit = transfer.debit_account == *account;
    HistoryEntry {
        sequence: record.sequence,
        id: transfer.id.to_string(),
        direction: if debit { "debit" } else { "credit" },
        counterparty: if debit {
            transfer.credit_account.to_string()
        } else {
            transfer.debit_account.to_string()
        },
        amount: transfer.amount.decimal().to_string(),
        amount_minor: transfer.amount.minor(),
        kind: transfer.kind.clone(),
        pending_state: record.pending_state,
        memo: transfer.memo.clone(),
        committed_at_ms: record.committed_at.0,
    }
}

/// One transfer in `POST /api/v1/transfers`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferRequest {
    id: String,
    debit_account: String,
    credit_account: String,
    /// Decimal, e.g. `"450.00"`.
    amount: String,
    currency: Option<String>,
    /// `posted` (default), `pending`, `post_pending` or `void_pending`.
    kind: Option<String>,
    pending_id: Option<String>,
    #[serde(default)]
    memo: String,
}

/// Body of `POST /api/v1/transfers`: one batch, applied whole or not at all.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferBatchRequest {
    transfers: Vec<TransferRequest>,
}

fn transfer_from_request(
    index: usize,
    request: TransferRequest,
    default_currency: Currency,
) -> Result<Transfer, ApiError> {
    let at = |error: ApiError| {
        let details = json!({ "index": index, "transfer_id": request.id });
        ApiError {
            message: format!("transfer {} (index {index}): {}", request.id, error.message),
            ..error
        }
        .with_details(details)
    };
    let id = TransferId::new(request.id.clone()).map_err(|error| {
        at(ApiError::bad_request(
            "invalid_transfer_id",
            error.to_string(),
        ))
    })?;
    let debit_account = parse_account_id(&request.debit_account).map_err(at)?;
    let credit_account = parse_account_id(&request.credit_account).map_err(at)?;
    let currency = parse_currency(request.currency.as_deref(), default_currency).map_err(at)?;
    let amount = Amount::parse(&request.amount, currency).map_err(|error| {
        at(ApiError::bad_request(
            "invalid_amount",
            format!("amount {:?}: {error}", request.amount),
        ))
    })?;
    let pending = || -> Result<TransferId, ApiError> {
        let text = request.pending_id.as_deref().ok_or_else(|| {
            ApiError::bad_request(
                "missing_pending_id",
                "post_pending and void_pending need pending_id",
            )
        })?;
        TransferId::new(text)
            .map_err(|error| ApiError::bad_request("invalid_pending_id", error.to_string()))
    };
    let kind = match request.kind.as_deref().unwrap_or("posted") {
        "posted" => TransferKind::Posted,
        "pending" => TransferKind::Pending,
        "post_pending" => TransferKind::PostPending(pending().map_err(at)?),
        "void_pending" => TransferKind::VoidPending(pending().map_err(at)?),
        other => {
            return Err(at(ApiError::bad_request(
                "invalid_kind",
                format!("kind {other:?} is not posted, pending, post_pending or void_pending"),
            )));
        }
    };
    Ok(Transfer {
        id,
        debit_account,
        credit_account,
        amount,
        kind,
        memo: request.memo,
    })
}

/// `POST /api/v1/transfers`: posts a batch atomically. 200 with one result per transfer
/// (`transfer_committed` or `transfer_exists`); on any error nothing is applied.
pub async fn post_transfers(
    State(state): State<Arc<AppState>>,
    ApiJson(request): ApiJson<TransferBatchRequest>,
) -> Result<Json<Value>, ApiError> {
    if request.transfers.is_empty() {
        return Err(ApiError::bad_request(
            "empty_batch",
            "the batch has no transfers",
        ));
    }
    if request.transfers.len() > OPERATOR_BATCH_MAX {
        return Err(ApiError::bad_request(
            "batch_too_large",
            format!("a batch holds at most {OPERATOR_BATCH_MAX} transfers"),
        ));
    }
    let transfers = request
        .transfers
        .into_iter()
        .enumerate()
        .map(|(index, transfer)| transfer_from_request(index, transfer, state.config.currency))
        .collect::<Result<Vec<_>, _>>()?;
    let ids: Vec<String> = transfers
        .iter()
        .map(|transfer| transfer.id.to_string())
        .collect();
    let outcomes = commit_single(&state, Batch::transfers(transfers)).await?;
    let results: Vec<Value> = ids
        .iter()
        .zip(&outcomes)
        .map(|(id, outcome)| json!({ "id": id, "outcome": outcome_name(outcome) }))
        .collect();
    Ok(Json(json!({ "results": results })))
}

fn outcome_name(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::AccountCreated => "account_created",
        Outcome::AccountExists => "account_exists",
        Outcome::TransferCommitted => "transfer_committed",
        Outcome::TransferExists => "transfer_exists",
        Outcome::LimitsSet => "limits_set",
        Outcome::RecordWritten { .. } => "record_written",
        Outcome::RecordChecked => "record_checked",
    }
}

/// `GET /api/v1/transfers/{id}`.
pub async fn get_transfer(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let transfer_id = TransferId::new(id.clone())
        .map_err(|error| ApiError::bad_request("invalid_transfer_id", error.to_string()))?;
    let record = state
        .ledger
        .read(move |store| store.transfer(&transfer_id))
        .await?;
    let record = record.ok_or_else(|| ApiError::not_found("transfer", &id))?;
    Ok(Json(json!({
        "transfer": record,
        "amount": record.transfer.amount.decimal().to_string(),
    })))
}

/// `GET /api/v1/totals`: per-currency sums, which must be zero.
pub async fn totals(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let totals = state.ledger.read(|store| store.totals()).await?;
    let currencies: Vec<Value> = totals
        .iter()
        .map(|total| {
            json!({
                "currency": total.currency.code(),
                "accounts": total.accounts,
                "posted_sum_minor": total.posted_sum.to_string(),
                "pending_sum_minor": total.pending_sum.to_string(),
                "balanced": total.balanced(),
            })
        })
        .collect();
    let balanced = totals.iter().all(offpay_ledger::CurrencyTotal::balanced);
    Ok(Json(
        json!({ "balanced": balanced, "currencies": currencies }),
    ))
}
