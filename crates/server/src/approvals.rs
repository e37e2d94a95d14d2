//! Four eyes on e-money: a request that creates more value than the configured amount
//! (`approval_above`) — a purse float, a wallet charge from the operator's float, a manual
//! transfer out of `operator:float…` — is not applied but kept as a pending approval (record
//! `approval/ID`, namespace [`NAMESPACE`]) and answered `202` with its id. Another user with
//! the finance or admin role approves it: the kept request is then dispatched through the router
//! as the requester's, marked approved, and the approval is closed **in the same batch** as the
//! request's effect (so it executes once). The requester cannot approve their own request
//! (`approval_by_requester`); anyone who may approve may refuse, and the requester may
//! withdraw. Each step is in the audit log.
//!
//! A pending approval expires `approval_ttl` after it was asked for ([`crate::config::Retention`],
//! default 24 hours; the time is the server's clock input): it is then shown as `expired` and
//! approving or refusing it answers `409 approval_expired`; the requester asks again if it is
//! still wanted. Closed approvals (approved, refused, expired) are removed by the pruning pass
//! ([`crate::idempotency::prune`]) once older than `approval_retention`; what they did stays in
//! the audit log.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use offpay_ledger::{Amount, Operation, RecordWrite};
use offpay_operator::record::{check_version, decode_json, encode_json};
use offpay_operator::{Attempt, Effects, Loaded, RecordError, StoredRecord};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::AppState;
use crate::api::ApiJson;
use crate::auth::{Caller, Role};
use crate::error::ApiError;

/// The ledger record namespace of approvals.
pub const NAMESPACE: &str = "approvals";
/// Most approvals one list answer holds.
pub const LIST_MAX: usize = 1_000;
/// Random bytes in an approval id (hex-encoded).
pub const ID_BYTES: usize = 8;
/// Longest refusal reason, in bytes.
pub const REASON_BYTES_MAX: usize = 500;
/// The default amount above which creating value needs a second user: 100,000.00 of the
/// server's currency — an ordinary agent top-up goes through, anything larger waits for a
/// second person. Set `approval_above` for the operator's own currency and risk.
pub const DEFAULT_APPROVAL_ABOVE: &str = "100000";

const _: () = assert!(LIST_MAX <= offpay_ledger::RECORD_PAGE_MAX);

/// Whether `value` is a larger decimal number than `limit`, each read in its own currency's
/// units (`1000.00 KES` and `1000 UGX` are the same number): the approval amount is one number
/// applied to every currency.
pub fn decimal_above(value: Amount, limit: Amount) -> bool {
    let scale = |amount: Amount, by: Amount| {
        u128::from(amount.minor()) * u128::from(by.currency().minor_per_major())
    };
    scale(value, limit) > scale(limit, value)
}

/// Where an approval stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ApprovalState {
    /// Waiting for a second user.
    Pending,
    /// Approved and executed (in the same batch as the request's effect).
    Approved {
        /// Who approved.
        by: String,
        /// When.
        at_ms: u64,
    },
    /// Refused (or withdrawn by the requester); nothing was applied.
    Refused {
        /// Who refused.
        by: String,
        /// When.
        at_ms: u64,
        /// Why.
        reason: String,
    },
}

/// A request held for a second user's approval.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// Format version.
    pub version: u32,
    /// Id.
    pub id: String,
    /// HTTP method.
    pub method: String,
    /// Path (with query) as called.
    pub path: String,
    /// Route pattern.
    pub route: String,
    /// The request body (JSON text).
    pub body: String,
    /// The value it creates, e.g. `150000.00 KES`.
    pub value: String,
    /// Who asked.
    pub requester: String,
    /// Their role.
    pub requester_role: Role,
    /// The request's `Idempotency-Key`, if it had one.
    pub idempotency_key: Option<String>,
    /// When it was asked.
    pub created_at_ms: u64,
    /// When it expires if still pending (absent in approvals kept before expiry existed: they
    /// expire the configured TTL after `created_at_ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<u64>,
    /// Where it stands.
    #[serde(flatten)]
    pub state: ApprovalState,
}

/// The name of where an approval stands at a time: `pending`, `expired`, `approved`, `refused`.
pub fn state_name(approval: &Approval, now_ms: u64, ttl_ms: u64) -> &'static str {
    match approval.state {
        ApprovalState::Pending if approval.expired(now_ms, ttl_ms) => "expired",
        ApprovalState::Pending => "pending",
        ApprovalState::Approved { .. } => "approved",
        ApprovalState::Refused { .. } => "refused",
    }
}

impl Approval {
    /// When it expires if not decided: as stored, else `ttl_ms` after it was asked for.
    pub fn expires_at(&self, ttl_ms: u64) -> u64 {
        self.expires_at_ms
            .unwrap_or_else(|| self.created_at_ms.saturating_add(ttl_ms))
    }

    /// Whether it is still pending at `now_ms` but past its expiry.
    pub fn expired(&self, now_ms: u64, ttl_ms: u64) -> bool {
        self.state == ApprovalState::Pending && now_ms >= self.expires_at(ttl_ms)
    }

    /// When it closed, if it has by `now_ms`: approved or refused then, or expired.
    pub fn closed_at(&self, now_ms: u64, ttl_ms: u64) -> Option<u64> {
        match &self.state {
            ApprovalState::Pending => self
                .expired(now_ms, ttl_ms)
                .then(|| self.expires_at(ttl_ms)),
            ApprovalState::Approved { at_ms, .. } | ApprovalState::Refused { at_ms, .. } => {
                Some(*at_ms)
            }
        }
    }
}

impl StoredRecord for Approval {
    const NAMESPACE: &'static str = NAMESPACE;
    const FORMAT_VERSION: u32 = 1;
    fn encode(&self, key: &str) -> Result<Vec<u8>, RecordError> {
        encode_json(self, key)
    }
    fn decode(key: &str, bytes: &[u8]) -> Result<Self, RecordError> {
        let approval: Approval = decode_json(key, bytes)?;
        check_version::<Approval>(key, approval.version)?;
        Ok(approval)
    }
}

/// The key of approval `id`.
pub fn approval_key(id: &str) -> String {
    format!("approval/{id}")
}

/// The mark an approved request carries when it is dispatched through the router again. Only
/// the server sets it (it is a request extension, not a header).
#[derive(Clone, Debug)]
pub struct ApprovedExecution {
    /// The approval, as loaded (the closing write is conditional on its version).
    pub approval: Loaded<Approval>,
    /// Who approved.
    pub approver: Caller,
}

impl ApprovedExecution {
    /// The requester as the caller of the executed request.
    pub fn requester(&self) -> Option<Caller> {
        self.approval.value.as_ref().map(|approval| Caller {
            user: approval.requester.clone(),
            role: approval.requester_role,
        })
    }

    /// What the audit entry of the executed request says about its approval.
    pub fn summary(&self) -> Value {
        json!({
            "id": self.approval.value.as_ref().map(|approval| approval.id.clone()),
            "approved_by": self.approver.user,
            "approved_by_role": self.approver.role,
        })
    }

    /// The write that closes the approval as approved, conditional on the version read.
    pub fn closing_write(&self, now_ms: u64) -> Result<Option<Operation>, RecordError> {
        let Some(mut approval) = self.approval.value.clone() else {
            return Ok(None);
        };
        approval.state = ApprovalState::Approved {
            by: self.approver.user.clone(),
            at_ms: now_ms,
        };
        self.approval.write(&approval).map(Some)
    }
}

fn internal(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
}

/// Commits `effects` in the current request's audit context; a conflict is the approval having
/// changed meanwhile.
async fn commit(state: &AppState, effects: Effects, what: &str) -> Result<(), ApiError> {
    match crate::runner::commit(&state.ledger, effects, state.now()).await {
        Ok(Attempt::Done(_)) => Ok(()),
        Ok(Attempt::Conflict) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "approval_changed",
            format!("{what} changed meanwhile; look at it again"),
        )),
        Err(error) => Err(crate::runner::api_error(error)),
    }
}

/// Keeps a request for approval and answers `202` with its id (called by the auth middleware,
/// inside the request's audit context).
#[allow(
    clippy::too_many_arguments,
    reason = "the parts of the one request being held"
)]
pub async fn hold(
    state: &AppState,
    caller: &Caller,
    method: &str,
    path: &str,
    route: &str,
    body: &[u8],
    value: Amount,
    idempotency_key: Option<String>,
) -> Result<Response, ApiError> {
    let bytes = crate::keyfile::random(state.entropy.as_ref(), ID_BYTES)
        .map_err(|error| internal(error.to_string()))?;
    let id = hex::encode(&*bytes);
    let key = approval_key(&id);
    let approval = Approval {
        version: Approval::FORMAT_VERSION,
        id: id.clone(),
        method: method.to_owned(),
        path: path.to_owned(),
        route: route.to_owned(),
        body: String::from_utf8_lossy(body).into_owned(),
        value: format!("{} {}", value.decimal(), value.currency().code()),
        requester: caller.user.clone(),
        requester_role: caller.role,
        idempotency_key,
        created_at_ms: state.now().0,
        expires_at_ms: Some(
            state
                .now()
                .0
                .saturating_add(state.config.retention.approval_ttl_ms),
        ),
        state: ApprovalState::Pending,
    };
    let mut effects = Effects::new();
    effects.write(Operation::PutRecord(RecordWrite {
        namespace: NAMESPACE.to_owned(),
        value: Some(
            approval
                .encode(&key)
                .map_err(|error| internal(error.to_string()))?,
        ),
        key,
        expected_version: Some(0),
    }));
    commit(state, effects, "the approval").await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "approval": view(state, &approval),
            "message": format!(
                "this creates {} of value, above the {} that one person may: it waits for approval {id} by another finance or admin user (offpay admin approvals approve {id}) until {}",
                approval.value,
                approval_above_text(state),
                crate::lists::rfc3339(approval.expires_at(state.config.retention.approval_ttl_ms)),
            ),
        })),
    )
        .into_response())
}

fn approval_above_text(state: &AppState) -> String {
    let above = state.config.approval_above;
    format!("{} {}", above.decimal(), above.currency().code())
}

fn view(state: &AppState, approval: &Approval) -> Value {
    let ttl_ms = state.config.retention.approval_ttl_ms;
    let mut value = serde_json::to_value(approval).unwrap_or(Value::Null);
    if let Some(object) = value.as_object_mut() {
        object.remove("version");
        object.insert(
            "state".into(),
            json!(state_name(approval, state.now().0, ttl_ms)),
        );
        object.insert("expires_at_ms".into(), json!(approval.expires_at(ttl_ms)));
        object.insert(
            "expires_at".into(),
            json!(crate::lists::rfc3339(approval.expires_at(ttl_ms))),
        );
        let body = serde_json::from_str::<Value>(&approval.body).unwrap_or(Value::Null);
        object.insert("body".into(), body);
    }
    value
}

async fn load(state: &AppState, id: &str) -> Result<Loaded<Approval>, ApiError> {
    let key = approval_key(id);
    let loaded = state
        .ledger
        .read(move |store| {
            Loaded::<Approval>::read(store, &key).map_err(crate::ledger::record_store_error)
        })
        .await?;
    if loaded.value.is_none() {
        return Err(ApiError::not_found("approval", id));
    }
    Ok(loaded)
}

fn pending<'l>(state: &AppState, loaded: &'l Loaded<Approval>) -> Result<&'l Approval, ApiError> {
    let ttl_ms = state.config.retention.approval_ttl_ms;
    match &loaded.value {
        Some(approval) if approval.expired(state.now().0, ttl_ms) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "approval_expired",
            format!(
                "approval {} expired at {} unapproved (approvals wait {}); nothing was applied: ask for the request again if it is still wanted",
                approval.id,
                crate::lists::rfc3339(approval.expires_at(ttl_ms)),
                ttl_text(ttl_ms),
            ),
        )
        .with_details(json!({ "approval": view(state, approval) }))),
        Some(approval) if approval.state == ApprovalState::Pending => Ok(approval),
        Some(approval) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "approval_closed",
            format!("approval {} is no longer pending", approval.id),
        )
        .with_details(json!({ "approval": view(state, approval) }))),
        None => Err(ApiError::not_found("approval", &loaded.key)),
    }
}

/// A duration in words: `24 hours`, `90 minutes`, `30 seconds`.
fn ttl_text(ms: u64) -> String {
    let plural = |n: u64, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    if ms.is_multiple_of(3_600_000) {
        plural(ms / 3_600_000, "hour")
    } else if ms.is_multiple_of(60_000) {
        plural(ms / 60_000, "minute")
    } else {
        plural(ms.div_ceil(1_000), "second")
    }
}

/// `GET /api/v1/approvals?state=pending|expired|approved|refused|all&limit=&cursor=`: approvals
/// in id order, in the list style of [`crate::lists`] (default: those pending). A pending
/// approval past its expiry is `expired`.
pub async fn list_endpoint(
    State(state): State<Arc<AppState>>,
    query: Result<
        Query<std::collections::BTreeMap<String, String>>,
        axum::extract::rejection::QueryRejection,
    >,
) -> Result<Json<Value>, ApiError> {
    use crate::lists::{Params, scan_records};
    let params = Params::parse(query, &["state"])?;
    let wanted: Option<&'static str> = match params.get("state") {
        None => Some("pending"),
        Some("pending") => Some("pending"),
        Some("expired") => Some("expired"),
        Some("approved") => Some("approved"),
        Some("refused") => Some("refused"),
        Some("all") => None,
        Some(other) => {
            return Err(ApiError::bad_request(
                "invalid_state",
                format!("state {other:?} is not pending, expired, approved, refused or all"),
            ));
        }
    };
    let after = params.after_under("approval/")?;
    let limit = params.limit;
    let now_ms = state.now().0;
    let ttl_ms = state.config.retention.approval_ttl_ms;
    let page = state
        .ledger
        .read(move |store| {
            scan_records(store, NAMESPACE, "approval/", after, limit, |_, record| {
                let approval = Approval::decode(&record.key, &record.value)
                    .map_err(crate::ledger::record_store_error)?;
                let name = state_name(&approval, now_ms, ttl_ms);
                Ok(wanted
                    .is_none_or(|wanted| name == wanted)
                    .then_some(approval))
            })
        })
        .await?;
    let page = crate::lists::Page {
        items: page
            .items
            .iter()
            .map(|approval| view(&state, approval))
            .collect(),
        next: page.next,
    };
    Ok(page.json())
}

/// `POST /api/v1/approvals/{id}/approve`: executes the kept request as its requester's, marked
/// approved by the caller, who must be another user.
pub async fn approve_endpoint(
    State(state): State<Arc<AppState>>,
    axum::Extension(approver): axum::Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let loaded = load(&state, &id).await?;
    let approval = pending(&state, &loaded)?.clone();
    if approval.requester == approver.user {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "approval_by_requester",
            format!(
                "{} asked for this; another finance or admin user must approve it",
                approver.user
            ),
        ));
    }
    let mut request = Request::builder()
        .method(approval.method.as_str())
        .uri(&approval.path)
        .header("content-type", "application/json")
        // Its own key: the requester's key already answers retries of the held request with
        // the approval's id.
        .header("idempotency-key", format!("approval-{id}"))
        .body(Body::from(approval.body.clone()))
        .map_err(|error| internal(error.to_string()))?;
    request.extensions_mut().insert(ApprovedExecution {
        approval: loaded,
        approver,
    });
    let response = match crate::router(state.clone()).oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), crate::idempotency::ANSWER_BYTES_MAX)
        .await
        .map_err(|error| internal(error.to_string()))?;
    let result = serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null);
    let after = load(&state, &id).await?;
    let executed = after
        .value
        .as_ref()
        .is_some_and(|approval| matches!(approval.state, ApprovalState::Approved { .. }));
    Ok((
        status,
        Json(json!({
            "approval": after.value.as_ref().map(|approval| view(&state, approval)),
            "executed": executed,
            "result": result,
        })),
    )
        .into_response())
}

/// Body of `POST /api/v1/approvals/{id}/refuse`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefuseRequest {
    #[serde(default)]
    reason: String,
}

/// `POST /api/v1/approvals/{id}/refuse`: closes the approval; nothing is applied.
pub async fn refuse_endpoint(
    State(state): State<Arc<AppState>>,
    axum::Extension(caller): axum::Extension<Caller>,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<RefuseRequest>,
) -> Result<Json<Value>, ApiError> {
    if request.reason.len() > REASON_BYTES_MAX {
        return Err(ApiError::bad_request(
            "reason_too_long",
            format!("a reason holds at most {REASON_BYTES_MAX} bytes"),
        ));
    }
    let loaded = load(&state, &id).await?;
    let mut approval = pending(&state, &loaded)?.clone();
    approval.state = ApprovalState::Refused {
        by: caller.user.clone(),
        at_ms: state.now().0,
        reason: request.reason,
    };
    let write = loaded
        .write(&approval)
        .map_err(|error| internal(error.to_string()))?;
    let mut effects = Effects::new();
    effects.write(write);
    commit(&state, effects, "the approval").await?;
    Ok(Json(json!({ "approval": view(&state, &approval) })))
}

/// The approvals routes.
pub fn operator_routes() -> crate::routes::OperatorRoutes {
    use crate::routes::{APPROVALS_READ, FINANCE};
    crate::routes::OperatorRoutes::new()
        .get("/approvals", APPROVALS_READ, list_endpoint)
        .post("/approvals/{id}/approve", FINANCE, approve_endpoint)
        .post("/approvals/{id}/refuse", FINANCE, refuse_endpoint)
}

#[cfg(test)]
mod tests {
    use offpay_ledger::{Amount, Currency};

    use super::*;

    #[test]
    fn compares_decimal_numbers_across_exponents() {
        let kes = |text| Amount::parse(text, Currency::KES).unwrap();
        let ugx = |text| Amount::parse(text, Currency::from_code("UGX").unwrap()).unwrap();
        assert!(decimal_above(kes("1000.01"), kes("1000")));
        assert!(!decimal_above(kes("1000.00"), kes("1000")));
        assert!(decimal_above(ugx("1001"), kes("1000")));
        assert!(!decimal_above(ugx("1000"), kes("1000.00")));
        assert!(decimal_above(kes("1000.01"), ugx("1000")));
    }
}
