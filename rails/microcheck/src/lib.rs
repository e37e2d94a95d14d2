//! Rail 4 of offpay: offline KeyNote microchecks (seed 004, "Offline Micropayments without
//! Trusted Hardware"). Losses are bounded by short-lived, risk-limited credentials, not prevented
//! by tamper resistance.
//!
//! Everything here is pure logic on top of the KeyNote engine ([`offpay_keynote`]): the
//! Provisioning Agent's credential templates and risk [`strategy`], the merchant's [`policy`],
//! [`offer`]s, [`microcheck`]s, the offline [`compliance`] check, the [`payer`] device, the
//! vending [`machine`], the Clearing and Settlement Center's rules ([`csc`]) and the local link's
//! [`wire`] format, and the signed [`request`]s devices send the operator. With the `operator`
//! feature, the operator half too: the Provisioning Agent's and the CSC's records, decisions and
//! request authentication over the ledger (`operator`). Nothing reads a socket, a file or a clock: callers pass time and randomness
//! in and do the I/O. See `docs/protocols/microchecks.md` for the protocol and its security
//! analysis.

pub mod auth;
pub mod compliance;
pub mod credential;
pub mod csc;
pub mod error;
pub mod limits;
pub mod machine;
pub mod microcheck;
pub mod offer;
#[cfg(feature = "operator")]
pub mod operator;
pub mod payer;
pub mod policy;
pub mod request;
pub mod reverts;
pub mod strategy;
pub mod time;
pub mod wire;

pub use compliance::{Approval, Payment, check};
pub use credential::{
    Classes, CredentialClaims, CredentialKind, DelegationTemplate, PayerTemplate,
    TransactionTemplate,
};
pub use error::{Error, Refusal, Result};
pub use offer::{Offer, OfferTerms};
pub use policy::{MerchantPolicy, PayerPolicy};
pub use time::UnixSeconds;
