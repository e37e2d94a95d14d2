//! One inbound SMS through the runner: the rail's load (reads on the ledger's reader, engine steps
//! here, password hashing on a blocking thread), its decision, the commit, and again from the load
//! when the commit was refused as stale. Every gateway (webhook, Kannel, the operator's simulator)
//! comes through here.

use std::sync::Arc;

use axum::http::StatusCode;
use offpay_operator::phone::normalise;
use offpay_sms_tan::PhoneNumber;
use offpay_sms_tan::operator::inbound::{
    self, InboundAnswer, InboundLoad, InboundLoaded, InboundSms, LOAD_STEPS_MAX, Want,
};
use offpay_sms_tan::operator::load::ReadCache;

use super::cache::Refreshing;
use super::{SmsFailure, balance_changed};
use crate::AppState;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::runner;

fn internal(message: &str) -> SmsFailure {
    SmsFailure(ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        message,
    ))
}

/// Runs the load of one message to its end.
async fn drive(
    state: &AppState,
    mut load: InboundLoad,
    cache: Arc<dyn ReadCache>,
) -> Result<InboundLoaded, SmsFailure> {
    for _ in 0..LOAD_STEPS_MAX {
        match load.wants() {
            Want::Read => {
                let cache = cache.clone();
                let (returned, result) = state
                    .ledger
                    .read(move |store| {
                        let result = load.read(store, Some(cache.as_ref()));
                        Ok((load, result))
                    })
                    .await?;
                load = returned;
                result?;
            }
            Want::Step => load.step(),
            Want::Hash => {
                let entropy = state.entropy.clone();
                let (returned, result) = tokio::task::spawn_blocking(move || {
                    let result = load.hash(entropy.as_ref());
                    (load, result)
                })
                .await
                .map_err(|_| internal("hashing a password failed"))?;
                load = returned;
                result?;
            }
            Want::Ready => return Ok(load.finish()?),
        }
    }
    Err(internal("an SMS took more load steps than it can"))
}

/// The sender in E.164, read in the operator's default country when the gateway reports it in
/// national form (`0711000003`): phone binding, replies and the dedupe of resends all compare
/// this one spelling. A sender that is no phone number is refused before anything is read.
pub fn normalise_sender(state: &AppState, from: &PhoneNumber) -> Result<PhoneNumber, ApiError> {
    let invalid = |problem: String| {
        ApiError::bad_request(
            "invalid_from",
            format!("the sender {:?} {problem}", from.as_str()),
        )
    };
    let e164 = normalise(from.as_str(), state.config.default_country)
        .map_err(|error| invalid(error.to_string()))?;
    PhoneNumber::parse(e164.as_str()).map_err(|_| invalid("is not a phone number".into()))
}

/// Handles one inbound SMS end to end.
pub async fn handle_inbound(
    state: &Arc<AppState>,
    mut sms: InboundSms,
) -> Result<InboundAnswer, ApiError> {
    sms.from = normalise_sender(state, &sms.from)?;
    // Purse sync parts and statement requests (`OP1 …`) belong to the purse rail.
    if let Some(purse) =
        crate::rails::purse::sms_inbound(state, &sms.from, &sms.text, sms.answer_inline).await?
    {
        return Ok(purse.into_inbound_answer());
    }
    let rail = &state.rails.sms;
    rail.ensure_settings(state).await?;
    let operator = rail.operator();
    let ready = rail.operator_ready();
    let now = state.now();
    let mut attempt = 0usize;
    let answer = runner::run_with(
        &state.ledger,
        now,
        || {
            attempt += 1;
            let first = attempt == 1;
            if !first {
                Metrics::add(&rail.metrics.reruns, 1);
            }
            // A second attempt follows a refused commit: read the dedupe record (a gateway retry
            // may have been processed meanwhile), and let the store answer instead of the cache.
            let load = InboundLoad::start(operator.clone(), sms.clone(), now, !first);
            let cache: Arc<dyn ReadCache> = if first {
                rail.cache.clone()
            } else {
                Arc::new(Refreshing(rail.cache.clone()))
            };
            let state = state.clone();
            async move { drive(&state, load, cache).await }
        },
        |loaded| inbound::decide(loaded, now, &operator, &ready).map_err(SmsFailure::from),
        balance_changed,
    )
    .await?;
    if answer.duplicate {
        Metrics::add(&rail.metrics.duplicates, 1);
    } else {
        Metrics::add(&rail.metrics.inbound, 1);
        rail.committed(&answer.summary);
    }
    if let Some(redacted) = answer.redacted {
        tracing::debug!(sms = %redacted, verdict = answer.summary.verdict.word(), "sms handled");
    }
    Ok(answer)
}
