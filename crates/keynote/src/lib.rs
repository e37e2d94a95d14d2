//! KeyNote trust management (RFC 2704) with RFC 2792 signatures as the OpenBSD reference
//! implements them, plus Ed25519; the engine under offpay's microcheck rail, and a command line
//! compatible with the reference `keynote` tool.
//!
//! ```
//! use std::sync::Arc;
//! use offpay_keynote::{Assertion, ComplianceValues, Session, SignatureCache, Trust};
//!
//! let policy = Assertion::parse(b"Authorizer: \"POLICY\"\nLicensees: \"alice\"\n\
//!     Conditions: app_domain == \"deli\" -> \"true\";\n").unwrap();
//! let mut session = Session::new();
//! session.add_assertion(Arc::new(policy), Trust::Trusted).unwrap();
//! session.add_action_authorizer(b"alice").unwrap();
//! session.set_attribute(b"app_domain", b"deli").unwrap();
//! let values = ComplianceValues::new(["false", "true"]).unwrap();
//! let result = session.query(&values, &mut SignatureCache::new()).unwrap();
//! assert_eq!(values.name(result.value), b"true");
//! ```

pub mod assertion;
pub mod ast;
pub mod cli;
pub mod error;
mod eval;
pub mod keys;
mod lexer;
pub mod limits;
mod parser;
pub mod regex;
pub mod session;
pub mod text;

pub use assertion::{Assertion, AssertionBuilder, AssertionHash, ParseCache};
pub use error::{Error, Result, Rule, SyntaxError};
pub use keys::{Encoding, KeyAlgorithm, Principal, PrivateKey, SignatureAlgorithm};
pub use session::{
    ActionEnvironment, AssertionId, AssertionOutcome, ComplianceValues, Failure, QueryResult,
    Session, SignatureCache, Trust, signature_work_units,
};
pub use text::{FileChunk, split_assertions};

/// The hash map for per-query tables (action attributes, principals): foldhash, seeded per
/// process, several times faster than SipHash on these short keys. The tables are bounded
/// ([`limits::ACTION_ATTRIBUTES_MAX`], [`limits::SESSION_ASSERTIONS_MAX`]).
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
