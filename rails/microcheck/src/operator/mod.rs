//! The operator half of the rail: the Provisioning Agent's and the Clearing and Settlement
//! Center's records ([`records`]), decisions ([`pa`], [`clearing`]), the deposits it keeps for
//! the console ([`history`]), request authentication
//! ([`auth`]) and the CSC's overlay of batches in flight ([`overlay`]), as pure code over the
//! ledger's store. The server runs them: it does the I/O, holds the locks and maps
//! [`OperatorError`] to HTTP by its [`Fault`].

pub mod auth;
pub mod clearing;
pub mod history;
pub mod overlay;
pub mod pa;
pub mod records;

use offpay_operator::RecordError;

use crate::error::Refusal;

/// Who is at fault when an operator operation fails, which is all the server needs to answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// The request is malformed or asks for something invalid.
    Request,
    /// The request is not signed by the sender's registered key, or is stale.
    Unauthenticated,
    /// The sender may not have what it asks for.
    Forbidden,
    /// The request names a payer or merchant that does not exist.
    NotFound,
    /// The operator's own state is wrong (a corrupt record, a bad key): not the caller's fault.
    Operator,
}

/// Why an operator operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OperatorError {
    /// The request is malformed or invalid.
    #[error("{message}")]
    Invalid {
        /// Stable code, e.g. `invalid_name`.
        code: &'static str,
        /// For people.
        message: String,
    },
    /// A peer's input (an offer, a deposit) was refused.
    #[error(transparent)]
    Refused(Refusal),
    /// The request is not authentic.
    #[error("{message}")]
    Unauthenticated {
        /// Stable code, e.g. `stale_request`, `wrong_key`.
        code: String,
        /// For people.
        message: String,
    },
    /// The sender may not have what it asks for.
    #[error("{message}")]
    Forbidden {
        /// Stable code.
        code: &'static str,
        /// For people.
        message: String,
    },
    /// No such payer or merchant.
    #[error("no {what} with id {id}")]
    NotFound {
        /// `payer` or `merchant`.
        what: &'static str,
        /// The name asked for.
        id: String,
    },
    /// A stored record could not be read or written.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// The operator's own configuration or keys failed (a bug or a bad key file).
    #[error("{0}")]
    Internal(String),
}

impl OperatorError {
    /// Who is at fault.
    pub fn fault(&self) -> Fault {
        match self {
            OperatorError::Invalid { .. } | OperatorError::Refused(_) => Fault::Request,
            OperatorError::Unauthenticated { .. } => Fault::Unauthenticated,
            OperatorError::Forbidden { .. } => Fault::Forbidden,
            OperatorError::NotFound { .. } => Fault::NotFound,
            OperatorError::Record(_) | OperatorError::Internal(_) => Fault::Operator,
        }
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> String {
        match self {
            OperatorError::Invalid { code, .. } | OperatorError::Forbidden { code, .. } => {
                (*code).to_owned()
            }
            OperatorError::Refused(refusal) => refusal.code(),
            OperatorError::Unauthenticated { code, .. } => code.clone(),
            OperatorError::NotFound { what, .. } => format!("unknown_{what}"),
            OperatorError::Record(_) | OperatorError::Internal(_) => "internal".to_owned(),
        }
    }

    /// An invalid request.
    pub fn invalid(code: &'static str, message: impl Into<String>) -> OperatorError {
        OperatorError::Invalid {
            code,
            message: message.into(),
        }
    }

    /// An error of the rail's own functions (a strategy or a key that does not do): refused as
    /// `invalid`, as the operator API always has.
    pub fn usage(error: crate::Error) -> OperatorError {
        OperatorError::invalid("invalid", error.to_string())
    }
}
