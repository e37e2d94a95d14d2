//! API errors: an HTTP status and a JSON body `{"error": {"code", "message", ...}}` that says
//! precisely what was wrong, without echoing secrets.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use offpay_ledger::{BatchRefusal, Refusal};
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
        }
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

impl From<LedgerError> for ApiError {
    fn from(error: LedgerError) -> ApiError {
        tracing::error!(%error, "ledger unavailable");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ledger_unavailable",
            error.to_string(),
        )
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
        (self.status, Json(json!({ "error": error }))).into_response()
    }
}
