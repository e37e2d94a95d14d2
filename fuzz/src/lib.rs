//! What the fuzz targets share with the seed writer (`examples/seeds.rs`): the fixtures a target
//! runs its input against (a provisioned purse, two charged wallets, a vending machine), built
//! the way the operator and the devices build them, and the seeds each target starts from, made
//! by the real encoders. Everything is deterministic: fixed keys, seeded randomness, fixed clocks.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

pub mod microcheck;
pub mod phone;
pub mod purse;
pub mod sms_tan;
pub mod wallet;

/// One seed: a file name and its bytes.
pub type Seed = (String, Vec<u8>);

/// Every target's seeds, by target name.
pub fn all_seeds() -> Vec<(&'static str, Vec<Seed>)> {
    vec![
        ("purse_codes", purse::codes_seeds()),
        ("purse_sync", purse::sync_seeds()),
        ("purse_apdu", purse::apdu_seeds()),
        ("sms_tan_grammar", sms_tan::grammar_seeds()),
        ("sms_tan_envelope", sms_tan::envelope_seeds()),
        ("wallet_datagram", wallet::datagram_seeds()),
        ("wallet_records", wallet::records_seeds()),
        ("microcheck_wire", microcheck::wire_seeds()),
        ("microcheck_deposit", microcheck::deposit_seeds()),
        ("phone_normalise", phone::normalise_seeds()),
    ]
}

/// A seed named `name` with `selector` before `body` (targets that read several formats pick
/// one with their first byte).
pub fn selected(name: &str, selector: u8, body: &[u8]) -> Seed {
    let mut bytes = vec![selector];
    bytes.extend_from_slice(body);
    (name.to_string(), bytes)
}
