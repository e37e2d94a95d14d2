//! The OpenAPI 3.1 document of the operator API, `GET /api/v1/openapi.json` (every role).
//!
//! Built from the route table itself ([`crate::routes::RouteTable`]), so a route cannot be served
//! without being described: its method and path, its path parameters, the roles that may call it
//! (in the description and as `x-roles`), the `Idempotency-Key` header on routes that move money,
//! and `202` on routes that create value (kept for a second user's approval). The error body is
//! one schema, `Error`, referenced by every route.
//!
//! Request and response schemas come from [`declared`], for every route: required fields, types,
//! the enums of states and kinds, amounts as decimal text beside their currency, and
//! `additionalProperties: false` on request bodies the handler reads with `deny_unknown_fields`.
//! Shared schemas (`Error`, `Account`, `Decimal`, the rails' objects) are in
//! `components.schemas`. The test walks the table: a route that declares nothing fails it.

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

/// Schema helpers. A type is `"string"`, `"integer"`, `"boolean"`, `"object"`, `"array"`,
/// `"any"`, a shared kind — `"decimal"` (an amount as decimal text, beside its currency),
/// `"currency"` (ISO 4217), `"time"` (RFC 3339 UTC), `"ms"` (milliseconds since the Unix epoch),
/// `"s"` (seconds since the Unix epoch), `"count"` (an integer, 0 or more) — `"$Name"` for
/// `#/components/schemas/Name`, `"[T]"` for an array of `T`; and `"?T"` for `T` or null.
fn ty(name: &str) -> Value {
    let (nullable, base) = match name.strip_prefix('?') {
        Some(base) => (true, base),
        None => (false, name),
    };
    if base == "any" {
        return json!({});
    }
    if let Some(item) = base
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
    {
        let mut schema = json!({ "type": "array", "items": ty(item) });
        if nullable {
            schema["type"] = json!(["array", "null"]);
        }
        return schema;
    }
    if let Some(component) = base.strip_prefix('$') {
        let reference = json!({ "$ref": format!("#/components/schemas/{component}") });
        return if nullable {
            json!({ "anyOf": [reference, { "type": "null" }] })
        } else {
            reference
        };
    }
    let (kind, extra) = match base {
        "decimal" => ("string", json!({ "pattern": DECIMAL_PATTERN })),
        "currency" => ("string", json!({ "pattern": "^[A-Z]{3}$" })),
        "time" => ("string", json!({ "format": "date-time" })),
        "ms" => (
            "integer",
            json!({ "minimum": 0, "description": "milliseconds since the Unix epoch (UTC)" }),
        ),
        "s" => (
            "integer",
            json!({ "minimum": 0, "description": "seconds since the Unix epoch (UTC)" }),
        ),
        "count" => ("integer", json!({ "minimum": 0 })),
        other => (other, json!({})),
    };
    let mut schema = if nullable {
        json!({ "type": [kind, "null"] })
    } else {
        json!({ "type": kind })
    };
    if let (Some(schema), Some(extra)) = (schema.as_object_mut(), extra.as_object()) {
        schema.extend(extra.clone());
    }
    schema
}

/// A decimal amount as the API writes and reads it: digits, optionally a sign and a fraction
/// (no more fraction digits than the currency has; the handler checks that).
const DECIMAL_PATTERN: &str = "^-?[0-9]+(\\.[0-9]+)?$";

/// `schema` with these optional fields added (present or absent; a `?` type may also be null).
fn with(mut schema: Value, optional: &[(&str, &str)]) -> Value {
    for (name, kind) in optional {
        schema["properties"][*name] = ty(kind);
    }
    schema
}

/// `schema` refusing fields it does not name (the handler reads it with `deny_unknown_fields`).
fn strict(mut schema: Value) -> Value {
    schema["additionalProperties"] = json!(false);
    schema
}

/// A request body with only optional fields, refusing others.
fn options(optional: &[(&str, &str)]) -> Value {
    strict(with(object(&[]), optional))
}

/// `schema` with the field `name` limited to `values`.
fn one_of(mut schema: Value, name: &str, values: &[&str]) -> Value {
    let field = &mut schema["properties"][name];
    let nullable = field["type"].is_array();
    field["enum"] = json!(values);
    if nullable {
        field["enum"]
            .as_array_mut()
            .into_iter()
            .for_each(|values| values.push(Value::Null));
    }
    schema
}

/// `schema` with a description.
fn described(mut schema: Value, description: &str) -> Value {
    schema["description"] = json!(description);
    schema
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
        ("earlier", "array"),
        ("earlier_dropped", "integer"),
        ("api", "string"),
    ]);
    flag["properties"]["state"]["enum"] = json!(["open", "cleared", "escalated"]);
    let decision = object(&[
        ("state", "string"),
        ("by", "string"),
        ("at", "string"),
        ("note", "string"),
    ]);
    flag["properties"]["decisions"]["items"] = decision.clone();
    // Earlier rounds of the case: new evidence reopened it; what it said and how it stood.
    let mut round = object(&[
        ("summary", "string"),
        ("evidence", "any"),
        ("raised_at", "string"),
        ("state", "string"),
        ("decisions", "array"),
    ]);
    round["properties"]["decisions"]["items"] = decision;
    flag["properties"]["earlier"]["items"] = round;
    flag
}

fn purse() -> Value {
    let purse = object(&[
        ("purse_id", "integer"),
        ("phone", "string"),
        ("kind", "string"),
        ("state", "string"),
        ("trust_class", "string"),
        ("currency", "currency"),
        ("balance", "decimal"),
        ("balance_minor", "integer"),
        ("ledger_account", "string"),
        ("last_sync_sequence", "integer"),
        ("last_sync_at", "?time"),
        ("api", "string"),
    ]);
    one_of(
        one_of(purse, "kind", PURSE_KINDS),
        "state",
        &["active", "blocked"],
    )
}

/// Purse kinds.
const PURSE_KINDS: &[&str] = &["customer", "agent"];
const TRUST_CLASSES: &[&str] = &["software", "hardware"];

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
    ty("$Account")
}

/// The shared schemas, `components.schemas`.
fn components() -> Value {
    let account = one_of(
        object(&[
            ("id", "string"),
            ("kind", "string"),
            ("currency", "currency"),
            ("balance", "decimal"),
            ("balance_minor", "integer"),
            ("available", "decimal"),
            ("available_minor", "integer"),
            ("debits_pending_minor", "integer"),
            ("credits_pending_minor", "integer"),
            ("balance_min_minor", "?integer"),
            ("balance_max_minor", "?integer"),
            ("created_at_ms", "ms"),
        ]),
        "kind",
        ACCOUNT_KINDS,
    );
    let user = one_of(
        one_of(
            object(&[
                ("name", "string"),
                ("role", "string"),
                ("created_at_ms", "ms"),
                ("token_issued_at_ms", "ms"),
                ("expires_at_ms", "?ms"),
                ("revoked_at_ms", "?ms"),
                ("state", "string"),
            ]),
            "role",
            ROLES,
        ),
        "state",
        &["active", "expired", "revoked"],
    );
    let approval = with(
        one_of(
            one_of(
                object(&[
                    ("id", "string"),
                    ("method", "string"),
                    ("path", "string"),
                    ("route", "string"),
                    ("body", "any"),
                    ("value", "string"),
                    ("requester", "string"),
                    ("requester_role", "string"),
                    ("idempotency_key", "?string"),
                    ("created_at_ms", "ms"),
                    ("state", "string"),
                ]),
                "state",
                &["pending", "approved", "refused"],
            ),
            "requester_role",
            ROLES,
        ),
        &[("by", "string"), ("at_ms", "ms"), ("reason", "string")],
    );
    let transfer_kind = with(
        one_of(object(&[("type", "string")]), "type", TRANSFER_KINDS),
        &[("pending_id", "string")],
    );
    let history_entry = one_of(
        one_of(
            object(&[
                ("sequence", "count"),
                ("id", "string"),
                ("direction", "string"),
                ("counterparty", "string"),
                ("amount", "decimal"),
                ("amount_minor", "count"),
                ("kind", "$TransferKind"),
                ("pending_state", "?string"),
                ("memo", "string"),
                ("committed_at_ms", "ms"),
            ]),
            "direction",
            &["debit", "credit"],
        ),
        "pending_state",
        PENDING_STATES,
    );
    let transfer_record = one_of(
        object(&[
            ("id", "string"),
            ("debit_account", "string"),
            ("credit_account", "string"),
            ("amount", "$LedgerAmount"),
            ("kind", "$TransferKind"),
            ("memo", "string"),
            ("pending_state", "?string"),
            ("sequence", "count"),
            ("committed_at", "ms"),
            ("debit_previous", "count"),
            ("credit_previous", "count"),
        ]),
        "pending_state",
        PENDING_STATES,
    );
    let sms_account = with(
        object(&[
            ("receive_number", "string"),
            ("ledger_account", "string"),
            ("currency", "currency"),
            ("active", "boolean"),
            ("bound_phones", "[string]"),
            ("notify_phone", "?string"),
            ("require_pay_number", "boolean"),
            ("current_envelope", "?string"),
            ("limits", "$SmsLimits"),
            ("dialback_threshold_minor", "?count"),
            ("always_callback", "boolean"),
            ("web_password_set", "boolean"),
            ("balance", "?decimal"),
        ]),
        &[("pay_number", "string")],
    );
    let sms_limits = object(&[
        ("per_payment_minor", "?count"),
        ("per_day_minor", "?count"),
        ("per_week_minor", "?count"),
        ("per_payee", "[$PerPayeeLimit]"),
    ]);
    let envelope = one_of(
        object(&[
            ("euin", "string"),
            ("rows", "count"),
            ("free_rows", "count"),
            ("used_rows", "[integer]"),
            ("consecutive_failures", "count"),
            ("status", "string"),
            ("account", "?string"),
            ("imported", "boolean"),
        ]),
        "status",
        ENVELOPE_STATES,
    );
    let sms_dispute = one_of(
        object(&[
            ("key", "string"),
            ("version", "integer"),
            ("account", "string"),
            ("reference", "string"),
            ("reported_at", "s"),
            ("status", "string"),
            ("note", "?string"),
            ("refund_transfer", "?string"),
        ]),
        "status",
        &["open", "refunded", "rejected"],
    );
    let sms_settings = object(&[
        ("version", "integer"),
        ("fees", "[$SmsFees]"),
        ("dialback_defaults", "[$CurrencyAmount]"),
        ("printed_recipe_max", "[$CurrencyAmount]"),
        ("rates", "[$SmsRate]"),
        ("hard_currencies", "[currency]"),
        ("utc_offset_minutes", "integer"),
        ("euin_prefix", "count"),
        ("operator_name", "string"),
        ("sms_number", "string"),
    ]);
    let wallet_credential = object(&[
        ("wallet_id", "string"),
        ("currency", "currency"),
        ("balance_max", "decimal"),
        ("payment_max", "decimal"),
        ("offline_spend_max", "decimal"),
        ("issued_at_ms", "ms"),
        ("expires_at_ms", "ms"),
    ]);
    let wallet_case = object(&[
        ("reason", "string"),
        ("summary", "string"),
        ("opened_at_ms", "ms"),
        ("transfer_id", "?string"),
        ("decision", "?string"),
        ("decided_at_ms", "?ms"),
    ]);
    let tier = strict(object(&[
        ("name", "string"),
        ("amount_max", "decimal"),
        ("validity_seconds", "count"),
        ("per_merchant_day_max", "count"),
    ]));
    let strategy = strict(with(
        object(&[
            ("version", "integer"),
            ("app_domain", "string"),
            ("currency", "currency"),
            ("tiers", "[$Tier]"),
            ("merchant_validity_seconds", "count"),
            ("adulthood_validity_seconds", "count"),
            ("transaction_amount_max", "decimal"),
            ("transaction_validity_seconds", "count"),
            ("machine_day_purchases_max", "count"),
            ("travel_speed_kmh_max", "count"),
        ]),
        &[("transaction_day_max", "count")],
    ));
    let charge = object(&[
        ("v", "integer"),
        ("merchant", "string"),
        ("nonce", "string"),
        ("product", "string"),
        ("amount", "decimal"),
        ("currency", "currency"),
        ("timestamp", "string"),
        ("transfer_id", "string"),
        ("bounced", "boolean"),
        ("credential_serial", "?string"),
        ("microcheck_sha256", "string"),
        ("deposited", "string"),
    ]);
    json!({
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
        "Decimal": described(ty("decimal"), "an amount as decimal text, in the currency beside it"),
        "AppliedBefore": described(
            json!({
                "type": "object",
                "required": ["message"],
                "properties": {
                    "already_applied": { "const": true },
                    "applied": { "const": true },
                    "message": { "type": "string" },
                },
                "anyOf": [{ "required": ["already_applied"] }, { "required": ["applied"] }],
            }),
            "a money-moving request already applied: its Idempotency-Key was used before and the first answer was not kept, or the answer was too large to return",
        ),
        "Account": account,
        "LedgerAmount": object(&[("currency", "currency"), ("minor", "count")]),
        "CurrencyAmount": object(&[("currency", "currency"), ("amount", "decimal")]),
        "TransferKind": transfer_kind,
        "TransferRecord": transfer_record,
        "HistoryEntry": history_entry,
        "User": user,
        "Approval": approval,
        "PurseLimits": object(&[
            ("max_balance", "decimal"),
            ("max_single_payment", "decimal"),
            ("max_spent_since_sync", "decimal"),
            ("small_payment_limit", "decimal"),
            ("valid_until", "s"),
        ]),
        "PurseClassCeiling": object(&[
            ("max_balance", "decimal"),
            ("max_single_payment", "decimal"),
            ("max_spent_since_sync", "decimal"),
        ]),
        "SmsAccount": sms_account,
        "SmsLimits": sms_limits,
        "SmsEnvelope": envelope,
        "SmsDispute": sms_dispute,
        "SmsSettings": sms_settings,
        "SmsFees": object(&[
            ("currency", "currency"),
            ("low", "decimal"),
            ("middle", "decimal"),
            ("high", "decimal"),
        ]),
        "SmsRate": object(&[
            ("from", "currency"),
            ("to", "currency"),
            ("numerator", "count"),
            ("denominator", "count"),
        ]),
        "WalletCredential": wallet_credential,
        "WalletCase": wallet_case,
        "WalletSettled": object(&[
            ("purchases", "count"),
            ("sales", "count"),
            ("paid", "decimal"),
            ("received", "decimal"),
            ("currency", "currency"),
            ("payment_numbers_settled_through", "count"),
            ("payment_numbers_settled_above", "[count]"),
        ]),
        "Tier": tier,
        "Strategy": strategy,
        "MicrocheckCharge": charge,
        "AuditBreak": object(&[("number", "count"), ("problem", "string")]),
        "ReissueQuote": object(&[
            ("shadow", "decimal"),
            ("held", "decimal"),
            ("unseen_spend_max", "decimal"),
            ("reissue", "decimal"),
            ("available_at_ms", "ms"),
        ]),
        "PurseCredit": object(&[
            ("credit_id", "count"),
            ("amount", "decimal"),
            ("memo", "string"),
        ]),
        "PurseSettlement": object(&[("settlement_id", "count"), ("amount", "decimal")]),
        "PerPayeeLimit": described(
            json!({
                "type": "array",
                "prefixItems": [ty("string"), ty("count")],
                "minItems": 2,
                "maxItems": 2,
            }),
            "[payee account number, per-day limit in minor units]",
        ),
        "SmsOutbound": with(
            object(&[
                ("key", "string"),
                ("version", "integer"),
                ("to", "string"),
                ("text_chars", "count"),
                ("text_kept", "boolean"),
                ("attempts", "count"),
                ("next_attempt_ms", "ms"),
                ("queued_at_ms", "ms"),
                ("last_error", "?string"),
            ]),
            &[],
        ),
        "SmsScheduled": with(
            object(&[
                ("key", "string"),
                ("version", "integer"),
                ("message_id", "string"),
                ("payer", "string"),
                ("payee", "string"),
                ("amount_minor", "count"),
                ("currency", "currency"),
                ("level", "string"),
                ("due", "s"),
                ("reply_to", "string"),
                ("reference", "string"),
            ]),
            &[("mac", "string")],
        ),
        "SmsSent": with(
            object(&[
                ("key", "string"),
                ("version", "integer"),
                ("to", "string"),
                ("queue_key", "string"),
                ("status", "any"),
                ("sent_at_ms", "ms"),
                ("report_at_ms", "?ms"),
                ("text_chars", "count"),
                ("text_kept", "boolean"),
                ("attempts", "count"),
            ]),
            &[],
        ),
    })
}

/// Account kinds (`offpay_ledger::AccountKind`).
const ACCOUNT_KINDS: &[&str] = &[
    "customer",
    "merchant",
    "agent_float",
    "operator_float",
    "suspense",
    "fees",
];
/// Operator roles.
const ROLES: &[&str] = &["admin", "finance", "support", "auditor", "provisioning"];
/// Transfer kinds.
const TRANSFER_KINDS: &[&str] = &["posted", "pending", "post_pending", "void_pending"];
/// Where a pending transfer stands.
const PENDING_STATES: &[&str] = &["pending", "posted", "voided"];
/// Where an SMS-TAN envelope stands.
const ENVELOPE_STATES: &[&str] = &["unallocated", "active", "locked", "retired"];

/// The answer carrying a user's new token (shown once).
fn token_answer() -> Value {
    object(&[("user", "$User"), ("token", "string"), ("note", "string")])
}

/// A purse's money answer: the phone, the amount in its currency, a status, and `extra`.
fn purse_money(extra: &[(&str, &str)]) -> Value {
    let mut fields = vec![
        ("phone", "string"),
        ("amount", "decimal"),
        ("currency", "currency"),
        ("status", "string"),
    ];
    fields.extend_from_slice(extra);
    object(&fields)
}

/// The query of the SMS-TAN rail's stored-record lists.
const SMS_LIST_QUERY: &[(&str, &str)] = &[
    (
        "after",
        "continue after this key (the previous page's last)",
    ),
    ("limit", "records on a page (default 100)"),
];

/// The schemas a route declares; `None` for a route that declares nothing (the document then
/// describes it as a free-form object with `x-untyped: true`, and the test refuses it).
pub fn declared(method: &Method, path: &str) -> Option<Declared> {
    let get = |query: &'static [(&'static str, &'static str)], response: Value| Declared {
        query,
        request: None,
        response,
    };
    let post = |request: Value, response: Value| Declared {
        query: &[],
        request: Some(request),
        response,
    };
    let post_empty = |response: Value| Declared {
        query: &[],
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
        // --- the ledger ---------------------------------------------------------------------
        ("POST", "/accounts") => post(
            strict(with(
                one_of(
                    object(&[("id", "string"), ("kind", "string")]),
                    "kind",
                    ACCOUNT_KINDS,
                ),
                &[
                    ("currency", "currency"),
                    ("balance_min", "string"),
                    ("balance_max", "string"),
                ],
            )),
            account(),
        ),
        ("GET", "/accounts/{id}") => get(&[], account()),
        ("GET", "/accounts/{id}/history") => get(
            &[
                (
                    "before",
                    "continue after this sequence (the previous page's next_before)",
                ),
                ("limit", "entries on a page (default 100)"),
            ],
            object(&[
                ("account", "$Account"),
                ("entries", "[$HistoryEntry]"),
                ("next_before", "?count"),
            ]),
        ),
        ("POST", "/transfers") => post(
            strict(json!({
                "type": "object",
                "required": ["transfers"],
                "properties": {
                    "transfers": {
                        "type": "array",
                        "minItems": 1,
                        "items": one_of(strict(with(
                            object(&[
                                ("id", "string"),
                                ("debit_account", "string"),
                                ("credit_account", "string"),
                                ("amount", "decimal"),
                            ]),
                            &[
                                ("currency", "currency"),
                                ("kind", "string"),
                                ("pending_id", "string"),
                                ("memo", "string"),
                            ],
                        )), "kind", TRANSFER_KINDS),
                    },
                },
            })),
            json!({
                "type": "object",
                "required": ["results"],
                "properties": {
                    "results": {
                        "type": "array",
                        "items": one_of(
                            object(&[("id", "string"), ("outcome", "string")]),
                            "outcome",
                            &["transfer_committed", "transfer_exists"],
                        ),
                    },
                },
            }),
        ),
        ("GET", "/transfers/{id}") => get(
            &[],
            object(&[("transfer", "$TransferRecord"), ("amount", "decimal")]),
        ),
        ("GET", "/totals") => get(
            &[],
            json!({
                "type": "object",
                "required": ["balanced", "currencies"],
                "properties": {
                    "balanced": ty("boolean"),
                    "currencies": {
                        "type": "array",
                        "items": described(object(&[
                            ("currency", "currency"),
                            ("accounts", "count"),
                            ("posted_sum_minor", "string"),
                            ("pending_sum_minor", "string"),
                            ("balanced", "boolean"),
                        ]), "sums in minor units as decimal integer text (they may exceed 64 bits); zero when balanced"),
                    },
                },
            }),
        ),
        // --- users, approvals, the audit chain ---------------------------------------------
        ("GET", "/users") => get(&[], object(&[("users", "[$User]")])),
        ("POST", "/users") => post(
            strict(with(
                one_of(
                    object(&[("name", "string"), ("role", "string")]),
                    "role",
                    ROLES,
                ),
                &[("expires_in_days", "count")],
            )),
            token_answer(),
        ),
        ("POST", "/users/{name}/rotate") => {
            post(options(&[("expires_in_days", "count")]), token_answer())
        }
        ("POST", "/users/{name}/revoke") => {
            post_empty(object(&[("user", "$User"), ("changed", "boolean")]))
        }
        ("GET", "/audit/verify") => get(
            &[],
            object(&[
                ("ok", "boolean"),
                ("entries_checked", "count"),
                ("head_number", "count"),
                ("first_break", "?$AuditBreak"),
            ]),
        ),
        ("POST", "/approvals/{id}/approve") => post_empty(described(
            object(&[
                ("approval", "?$Approval"),
                ("executed", "boolean"),
                ("result", "any"),
            ]),
            "the kept request's answer (result) with its status",
        )),
        ("POST", "/approvals/{id}/refuse") => post(
            options(&[("reason", "string")]),
            object(&[("approval", "$Approval")]),
        ),
        // --- rail 1: the short-code purse ----------------------------------------------------
        ("POST", "/purse/purses") => post(
            one_of(
                one_of(
                    with(
                        object(&[("phone", "string")]),
                        &[("kind", "string"), ("class", "string")],
                    ),
                    "kind",
                    PURSE_KINDS,
                ),
                "class",
                TRUST_CLASSES,
            ),
            described(
                one_of(
                    object(&[
                        ("purse_id", "count"),
                        ("phone", "string"),
                        ("kind", "string"),
                        ("trust_class", "string"),
                        ("operator", "string"),
                        ("account", "string"),
                        ("provisioning", "string"),
                    ]),
                    "kind",
                    PURSE_KINDS,
                ),
                "provisioning: the provisioning record (hex; it carries the purse's keys: hand it only to the operator's admin tool)",
            ),
        ),
        ("GET", "/purse/purses/{phone}") => get(
            &[],
            one_of(
                object(&[
                    ("purse_id", "count"),
                    ("phone", "string"),
                    ("kind", "string"),
                    ("currency", "currency"),
                    ("balance", "decimal"),
                    ("balance_minor", "integer"),
                    ("reported_balance", "decimal"),
                    ("ledger_account", "string"),
                    ("ledger_balance", "?decimal"),
                    ("blocked", "boolean"),
                    ("pin_unblock_requested", "boolean"),
                    ("pin_resets_issued", "count"),
                    ("trust_class", "string"),
                    ("class_ceiling", "$PurseClassCeiling"),
                    ("language", "?string"),
                    ("last_sync_sequence", "count"),
                    ("received_through", "count"),
                    ("confirmed_through", "count"),
                    ("last_sync_at", "?time"),
                    ("limits", "$PurseLimits"),
                    ("validity_seconds", "count"),
                    ("queued_credits", "[$PurseCredit]"),
                    ("queued_settlements", "[$PurseSettlement]"),
                    ("settlement_owed", "decimal"),
                    ("moved_out", "decimal"),
                ]),
                "kind",
                PURSE_KINDS,
            ),
        ),
        ("POST", "/purse/purses/{phone}/float") => post(
            with(object(&[("amount", "decimal")]), &[("memo", "string")]),
            purse_money(&[("transfer", "?string")]),
        ),
        ("POST", "/purse/purses/{phone}/limits") => post(
            object(&[
                ("max_balance", "decimal"),
                ("max_single_payment", "decimal"),
                ("max_spent_since_sync", "decimal"),
                ("small_payment_limit", "decimal"),
                ("validity_days", "count"),
            ]),
            object(&[
                ("phone", "string"),
                ("limits", "$PurseLimits"),
                ("validity_days", "count"),
                ("status", "string"),
            ]),
        ),
        ("POST", "/purse/purses/{phone}/block") => post(
            object(&[("blocked", "boolean")]),
            object(&[("phone", "string"), ("blocked", "boolean")]),
        ),
        ("POST", "/purse/purses/{phone}/move") => post(
            object(&[("to", "string")]),
            object(&[
                ("lost", "string"),
                ("to", "string"),
                ("blocked", "boolean"),
                ("moved", "decimal"),
                ("held_back", "decimal"),
                ("currency", "currency"),
                ("status", "string"),
            ]),
        ),
        ("GET", "/purse/purses/{phone}/statement") => get(
            &[],
            json!({
                "type": "object",
                "required": ["phone", "currency", "balance", "blocked", "lines"],
                "properties": {
                    "phone": ty("string"),
                    "currency": ty("currency"),
                    "balance": ty("decimal"),
                    "blocked": ty("boolean"),
                    "lines": {
                        "type": "array",
                        "items": one_of(object(&[
                            ("at_ms", "ms"),
                            ("direction", "string"),
                            ("amount", "decimal"),
                            ("currency", "currency"),
                            ("what", "string"),
                        ]), "direction", &["in", "out"]),
                    },
                },
            }),
        ),
        ("POST", "/purse/purses/{phone}/settle") => post(
            object(&[("amount", "decimal")]),
            purse_money(&[("settlement_id", "?string")]),
        ),
        ("POST", "/purse/purses/{phone}/settlement-paid") => post(
            object(&[("amount", "decimal"), ("reference", "string")]),
            purse_money(&[("transfer", "?string")]),
        ),
        ("POST", "/purse/purses/{phone}/unblock-pin") => {
            post_empty(object(&[("phone", "string"), ("status", "string")]))
        }
        ("POST", "/purse/purses/{phone}/pin-reset") => post_empty(described(
            object(&[
                ("phone", "string"),
                ("reset_code", "string"),
                ("status", "string"),
            ]),
            "reset_code: the purse's next one-time PIN reset code (12 digits in groups of four), for the identified holder only; never stored",
        )),
        ("POST", "/purse/purses/{phone}/language") => post(
            object(&[("language", "?string")]),
            object(&[
                ("phone", "string"),
                ("language", "?string"),
                ("speaks", "string"),
            ]),
        ),
        ("POST", "/purse/scheme-key/rotate") => post(
            options(&[("force", "boolean")]),
            object(&[("generation_epoch", "count"), ("scheme_epoch", "count")]),
        ),
        ("POST", "/purse/records/reseal") => post(
            {
                let mut body = strict(object(&[("records", "[object]"), ("force", "boolean")]));
                body["properties"]["records"]["items"] =
                    strict(object(&[("key", "string"), ("stored_digest", "string")]));
                body
            },
            object(&[("resealed", "[string]"), ("already_sealed", "[string]")]),
        ),
        // --- rail 2: SMS-TAN -----------------------------------------------------------------
        ("GET", "/sms/settings") => get(&[], ty("$SmsSettings")),
        ("PUT" | "POST", "/sms/settings") => post(ty("$SmsSettings"), ty("$SmsSettings")),
        ("GET", "/sms/status") => get(
            &[],
            object(&[
                ("master_key_fingerprint", "string"),
                ("kannel", "boolean"),
                ("gateway", "?string"),
                ("inbound", "count"),
                ("duplicates", "count"),
                ("reruns", "count"),
                ("sent", "count"),
                ("send_failures", "count"),
            ]),
        ),
        ("POST", "/sms/accounts") => post(
            options(&[
                ("receive_number", "string"),
                ("currency", "currency"),
                ("notify_phone", "string"),
                ("bound_phones", "[string]"),
                ("require_pay_number", "boolean"),
            ]),
            ty("$SmsAccount"),
        ),
        ("GET", "/sms/accounts/{number}") => get(&[], ty("$SmsAccount")),
        ("PATCH" | "POST", "/sms/accounts/{number}") => post(
            options(&[
                ("active", "boolean"),
                ("bound_phones", "[string]"),
                ("notify_phone", "string"),
                ("require_pay_number", "boolean"),
                ("per_payment", "string"),
                ("per_day", "string"),
                ("per_week", "string"),
                ("dialback_threshold", "string"),
                ("always_callback", "boolean"),
            ]),
            ty("$SmsAccount"),
        ),
        ("POST", "/sms/envelopes/issue") => post(
            strict(json!({
                "type": "object",
                "required": ["count", "rows"],
                "properties": {
                    "count": { "type": "integer", "minimum": 1, "maximum": 8000 },
                    "rows": { "type": "integer", "enum": [20, 50] },
                },
            })),
            object(&[("euins", "[string]"), ("rows", "count")]),
        ),
        ("POST", "/sms/envelopes/print") => post(
            strict(with(
                object(&[("euins", "[string]")]),
                &[("encoding", "string"), ("language", "string")],
            )),
            described(
                object(&[("pdf_hex", "string"), ("bytes", "count")]),
                "with encoding \"hex\"; otherwise the PDF itself (application/pdf)",
            ),
        ),
        ("POST", "/sms/envelopes/import") => post(
            strict(object(&[("text", "string")])),
            object(&[
                ("euin", "string"),
                ("rows", "count"),
                ("status", "string"),
                ("sealed", "boolean"),
            ]),
        ),
        ("GET", "/sms/envelopes/{euin}") => get(&[], ty("$SmsEnvelope")),
        ("POST", "/sms/envelopes/{euin}/bind") => {
            post(strict(object(&[("account", "string")])), ty("$SmsEnvelope"))
        }
        ("POST", "/sms/envelopes/{euin}/unlock") => post_empty(ty("$SmsEnvelope")),
        ("POST", "/sms/envelopes/{euin}/replace") => post(
            object(&[
                ("account", "string"),
                ("checked_by", "string"),
                ("document_kind", "string"),
                ("document_number", "string"),
                ("reason", "string"),
            ]),
            ty("$SmsEnvelope"),
        ),
        ("GET", "/sms/disputes") => get(SMS_LIST_QUERY, object(&[("disputes", "[$SmsDispute]")])),
        ("POST", "/sms/disputes/{key}/decide") => post(
            strict(with(
                one_of(
                    object(&[("decision", "string")]),
                    "decision",
                    &["refund", "reject"],
                ),
                &[("note", "string")],
            )),
            ty("$SmsDispute"),
        ),
        ("POST", "/sms/terminals") => post(
            strict(object(&[("payee", "string")])),
            object(&[
                ("terminal_id", "string"),
                ("payee", "string"),
                ("token", "string"),
            ]),
        ),
        ("GET", "/sms/outbox") => get(SMS_LIST_QUERY, object(&[("outbox", "[$SmsOutbound]")])),
        ("GET", "/sms/scheduled") => {
            get(SMS_LIST_QUERY, object(&[("scheduled", "[$SmsScheduled]")]))
        }
        ("GET", "/sms/sent") => get(SMS_LIST_QUERY, object(&[("sent", "[$SmsSent]")])),
        ("POST", "/sms/simulate") => post(
            strict(object(&[
                ("from", "string"),
                ("text", "string"),
                ("message_id", "string"),
            ])),
            object(&[
                ("replies", "[string]"),
                ("duplicate", "boolean"),
                ("verdict", "string"),
                ("queued", "count"),
            ]),
        ),
        ("POST", "/sms/records/seal") => post(
            strict(object(&[("force", "boolean")])),
            object(&[
                ("authentic", "count"),
                ("accounts", "count"),
                ("pending", "count"),
                ("scheduled", "count"),
                ("windows", "count"),
                ("mismatched", "count"),
                ("mismatched_keys", "[string]"),
                ("spending_windows", "object"),
            ]),
        ),
        // --- rail 3: the device wallet -------------------------------------------------------
        ("POST", "/wallets") => post(
            strict(with(
                object(&[("signing_key", "string"), ("encryption_key", "string")]),
                &[
                    ("currency", "currency"),
                    ("balance_max", "decimal"),
                    ("payment_max", "decimal"),
                    ("offline_spend_max", "decimal"),
                ],
            )),
            object(&[
                ("wallet_id", "string"),
                ("account", "string"),
                ("credential", "string"),
                ("office_public", "string"),
                ("limits", "$WalletCredential"),
            ]),
        ),
        ("GET", "/wallets/{id}") => get(
            &[],
            object(&[
                ("wallet_id", "string"),
                ("credential", "$WalletCredential"),
                ("shadow_minor", "string"),
                ("blocked_at_ms", "?ms"),
                ("head_seq", "count"),
                ("charges", "count"),
                ("charges_applied", "count"),
                ("open_transfers", "[string]"),
                ("reissued", "boolean"),
                ("remainder_released", "boolean"),
                ("case", "?$WalletCase"),
                ("settled", "$WalletSettled"),
                ("account", "?$Account"),
                ("reissue_quote", "?$ReissueQuote"),
            ]),
        ),
        ("POST", "/wallets/{id}/charge") => post(
            strict(with(
                object(&[("amount", "decimal")]),
                &[("from", "string")],
            )),
            object(&[
                ("wallet_id", "string"),
                ("amount", "decimal"),
                ("currency", "currency"),
                ("charge_seq", "count"),
                ("transfer_id", "string"),
                ("from", "string"),
                ("voucher", "string"),
            ]),
        ),
        ("POST", "/wallets/{id}/block") => {
            post_empty(object(&[("wallet_id", "string"), ("blocked", "boolean")]))
        }
        ("POST", "/wallets/{id}/case") => post(
            strict(one_of(
                object(&[("decision", "string")]),
                "decision",
                &["confirm", "dismiss"],
            )),
            object(&[
                ("wallet_id", "string"),
                ("blocked", "boolean"),
                ("case", "$WalletCase"),
            ]),
        ),
        ("POST", "/wallets/{id}/reissue") => post(
            strict(object(&[("to", "string")])),
            object(&[
                ("lost", "string"),
                ("to", "string"),
                ("reissued", "decimal"),
                ("held_back", "decimal"),
                ("unseen_spend_max", "decimal"),
                ("transfer_id", "string"),
            ]),
        ),
        ("POST", "/wallets/{id}/release") => post(
            strict(object(&[("to", "string")])),
            object(&[
                ("lost", "string"),
                ("to", "string"),
                ("released", "decimal"),
                ("transfer_id", "string"),
            ]),
        ),
        ("POST", "/wallet-transfers/{id}/void") => post_empty(one_of(
            object(&[("transfer_id", "string"), ("outcome", "string")]),
            "outcome",
            &["voided"],
        )),
        ("POST", "/wallet-sync") => post(
            strict(object(&[("upload", "string")])),
            object(&[("wallet_id", "string"), ("reply", "string")]),
        ),
        // --- rail 4: microchecks -------------------------------------------------------------
        ("GET", "/microcheck/strategy") => get(&[], object(&[("strategy", "$Strategy")])),
        ("PUT" | "POST", "/microcheck/strategy") => {
            post(ty("$Strategy"), object(&[("strategy", "$Strategy")]))
        }
        ("POST", "/microcheck/payers") => post(
            strict(with(
                object(&[("name", "string"), ("key", "string")]),
                &[("adult", "boolean"), ("classes", "?[string]")],
            )),
            object(&[
                ("payer", "string"),
                ("account", "string"),
                ("key_fingerprint", "string"),
                ("adult", "boolean"),
                ("classes", "?[string]"),
            ]),
        ),
        ("GET", "/microcheck/payers/{name}") => get(
            &[],
            object(&[
                ("payer", "string"),
                ("key_fingerprint", "string"),
                ("adult", "boolean"),
                ("classes", "?[string]"),
                ("disputes", "count"),
                ("bounces", "count"),
                ("balance", "?decimal"),
                ("currency", "?currency"),
            ]),
        ),
        ("POST", "/microcheck/payers/{name}/dispute") => post(
            options(&[("nonce", "?string")]),
            object(&[
                ("payer", "string"),
                ("disputes", "count"),
                ("nonce", "?string"),
            ]),
        ),
        ("GET", "/microcheck/payers/{name}/statement") => get(
            &[],
            object(&[
                ("payer", "string"),
                ("charges", "[$MicrocheckCharge]"),
                ("next_after", "?string"),
            ]),
        ),
        ("POST", "/microcheck/merchants") => post(
            strict(with(
                object(&[("id", "string"), ("key", "string")]),
                &[
                    ("app_domain", "string"),
                    ("latitude", "string"),
                    ("longitude", "string"),
                ],
            )),
            object(&[
                ("merchant", "string"),
                ("account", "string"),
                ("app_domain", "string"),
                ("currency", "currency"),
                ("pa_key", "string"),
                ("age_key", "string"),
                ("merchant_credential", "string"),
            ]),
        ),
        ("POST", "/microcheck/sub-pa") => post(
            strict(object(&[
                ("key", "string"),
                ("amount_max", "decimal"),
                ("validity_seconds", "count"),
            ])),
            object(&[("delegation", "string"), ("pa_key", "string")]),
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
            list_query(&[(
                "state",
                "pending (default), expired (pending past its approval_ttl), approved, refused or all",
            )]),
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

/// An example for a path parameter: the objects of the examples below (a purse, an SMS-TAN
/// account and its envelope, ledger accounts and a transfer, a microcheck payer;
/// scripts/schemathesis.sh seeds them
/// on its throwaway server, so the check's first cases reach real objects).
fn path_example(path: &str, name: &str) -> Option<&'static str> {
    Some(match (path, name) {
        (_, "phone") => "+254700000001",
        (_, "number") => "111100002222",
        (_, "euin") => "26300000010",
        ("/accounts/{id}" | "/accounts/{id}/history", "id") => "alice",
        ("/transfers/{id}", "id") => "t1",
        (
            "/microcheck/payers/{name}"
            | "/microcheck/payers/{name}/dispute"
            | "/microcheck/payers/{name}/statement",
            "name",
        ) => "alice",
        _ => return None,
    })
}

/// A device's public key, for the examples.
const EXAMPLE_KEY: &str = "ed25519-base64:UPH3YMJ+mpdkmCrmGFplUEHRd1vLJy6RslOG52OdjV0=";

/// An example request body (for the objects of [`path_example`]).
fn request_example(method: &Method, path: &str) -> Option<Value> {
    Some(match (method.as_str(), path) {
        ("POST", "/accounts") => json!({ "id": "bob", "kind": "customer", "currency": "KES" }),
        ("POST", "/transfers") => json!({ "transfers": [{
            "id": "t2", "debit_account": "float", "credit_account": "alice", "amount": "1.50",
            "memo": "refund of order 77",
        }] }),
        ("POST", "/users") => json!({ "name": "clerk", "role": "support", "expires_in_days": 90 }),
        ("POST", "/users/{name}/rotate") => json!({ "expires_in_days": 30 }),
        ("POST", "/approvals/{id}/refuse") => json!({ "reason": "not the amount agreed" }),
        ("POST", "/purse/purses") => json!({ "phone": "+254700000002", "kind": "agent" }),
        ("POST", "/purse/purses/{phone}/float") => {
            json!({ "amount": "50.00", "memo": "float top-up" })
        }
        ("POST", "/purse/purses/{phone}/limits") => json!({
            "max_balance": "1000.00", "max_single_payment": "200.00",
            "max_spent_since_sync": "500.00", "small_payment_limit": "50.00", "validity_days": 30,
        }),
        ("POST", "/purse/purses/{phone}/block") => json!({ "blocked": false }),
        ("POST", "/purse/purses/{phone}/move") => json!({ "to": "+254700000003" }),
        ("POST", "/purse/purses/{phone}/settle") => json!({ "amount": "20.00" }),
        ("POST", "/purse/purses/{phone}/settlement-paid") => {
            json!({ "amount": "20.00", "reference": "bank transfer 5521" })
        }
        ("POST", "/purse/scheme-key/rotate") => json!({ "force": false }),
        ("POST", "/purse/records/reseal") => json!({
            "records": [{ "key": "shadow/3", "stored_digest": "3f2a9c0d41b7e6550c8e1d2f97a4b6e3" }],
            "force": true,
        }),
        ("POST", "/sms/accounts") => json!({
            "receive_number": "111100003333", "bound_phones": ["+254700000004"],
            "notify_phone": "+254700000004",
        }),
        ("PATCH" | "POST", "/sms/accounts/{number}") => {
            json!({ "per_day": "500.00", "always_callback": false })
        }
        ("POST", "/sms/envelopes/issue") => json!({ "count": 1, "rows": 20 }),
        ("POST", "/sms/envelopes/print") => {
            json!({ "euins": ["26300000028"], "encoding": "hex", "language": "en" })
        }
        ("POST", "/sms/envelopes/{euin}/bind") => json!({ "account": "111100002222" }),
        ("POST", "/sms/envelopes/{euin}/replace") => json!({
            "account": "111100002222", "checked_by": "agent-12", "document_kind": "national id",
            "document_number": "12345678", "reason": "lost",
        }),
        ("POST", "/sms/disputes/{key}/decide") => json!({ "decision": "reject", "note": "paid" }),
        ("POST", "/sms/terminals") => json!({ "payee": "111100002222" }),
        ("POST", "/sms/simulate") => {
            json!({ "from": "+254700000001", "text": "BAL", "message_id": "example-1" })
        }
        ("POST", "/sms/records/seal") => json!({ "force": true }),
        ("POST", "/wallets/{id}/charge") => json!({ "amount": "25.00" }),
        ("POST", "/wallets/{id}/case") => json!({ "decision": "dismiss" }),
        ("POST", "/wallets/{id}/reissue" | "/wallets/{id}/release") => {
            json!({ "to": "0000000000000002" })
        }
        ("PUT" | "POST", "/microcheck/strategy") => json!({
            "version": 1, "app_domain": "vend", "currency": "KES",
            "tiers": [{ "name": "daily", "amount_max": "5.00", "validity_seconds": 86400,
                        "per_merchant_day_max": 5 }],
            "merchant_validity_seconds": 7_776_000, "adulthood_validity_seconds": 2_592_000,
            "transaction_amount_max": "50.00", "transaction_validity_seconds": 900,
            "transaction_day_max": 10, "machine_day_purchases_max": 500,
            "travel_speed_kmh_max": 300,
        }),
        ("POST", "/microcheck/payers/{name}/dispute") => json!({ "nonce": null }),
        ("POST", "/microcheck/payers") => {
            json!({ "name": "bob", "key": EXAMPLE_KEY, "adult": true, "classes": ["snacks"] })
        }
        ("POST", "/microcheck/merchants") => json!({
            "id": "vend-1", "key": EXAMPLE_KEY, "latitude": "-1.2921", "longitude": "36.8219",
        }),
        ("POST", "/microcheck/sub-pa") => {
            json!({ "key": EXAMPLE_KEY, "amount_max": "5.00", "validity_seconds": 86_400 })
        }
        ("POST", "/wallets") => json!({
            "signing_key": "3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29",
            "encryption_key": "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a",
            "balance_max": "5000.00",
        }),
        _ => return None,
    })
}

/// The success statuses a route answers (its schema is the declared response).
fn answers(method: &Method, path: &str) -> &'static [&'static str] {
    match (method.as_str(), path) {
        // 201 when created, 200 when the same account existed.
        ("POST", "/accounts") => &["200", "201"],
        // The kept request's own status.
        ("POST", "/approvals/{id}/approve") => &["200", "201"],
        (
            "POST",
            "/users"
            | "/purse/purses"
            | "/purse/purses/{phone}/float"
            | "/purse/purses/{phone}/settle"
            | "/sms/accounts"
            | "/sms/envelopes/issue"
            | "/sms/envelopes/import"
            | "/sms/terminals"
            | "/wallets"
            | "/microcheck/payers"
            | "/microcheck/merchants",
        ) => &["201"],
        _ => &["200"],
    }
}

/// Routes whose body may be left out (an empty body is `{}`).
fn body_optional(method: &Method, path: &str) -> bool {
    matches!(
        (method.as_str(), path),
        ("POST", "/users/{name}/rotate" | "/purse/scheme-key/rotate")
    )
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
            .map(|name| {
                let mut parameter = json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } });
                if let Some(example) = path_example(spec.path, name) {
                    parameter["example"] = json!(example);
                }
                parameter
            })
            .collect();
        if spec.moves_money {
            parameters.push(json!({
                "name": "Idempotency-Key",
                "in": "header",
                "required": false,
                "description": "the same key with the same body answers the first outcome again and applies nothing twice",
                "schema": { "type": "string", "pattern": "^[!-~]{1,128}$" },
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
                    operation["requestBody"] = json!({
                        "required": !body_optional(&spec.method, spec.path),
                        "content": { "application/json": { "schema": request } },
                    });
                    if let Some(example) = request_example(&spec.method, spec.path) {
                        operation["requestBody"]["content"]["application/json"]["example"] =
                            example;
                    }
                }
                let mut statuses = answers(&spec.method, spec.path).to_vec();
                if spec.moves_money && !statuses.contains(&"200") {
                    // A retry whose first answer was not kept answers 200 (AppliedBefore).
                    statuses.insert(0, "200");
                }
                for status in statuses {
                    let schema = if spec.moves_money {
                        json!({ "anyOf": [declared.response, { "$ref": "#/components/schemas/AppliedBefore" }] })
                    } else {
                        declared.response.clone()
                    };
                    let mut content = json!({ "application/json": { "schema": schema } });
                    if spec.path == "/sms/envelopes/print" {
                        content["application/pdf"] =
                            json!({ "schema": { "type": "string", "format": "binary" } });
                    }
                    responses.insert(
                        status.into(),
                        json!({ "description": "done", "content": content }),
                    );
                }
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
                "content": { "application/json": { "schema": object(&[("approval", "$Approval"), ("message", "string")]) } },
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
        if declared
            .as_ref()
            .is_some_and(|declared| declared.request.is_some())
        {
            responses.insert("413".into(), error_response("the body is too large"));
            responses.insert(
                "415".into(),
                error_response("the body is not application/json"),
            );
        }
        if spec.path == "/approvals/{id}/approve" {
            // The kept request's own refusal comes back in the approval's answer.
            for (status, response) in responses.iter_mut() {
                if status.starts_with('4') || status.starts_with('5') {
                    response["content"]["application/json"]["schema"] = json!({
                        "anyOf": [
                            { "$ref": "#/components/schemas/Error" },
                            declared.as_ref().map_or(Value::Null, |declared| declared.response.clone()),
                        ],
                    });
                }
            }
        }
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
            "schemas": components(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_type_shorthand_reads_as_json_schema() {
        assert_eq!(ty("string"), json!({ "type": "string" }));
        assert_eq!(ty("?integer"), json!({ "type": ["integer", "null"] }));
        assert_eq!(ty("any"), json!({}));
        assert_eq!(ty("decimal")["pattern"], DECIMAL_PATTERN);
        assert_eq!(ty("?decimal")["type"], json!(["string", "null"]));
        assert_eq!(ty("?time")["format"], "date-time");
        assert_eq!(ty("ms")["minimum"], 0);
        assert_eq!(
            ty("[string]"),
            json!({ "type": "array", "items": { "type": "string" } })
        );
        assert_eq!(ty("?[currency]")["type"], json!(["array", "null"]));
        assert_eq!(
            ty("$Account"),
            json!({ "$ref": "#/components/schemas/Account" })
        );
        assert_eq!(
            ty("?$Account"),
            json!({ "anyOf": [{ "$ref": "#/components/schemas/Account" }, { "type": "null" }] })
        );
    }

    #[test]
    fn enums_and_strict_bodies() {
        let schema = one_of(
            strict(with(object(&[("kind", "?string")]), &[("note", "string")])),
            "kind",
            &["a", "b"],
        );
        assert_eq!(schema["required"], json!(["kind"]));
        assert_eq!(
            schema["properties"]["kind"]["enum"],
            json!(["a", "b", null])
        );
        assert_eq!(schema["properties"]["note"], json!({ "type": "string" }));
        assert_eq!(schema["additionalProperties"], false);
    }

    #[test]
    fn every_component_referenced_exists() {
        let document = document(crate::operator_routes().table());
        let text = document.to_string();
        for reference in text.split("\"#/components/schemas/").skip(1) {
            let name = reference.split('"').next().unwrap_or_default();
            assert!(
                document["components"]["schemas"][name].is_object(),
                "{name} is referenced and not defined"
            );
        }
    }
}
