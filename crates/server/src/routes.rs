//! The table of operator routes: every route under `/api/v1` is registered here with the roles
//! that may call it, whether it moves money (then it takes an `Idempotency-Key`) and, when it
//! creates value, how much (for four eyes). The operator router is built from this table and
//! nothing else, and the auth middleware ([`crate::auth::authorize`]) refuses any request whose
//! route is not in it, so a route cannot be reached without a stated role.

use std::sync::Arc;

use axum::Router;
use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{MethodFilter, MethodRouter, on};
use offpay_ledger::Amount;
use serde_json::Value;

use crate::AppState;
use crate::auth::Role;

/// Every role. Reads of the rails' objects (a purse, a wallet, a payer) are open to all of them.
pub const EVERYONE: &[Role] = &[
    Role::Admin,
    Role::Finance,
    Role::Support,
    Role::Auditor,
    Role::Provisioning,
];
/// Reads of the ledger and of the rails' queues: every role but device provisioning.
pub const READ: &[Role] = &[Role::Admin, Role::Finance, Role::Support, Role::Auditor];
/// Money: floats, charges, settlements, manual transfers, accounts, disputes decided.
pub const FINANCE: &[Role] = &[Role::Admin, Role::Finance];
/// Customer care: block, unlock, reset a PIN, replace.
pub const SUPPORT: &[Role] = &[Role::Admin, Role::Support];
/// An account's state and spending limits: customer care freezes, finance sets limits.
pub const SUPPORT_OR_FINANCE: &[Role] = &[Role::Admin, Role::Finance, Role::Support];
/// The agents' back office: provision purses, issue wallets and envelopes, register payers.
pub const PROVISIONING: &[Role] = &[Role::Admin, Role::Provisioning];
/// Users, keys and the server's settings.
pub const ADMIN: &[Role] = &[Role::Admin];
/// The list of approvals waiting for a second user.
pub const APPROVALS_READ: &[Role] = &[Role::Admin, Role::Finance, Role::Auditor];
/// The audit log.
pub const AUDIT: &[Role] = &[Role::Admin, Role::Auditor];

/// The value a request creates (in e-money out of the operator's float), read from its JSON body;
/// `Ok(None)` when it creates none. An `Err` is a message for a body that cannot be read (the
/// handler then answers it with its own precise error).
pub type ValueCreated = fn(&AppState, &Value) -> Result<Option<Amount>, String>;

/// One row of the table.
#[derive(Clone, Debug)]
pub struct RouteSpec {
    /// HTTP method.
    pub method: Method,
    /// Path under `/api/v1`, with `{parameter}` segments as registered.
    pub path: &'static str,
    /// Who may call it (never empty).
    pub roles: &'static [Role],
    /// Whether it moves money (an `Idempotency-Key` is honoured and stored).
    pub moves_money: bool,
    /// How much value it creates, for four eyes.
    pub creates_value: Option<ValueCreated>,
}

impl RouteSpec {
    /// Whether `role` may call this route.
    pub fn allows(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// Whether the method changes state (everything but `GET`).
    pub fn changes_state(&self) -> bool {
        self.method != Method::GET
    }
}

/// The routes as registered, looked up by method and matched path.
#[derive(Clone, Debug, Default)]
pub struct RouteTable {
    specs: Vec<RouteSpec>,
}

impl RouteTable {
    /// Every row.
    pub fn specs(&self) -> &[RouteSpec] {
        &self.specs
    }

    /// The row for `method` on the matched path `path` (relative to `/api/v1`, or with it).
    pub fn find(&self, method: &Method, path: &str) -> Option<&RouteSpec> {
        let path = path.strip_prefix(crate::API_PREFIX).unwrap_or(path);
        self.specs
            .iter()
            .find(|spec| spec.method == *method && spec.path == path)
    }
}

/// A router of operator routes and the table that says who may call each.
#[derive(Debug)]
pub struct OperatorRoutes {
    router: Router<Arc<AppState>>,
    table: RouteTable,
}

impl Default for OperatorRoutes {
    fn default() -> Self {
        OperatorRoutes::new()
    }
}

impl OperatorRoutes {
    /// No routes.
    pub fn new() -> OperatorRoutes {
        OperatorRoutes {
            router: Router::new(),
            table: RouteTable::default(),
        }
    }

    /// Registers `method_router` (which must serve exactly `method`) at `path` for `roles`.
    ///
    /// # Panics
    /// When `roles` is empty: a route nobody may call is a mistake, caught when the router is
    /// built (every test builds it).
    pub fn route(
        mut self,
        method: Method,
        path: &'static str,
        roles: &'static [Role],
        method_router: MethodRouter<Arc<AppState>>,
    ) -> OperatorRoutes {
        assert!(!roles.is_empty(), "{method} {path} has no role");
        self.router = self.router.route(path, method_router);
        self.table.specs.push(RouteSpec {
            method,
            path,
            roles,
            moves_money: false,
            creates_value: None,
        });
        self
    }

    /// `GET path` for `roles`.
    pub fn get<H, T>(self, path: &'static str, roles: &'static [Role], handler: H) -> OperatorRoutes
    where
        H: Handler<T, Arc<AppState>>,
        T: 'static,
    {
        self.route(Method::GET, path, roles, on(MethodFilter::GET, handler))
    }

    /// `POST path` for `roles`.
    pub fn post<H, T>(
        self,
        path: &'static str,
        roles: &'static [Role],
        handler: H,
    ) -> OperatorRoutes
    where
        H: Handler<T, Arc<AppState>>,
        T: 'static,
    {
        self.route(Method::POST, path, roles, on(MethodFilter::POST, handler))
    }

    /// `PUT path` for `roles`.
    pub fn put<H, T>(self, path: &'static str, roles: &'static [Role], handler: H) -> OperatorRoutes
    where
        H: Handler<T, Arc<AppState>>,
        T: 'static,
    {
        self.route(Method::PUT, path, roles, on(MethodFilter::PUT, handler))
    }

    /// `PATCH path` for `roles`.
    pub fn patch<H, T>(
        self,
        path: &'static str,
        roles: &'static [Role],
        handler: H,
    ) -> OperatorRoutes
    where
        H: Handler<T, Arc<AppState>>,
        T: 'static,
    {
        self.route(Method::PATCH, path, roles, on(MethodFilter::PATCH, handler))
    }

    /// Marks the route registered last as moving money.
    pub fn moves_money(mut self) -> OperatorRoutes {
        if let Some(spec) = self.table.specs.last_mut() {
            spec.moves_money = true;
        }
        self
    }

    /// Marks the route registered last as creating value (and so moving money), measured by
    /// `value`.
    pub fn creates_value(mut self, value: ValueCreated) -> OperatorRoutes {
        if let Some(spec) = self.table.specs.last_mut() {
            spec.moves_money = true;
            spec.creates_value = Some(value);
        }
        self
    }

    /// Adds every route of `other`.
    pub fn merge(mut self, other: OperatorRoutes) -> OperatorRoutes {
        self.router = self.router.merge(other.router);
        self.table.specs.extend(other.table.specs);
        self
    }

    /// The table.
    pub fn table(&self) -> &RouteTable {
        &self.table
    }

    /// The router and the table.
    pub fn into_parts(self) -> (Router<Arc<AppState>>, RouteTable) {
        (self.router, self.table)
    }
}
