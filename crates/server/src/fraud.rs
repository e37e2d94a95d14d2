//! The fraud queue shared by every rail lives in the operator contract
//! ([`offpay_operator::fraud`]); this re-export keeps the server's paths.

pub use offpay_operator::fraud::*;
