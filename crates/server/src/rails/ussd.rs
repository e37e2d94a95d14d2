//! USSD (`*123#` sessions) in the common aggregator convention: the aggregator POSTs the form
//! fields `sessionId`, `serviceCode`, `phoneNumber` and `text` (every input of the session so
//! far, joined by `*`) to `/ussd/{token}` and shows the `text/plain` answer, which begins `CON `
//! (wait for an input) or `END ` (close the session).
//!
//! Authentication is the SMS gateway's: the token of `DATA_DIR/sms-gateway.token` in the path
//! (aggregators send no headers of ours), compared in constant time before the body is read; a
//! wrong one gets 403 and nothing is read. The phone number the aggregator reports is what the
//! menu trusts, as the SMS sender is, so it is read in E.164 through the same normaliser. With
//! `[ussd] allow_ips` in `sms.toml`, a caller outside those networks gets 403 as well.
//!
//! The menu is [`menu`] (pure); here it is given what it asked for: a purse's shadow account
//! and its last payments (purse holders), the SMS account's `BAL`/`STMT` answer run through the
//! SMS rail exactly as the SMS from this phone would be (so the rail's own rules decide: a bound
//! phone needs no row for them), and the account holder's language, set from a bound phone. No
//! money moves here; payments are by SMS with an envelope row.

pub mod menu;

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use offpay_ledger::{Currency, Decimal};
use offpay_operator::Loaded;
use offpay_operator::phone::normalise;
use offpay_purse::{Phone, PurseError};
use offpay_sms_tan::civil_time::{CivilDateTime, UnixSeconds};
use offpay_sms_tan::operator::admin;
use offpay_sms_tan::operator::inbound::InboundSms;
use offpay_sms_tan::operator::records::{self, AccountRecord, EnvelopeRecord};
use offpay_sms_tan::{EnvelopeStatus, Euin, PhoneNumber};
use offpay_text::Language;
use serde::Deserialize;

use self::menu::{Ask, PurseView, Screen};
use crate::AppState;
use crate::metrics::Metrics;
use crate::rails::purse::purse_account_id;
use crate::rails::sms::SmsFailure;
use crate::rails::sms::inbound::handle_inbound;
use crate::runner;

/// Longest session id taken from an aggregator (it becomes part of a dedupe key).
pub const SESSION_ID_BYTES_MAX: usize = 100;
/// Largest request body an aggregator may send.
pub const BODY_BYTES_MAX: usize = 2048;

/// The USSD route.
pub fn device_routes() -> Router<Arc<AppState>> {
    Router::new().route("/ussd/{token}", post(session))
}

/// The aggregator's form.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UssdForm {
    session_id: Option<String>,
    service_code: Option<String>,
    phone_number: Option<String>,
    text: Option<String>,
}

fn plain(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

fn screen(screen: &Screen) -> Response {
    plain(StatusCode::OK, screen.body())
}

async fn session(
    State(state): State<Arc<AppState>>,
    Path(token): Path<String>,
    request: Request,
) -> Response {
    if !state.rails.sms.gateway_token_matches(&token) {
        Metrics::add(&state.metrics.http_unauthorized, 1);
        return plain(
            StatusCode::FORBIDDEN,
            "the path must carry the gateway token (DATA_DIR/sms-gateway.token)".into(),
        );
    }
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<crate::auth::RemoteAddr>>()
        .map(|info| info.0.0.ip());
    if !state.rails.sms.ussd_peer_allowed(peer) {
        Metrics::add(&state.metrics.http_unauthorized, 1);
        return plain(
            StatusCode::FORBIDDEN,
            "the caller's address is not in the USSD allow-list ([ussd] allow_ips in sms.toml)"
                .into(),
        );
    }
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, BODY_BYTES_MAX).await else {
        return plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("at most {BODY_BYTES_MAX} bytes"),
        );
    };
    let request = Request::from_parts(parts, axum::body::Body::from(bytes));
    let Ok(axum::Form(form)) = axum::Form::<UssdForm>::from_request(request, &state).await else {
        return plain(
            StatusCode::BAD_REQUEST,
            "send the form fields sessionId, serviceCode, phoneNumber and text".into(),
        );
    };
    let language = state.rails.sms.operator().default_language();
    let session_id = form.session_id.unwrap_or_default();
    if session_id.is_empty() || session_id.len() > SESSION_ID_BYTES_MAX {
        return plain(
            StatusCode::BAD_REQUEST,
            format!("sessionId: 1 to {SESSION_ID_BYTES_MAX} bytes"),
        );
    }
    let _ = form.service_code;
    let written = form.phone_number.unwrap_or_default();
    let Ok(e164) = normalise(&written, state.config.default_country) else {
        // No phone, no holder: the session ends, in words.
        return screen(&menu::purse_balance(None, language));
    };
    let asked = menu::ask(form.text.as_deref().unwrap_or(""));
    if let Some(fixed) = menu::fixed(&asked, language) {
        return screen(&fixed);
    }
    let answer = match asked {
        Ask::PurseBalance | Ask::PurseStatement => {
            purse_view(&state, e164.as_str()).await.map(|purse| {
                if asked == Ask::PurseBalance {
                    menu::purse_balance(purse.as_ref(), language)
                } else {
                    menu::purse_statement(purse.as_ref(), language)
                }
            })
        }
        Ask::Sms(query, euin) => sms_query(&state, e164.as_str(), &session_id, query, euin)
            .await
            .map(|answer| match answer {
                SmsAnswer::Reply(reply) => menu::sms_answer(reply.as_deref(), language),
                SmsAnswer::NotBound => menu::sms_answer(None, language),
                SmsAnswer::Held => menu::account_held(language),
            }),
        Ask::SetLanguage(chosen, euin) => set_language(&state, e164.as_str(), chosen, euin)
            .await
            .map(|set| match set {
                LanguageSet::Set => menu::language_set(chosen),
                LanguageSet::NotBound => menu::not_bound(language),
                LanguageSet::Held => menu::account_held(language),
            }),
        _ => Ok(menu::unavailable(language)),
    };
    match answer {
        Ok(shown) => screen(&shown),
        Err(error) => {
            tracing::warn!(%error, "a USSD screen could not be read");
            screen(&menu::unavailable(language))
        }
    }
}

fn amount(minor: i64, currency: Currency) -> String {
    format!(
        "{} {}",
        currency.code(),
        Decimal::new(i128::from(minor), currency)
    )
}

/// The purse of this phone as the operator last saw it, and its last payments; `None`: no purse.
async fn purse_view(state: &Arc<AppState>, e164: &str) -> Result<Option<PurseView>, String> {
    let phone = Phone::parse(e164).map_err(|error| error.to_string())?;
    let shadow = match state.rails.purse.shadow(&state.ledger, phone).await {
        Ok(shadow) => shadow,
        Err(crate::rails::purse::RailError::Book(offpay_purse::book::BookError::Purse(
            PurseError::UnknownPhone(_),
        ))) => return Ok(None),
        Err(error) => return Err(error.to_string()),
    };
    let currency = shadow.limits.max_balance.currency();
    let offset = state.rails.sms.operator().utc_offset_minutes();
    let local = |at_ms: u64| {
        CivilDateTime::from_unix(UnixSeconds(at_ms / 1000), offset)
            .map(|civil| civil.to_string())
            .unwrap_or_default()
    };
    let account = purse_account_id(phone).map_err(|error| error.to_string())?;
    let lookup = account.clone();
    // The operator's books for the purse: credits delivered at a sync and payments the purses
    // reported, as of the last sync (the shadow's own sum waits for the purse's next report).
    let (booked, history) = state
        .ledger
        .read(move |store| {
            let booked = store.account(&lookup)?.map(|account| account.balance());
            Ok((
                booked,
                store.history(&lookup, None, menu::STATEMENT_LINES_MAX)?,
            ))
        })
        .await
        .map_err(|error| error.to_string())?;
    let lines = history
        .iter()
        .map(|record| {
            let transfer = &record.transfer;
            let minor = i64::try_from(transfer.amount.minor()).unwrap_or(i64::MAX);
            let date: String = local(record.committed_at.0).chars().take(10).collect();
            (
                date,
                transfer.credit_account == account,
                amount(minor, currency),
            )
        })
        .collect();
    Ok(Some(PurseView {
        balance: amount(booked.unwrap_or(shadow.balance_minor), currency),
        // The purse book counts in seconds.
        synced: (shadow.last_sequence > 0)
            .then(|| local(shadow.last_sync_at.0.saturating_mul(1000))),
        blocked: shadow.blocked,
        lines,
    }))
}

/// What the menu may do for a phone and an envelope.
enum Binding {
    /// The phone is bound to the envelope's account.
    Bound(offpay_sms_tan::AccountNumber),
    /// No such envelope in use, no such account, or the phone is not bound to it.
    NotBound,
    /// The envelope's record or its account's failed its MAC (changed in the database), or the
    /// two disagree on the rows used: the menu offers nothing on either, says so, and the record
    /// is raised as `record_tampered` (once per record state; the holder is not blamed).
    Held,
}

/// Whether `phone` is bound to the account `euin` is in use for, read from records that pass
/// their MACs only: an envelope or account edited in the database (a phone added to the bound
/// list, an envelope pointed at another account) binds nothing.
async fn bound_account(
    state: &Arc<AppState>,
    phone: &PhoneNumber,
    euin: Euin,
) -> Result<Binding, String> {
    let phone = phone.clone();
    let master = state.rails.sms.operator();
    let (binding, tampered) = state
        .ledger
        .read(move |store| {
            let master = master.master();
            let read = |store: &mut dyn offpay_ledger::LedgerStore| {
                let envelope =
                    Loaded::<EnvelopeRecord>::read(store, &records::envelope_key(&euin))?;
                if let Some(tampered) = admin::tampered_envelope(&envelope, master) {
                    return Ok((Binding::Held, vec![tampered]));
                }
                let Some(view) = envelope.value.map(|record| record.view) else {
                    return Ok((Binding::NotBound, Vec::new()));
                };
                let account = match view.status {
                    EnvelopeStatus::Active { account } | EnvelopeStatus::Locked { account } => {
                        account
                    }
                    _ => return Ok((Binding::NotBound, Vec::new())),
                };
                let record = Loaded::<AccountRecord>::read(store, &records::account_key(&account))?;
                if let Some(tampered) = admin::tampered_account(&record, master) {
                    return Ok((Binding::Held, vec![tampered]));
                }
                let Some(stored) = record.value else {
                    return Ok((Binding::NotBound, Vec::new()));
                };
                if stored.rows_disagree(&view) {
                    // Both records verify, the pair does not: one was put back to an earlier
                    // copy. The SMS path raises which; here the menu only holds back.
                    return Ok((Binding::Held, Vec::new()));
                }
                if !stored.bound_phones.contains(&phone) {
                    return Ok((Binding::NotBound, Vec::new()));
                }
                Ok((Binding::Bound(account), Vec::new()))
            };
            Ok(read(store))
        })
        .await
        .map_err(|error| error.to_string())?
        .map_err(|error: offpay_operator::RecordError| error.to_string())?;
    if !tampered.is_empty() {
        let now = state.now();
        let raised = runner::run(
            &state.ledger,
            now,
            || async { Ok::<(), SmsFailure>(()) },
            |()| {
                Ok::<_, SmsFailure>(offpay_operator::Decision::commit(
                    admin::tampered_flags(&tampered, now),
                    (),
                ))
            },
        )
        .await;
        if let Err(SmsFailure(error)) = raised {
            tracing::error!(code = %error.code, "could not raise a tampered SMS record's flag");
        }
        tracing::error!(
            kind = tampered[0].kind,
            "a USSD session met an SMS record that fails its MAC: nothing on it offered"
        );
    }
    Ok(binding)
}

/// What a `BAL`/`STMT` choice gets.
enum SmsAnswer {
    /// The SMS rail's answer (none: shown as not bound).
    Reply(Option<String>),
    /// The phone is not bound to the envelope's account.
    NotBound,
    /// The envelope's or the account's record fails its MAC ([`Binding::Held`]).
    Held,
}

/// What a language choice did.
enum LanguageSet {
    /// Set.
    Set,
    /// The phone is not bound to the envelope's account.
    NotBound,
    /// The envelope's or the account's record fails its MAC ([`Binding::Held`]).
    Held,
}

/// `BAL`/`STMT` for the envelope's account, as the SMS from this phone: not when the phone is
/// not bound to it (the menu says so instead of the SMS rail's request for a row) or the records
/// fail their MACs (the menu says the account is held).
async fn sms_query(
    state: &Arc<AppState>,
    e164: &str,
    session_id: &str,
    query: menu::SmsQuery,
    euin: Euin,
) -> Result<SmsAnswer, String> {
    let from = PhoneNumber::parse(e164).map_err(|_| format!("{e164} is not a phone number"))?;
    match bound_account(state, &from, euin).await? {
        Binding::Bound(_) => {}
        Binding::NotBound => return Ok(SmsAnswer::NotBound),
        Binding::Held => return Ok(SmsAnswer::Held),
    }
    let answer = handle_inbound(
        state,
        InboundSms {
            gateway: "ussd".into(),
            message_id: format!("ussd:{session_id}:{}", query.keyword()),
            from,
            text: format!("{} {euin}", query.keyword()),
            answer_inline: true,
        },
    )
    .await
    .map_err(|error| error.message.clone())?;
    Ok(SmsAnswer::Reply(answer.replies.into_iter().next()))
}

/// Sets the language of the envelope's account from a phone bound to it (not when it is not, or
/// when the records fail their MACs).
/// No row is asked: the language moves no money and can be set back the same way, and the bound
/// phone is the one the aggregator reports (the SMS `LANG` carries a SUM because an SMS's text
/// can be rewritten on the way; a USSD session's choices travel in the network's own signalling).
async fn set_language(
    state: &Arc<AppState>,
    e164: &str,
    language: Language,
    euin: Euin,
) -> Result<LanguageSet, String> {
    let from = PhoneNumber::parse(e164).map_err(|_| format!("{e164} is not a phone number"))?;
    let number = match bound_account(state, &from, euin).await? {
        Binding::Bound(number) => number,
        Binding::NotBound => return Ok(LanguageSet::NotBound),
        Binding::Held => return Ok(LanguageSet::Held),
    };
    let key = records::account_key(&number);
    let load_key = key.clone();
    let operator = state.rails.sms.operator();
    let ledger_state = state.clone();
    runner::run_with(
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
            admin::decide_language(loaded, &number, Some(language), operator.master())
                .map_err(SmsFailure::from)
        },
        crate::rails::sms::balance_changed,
    )
    .await
    .map_err(|SmsFailure(error)| error.message)?;
    state.rails.sms.cache.forget([key.as_str()]);
    Ok(LanguageSet::Set)
}
