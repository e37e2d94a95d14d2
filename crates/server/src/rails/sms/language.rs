//! `POST /api/v1/sms/accounts/{number}/language` (support and admin): the operator sets the
//! language an account holder's texts are written in — SMS replies and notices, the web pages,
//! the printed envelope — as the holder asked at an agent. Body `{"language": "sw"}` (a code or
//! a name: `en`, `sw`, `fr`, `English`, `Kiswahili`, `Français`), or `{"language": null}` for the
//! operator's default. The holder can also set it by SMS (`LANG`, `LUGHA`, `LANGUE`).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use offpay_operator::Loaded;
use offpay_sms_tan::operator::admin::{self, account_number};
use offpay_sms_tan::operator::records::{self, AccountRecord};
use offpay_text::Language;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{SmsFailure, balance_changed};
use crate::AppState;
use crate::api::ApiJson;
use crate::error::ApiError;
use crate::routes::{OperatorRoutes, SUPPORT};
use crate::runner;

/// Routes under `/api/v1`.
pub fn routes() -> OperatorRoutes {
    OperatorRoutes::new().post("/sms/accounts/{number}/language", SUPPORT, set_language)
}

/// Body of the route.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetLanguage {
    /// `en`, `sw`, `fr` (or the language's name); `null`: the operator's default.
    language: Option<String>,
}

async fn set_language(
    State(state): State<Arc<AppState>>,
    Path(number): Path<String>,
    ApiJson(body): ApiJson<SetLanguage>,
) -> Result<Json<Value>, ApiError> {
    let number = account_number(&number).map_err(SmsFailure::from)?;
    let language = match body.language.as_deref() {
        None => None,
        Some(text) => Some(text.parse::<Language>().map_err(|error| {
            ApiError::bad_request("invalid_language", format!("{text:?}: {error}"))
        })?),
    };
    let key = records::account_key(&number);
    let load_key = key.clone();
    let operator = state.rails.sms.operator();
    let ledger_state = state.clone();
    let record: AccountRecord = runner::run_with(
        &state.ledger,
        state.now(),
        move || {
            let state = ledger_state.clone();
            let load_key = load_key.clone();
            async move {
                state
                    .ledger
                    .read(move |store| {
                        Ok(Loaded::<AccountRecord>::read(store, &load_key)
                            .map_err(SmsFailure::from))
                    })
                    .await?
            }
        },
        |loaded| {
            admin::decide_language(loaded, &number, language, operator.master())
                .map_err(SmsFailure::from)
        },
        balance_changed,
    )
    .await?;
    state.rails.sms.cache.forget([key.as_str()]);
    let chosen = record.language;
    let in_force = chosen.unwrap_or(operator.default_language());
    Ok(Json(json!({
        "receive_number": record.receive_number.to_string(),
        "language": chosen.map(Language::code),
        "language_in_force": in_force.code(),
        "language_name": in_force.name(),
    })))
}
