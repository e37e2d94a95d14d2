//! The ledger conformance suite on [`offpay_ledger::MemoryStore`], so that the in-memory store
//! tests and the simulator use decides and reads exactly as the durable backends do.
//!
//! Needs the `conformance` feature (see `[[test]]` in Cargo.toml):
//! `cargo test -p offpay-ledger --features conformance`.

offpay_ledger::ledger_conformance_tests!(false, ((), offpay_ledger::MemoryStore::new()));
