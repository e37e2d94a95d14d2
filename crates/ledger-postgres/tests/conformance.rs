//! The ledger conformance suite on PostgreSQL, each test in a fresh schema of the database that
//! `OFFPAY_TEST_DATABASE_URL` names; skipped (with a note) when it is not set.

mod common;

offpay_ledger::ledger_conformance_tests!(common::skip(), common::fresh_store());
