//! The fraud queue shared by every rail lives in the operator contract
//! ([`offpay_operator::fraud`]); this module serves it: `GET /api/v1/fraud` (the queue, filtered
//! by case state and rail) and the case decisions `POST /api/v1/fraud/{id}/clear` and
//! `/escalate`, which go through the one commit point ([`crate::runner`]) and so are audited.
//!
//! Rails raise flags as unconditional record writes ([`FraudFlag::operation`]); before they are
//! committed, [`settle`] reads what is stored under their keys and turns each into what
//! [`FraudFlag::raise`] says: a create-only write for a new case, nothing for the same finding
//! raised again (so a retried upload cannot reset a decided case), and a write conditional on the
//! version read for new evidence (the case reopened, its earlier round kept).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use offpay_ledger::{Batch, Operation, Record, RecordWrite};
use offpay_operator::{Decision, Effects, RecordError, StoredRecord};
use serde::Deserialize;
use serde_json::{Value, json};

pub use offpay_operator::fraud::*;

use crate::AppState;
use crate::api::ApiJson;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::lists::{Params, record_error, rfc3339_at, scan_records};

/// The rails that raise flags.
pub const RAILS: [&str; 4] = ["purse", "sms", "wallet", "microcheck"];

/// The fraud routes: reading the queue, deciding a case (customer care and admins).
pub fn operator_routes() -> crate::routes::OperatorRoutes {
    use crate::routes::{OperatorRoutes, READ, SUPPORT};
    OperatorRoutes::new()
        .get("/fraud", READ, list)
        .post("/fraud/{id}/clear", SUPPORT, clear)
        .post("/fraud/{id}/escalate", SUPPORT, escalate)
}

/// A flag as the API shows it: its id (the record key), its case state and decisions, times in
/// RFC 3339.
pub fn flag_json(key: &str, flag: &FraudFlag) -> Value {
    json!({
        "id": key,
        "rail": flag.rail,
        "kind": flag.kind,
        "subject": flag.subject,
        "summary": flag.summary,
        "evidence": flag.evidence,
        "raised_at": rfc3339_at(flag.raised_at),
        "state": flag.status,
        "decisions": decisions_json(&flag.decisions),
        "earlier": flag.earlier.iter().map(|round| json!({
            "summary": round.summary,
            "evidence": round.evidence,
            "raised_at": rfc3339_at(round.raised_at),
            "state": round.status,
            "decisions": decisions_json(&round.decisions),
        })).collect::<Vec<_>>(),
        "earlier_dropped": flag.earlier_dropped,
        "api": format!("/api/v1/fraud/{key}"),
    })
}

fn decisions_json(decisions: &[CaseDecision]) -> Vec<Value> {
    decisions
        .iter()
        .map(|decision| {
            json!({
                "state": decision.state,
                "by": decision.by,
                "at": rfc3339_at(decision.at),
                "note": decision.note,
            })
        })
        .collect()
}

/// Whether `operation` raises a fraud flag as a rail builds it: an unconditional write of a
/// flag ([`FraudFlag::operation`]), not yet settled against the stored one.
fn raises_flag(operation: &Operation) -> bool {
    matches!(operation, Operation::PutRecord(write)
        if write.namespace == NAMESPACE && write.value.is_some() && write.expected_version.is_none())
}

/// Reads the flags stored under the keys `raised` writes.
async fn stored_flags(
    ledger: &crate::ledger::Ledger,
    keys: Vec<String>,
) -> Result<BTreeMap<String, Record>, crate::ledger::LedgerError> {
    ledger
        .read(move |store| {
            let mut found = BTreeMap::new();
            for key in keys {
                if let Some(record) = store.record(NAMESPACE, &key)? {
                    found.insert(key, record);
                }
            }
            Ok(found)
        })
        .await
}

fn corrupt(error: RecordError) -> crate::ledger::LedgerError {
    crate::ledger::LedgerError::Store(record_error(error))
}

/// The flags raised in `operations` settled against the stored ones: one write per key that
/// changes (in the order first raised) — create-only for a new case, conditional on the version
/// read for a reopened one (so the runner decides again when another writer, e.g. an analyst's
/// decision, came between) — and none for a finding already stored. A stored flag this release
/// cannot read is an error: nothing is overwritten.
pub async fn settle(
    ledger: &crate::ledger::Ledger,
    operations: Vec<Operation>,
) -> Result<Vec<Operation>, crate::ledger::LedgerError> {
    let keys = operations
        .iter()
        .filter(|operation| raises_flag(operation))
        .filter_map(|operation| match operation {
            Operation::PutRecord(write) => Some(write.key.clone()),
            _ => None,
        })
        .collect::<Vec<_>>();
    if keys.is_empty() {
        return Ok(operations);
    }
    let stored = stored_flags(ledger, keys).await?;
    // Per key: the flag as it stands after the raises so far, the version read, whether changed.
    let mut cases: BTreeMap<String, (Option<FraudFlag>, u64, bool)> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut others = Vec::new();
    for operation in operations {
        let Operation::PutRecord(write) = &operation else {
            others.push(operation);
            continue;
        };
        if !raises_flag(&operation) {
            others.push(operation);
            continue;
        }
        let raised = FraudFlag::decode(&write.key, write.value.as_deref().unwrap_or_default())
            .map_err(corrupt)?;
        if !cases.contains_key(&write.key) {
            let (flag, version) = match stored.get(&write.key) {
                Some(record) => (
                    Some(FraudFlag::decode(&record.key, &record.value).map_err(corrupt)?),
                    record.version,
                ),
                None => (None, 0),
            };
            cases.insert(write.key.clone(), (flag, version, false));
            order.push(write.key.clone());
        }
        let Some((current, _, changed)) = cases.get_mut(&write.key) else {
            continue;
        };
        match FraudFlag::raise(current.as_ref(), &raised) {
            Raised::New(flag) | Raised::Reopened(flag) => {
                *current = Some(flag);
                *changed = true;
            }
            Raised::Unchanged => {}
        }
    }
    let mut settled = others;
    for key in order {
        let Some((Some(flag), version, true)) = cases.remove(&key) else {
            continue;
        };
        settled.push(Operation::PutRecord(RecordWrite {
            namespace: NAMESPACE.to_owned(),
            value: Some(flag.encode(&key).map_err(corrupt)?),
            key,
            expected_version: Some(version),
        }));
    }
    Ok(settled)
}

/// The flags raised in `batches` settled in place: each raising write is replaced, at its
/// position, by an unconditional write of the flag as it stands after it (the stored flag
/// unchanged for the same finding), so the batches keep their shape (a caller maps a refusal to
/// an operation by its index). For batches whose other operations cannot be decided again; an
/// analyst's decision committed between the read and this write could be overwritten, so
/// prefer [`settle`].
pub async fn settle_in_place(
    ledger: &crate::ledger::Ledger,
    batches: &mut [Batch],
) -> Result<(), crate::ledger::LedgerError> {
    let keys = batches
        .iter()
        .flat_map(|batch| &batch.operations)
        .filter(|operation| raises_flag(operation))
        .filter_map(|operation| match operation {
            Operation::PutRecord(write) => Some(write.key.clone()),
            _ => None,
        })
        .collect::<Vec<_>>();
    if keys.is_empty() {
        return Ok(());
    }
    let stored = stored_flags(ledger, keys).await?;
    let mut current: BTreeMap<String, Option<FraudFlag>> = BTreeMap::new();
    for operation in batches.iter_mut().flat_map(|batch| &mut batch.operations) {
        if !raises_flag(operation) {
            continue;
        }
        let Operation::PutRecord(write) = operation else {
            continue;
        };
        let raised = FraudFlag::decode(&write.key, write.value.as_deref().unwrap_or_default())
            .map_err(corrupt)?;
        if !current.contains_key(&write.key) {
            let flag = match stored.get(&write.key) {
                Some(record) => {
                    Some(FraudFlag::decode(&record.key, &record.value).map_err(corrupt)?)
                }
                None => None,
            };
            current.insert(write.key.clone(), flag);
        }
        let Some(flag) = current.get_mut(&write.key) else {
            continue;
        };
        match FraudFlag::raise(flag.as_ref(), &raised) {
            Raised::New(next) | Raised::Reopened(next) => *flag = Some(next),
            Raised::Unchanged => {}
        }
        if let Some(flag) = flag {
            write.value = Some(flag.encode(&write.key).map_err(corrupt)?);
        }
    }
    Ok(())
}

/// `GET /api/v1/fraud?state=open|cleared|escalated&rail=&subject=`: the queue in key order.
pub async fn list(
    State(state): State<Arc<AppState>>,
    query: Result<Query<BTreeMap<String, String>>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let params = Params::parse(query, &["state", "rail", "subject"])?;
    let wanted = match params.get("state") {
        None => None,
        Some(text) => Some(CaseState::parse(text).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_state",
                format!("state {text:?} is not open, cleared or escalated"),
            )
        })?),
    };
    let prefix = match params.get("rail") {
        None => String::new(),
        Some(rail) if RAILS.contains(&rail) => format!("{rail}:"),
        Some(rail) => {
            return Err(ApiError::bad_request(
                "invalid_rail",
                format!("rail {rail:?} is not one of {}", RAILS.join(", ")),
            ));
        }
    };
    let subject = params.get("subject").map(str::to_owned);
    let after = params.after_under(&prefix)?;
    let limit = params.limit;
    let page = state
        .ledger
        .read(move |store| {
            scan_records(store, NAMESPACE, &prefix, after, limit, |_, record| {
                let flag = FraudFlag::decode(&record.key, &record.value).map_err(record_error)?;
                let keep = wanted.is_none_or(|wanted| flag.state().ok() == Some(wanted))
                    && subject.as_deref().is_none_or(|s| s == flag.subject);
                Ok(keep.then(|| flag_json(&record.key, &flag)))
            })
        })
        .await?;
    Ok(page.json())
}

/// Body of `POST /api/v1/fraud/{id}/clear` and `/escalate`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseRequest {
    /// Why, in the operator's words (1 to [`NOTE_BYTES_MAX`] bytes).
    pub note: String,
}

/// `POST /api/v1/fraud/{id}/clear`.
pub async fn clear(
    State(state): State<Arc<AppState>>,
    axum::Extension(caller): axum::Extension<Caller>,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<CaseRequest>,
) -> Result<Json<Value>, ApiError> {
    decide(&state, &caller, &id, CaseState::Cleared, &request.note).await
}

/// `POST /api/v1/fraud/{id}/escalate`.
pub async fn escalate(
    State(state): State<Arc<AppState>>,
    axum::Extension(caller): axum::Extension<Caller>,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<CaseRequest>,
) -> Result<Json<Value>, ApiError> {
    decide(&state, &caller, &id, CaseState::Escalated, &request.note).await
}

fn case_error(error: &CaseError) -> ApiError {
    match error {
        CaseError::Note => ApiError::bad_request("invalid_note", error.to_string()),
        CaseError::Transition { .. } => {
            ApiError::new(StatusCode::CONFLICT, "case_decided", error.to_string())
        }
        _ => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ledger_failure",
            error.to_string(),
        ),
    }
}

/// Loads the flag, decides (the rule is [`FraudFlag::decide`]), and commits the new flag on
/// condition that it is still at the version read, with the request's audit entry.
async fn decide(
    state: &Arc<AppState>,
    caller: &Caller,
    id: &str,
    to: CaseState,
    note: &str,
) -> Result<Json<Value>, ApiError> {
    let now = state.now();
    let key = id.to_owned();
    let by = caller.user.clone();
    crate::runner::run(
        &state.ledger,
        now,
        || {
            let key = key.clone();
            async move {
                let found = state
                    .ledger
                    .read(move |store| store.record(NAMESPACE, &key))
                    .await?;
                Ok::<_, ApiError>(found)
            }
        },
        |found| {
            let record = found.ok_or_else(|| ApiError::not_found("fraud_flag", id))?;
            let flag = FraudFlag::decode(&record.key, &record.value).map_err(|error| {
                ApiError::from(crate::ledger::LedgerError::Store(record_error(error)))
            })?;
            let decided = flag
                .decide(to, &by, now, note)
                .map_err(|error| case_error(&error))?;
            let value = serde_json::to_vec(&decided).map_err(|error| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    error.to_string(),
                )
            })?;
            let mut effects = Effects::new();
            effects.write(Operation::PutRecord(RecordWrite {
                namespace: NAMESPACE.to_owned(),
                key: record.key.clone(),
                value: Some(value),
                expected_version: Some(record.version),
            }));
            Ok(Decision::commit(effects, flag_json(&record.key, &decided)))
        },
    )
    .await
    .map(Json)
}

impl From<crate::runner::RunError> for ApiError {
    fn from(error: crate::runner::RunError) -> ApiError {
        crate::runner::api_error(error)
    }
}
