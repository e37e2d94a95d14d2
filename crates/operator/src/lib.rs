//! The contract every rail's operator half speaks. A decision takes the state the rail loaded,
//! the input, the time ([`Clock`]) and an entropy source ([`Entropy`]), and returns [`Effects`]:
//! ledger postings with deterministic ids, typed and versioned records ([`StoredRecord`]) written
//! on the condition that they are still at the version read, fraud flags naming a culprit with
//! the evidence ([`FraudFlag`]), and messages to send.
//!
//! The server constructs the real clock and entropy once ([`SystemClock`], [`OsEntropy`]); tests
//! and the simulator pass [`ManualClock`] and [`SeededEntropy`], so a whole run follows from one
//! seed. The server's runner (`offpay-server`'s `runner` module) is the only loop that loads,
//! decides, commits and retries.

pub mod accounts;
pub mod clock;
pub mod effects;
pub mod entropy;
pub mod fraud;
pub mod phone;
pub mod record;

pub use clock::{Clock, ManualClock, SystemClock};
pub use effects::{Attempt, Decision, Effects};
pub use entropy::{Entropy, EntropyError, OsEntropy, SeededEntropy};
pub use fraud::FraudFlag;
pub use record::{Loaded, RecordError, StoredRecord};
