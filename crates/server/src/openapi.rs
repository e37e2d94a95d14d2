//! The OpenAPI 3.1 document of the operator API, `GET /api/v1/openapi.json` (every role).
//!
//! Built from the route table itself ([`crate::routes::RouteTable`]), so a route cannot be served
//! without being described: its method and path, its path parameters, the roles that may call it
//! (in the description and as `x-roles`), the `Idempotency-Key` header on routes that move money,
//! and `202` on routes that create value (kept for a second user's approval). The error body is
//! one schema, `Error`, referenced by every route.
//!
//! Request and response schemas come from [`declared`]. The routes this release added (lists,
//! search, the customer view, fraud cases, this document) declare theirs; the routes of earlier
//! releases answer JSON built in their handlers and are listed in [`UNTYPED`], described as
//! free-form objects with `x-untyped: true`. The test walks the table: a route neither declared
//! nor listed fails it, so the list can only shrink.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::Method;
use serde_json::{Map, Value, json};

use crate::AppState;
use crate::routes::RouteTable;

/// What a route declares: its query parameters, its request body and its success response.
#[derive(Debug)]
pub struct Declared {
    /// Query parameters (all optional), with a description each.
    pub query: &'static [(&'static str, &'static str)],
    /// The JSON request body's schema, if it takes one.
    pub request: Option<Value>,
    /// The success response's schema.
    pub response: Value,
}

/// Routes of earlier releases whose handlers build their JSON ad hoc: described as free-form
/// objects until their types are declared. No route may be added here: a new route declares its
/// schema in [`declared`].
pub const UNTYPED: &[(&str, &str)] = &[
    ("POST", "/accounts"),
    ("GET", "/accounts/{id}"),
    ("GET", "/accounts/{id}/history"),
    ("POST", "/transfers"),
    ("GET", "/transfers/{id}"),
    ("GET", "/totals"),
    ("GET", "/users"),
    ("POST", "/users"),
    ("POST", "/users/{name}/rotate"),
    ("POST", "/users/{name}/revoke"),
    ("GET", "/audit/verify"),
    ("POST", "/approvals/{id}/approve"),
    ("POST", "/approvals/{id}/refuse"),
    ("POST", "/purse/purses"),
    ("GET", "/purse/purses/{phone}"),
    ("POST", "/purse/purses/{phone}/float"),
    ("POST", "/purse/purses/{phone}/limits"),
    ("POST", "/purse/purses/{phone}/block"),
    ("POST", "/purse/purses/{phone}/move"),
    ("GET", "/purse/purses/{phone}/statement"),
    ("POST", "/purse/purses/{phone}/settle"),
    ("POST", "/purse/purses/{phone}/settlement-paid"),
    ("POST", "/purse/purses/{phone}/unblock-pin"),
    ("POST", "/purse/scheme-key/rotate"),
    ("GET", "/sms/settings"),
    ("PUT", "/sms/settings"),
    ("POST", "/sms/settings"),
    ("GET", "/sms/status"),
    ("POST", "/sms/accounts"),
    ("GET", "/sms/accounts/{number}"),
    ("PATCH", "/sms/accounts/{number}"),
    ("POST", "/sms/accounts/{number}"),
    ("POST", "/sms/envelopes/issue"),
    ("POST", "/sms/envelopes/print"),
    ("POST", "/sms/envelopes/import"),
    ("GET", "/sms/envelopes/{euin}"),
    ("POST", "/sms/envelopes/{euin}/bind"),
    ("POST", "/sms/envelopes/{euin}/unlock"),
    ("POST", "/sms/envelopes/{euin}/replace"),
    ("GET", "/sms/disputes"),
    ("POST", "/sms/disputes/{key}/decide"),
    ("POST", "/sms/terminals"),
    ("GET", "/sms/outbox"),
    ("GET", "/sms/scheduled"),
    ("GET", "/sms/sent"),
    ("POST", "/sms/simulate"),
    ("POST", "/sms/records/seal"),
    ("POST", "/wallets"),
    ("GET", "/wallets/{id}"),
    ("POST", "/wallets/{id}/charge"),
    ("POST", "/wallets/{id}/block"),
    ("POST", "/wallets/{id}/case"),
    ("POST", "/wallets/{id}/reissue"),
    ("POST", "/wallets/{id}/release"),
    ("POST", "/wallet-transfers/{id}/void"),
    ("POST", "/wallet-sync"),
    ("GET", "/microcheck/strategy"),
    ("PUT", "/microcheck/strategy"),
    ("POST", "/microcheck/strategy"),
    ("POST", "/microcheck/payers"),
    ("GET", "/microcheck/payers/{name}"),
    ("POST", "/microcheck/payers/{name}/dispute"),
    ("GET", "/microcheck/payers/{name}/statement"),
    ("POST", "/microcheck/merchants"),
    ("POST", "/microcheck/sub-pa"),
];

/// Schema helpers: `"string"`, `"integer"`, `"boolean"`, `"object"`, `"array"`, `"any"`, and
/// `"?T"` for `T` or null.
fn ty(name: &str) -> Value {
    let (nullable, base) = match name.strip_prefix('?') {
        Some(base) => (true, base),
        None => (false, name),
    };
    if base == "any" {
        return json!({});
    }
    if nullable {
        json!({ "type": [base, "null"] })
    } else {
        json!({ "type": base })
    }
}

/// An object with these fields, all required (a `?` type may be null, not absent).
fn object(fields: &[(&str, &str)]) -> Value {
    let mut properties = Map::new();
    for (name, kind) in fields {
        properties.insert((*name).to_owned(), ty(kind));
    }
    let required: Vec<&str> = fields.iter().map(|(name, _)| *name).collect();
    json!({ "type": "object", "required": required, "properties": properties })
}

/// A page of a list of `item`.
fn page(item: Value) -> Value {
    json!({
        "type": "object",
        "required": ["items", "next_cursor"],
        "properties": {
            "items": { "type": "array", "items": item },
            "next_cursor": { "type": ["string", "null"], "description": "opaque; null at the end" },
        },
    })
}

const PAGE_QUERY: [(&str, &str); 2] = [
    ("limit", "items on a page, 1 to 500 (default 50)"),
    ("cursor", "the previous page's next_cursor"),
];

fn list_query(
    filters: &'static [(&'static str, &'static str)],
) -> &'static [(&'static str, &'static str)] {
    filters
}

fn fraud_flag() -> Value {
    let mut flag = object(&[
        ("id", "string"),
        ("rail", "string"),
        ("kind", "string"),
        ("subject", "string"),
        ("summary", "string"),
        ("evidence", "any"),
        ("raised_at", "string"),
        ("state", "string"),
        ("decisions", "array"),
        ("api", "string"),
    ]);
    flag["properties"]["state"]["enum"] = json!(["open", "cleared", "escalated"]);
    flag["properties"]["decisions"]["items"] = object(&[
        ("state", "string"),
        ("by", "string"),
        ("at", "string"),
        ("note", "string"),
    ]);
    flag
}

fn purse() -> Value {
    object(&[
        ("purse_id", "integer"),
        ("phone", "string"),
        ("kind", "string"),
        ("state", "string"),
        ("currency", "string"),
        ("balance", "string"),
        ("balance_minor", "integer"),
        ("ledger_account", "string"),
        ("last_sync_sequence", "integer"),
        ("last_sync_at", "?string"),
        ("api", "string"),
    ])
}

fn sms_account() -> Value {
    object(&[
        ("receive_number", "string"),
        ("state", "string"),
        ("currency", "string"),
        ("balance", "?string"),
        ("balance_minor", "?integer"),
        ("ledger_account", "string"),
        ("bound_phones", "array"),
        ("notify_phone", "?string"),
        ("current_envelope", "?string"),
        ("api", "string"),
    ])
}

fn envelope() -> Value {
    object(&[
        ("euin", "string"),
        ("state", "string"),
        ("account", "?string"),
        ("rows", "integer"),
        ("free_rows", "integer"),
        ("consecutive_failures", "integer"),
        ("issued_at", "string"),
        ("api", "string"),
    ])
}

fn account() -> Value {
    object(&[
        ("id", "string"),
        ("kind", "string"),
        ("currency", "string"),
        ("balance", "string"),
        ("balance_minor", "integer"),
        ("available", "string"),
        ("available_minor", "integer"),
        ("debits_pending_minor", "integer"),
        ("credits_pending_minor", "integer"),
        ("balance_min_minor", "?integer"),
        ("balance_max_minor", "?integer"),
        ("created_at_ms", "integer"),
    ])
}

/// The schemas a route declares; `None` for a route of [`UNTYPED`] (or one that declares
/// nothing, which the test refuses).
pub fn declared(method: &Method, path: &str) -> Option<Declared> {
    let get = |query: &'static [(&'static str, &'static str)], response: Value| Declared {
        query,
        request: None,
        response,
    };
    let note = object(&[("note", "string")]);
    Some(match (method.as_str(), path) {
        ("GET", "/openapi.json") => get(
            &[],
            object(&[
                ("openapi", "string"),
                ("info", "object"),
                ("paths", "object"),
            ]),
        ),
        ("GET", "/accounts") => get(
            list_query(&[
                ("prefix", "account ids starting with this"),
                ("currency", "ISO 4217 code"),
            ]),
            page(account()),
        ),
        ("GET", "/transfers") => get(
            list_query(&[
                ("account", "one account's history, newest first"),
                ("from", "RFC 3339, inclusive"),
                ("to", "RFC 3339, exclusive"),
                ("min", "decimal amount, inclusive"),
                ("max", "decimal amount, inclusive"),
                ("currency", "ISO 4217 code"),
                ("rail", "purse, sms, wallet, microcheck or ledger"),
            ]),
            page(object(&[
                ("id", "string"),
                ("sequence", "integer"),
                ("rail", "string"),
                ("debit_account", "string"),
                ("credit_account", "string"),
                ("amount", "string"),
                ("amount_minor", "integer"),
                ("currency", "string"),
                ("kind", "any"),
                ("pending_state", "any"),
                ("memo", "string"),
                ("committed_at", "string"),
            ])),
        ),
        ("GET", "/purse/purses") => get(
            list_query(&[
                ("state", "active or blocked"),
                ("kind", "customer or agent"),
            ]),
            page(purse()),
        ),
        ("GET", "/purse/scheme-key") => get(
            &[],
            object(&[
                ("scheme_epoch", "?integer"),
                ("generation_epoch", "?integer"),
                ("purses_provisioned", "integer"),
                ("purses_blocked", "integer"),
                ("currency", "?string"),
            ]),
        ),
        ("GET", "/sms/accounts") => get(
            list_query(&[("state", "active or blocked")]),
            page(sms_account()),
        ),
        ("GET", "/sms/envelopes") => get(
            list_query(&[
                ("state", "unallocated, active, locked or retired"),
                ("account", "receive number"),
            ]),
            page(envelope()),
        ),
        ("GET", "/sms/terminals") => get(
            list_query(&[("state", "active or withdrawn")]),
            page(object(&[
                ("id", "string"),
                ("payee", "string"),
                ("state", "string"),
                ("created_at", "string"),
                ("api", "string"),
            ])),
        ),
        ("GET", "/sms/dead-letters") => get(&[], page(object(&[("key", "string")]))),
        ("GET", "/wallets") => get(
            list_query(&[("state", "active, blocked or reissued")]),
            page(object(&[
                ("wallet_id", "string"),
                ("state", "string"),
                ("currency", "string"),
                ("balance", "?string"),
                ("balance_minor", "?integer"),
                ("ledger_account", "string"),
                ("case", "?object"),
                ("expires_at", "string"),
                ("api", "string"),
            ])),
        ),
        ("GET", "/microcheck/payers") => get(
            list_query(&[("prefix", "names starting with this")]),
            page(object(&[
                ("name", "string"),
                ("state", "string"),
                ("adult", "boolean"),
                ("disputes", "integer"),
                ("balance", "?string"),
                ("currency", "?string"),
                ("ledger_account", "string"),
                ("api", "string"),
            ])),
        ),
        ("GET", "/microcheck/merchants") => get(
            list_query(&[("prefix", "ids starting with this")]),
            page(object(&[
                ("id", "string"),
                ("state", "string"),
                ("app_domain", "string"),
                ("location", "any"),
                ("balance", "?string"),
                ("currency", "?string"),
                ("ledger_account", "string"),
                ("api", "string"),
            ])),
        ),
        ("GET", "/fraud") => get(
            list_query(&[
                ("state", "open, cleared or escalated"),
                ("rail", "purse, sms, wallet or microcheck"),
                ("subject", "who or what the flag is about"),
            ]),
            page(fraud_flag()),
        ),
        ("POST", "/sms/accounts/{number}/language") => Declared {
            query: &[],
            // `en`, `sw`, `fr` or the language's name; null: the operator's default.
            request: Some(object(&[("language", "?string")])),
            response: object(&[
                ("receive_number", "string"),
                ("language", "?string"),
                ("language_in_force", "string"),
                ("language_name", "string"),
            ]),
        },
        ("POST", "/fraud/{id}/clear" | "/fraud/{id}/escalate") => Declared {
            query: &[],
            request: Some(note),
            response: fraud_flag(),
        },
        ("GET", "/approvals") => get(
            list_query(&[("state", "pending (default), approved, refused or all")]),
            page(json!({ "type": "object" })),
        ),
        ("GET", "/audit") => get(
            list_query(&[
                ("from", "RFC 3339, inclusive"),
                ("to", "RFC 3339, exclusive"),
                ("user", "operator user name"),
            ]),
            page(object(&[
                ("number", "integer"),
                ("at", "string"),
                ("at_ms", "integer"),
                ("user", "?string"),
                ("action", "string"),
                ("outcome", "string"),
                ("hash", "string"),
            ])),
        ),
        ("GET", "/search") => Declared {
            query: &[("q", "a phone, number, id or name (required)")],
            request: None,
            response: page(object(&[
                ("kind", "string"),
                ("rail", "string"),
                ("id", "string"),
                ("label", "string"),
                ("state", "any"),
                ("api", "string"),
            ])),
        },
        ("GET", "/customers/{phone}") => get(
            &[],
            object(&[
                ("phone", "string"),
                ("purses", "array"),
                ("sms_accounts", "array"),
                ("envelopes", "array"),
                ("ledger_accounts", "array"),
                ("fraud_flags", "array"),
                ("complete", "boolean"),
                ("not_linked", "array"),
            ]),
        ),
        // Rail pages of the console: purse sync history, microcheck deposits, strikes, blocks.
        ("GET", "/purse/purses/{phone}/syncs") => get(
            &[],
            page(object(&[
                ("sequence", "integer"),
                ("synced_at", "string"),
                ("entries", "integer"),
                ("postings", "integer"),
                ("matched", "integer"),
                ("currency", "string"),
                ("reported_balance", "string"),
                ("shadow_balance", "string"),
                ("balances_agree", "boolean"),
                ("flags", "array"),
                ("flags_total", "integer"),
            ])),
        ),
        ("GET", "/microcheck/deposits") => get(
            list_query(&[
                ("merchant", "one merchant's deposits"),
                ("payer", "deposits holding one of this payer's microchecks"),
                (
                    "outcome",
                    "posted or refused: deposits with one such microcheck",
                ),
            ]),
            page({
                let mut deposit = object(&[
                    ("merchant", "string"),
                    ("received_at", "string"),
                    ("posted", "integer"),
                    ("refused", "integer"),
                    ("items", "array"),
                    ("merchant_account", "string"),
                ]);
                deposit["properties"]["items"]["items"] = object(&[
                    ("index", "integer"),
                    ("payer", "?string"),
                    ("amount", "?string"),
                    ("currency", "?string"),
                    ("offered_at", "?string"),
                    ("state", "string"),
                    ("code", "?string"),
                    ("reason", "?string"),
                    ("bounced", "boolean"),
                    ("flags", "array"),
                ]);
                deposit
            }),
        ),
        ("GET", "/microcheck/strikes") => get(
            list_query(&[(
                "all",
                "true: every payer, not only those with a strike or a block",
            )]),
            page(object(&[
                ("payer", "string"),
                ("disputes", "integer"),
                ("bounces", "integer"),
                ("strikes", "integer"),
                ("strikes_max", "integer"),
                ("effect", "string"),
                ("blocked", "boolean"),
                ("blocked_at", "?string"),
                ("block_reason", "?string"),
                ("api", "string"),
            ])),
        ),
        ("POST", "/microcheck/payers/{name}/block" | "/microcheck/payers/{name}/unblock") => {
            Declared {
                query: &[],
                // `{}` or a reason for the record (at most 200 bytes).
                request: Some(json!({
                    "type": "object",
                    "additionalProperties": false,
                    "properties": { "reason": { "type": ["string", "null"], "maxLength": 200 } },
                })),
                response: object(&[
                    ("payer", "string"),
                    ("blocked", "boolean"),
                    ("blocked_at", "?string"),
                    ("reason", "?string"),
                ]),
            }
        }
        _ => return None,
    })
}

/// Whether a list route takes `limit` and `cursor`.
fn is_list(declared: &Declared) -> bool {
    declared.response["properties"]["next_cursor"].is_object()
        && declared.query.iter().all(|(name, _)| *name != "q")
}

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } },
    })
}

/// The document for `table`.
pub fn document(table: &RouteTable) -> Value {
    let mut paths = Map::new();
    for spec in table.specs() {
        let template = format!("{}{}", crate::API_PREFIX, spec.path);
        let roles: Vec<&str> = spec.roles.iter().map(|role| role.as_str()).collect();
        let mut parameters: Vec<Value> = spec
            .path
            .split('/')
            .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect();
        if spec.moves_money {
            parameters.push(json!({
                "name": "Idempotency-Key",
                "in": "header",
                "required": false,
                "description": "the same key with the same body answers the first outcome again and applies nothing twice",
                "schema": { "type": "string", "maxLength": 128 },
            }));
        }
        let declared = declared(&spec.method, spec.path);
        let mut operation = json!({
            "operationId": format!("{} {}", spec.method, spec.path),
            "description": format!("Roles: {}.", roles.join(", ")),
            "x-roles": roles,
            "security": [{ "bearer": [] }],
        });
        let mut responses = Map::new();
        match &declared {
            Some(declared) => {
                if is_list(declared) {
                    for (name, description) in PAGE_QUERY {
                        parameters.push(json!({ "name": name, "in": "query", "required": false, "description": description, "schema": { "type": "string" } }));
                    }
                }
                for (name, description) in declared.query {
                    parameters.push(json!({ "name": name, "in": "query", "required": *name == "q", "description": description, "schema": { "type": "string" } }));
                }
                if let Some(request) = &declared.request {
                    operation["requestBody"] = json!({ "required": true, "content": { "application/json": { "schema": request } } });
                }
                responses.insert("200".into(), json!({ "description": "done", "content": { "application/json": { "schema": declared.response } } }));
            }
            None => {
                operation["x-untyped"] = json!(true);
                if spec.changes_state() {
                    operation["requestBody"] = json!({ "required": false, "content": { "application/json": { "schema": { "type": "object" } } } });
                }
                responses.insert("2XX".into(), json!({ "description": "done", "content": { "application/json": { "schema": { "type": "object" } } } }));
            }
        }
        if spec.creates_value.is_some() {
            responses.insert("202".into(), json!({
                "description": "above what one person may create: kept for a second user's approval (POST /api/v1/approvals/{id}/approve)",
                "content": { "application/json": { "schema": object(&[("approval", "object"), ("message", "string")]) } },
            }));
        }
        responses.insert("400".into(), error_response("bad input; nothing changed"));
        responses.insert("401".into(), error_response("no valid token"));
        responses.insert("403".into(), error_response("the caller's role may not"));
        responses.insert("404".into(), error_response("no such thing"));
        if spec.changes_state() {
            responses.insert("409".into(), error_response("conflicts with the state"));
            responses.insert("422".into(), error_response("refused by a rule"));
        }
        responses.insert(
            "503".into(),
            error_response("the ledger is unavailable; retry"),
        );
        operation["responses"] = Value::Object(responses);
        if !parameters.is_empty() {
            operation["parameters"] = Value::Array(parameters);
        }
        let entry = paths.entry(template).or_insert_with(|| json!({}));
        entry[spec.method.as_str().to_ascii_lowercase()] = operation;
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "offpay operator API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Lists, search and the customer view: docs/guide/operator-api.md. Every route states its roles (x-roles).",
        },
        "servers": [{ "url": "/" }],
        "paths": paths,
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["code", "message"],
                            "properties": {
                                "code": { "type": "string" },
                                "message": { "type": "string" },
                            },
                        },
                    },
                },
            },
        },
    })
}

/// The route serving the document.
pub fn operator_routes() -> crate::routes::OperatorRoutes {
    crate::routes::OperatorRoutes::new().get("/openapi.json", crate::routes::EVERYONE, serve)
}

async fn serve(State(_state): State<Arc<AppState>>) -> Json<Value> {
    static DOCUMENT: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    Json(
        DOCUMENT
            .get_or_init(|| document(crate::operator_routes().table()))
            .clone(),
    )
}
