//! The account holder's web statement page and the merchant terminal API.
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

use offpay_operator::Entropy;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use offpay_ledger::{Amount, Currency};
use offpay_sms_tan::civil_time::{CivilDateTime, UnixSeconds};
use offpay_sms_tan::reply;
use offpay_sms_tan::{AccountNumber, Euin, PhoneNumber, Refusal, Tan, TerminalPayment, Verdict};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::process::{self, ApplyError, Loaded, PayerLookup, ReplyRouting, get as get_record};
use super::records::{self, AccountRecord, InboundRecord, SessionRecord, TerminalRecord};
use crate::AppState;
use crate::error::ApiError;

/// Session cookie name.
pub const SESSION_COOKIE: &str = "offpay_sms_session";
/// Pre-login form token cookie name.
pub const LOGIN_COOKIE: &str = "offpay_sms_login";
/// How long a web session lasts.
pub const SESSION_SECONDS: u64 = 15 * 60;
/// Wrong web passwords in a row before web login is blocked (until a new `PASSWORD` SMS).
pub const WEB_FAILURES_MAX: u8 = 5;
/// Statement lines per page.
pub const STATEMENT_PAGE: usize = 20;
/// Longest form field read.
const FIELD_BYTES_MAX: usize = 64;
/// Argon2 salt length.
const SALT_BYTES: usize = 16;
/// Argon2 output length.
const HASH_BYTES: usize = 32;
/// Random bytes in a session token or form token.
const TOKEN_BYTES: usize = 32;
/// Longest terminal request id.
pub const TERMINAL_REQUEST_ID_BYTES_MAX: usize = 100;

/// Routes.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/sms/web", get(home))
        .route("/sms/web/login", get(login_page).post(login))
        .route("/sms/web/statement", get(statement))
        .route("/sms/web/logout", post(logout))
        .route("/sms/terminal/payments", post(terminal_payment))
}

/// Hex SHA-256 (for tokens kept only as hashes).
pub fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn random_hex(entropy: &dyn Entropy, bytes: usize) -> Result<String, ApiError> {
    let mut random = vec![0u8; bytes];
    entropy.fill(&mut random).map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "no randomness",
        )
    })?;
    Ok(hex::encode(random))
}

/// Argon2id (default parameters: 19 MiB, 2 passes) with a random salt, as
/// `argon2id$<salt hex>$<hash hex>`.
pub fn hash_password(entropy: &dyn Entropy, password: &str) -> Result<String, ApiError> {
    let mut salt = [0u8; SALT_BYTES];
    entropy.fill(&mut salt).map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "no randomness",
        )
    })?;
    let mut out = [0u8; HASH_BYTES];
    argon2::Argon2::default()
        .hash_password_into(password.as_bytes(), &salt, &mut out)
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "argon2"))?;
    Ok(format!(
        "argon2id${}${}",
        hex::encode(salt),
        hex::encode(out)
    ))
}

/// Checks a password against [`hash_password`]'s output, in constant time.
pub fn verify_password(password: &str, stored: &str) -> bool {
    let mut parts = stored.split('$');
    let (Some("argon2id"), Some(salt), Some(hash), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (hex::decode(salt), hex::decode(hash)) else {
        return false;
    };
    let mut out = [0u8; HASH_BYTES];
    if argon2::Argon2::default()
        .hash_password_into(password.as_bytes(), &salt, &mut out)
        .is_err()
    {
        return false;
    }
    out.ct_eq(hash.as_slice()).into()
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

fn page(
    title: &str,
    body: &str,
    extra_headers: Vec<(header::HeaderName, HeaderValue)>,
) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>{}</title>\
<style>body{{font-family:sans-serif;max-width:46em;margin:2em auto;padding:0 1em}}table{{border-collapse:collapse;width:100%}}td,th{{border-bottom:1px solid #ccc;padding:.3em;text-align:left}}td.n{{text-align:right}}.err{{color:#a00}}label{{display:block;margin:.5em 0}}</style></head><body>{body}</body></html>",
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

fn login_form(csrf: &str, error: Option<&str>) -> String {
    let error = error
        .map(|text| format!("<p class=\"err\" id=\"error\">{}</p>", escape(text)))
        .unwrap_or_default();
    format!(
        "<h1>Your account</h1>{error}<form method=\"post\" action=\"/sms/web/login\" autocomplete=\"off\">\
<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
<label>Account number <input name=\"account\" id=\"account\" inputmode=\"numeric\" maxlength=\"14\" required></label>\
<label>Password (set by SMS: PASSWORD envelope row TAN password) <input type=\"password\" name=\"password\" id=\"password\" maxlength=\"32\" required></label>\
<label>An unused row of your envelope <input name=\"row\" id=\"row\" inputmode=\"numeric\" maxlength=\"2\" required></label>\
<label>Its TAN <input type=\"password\" name=\"tan\" id=\"tan\" inputmode=\"numeric\" maxlength=\"3\" required></label>\
<button type=\"submit\" id=\"login\">Log in</button></form><p>The row is used up by logging in: cross it out.</p>"
    )
}

async fn login_page(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let csrf = random_hex(state.entropy.as_ref(), TOKEN_BYTES)?;
    Ok(page(
        "Log in",
        &login_form(&csrf, None),
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
}

impl std::fmt::Debug for LoginForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LoginForm(<redacted>)")
    }
}

const LOGIN_FAILED: &str = "Login failed: the account number, password, row or TAN is wrong.";

async fn login(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response, ApiError> {
    let fresh = random_hex(state.entropy.as_ref(), TOKEN_BYTES)?;
    let again = |message: &str| {
        page(
            "Log in",
            &login_form(&fresh, Some(message)),
            vec![(
                header::SET_COOKIE,
                set_cookie(LOGIN_COOKIE, &fresh, SESSION_SECONDS, &headers),
            )],
        )
    };
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    let csrf_ok: bool = expected.len() == TOKEN_BYTES * 2
        && bool::from(expected.as_bytes().ct_eq(form.csrf.as_bytes()));
    if !csrf_ok {
        return Ok(again("Your login form expired. Please try again."));
    }
    let too_long = [&form.account, &form.password, &form.row, &form.tan]
        .iter()
        .any(|field| field.len() > FIELD_BYTES_MAX);
    let parsed = (
        AccountNumber::parse(form.account.trim()),
        form.row.trim().parse::<u8>(),
        Tan::parse(form.tan.trim()),
    );
    let (Ok(account), Ok(row), Ok(tan)) = parsed else {
        return Ok(again(LOGIN_FAILED));
    };
    if too_long {
        return Ok(again(LOGIN_FAILED));
    }
    let rail = &state.rails.sms;
    rail.ensure_settings(&state).await?;
    let settings = rail.settings();
    let now = UnixSeconds(state.now().0 / 1000);
    let lookup_settings = settings.clone();
    let (context, loaded) = state
        .ledger
        .read(move |store| {
            let mut loaded = Loaded::default();
            let context = process::load_payer(
                store,
                &mut loaded,
                &PayerLookup::Account(account),
                &lookup_settings,
                now,
            )?;
            Ok((context, loaded))
        })
        .await?;
    let account_key = records::account_key(&account);
    let record = loaded.accounts.get(&account_key).cloned();
    let password = form.password.clone();
    let stored = record
        .as_ref()
        .and_then(|(record, _)| record.web_password.clone());
    let blocked = record
        .as_ref()
        .is_some_and(|(record, _)| record.web_failures >= WEB_FAILURES_MAX);
    // Hash even when there is no account or password, so timing does not tell them apart.
    let entropy = state.entropy.clone();
    let password_ok = tokio::task::spawn_blocking(move || match stored {
        Some(stored) => verify_password(&password, &stored),
        None => {
            let _ = hash_password(entropy.as_ref(), &password);
            false
        }
    })
    .await
    .unwrap_or(false);
    let (Some((mut record, version)), Some(context)) = (record, context) else {
        return Ok(again(LOGIN_FAILED));
    };
    if blocked {
        return Ok(again(
            "Web login is blocked after too many wrong passwords. Set a new one by SMS: PASSWORD envelope row TAN password.",
        ));
    }
    if !password_ok {
        record.web_failures = record.web_failures.saturating_add(1);
        let operations = vec![records::put(account_key, &record, Some(version))];
        let result = state
            .ledger
            .commit(
                vec![offpay_ledger::Batch {
                    operations: operations.clone(),
                }],
                state.now(),
            )
            .await;
        let committed = matches!(&result, Ok(results) if matches!(results.first(), Some(Ok(_))));
        rail.cache.after_commit(&operations, committed);
        result?;
        return Ok(again(LOGIN_FAILED));
    }
    let outcome = rail.engine().check_row_tan(context, row, &tan, now);
    let accepted = outcome.is_accepted();
    let token = random_hex(state.entropy.as_ref(), TOKEN_BYTES)?;
    let mut extra = Vec::new();
    if accepted {
        record.web_failures = 0;
        extra.push(records::put(account_key, &record, Some(version)));
        extra.push(records::put(
            records::session_key(&sha256_hex(&token)),
            &SessionRecord {
                version: records::FORMAT_VERSION,
                account: account.to_string(),
                csrf: random_hex(state.entropy.as_ref(), TOKEN_BYTES)?,
                expires_at_ms: state.now().0 + SESSION_SECONDS * 1000,
            },
            Some(0),
        ));
    }
    match process::apply_outcome(
        &state,
        rail,
        &outcome,
        &loaded,
        &ReplyRouting { inline_to: None },
        None,
        &format!("web-login:{}", records::short_hash(&token)),
        extra,
    )
    .await
    {
        Ok(_) => {}
        Err(ApplyError::Conflict | ApplyError::Duplicate) => {
            return Ok(again(
                "Your envelope was busy. Please try again with another row.",
            ));
        }
        Err(ApplyError::Failed(error)) => return Err(error),
    }
    if !accepted {
        let message = match &outcome.verdict {
            Verdict::Refused(Refusal::EnvelopeLocked) => {
                "Your envelope is locked after too many wrong codes. Visit an agent with your ID."
            }
            Verdict::Refused(Refusal::RowUsed { .. }) => {
                "That row was used before. Use a row you have not crossed out."
            }
            _ => LOGIN_FAILED,
        };
        return Ok(again(message));
    }
    Ok(redirect(
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
    ))
}

async fn session(
    state: &Arc<AppState>,
    headers: &HeaderMap,
) -> Result<Option<(String, SessionRecord)>, ApiError> {
    let Some(token) = cookie(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    if token.len() != TOKEN_BYTES * 2 {
        return Ok(None);
    }
    let key = records::session_key(&sha256_hex(&token));
    let lookup = key.clone();
    let found = state
        .ledger
        .read(move |store| get_record::<SessionRecord>(store, &lookup))
        .await?;
    Ok(found
        .filter(|(session, _)| session.expires_at_ms > state.now().0)
        .map(|(session, _)| (key, session)))
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
    let account = AccountNumber::parse(&session.account)
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "session"))?;
    let rail = &state.rails.sms;
    rail.ensure_settings(&state).await?;
    let offset = rail.settings().utc_offset_minutes;
    let ledger_id = records::ledger_account(&account);
    let (record, ledger_account, history) = state
        .ledger
        .read(move |store| {
            let record = get_record::<AccountRecord>(store, &records::account_key(&account))?;
            let ledger_account = store.account(&ledger_id)?;
            let history = store.history(&ledger_id, before, STATEMENT_PAGE)?;
            Ok((record, ledger_account, history))
        })
        .await?;
    let (Some((record, _)), Some(ledger_account)) = (record, ledger_account) else {
        return Ok(redirect("/sms/web/login", Vec::new()));
    };
    let currency = record.currency().unwrap_or(Currency::KES);
    let decimal = |minor: i128| offpay_ledger::Decimal::new(minor, currency).to_string();
    let mut body = String::new();
    let _ = write!(
        body,
        "<h1>Account {}</h1><p>Balance: <strong id=\"balance\">{} {}</strong></p>",
        escape(&record.receive_number),
        escape(currency.code()),
        escape(&decimal(i128::from(ledger_account.balance())))
    );
    body.push_str("<table id=\"statement\"><thead><tr><th>Date</th><th>What</th><th>Reference</th><th>Amount</th></tr></thead><tbody>");
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
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td></tr>",
            escape(&when),
            escape(&transfer.memo),
            escape(&process::reference_of(transfer.id.as_str()).to_string()),
            escape(&decimal(signed))
        );
    }
    body.push_str("</tbody></table>");
    if history.len() == STATEMENT_PAGE
        && let Some(last) = history.last()
    {
        let _ = write!(
            body,
            "<p><a href=\"/sms/web/statement?before={}\" id=\"older\">Older entries</a></p>",
            last.sequence
        );
    }
    let _ = write!(
        body,
        "<form method=\"post\" action=\"/sms/web/logout\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><button type=\"submit\" id=\"logout\">Log out</button></form>",
        escape(&session.csrf)
    );
    Ok(page("Statement", &body, Vec::new()))
}

/// The logout form.
#[derive(Debug, Deserialize)]
pub struct LogoutForm {
    csrf: String,
}

async fn logout(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Form(form): Form<LogoutForm>,
) -> Result<Response, ApiError> {
    let Some((key, session)) = session(&state, &headers).await? else {
        return Ok(redirect("/sms/web/login", Vec::new()));
    };
    if !bool::from(session.csrf.as_bytes().ct_eq(form.csrf.as_bytes())) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "invalid_form_token",
            "the form token does not match this session",
        ));
    }
    let _ = state
        .ledger
        .commit(
            vec![offpay_ledger::Batch {
                operations: vec![records::delete(key, None)],
            }],
            state.now(),
        )
        .await?;
    Ok(redirect(
        "/sms/web/login",
        vec![(
            header::SET_COOKIE,
            set_cookie(SESSION_COOKIE, "", 0, &headers),
        )],
    ))
}

/// A payment request from a merchant terminal.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TerminalRequest {
    /// Unique per terminal; a retry with the same id pays once.
    pub request_id: String,
    /// The payer's envelope number (11 digits) or pay number (12 digits).
    pub payer: String,
    /// The row the payer keyed in.
    pub row: u8,
    /// Its TAN.
    pub tan: String,
    /// Decimal amount.
    pub amount: String,
    /// Currency of the amount (default: the payee's).
    pub currency: Option<String>,
    /// The payer's phone for a confirmation with a fresh row.
    pub payer_phone: Option<String>,
}

impl std::fmt::Debug for TerminalRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TerminalRequest({}, row {})", self.request_id, self.row)
    }
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
    let (terminal_id, secret) = presented.split_once('.').ok_or_else(unauthorized)?;
    let key = records::terminal_key(terminal_id);
    if terminal_id.len() > 40 {
        return Err(unauthorized());
    }
    let terminal = state
        .ledger
        .read(move |store| get_record::<TerminalRecord>(store, &key))
        .await?
        .map(|(terminal, _)| terminal);
    let Some(terminal) = terminal.filter(|terminal| {
        terminal.active
            && bool::from(
                sha256_hex(secret)
                    .as_bytes()
                    .ct_eq(terminal.secret_hash.as_bytes()),
            )
    }) else {
        return Err(unauthorized());
    };
    if request.request_id.is_empty() || request.request_id.len() > TERMINAL_REQUEST_ID_BYTES_MAX {
        return Err(ApiError::bad_request(
            "invalid_request_id",
            format!("request_id: 1 to {TERMINAL_REQUEST_ID_BYTES_MAX} bytes"),
        ));
    }
    let payee = AccountNumber::parse(&terminal.payee)
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "payee"))?;
    let rail = &state.rails.sms;
    rail.ensure_settings(&state).await?;
    let engine = rail.engine();
    let digits: String = request.payer.chars().filter(char::is_ascii_digit).collect();
    let lookup = match digits.len() {
        11 => PayerLookup::Envelope(Euin::parse(&digits).map_err(|_| {
            ApiError::bad_request("invalid_payer", "payer: envelope number or pay number")
        })?),
        12 => {
            let number = AccountNumber::parse(&digits).map_err(|_| {
                ApiError::bad_request("invalid_payer", "payer: envelope number or pay number")
            })?;
            PayerLookup::PayNumber(number, engine.master().pay_number_tag(&number))
        }
        _ => {
            return Err(ApiError::bad_request(
                "invalid_payer",
                "payer: the envelope number (11 digits) or the pay number (12 digits)",
            ));
        }
    };
    let by_envelope = matches!(lookup, PayerLookup::Envelope(_));
    let tan = Tan::parse(request.tan.trim())
        .map_err(|_| ApiError::bad_request("invalid_tan", "tan: 3 digits"))?;
    let payer_phone = match &request.payer_phone {
        Some(phone) => Some(PhoneNumber::parse(phone).map_err(|_| {
            ApiError::bad_request("invalid_phone", "payer_phone is not a phone number")
        })?),
        None => None,
    };
    let message_id = format!("terminal:{}:{}", terminal.id, request.request_id);
    let dedupe_key = records::inbound_key(
        "terminal",
        &format!("{}:{}", terminal.id, request.request_id),
    );
    for _ in 0..process::RERUN_MAX {
        let settings = rail.settings();
        let now = UnixSeconds(state.now().0 / 1000);
        let lookup = lookup.clone();
        let dedupe_lookup = dedupe_key.clone();
        let (seen, payer, payee_context, loaded) = state
            .ledger
            .read(move |store| {
                let seen = get_record::<InboundRecord>(store, &dedupe_lookup)?;
                let mut loaded = Loaded::default();
                let payer = process::load_payer(store, &mut loaded, &lookup, &settings, now)?;
                let payee_context = match &payer {
                    Some(payer) => process::load_payee(
                        store,
                        &mut loaded,
                        &payee,
                        &payer.account.receive_number,
                        &settings,
                        now,
                    )?,
                    None => None,
                };
                Ok((seen, payer, payee_context, loaded))
            })
            .await?;
        if let Some((record, _)) = seen {
            return Ok(Json(json!({
                "status": record.verdict,
                "message": record.replies.first().cloned().unwrap_or_default(),
                "duplicate": true,
            }))
            .into_response());
        }
        let Some(payer) = payer.filter(|payer| {
            (!by_envelope || !payer.account.require_pay_number)
                && !matches!(
                    payer.envelope.status,
                    offpay_sms_tan::EnvelopeStatus::Unallocated
                        | offpay_sms_tan::EnvelopeStatus::Retired
                )
        }) else {
            return Ok((
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({
                    "status": "refused",
                    "message": reply::refused(&Refusal::NotAuthenticated, None, false),
                })),
            )
                .into_response());
        };
        let currency = match &request.currency {
            Some(code) => Currency::from_code(code).map_err(|error| {
                ApiError::bad_request("invalid_currency", format!("{code:?}: {error}"))
            })?,
            None => payee_context
                .as_ref()
                .map_or(payer.account.currency, |payee| payee.account.currency),
        };
        let amount = Amount::parse(request.amount.trim(), currency).map_err(|error| {
            ApiError::bad_request(
                "invalid_amount",
                format!("amount {:?}: {error}", request.amount),
            )
        })?;
        let payment = TerminalPayment {
            request_id: message_id.clone(),
            row: request.row,
            tan: tan.clone(),
            amount,
            payer_phone: payer_phone.clone(),
        };
        let outcome = engine.pay_at_terminal(&payment, payer, payee_context, now);
        let (status, message, reference) = match &outcome.verdict {
            Verdict::Accepted => {
                let reference = outcome.postings.first().map(|posting| posting.reference);
                let message = format!(
                    "PAID {amount} REF {}",
                    reference
                        .map(|reference| reference.to_string())
                        .unwrap_or_default()
                );
                (
                    "accepted",
                    message,
                    reference.map(|reference| reference.to_string()),
                )
            }
            Verdict::Refused(refusal) => ("refused", reply::refused(refusal, None, false), None),
            Verdict::Malformed(_) => ("malformed", "Could not read the payment.".to_owned(), None),
        };
        let dedupe_record = records::put(
            dedupe_key.clone(),
            &InboundRecord {
                version: records::FORMAT_VERSION,
                verdict: status.to_owned(),
                replies: vec![message.clone()],
                processed_at_ms: state.now().0,
            },
            Some(0),
        );
        match process::apply_outcome(
            &state,
            rail,
            &outcome,
            &loaded,
            &ReplyRouting { inline_to: None },
            None,
            &message_id,
            vec![dedupe_record],
        )
        .await
        {
            Ok(_) => {
                let code = if status == "accepted" {
                    StatusCode::OK
                } else {
                    StatusCode::UNPROCESSABLE_ENTITY
                };
                return Ok((
                    code,
                    Json(json!({ "status": status, "message": message, "reference": reference, "duplicate": false })),
                )
                    .into_response());
            }
            Err(ApplyError::Conflict | ApplyError::Duplicate) => continue,
            Err(ApplyError::Failed(error)) => return Err(error),
        }
    }
    Err(ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "busy",
        "the envelope is busy; retry with the same request_id",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_themselves() {
        let entropy = offpay_operator::SeededEntropy::from_seed(1);
        let stored = hash_password(&entropy, "MyPass2026").unwrap();
        assert!(stored.starts_with("argon2id$"));
        assert!(!stored.contains("MyPass2026"));
        assert!(verify_password("MyPass2026", &stored));
        assert!(!verify_password("MyPass2027", &stored));
        assert!(!verify_password("MyPass2026", "argon2id$00$00"));
        assert_ne!(
            stored,
            hash_password(&entropy, "MyPass2026").unwrap(),
            "salted"
        );
    }

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
