//! The fraud queue shared by every rail lives in the operator contract
//! ([`offpay_operator::fraud`]); this module serves it: `GET /api/v1/fraud` (the queue, filtered
//! by case state and rail) and the case decisions `POST /api/v1/fraud/{id}/clear` and
//! `/escalate`, which go through the one commit point ([`crate::runner`]) and so are audited.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use offpay_ledger::{Operation, RecordWrite};
use offpay_operator::{Decision, Effects};
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
        "decisions": flag.decisions.iter().map(|decision| json!({
            "state": decision.state,
            "by": decision.by,
            "at": rfc3339_at(decision.at),
            "note": decision.note,
        })).collect::<Vec<_>>(),
        "api": format!("/api/v1/fraud/{key}"),
    })
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
