//! API errors: an HTTP status and a JSON body `{"error": {"code", "message", ...}}` that says
//! precisely what was wrong, without echoing secrets.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use offpay_ledger::{BatchRefusal, Refusal, StoreError};
use serde_json::{Value, json};

use crate::ledger::LedgerError;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code, e.g. `insufficient_funds`.
    pub code: String,
    /// For people.
    pub message: String,
    /// Extra fields merged into the error object (e.g. the index of the failing transfer).
    pub details: Option<Value>,
    /// Seconds for a `Retry-After` header, for an error that a later retry may not meet.
    pub retry_after: Option<u32>,
}

impl ApiError {
    /// A new error.
    pub fn new(
        status: StatusCode,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError {
            status,
            code: code.into(),
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    /// Adds a `Retry-After` header of `seconds`.
    pub fn with_retry_after(mut self, seconds: u32) -> ApiError {
        self.retry_after = Some(seconds);
        self
    }

    /// 503 `busy`: other writes kept changing the records this request reads, and nothing of it
    /// committed; retryable (`retryable: true`, `Retry-After`) with the same request and ids.
    pub fn busy(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", message)
            .with_details(json!({ "retryable": true }))
            .with_retry_after(LEDGER_RETRY_AFTER_SECONDS)
    }

    /// 400 with a message.
    pub fn bad_request(code: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 404 for a named thing.
    pub fn not_found(what: &str, id: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("unknown_{what}"),
            format!("no {what} with id {id}"),
        )
    }

    /// Adds detail fields.
    pub fn with_details(mut self, details: Value) -> ApiError {
        self.details = Some(details);
        self
    }

    /// The error for a refused batch: 409 for id conflicts, 422 for everything else.
    pub fn refused(refusal: &BatchRefusal) -> ApiError {
        let status = match refusal.reason {
            Refusal::TransferConflict { .. } | Refusal::AccountConflict { .. } => {
                StatusCode::CONFLICT
            }
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        let code = serde_json::to_value(&refusal.reason)
            .ok()
            .and_then(|value| value.get("code").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| "refused".to_owned());
        let mut details = json!({ "index": refusal.index });
        if let (Some(object), Ok(Value::Object(reason))) = (
            details.as_object_mut(),
            serde_json::to_value(&refusal.reason),
        ) {
            for (key, value) in reason {
                if key != "code" {
                    object.insert(key, value);
                }
            }
        }
        ApiError::new(status, code, refusal.to_string()).with_details(details)
    }
}

/// Seconds a client is asked to wait (`Retry-After`) before retrying a request that met an
/// unavailable ledger: a database restart or failover takes seconds.
pub const LEDGER_RETRY_AFTER_SECONDS: u32 = 1;

impl From<LedgerError> for ApiError {
    /// A database that cannot be reached or failed mid-request (a restart, a failover, a refused
    /// login) and a server shutting down are 503 `ledger_unavailable`, retryable; data the store
    /// cannot read or a schema it cannot use are 500 `ledger_failure`, which retrying does not
    /// cure.
    fn from(error: LedgerError) -> ApiError {
        let retryable = match &error {
            LedgerError::Store(StoreError::Database(_)) | LedgerError::Stopped => true,
            LedgerError::Store(_) => false,
        };
        if !retryable {
            tracing::error!(%error, "ledger failure");
            return ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "ledger_failure",
                error.to_string(),
            )
            .with_details(json!({ "retryable": false }));
        }
        tracing::warn!(%error, "ledger unavailable; the client is told to retry");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ledger_unavailable",
            format!(
                "the ledger is unavailable ({error}); nothing is applied twice by retrying: send the \
                 same request again with the same ids (a transfer that did commit then answers \
                 transfer_exists)"
            ),
        )
        .with_details(json!({ "retryable": true }))
        .with_retry_after(LEDGER_RETRY_AFTER_SECONDS)
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> ApiError {
        ApiError::new(
            rejection.status(),
            "malformed_request",
            rejection.body_text(),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({ "code": self.code, "message": self.message });
        if let (Some(object), Some(Value::Object(details))) = (error.as_object_mut(), self.details)
        {
            object.extend(details);
        }
        let mut response = (self.status, Json(json!({ "error": error }))).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}
