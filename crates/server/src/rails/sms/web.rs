//! The account holder's web statement page and the merchant terminal API: the HTML, cookies and
//! HTTP mapping. The rules (password and row checks, failure counts, sessions, terminal
//! authentication and payments) are the rail's (`offpay_sms_tan::operator::web` and `::terminal`).
//!
//! Web login: account number + the password set by SMS (`PASSWORD`), then an unused envelope
//! row and its TAN as the second factor (the password travelled by SMS, so a gateway insider may
//! know it; the row is used up like in an SMS). The session is a random token in an `HttpOnly`,
//! `SameSite=Strict` cookie scoped to `/sms/web`; the server keeps only its hash. Every POST
//! carries a form token checked against the session (or, for the login form, against a
//! pre-login cookie), and no secret ever appears in a URL.
//!
//! Terminal API: `POST /sms/terminal/payments` with `Authorization: Bearer <terminal token>`
//! (issued by the operator, stored hashed). The terminal supplies payee (its own) and amount; the
//! payer keys in envelope (or pay number), row and TAN.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use offpay_ledger::Currency;
use offpay_operator::Loaded;
use offpay_sms_tan::civil_time::{CivilDateTime, UnixSeconds};
use offpay_sms_tan::operator::records::{
    self, AccountRecord, SessionRecord, TerminalRecord, reference_of,
};
use offpay_sms_tan::operator::terminal::{
    self, TerminalAnswer, TerminalPlan, TerminalRequest, token_parts,
};
use offpay_sms_tan::operator::web::{
    self as rules, LoginAttempt, LoginLoad, LoginResult, SESSION_SECONDS, random_token,
    session_current, session_key_of, token_matches,
};
use offpay_text::{Language, web as text};
use serde::Deserialize;
use serde_json::json;

use super::{SmsFailure, balance_changed};
use crate::AppState;
use crate::error::ApiError;
use crate::runner;

/// Session cookie name.
pub const SESSION_COOKIE: &str = "offpay_sms_session";
/// Pre-login form token cookie name.
pub const LOGIN_COOKIE: &str = "offpay_sms_login";
/// Statement lines per page.
pub const STATEMENT_PAGE: usize = 20;

/// Routes.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/sms/web", get(home))
        .route("/sms/web/login", get(login_page).post(login))
        .route("/sms/web/statement", get(statement))
        .route("/sms/web/logout", post(logout))
        .route("/sms/web/pay", post(pay))
        .route("/sms/terminal/payments", post(terminal_payment))
}

fn random_hex(state: &AppState) -> Result<String, ApiError> {
    random_token(state.entropy.as_ref()).map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "no randomness",
        )
    })
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

fn secure_suffix(headers: &HeaderMap) -> &'static str {
    let https = headers
        .get("x-forwarded-proto")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.eq_ignore_ascii_case("https"));
    if https { "; Secure" } else { "" }
}

fn set_cookie(name: &str, value: &str, max_age: u64, headers: &HeaderMap) -> HeaderValue {
    let text = format!(
        "{name}={value}; Path=/sms/web; HttpOnly; SameSite=Strict; Max-Age={max_age}{}",
        secure_suffix(headers)
    );
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

/// Text `id` in `lang`, HTML-escaped.
fn say(lang: Language, id: offpay_text::Id) -> String {
    escape(&offpay_text::text(lang, id, &[]))
}

/// The language of a page before login: `lang` as asked (the language links), else the
/// operator's default.
fn language_asked(state: &AppState, asked: Option<&str>) -> Language {
    asked
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| state.rails.sms.operator().default_language())
}

fn page(
    lang: Language,
    title: &str,
    body: &str,
    extra_headers: Vec<(header::HeaderName, HeaderValue)>,
) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"{}\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>{}</title>\
<style>body{{font-family:sans-serif;max-width:46em;margin:2em auto;padding:0 1em}}table{{border-collapse:collapse;width:100%}}td,th{{border-bottom:1px solid #ccc;padding:.3em;text-align:left}}td.n{{text-align:right}}.err{{color:#a00}}label{{display:block;margin:.5em 0}}</style></head><body>{body}</body></html>",
        lang.code(),
        escape(title)
    );
    let mut response = (StatusCode::OK, html).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    for (name, value) in extra_headers {
        headers.append(name, value);
    }
    response
}

fn redirect(to: &'static str, extra_headers: Vec<(header::HeaderName, HeaderValue)>) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    response
        .headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static(to));
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for (name, value) in extra_headers {
        response.headers_mut().append(name, value);
    }
    response
}

async fn home(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    match session(&state, &headers).await {
        Ok(Some(_)) => redirect("/sms/web/statement", Vec::new()),
        _ => redirect("/sms/web/login", Vec::new()),
    }
}

fn login_form(lang: Language, csrf: &str, error: Option<offpay_text::Id>) -> String {
    let error = error
        .map(|id| format!("<p class=\"err\" id=\"error\">{}</p>", say(lang, id)))
        .unwrap_or_default();
    let links: Vec<String> = Language::ALL
        .iter()
        .map(|other| {
            format!(
                "<a href=\"/sms/web/login?lang={}\" hreflang=\"{}\" lang=\"{}\">{}</a>",
                other.code(),
                other.code(),
                other.code(),
                escape(other.name())
            )
        })
        .collect();
    format!(
        "<p id=\"languages\">{} {}</p>\
<h1>{}</h1>{error}<form method=\"post\" action=\"/sms/web/login\" autocomplete=\"off\">\
<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"lang\" value=\"{}\">\
<label>{} <input name=\"account\" id=\"account\" inputmode=\"numeric\" maxlength=\"14\" required></label>\
<label>{} <input type=\"password\" name=\"password\" id=\"password\" maxlength=\"32\" required></label>\
<label>{} <input name=\"row\" id=\"row\" inputmode=\"numeric\" maxlength=\"2\" required></label>\
<label>{} <input type=\"password\" name=\"tan\" id=\"tan\" inputmode=\"numeric\" maxlength=\"3\" required></label>\
<button type=\"submit\" id=\"login\">{}</button></form><p>{}</p>",
        say(lang, text::LANGUAGE),
        links.join(" | "),
        say(lang, text::YOUR_ACCOUNT),
        lang.code(),
        say(lang, text::ACCOUNT_NUMBER),
        say(lang, text::PASSWORD),
        say(lang, text::UNUSED_ROW),
        say(lang, text::ITS_TAN),
        say(lang, text::LOG_IN),
        say(lang, text::LOGIN_USES_ROW),
    )
}

/// Query of the login page: the language asked for.
#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    lang: Option<String>,
}

async fn login_page(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    query: Result<Query<LoginQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let asked = query.ok().and_then(|Query(query)| query.lang);
    let lang = language_asked(&state, asked.as_deref());
    let csrf = random_hex(&state)?;
    Ok(page(
        lang,
        &offpay_text::text(lang, text::TITLE_LOGIN, &[]),
        &login_form(lang, &csrf, None),
        vec![(
            header::SET_COOKIE,
            set_cookie(LOGIN_COOKIE, &csrf, SESSION_SECONDS, &headers),
        )],
    ))
}

/// The login form.
#[derive(Deserialize)]
pub struct LoginForm {
    csrf: String,
    account: String,
    password: String,
    row: String,
    tan: String,
    /// The language the form was shown in.
    #[serde(default)]
    lang: Option<String>,
}

impl std::fmt::Debug for LoginForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LoginForm(<redacted>)")
    }
}

async fn login(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response, ApiError> {
    let fresh = random_hex(&state)?;
    let lang = language_asked(&state, form.lang.as_deref());
    let again = |message: offpay_text::Id| {
        page(
            lang,
            &offpay_text::text(lang, text::TITLE_LOGIN, &[]),
            &login_form(lang, &fresh, Some(message)),
            vec![(
                header::SET_COOKIE,
                set_cookie(LOGIN_COOKIE, &fresh, SESSION_SECONDS, &headers),
            )],
        )
    };
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if !token_matches(&expected, &form.csrf) {
        return Ok(again(text::FORM_EXPIRED));
    }
    let Some(attempt) = LoginAttempt::parse(&form.account, &form.password, &form.row, &form.tan)
    else {
        return Ok(again(text::LOGIN_FAILED));
    };
    let attempt = Arc::new(attempt);
    let rail = &state.rails.sms;
    rail.ensure_settings(&state).await?;
    let operator = rail.operator();
    let ready = rail.operator_ready();
    let now = state.now();
    let result = runner::run_with(
        &state.ledger,
        now,
        || {
            let (state, operator, attempt) = (state.clone(), operator.clone(), attempt.clone());
            async move {
                let read_attempt = attempt.clone();
                let read_operator = operator.clone();
                let mut load = state
                    .ledger
                    .read(move |store| {
                        Ok(LoginLoad::read(store, &read_attempt, &read_operator, now))
                    })
                    .await?
                    .map_err(SmsFailure::from)?;
                // Argon2 is slow on purpose: off the request threads.
                let entropy = state.entropy.clone();
                let (load, checked) = tokio::task::spawn_blocking(move || {
                    let checked = load.check_password(&attempt, entropy.as_ref());
                    (load, checked)
                })
                .await
                .map_err(|_| {
                    SmsFailure(ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal",
                        "checking the password failed",
                    ))
                })?;
                checked?;
                Ok::<_, SmsFailure>(load)
            }
        },
        |load| {
            rules::decide_login(
                load,
                &attempt,
                now,
                &operator,
                state.entropy.as_ref(),
                &ready,
            )
            .map_err(SmsFailure::from)
        },
        balance_changed,
    )
    .await;
    let answer = match result {
        Ok(answer) => answer,
        Err(SmsFailure(error)) if error.code == "busy" => {
            return Ok(again(text::ENVELOPE_BUSY));
        }
        Err(SmsFailure(error)) => return Err(error),
    };
    rail.cache.keep_written(&answer.written);
    let message = match answer.result {
        LoginResult::LoggedIn { token } => {
            return Ok(redirect(
                "/sms/web/statement",
                vec![
                    (
                        header::SET_COOKIE,
                        set_cookie(SESSION_COOKIE, &token, SESSION_SECONDS, &headers),
                    ),
                    (
                        header::SET_COOKIE,
                        set_cookie(LOGIN_COOKIE, "", 0, &headers),
                    ),
                ],
            ));
        }
        LoginResult::Blocked => text::LOGIN_BLOCKED,
        LoginResult::EnvelopeLocked => text::ENVELOPE_LOCKED,
        LoginResult::RowUsed => text::ROW_USED,
        LoginResult::Failed => text::LOGIN_FAILED,
    };
    Ok(again(message))
}

async fn session(
    state: &Arc<AppState>,
    headers: &HeaderMap,
) -> Result<Option<(Loaded<SessionRecord>, SessionRecord)>, ApiError> {
    let Some(key) = cookie(headers, SESSION_COOKIE).and_then(|token| session_key_of(&token)) else {
        return Ok(None);
    };
    let loaded = state
        .ledger
        .read(move |store| Ok(Loaded::<SessionRecord>::read(store, &key)))
        .await?
        .map_err(SmsFailure::from)?;
    let now = state.now();
    Ok(loaded
        .value
        .clone()
        .filter(|session| session_current(session, now))
        .map(|session| (loaded, session)))
}

/// Query of the statement page.
#[derive(Debug, Deserialize)]
pub struct StatementQuery {
    before: Option<u64>,
}

async fn statement(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    query: Result<Query<StatementQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Some((_, session)) = session(&state, &headers).await? else {
        return Ok(redirect("/sms/web/login", Vec::new()));
    };
    let before = query.ok().and_then(|Query(query)| query.before);
    let account = session.account;
    let rail = &state.rails.sms;
    rail.ensure_settings(&state).await?;
    let offset = rail.operator().utc_offset_minutes();
    let ledger_id = records::ledger_account(&account);
    let (record, ledger_account, history) = state
        .ledger
        .read(move |store| {
            let record = Loaded::<AccountRecord>::read(store, &records::account_key(&account));
            let ledger_account = store.account(&ledger_id)?;
            let history = store.history(&ledger_id, before, STATEMENT_PAGE)?;
            Ok((record, ledger_account, history))
        })
        .await?;
    let record = record.map_err(SmsFailure::from)?.value;
    let (Some(record), Some(ledger_account)) = (record, ledger_account) else {
        return Ok(redirect("/sms/web/login", Vec::new()));
    };
    let currency: Currency = record.currency;
    let lang = record
        .language
        .unwrap_or_else(|| rail.operator().default_language());
    let decimal = |minor: i128| offpay_ledger::Decimal::new(minor, currency).to_string();
    let mut body = String::new();
    let _ = write!(
        body,
        "<h1>{}</h1><p>{} <strong id=\"balance\">{} {}</strong></p>",
        escape(&offpay_text::text(
            lang,
            text::ACCOUNT_HEADING,
            &[("number", &record.receive_number)]
        )),
        say(lang, text::BALANCE),
        escape(currency.code()),
        escape(&decimal(i128::from(ledger_account.balance())))
    );
    let _ = write!(
        body,
        "<table id=\"statement\"><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>",
        say(lang, text::COLUMN_DATE),
        say(lang, text::COLUMN_COUNTERPARTY),
        say(lang, text::COLUMN_WHAT),
        say(lang, text::COLUMN_REFERENCE),
        say(lang, text::COLUMN_AMOUNT),
        say(lang, text::COLUMN_FEE),
    );
    let id = records::ledger_account(&account);
    for entry in &history {
        let transfer = &entry.transfer;
        let minor = i128::from(transfer.amount.minor());
        let signed = if transfer.debit_account == id {
            -minor
        } else {
            minor
        };
        let when = CivilDateTime::from_unix(UnixSeconds(entry.committed_at.0 / 1000), offset)
            .map(|date| date.to_string())
            .unwrap_or_default();
        let other = if transfer.debit_account == id {
            &transfer.credit_account
        } else {
            &transfer.debit_account
        };
        let is_fee = transfer.memo.starts_with("sms fee ");
        let counterparty = match other.as_str().strip_prefix(records::LEDGER_PREFIX) {
            Some(number) => number.to_owned(),
            None if is_fee => offpay_text::text(lang, text::COUNTERPARTY_FEE, &[]),
            None if transfer.memo.starts_with("sms exchange") => {
                offpay_text::text(lang, text::COUNTERPARTY_EXCHANGE, &[])
            }
            None => offpay_text::text(lang, text::COUNTERPARTY_CASH, &[]),
        };
        // An SMS payment's fee is its own leg: shown in the fee column, under the payment's
        // reference (its memo's), never as a payment.
        let reference = transfer
            .memo
            .rsplit("REF ")
            .next()
            .and_then(|text| offpay_sms_tan::Reference::parse(text.trim()))
            .unwrap_or_else(|| reference_of(transfer.id.as_str()));
        let (amount, fee) = if is_fee {
            (String::new(), decimal(signed))
        } else {
            (decimal(signed), String::new())
        };
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            escape(&when),
            escape(&counterparty),
            escape(&transfer.memo),
            escape(&reference.to_string()),
            escape(&amount),
            escape(&fee)
        );
    }
    body.push_str("</tbody></table>");
    if history.len() == STATEMENT_PAGE
        && let Some(last) = history.last()
    {
        let _ = write!(
            body,
            "<p><a href=\"/sms/web/statement?before={}\" id=\"older\">{}</a></p>",
            last.sequence,
            say(lang, text::OLDER)
        );
    }
    let request_id = random_hex(&state)?;
    let _ = write!(
        body,
        "<h2>{}</h2><form method=\"post\" action=\"/sms/web/pay\" autocomplete=\"off\">\
<input type=\"hidden\" name=\"csrf\" value=\"{}\"><input type=\"hidden\" name=\"request\" value=\"{}\">\
<label>{} <input name=\"payee\" id=\"payee\" inputmode=\"numeric\" maxlength=\"14\" required></label>\
<label>{} <input name=\"amount\" id=\"amount\" inputmode=\"decimal\" maxlength=\"20\" required></label>\
<label>{} <input name=\"row\" id=\"pay_row\" inputmode=\"numeric\" maxlength=\"2\" required></label>\
<label>{} <input type=\"password\" name=\"tan\" id=\"pay_tan\" inputmode=\"numeric\" maxlength=\"3\" required></label>\
<button type=\"submit\" id=\"pay\">{}</button></form><p>{}</p>",
        say(lang, text::PAY_HEADING),
        escape(&session.csrf),
        escape(&request_id),
        say(lang, text::PAYEE),
        say(lang, text::AMOUNT),
        say(lang, text::UNUSED_ROW),
        say(lang, text::ITS_TAN),
        say(lang, text::PAY),
        say(lang, text::PAY_USES_ROW),
    );
    let _ = write!(
        body,
        "<form method=\"post\" action=\"/sms/web/logout\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><button type=\"submit\" id=\"logout\">{}</button></form>",
        escape(&session.csrf),
        say(lang, text::LOG_OUT)
    );
    Ok(page(
        lang,
        &offpay_text::text(lang, text::TITLE_STATEMENT, &[]),
        &body,
        Vec::new(),
    ))
}

/// The logout form.
#[derive(Debug, Deserialize)]
pub struct LogoutForm {
    csrf: String,
}

/// The PC payment form's fields.
#[derive(Deserialize)]
pub struct PayForm {
    csrf: String,
    request: String,
    payee: String,
    amount: String,
    row: String,
    tan: String,
}

impl std::fmt::Debug for PayForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PayForm(<redacted>)")
    }
}

/// A PC payment (the seed's fifth path): after the secure login, the holder pays with another
/// unused row and its TAN, under the SMS rules (`TerminalPlan::web`).
async fn pay(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Form(mut form): Form<PayForm>,
) -> Result<Response, ApiError> {
    let Some((_, session)) = session(&state, &headers).await? else {
        return Ok(redirect("/sms/web/login", Vec::new()));
    };
    if !token_matches(&session.csrf, &form.csrf) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "invalid_form_token",
            "the form token does not match this session",
        ));
    }
    let rail = &state.rails.sms;
    rail.ensure_settings(&state).await?;
    let operator = rail.operator();
    let row = form.row.trim().parse::<u8>().unwrap_or(0);
    let plan = TerminalPlan::web(
        &session.account,
        &form.payee,
        &form.amount,
        row,
        &form.tan,
        &form.request,
    );
    zeroize::Zeroize::zeroize(&mut form.tan);
    let message = match plan {
        Err(error) => error.to_string(),
        Ok(plan) => {
            let plan = Arc::new(plan);
            let ready = rail.operator_ready();
            let now = state.now();
            let answer = runner::run_with(
                &state.ledger,
                now,
                || {
                    let (state, operator, plan) = (state.clone(), operator.clone(), plan.clone());
                    async move {
                        state
                            .ledger
                            .read(move |store| {
                                Ok(terminal::load_terminal(store, &plan, &operator, now))
                            })
                            .await?
                            .map_err(SmsFailure::from)
                    }
                },
                |load| {
                    terminal::decide_terminal(load, &plan, now, &operator, &ready)
                        .map_err(SmsFailure::from)
                },
                balance_changed,
            )
            .await?;
            match answer {
                TerminalAnswer::Duplicate { message, .. } => message,
                TerminalAnswer::PayerRefused { message } => message,
                TerminalAnswer::Done {
                    message, summary, ..
                } => {
                    rail.committed(&summary);
                    message
                }
            }
        }
    };
    let account = session.account;
    let lang = state
        .ledger
        .read(move |store| {
            Ok(Loaded::<AccountRecord>::read(
                store,
                &records::account_key(&account),
            ))
        })
        .await?
        .ok()
        .and_then(|loaded| loaded.value)
        .and_then(|record| record.language)
        .unwrap_or_else(|| operator.default_language());
    let body = format!(
        "<h1>{}</h1><p id=\"result\">{}</p><p><a href=\"/sms/web/statement\" id=\"back\">{}</a></p>",
        say(lang, text::PAYMENT_HEADING),
        escape(&message),
        say(lang, text::BACK)
    );
    Ok(page(
        lang,
        &offpay_text::text(lang, text::TITLE_PAYMENT, &[]),
        &body,
        Vec::new(),
    ))
}

async fn logout(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Form(form): Form<LogoutForm>,
) -> Result<Response, ApiError> {
    let Some((loaded, session)) = session(&state, &headers).await? else {
        return Ok(redirect("/sms/web/login", Vec::new()));
    };
    if !token_matches(&session.csrf, &form.csrf) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "invalid_form_token",
            "the form token does not match this session",
        ));
    }
    let mut effects = offpay_operator::Effects::new();
    effects.write(offpay_sms_tan::operator::apply::remove::<SessionRecord>(
        loaded.key,
    ));
    runner::commit(&state.ledger, effects, state.now())
        .await
        .map_err(SmsFailure::from)?;
    Ok(redirect(
        "/sms/web/login",
        vec![(
            header::SET_COOKIE,
            set_cookie(SESSION_COOKIE, "", 0, &headers),
        )],
    ))
}

async fn terminal_payment(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    crate::api::ApiJson(request): crate::api::ApiJson<TerminalRequest>,
) -> Result<Response, ApiError> {
    let unauthorized = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_terminal_token",
            "send the terminal's token as 'Authorization: Bearer <token>'",
        )
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(unauthorized)?;
    let (terminal_id, secret) = token_parts(presented).ok_or_else(unauthorized)?;
    let key = records::terminal_key(terminal_id);
    let terminal = state
        .ledger
        .read(move |store| Ok(Loaded::<TerminalRecord>::read(store, &key)))
        .await?
        .map_err(SmsFailure::from)?
        .value;
    let Some(terminal) = terminal.filter(|terminal| terminal.accepts(secret)) else {
        return Err(unauthorized());
    };
    let rail = &state.rails.sms;
    rail.ensure_settings(&state).await?;
    let operator = rail.operator();
    let plan =
        Arc::new(TerminalPlan::new(&request, &terminal, &operator).map_err(SmsFailure::from)?);
    let ready = rail.operator_ready();
    let now = state.now();
    let answer = runner::run_with(
        &state.ledger,
        now,
        || {
            let (state, operator, plan) = (state.clone(), operator.clone(), plan.clone());
            async move {
                state
                    .ledger
                    .read(move |store| Ok(terminal::load_terminal(store, &plan, &operator, now)))
                    .await?
                    .map_err(SmsFailure::from)
            }
        },
        |load| {
            terminal::decide_terminal(load, &plan, now, &operator, &ready).map_err(SmsFailure::from)
        },
        balance_changed,
    )
    .await
    .map_err(|SmsFailure(error)| {
        if error.code == "busy" {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "the envelope is busy; retry with the same request_id",
            )
        } else {
            error
        }
    })?;
    Ok(match answer {
        TerminalAnswer::Duplicate { verdict, message } => Json(json!({
            "status": verdict.word(),
            "message": message,
            "duplicate": true,
        }))
        .into_response(),
        TerminalAnswer::PayerRefused { message } => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({ "status": "refused", "message": message })),
        )
            .into_response(),
        TerminalAnswer::Done {
            verdict,
            message,
            reference,
            summary,
        } => {
            rail.committed(&summary);
            let code = if verdict == records::Answered::Accepted {
                StatusCode::OK
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            };
            (
                code,
                Json(json!({
                    "status": verdict.word(),
                    "message": message,
                    "reference": reference.map(|reference| reference.to_string()),
                    "duplicate": false,
                })),
            )
                .into_response()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped_and_cookies_are_strict() {
        assert_eq!(
            escape("<a href='x'>&\""),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;"
        );
        let headers = HeaderMap::new();
        let value = set_cookie(SESSION_COOKIE, "abc", 60, &headers);
        let text = value.to_str().unwrap();
        assert!(text.contains("HttpOnly") && text.contains("SameSite=Strict"));
        assert!(!text.contains("Secure"));
        let mut forwarded = HeaderMap::new();
        forwarded.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert!(
            set_cookie(SESSION_COOKIE, "abc", 60, &forwarded)
                .to_str()
                .unwrap()
                .ends_with("; Secure")
        );
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; offpay_sms_session=xyz; b=2"),
        );
        assert_eq!(cookie(&headers, SESSION_COOKIE).as_deref(), Some("xyz"));
        assert_eq!(cookie(&headers, LOGIN_COOKIE), None);
    }
}
