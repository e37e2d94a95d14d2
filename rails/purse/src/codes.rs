//! Code 1 (the payee's request) and Code 2 (the payer's response): exact MAC inputs, the digit
//! split and the checks. Pure functions of the key and the fields.
//!
//! ```text
//! Code 1 = N_B (4 digits) ‖ T1 (4 digits)   T1 = D4(CMAC_K("REQ" ‖ B ‖ A ‖ X ‖ cur ‖ N_B))
//! Code 2 = N_A (2 digits) ‖ R  (6 digits)   R  = D6(CMAC_K("RSP" ‖ A ‖ N_A ‖ X ‖ cur ‖ N_B ‖ B))
//! ```
//! Phones are 7 bytes, X is the amount in minor units as 7 bytes, `cur` is the three-letter code
//! and the exponent (4 bytes), nonces are 2 bytes; everything big-endian. Request input: 30 bytes;
//! response input: 32 bytes; so each MAC costs 3 AES blocks (subkey + 2).

use offpay_money::{Amount, Currency};
use subtle::ConstantTimeEq;

use crate::crypto::{SecretKey, cmac, decimal_truncate};
use crate::error::PurseError;
use crate::params::{
    REQUEST_MAC_INPUT_BYTES, REQUEST_NONCE_DIGITS, REQUEST_NONCE_SPACE, REQUEST_TAG_DIGITS,
    RESPONSE_MAC_INPUT_BYTES, RESPONSE_NONCE_DIGITS, RESPONSE_NONCE_SPACE, RESPONSE_TAG_DIGITS,
};
use crate::types::{Code, Phone};

/// Bytes of an amount in a MAC input (10^15 minor units < 2^56).
pub const AMOUNT_MAC_BYTES: usize = 7;
const _: () = assert!(Amount::MAX_MINOR < (1u64 << (8 * AMOUNT_MAC_BYTES)));

/// What Code 1 binds: who asks whom for how much, under which nonce.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct RequestFields {
    /// B, who will receive.
    pub payee: Phone,
    /// A, who will pay.
    pub payer: Phone,
    /// X.
    pub amount: Amount,
    /// N_B, 0..=9999.
    pub nonce_b: u16,
}

/// What Code 2 binds: the request's fields plus the payer's nonce.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ResponseFields {
    /// A.
    pub payer: Phone,
    /// N_A, 0..=99.
    pub nonce_a: u16,
    /// X.
    pub amount: Amount,
    /// N_B from Code 1.
    pub nonce_b: u16,
    /// B.
    pub payee: Phone,
}

fn put_amount(out: &mut [u8], amount: Amount) {
    let wide = amount.minor().to_be_bytes();
    out.copy_from_slice(&wide[8 - AMOUNT_MAC_BYTES..]);
}

fn put_currency(out: &mut [u8], currency: Currency) {
    out[..3].copy_from_slice(currency.code().as_bytes());
    out[3] = currency.exponent();
}

/// `"REQ" ‖ B ‖ A ‖ X ‖ currency ‖ N_B` — 30 bytes.
pub fn request_mac_input(fields: &RequestFields) -> [u8; REQUEST_MAC_INPUT_BYTES] {
    let mut out = [0u8; REQUEST_MAC_INPUT_BYTES];
    out[0..3].copy_from_slice(b"REQ");
    out[3..10].copy_from_slice(&fields.payee.to_bytes());
    out[10..17].copy_from_slice(&fields.payer.to_bytes());
    put_amount(&mut out[17..24], fields.amount);
    put_currency(&mut out[24..28], fields.amount.currency());
    out[28..30].copy_from_slice(&fields.nonce_b.to_be_bytes());
    out
}

/// `"RSP" ‖ A ‖ N_A ‖ X ‖ currency ‖ N_B ‖ B` — 32 bytes.
pub fn response_mac_input(fields: &ResponseFields) -> [u8; RESPONSE_MAC_INPUT_BYTES] {
    let mut out = [0u8; RESPONSE_MAC_INPUT_BYTES];
    out[0..3].copy_from_slice(b"RSP");
    out[3..10].copy_from_slice(&fields.payer.to_bytes());
    out[10..12].copy_from_slice(&fields.nonce_a.to_be_bytes());
    put_amount(&mut out[12..19], fields.amount);
    put_currency(&mut out[19..23], fields.amount.currency());
    out[23..25].copy_from_slice(&fields.nonce_b.to_be_bytes());
    out[25..32].copy_from_slice(&fields.payee.to_bytes());
    out
}

/// T1 with `digits` digits (the protocol uses [`REQUEST_TAG_DIGITS`]).
pub fn request_tag(key: &SecretKey, fields: &RequestFields, digits: u32) -> u32 {
    decimal_truncate(&cmac(key, &request_mac_input(fields)), digits)
}

/// R with `digits` digits (the protocol uses [`RESPONSE_TAG_DIGITS`]; the guessing simulation
/// uses fewer to measure the success rate in reasonable time).
pub fn response_tag(key: &SecretKey, fields: &ResponseFields, digits: u32) -> u32 {
    decimal_truncate(&cmac(key, &response_mac_input(fields)), digits)
}

/// Code 1 = N_B ‖ T1.
pub fn request_code(key: &SecretKey, fields: &RequestFields) -> Code {
    debug_assert!(u32::from(fields.nonce_b) < REQUEST_NONCE_SPACE);
    let tag = request_tag(key, fields, REQUEST_TAG_DIGITS);
    Code::from_parts(u32::from(fields.nonce_b), REQUEST_NONCE_DIGITS, tag)
}

/// Code 2 = N_A ‖ R.
pub fn response_code(key: &SecretKey, fields: &ResponseFields) -> Code {
    debug_assert!(u32::from(fields.nonce_a) < RESPONSE_NONCE_SPACE);
    let tag = response_tag(key, fields, RESPONSE_TAG_DIGITS);
    Code::from_parts(u32::from(fields.nonce_a), RESPONSE_NONCE_DIGITS, tag)
}

/// N_B and T1 of a Code 1.
pub fn split_request_code(code: &Code) -> (u16, u32) {
    (
        code.leading(REQUEST_NONCE_DIGITS) as u16,
        code.trailing_after(REQUEST_NONCE_DIGITS),
    )
}

/// N_A and R of a Code 2.
pub fn split_response_code(code: &Code) -> (u16, u32) {
    (
        code.leading(RESPONSE_NONCE_DIGITS) as u16,
        code.trailing_after(RESPONSE_NONCE_DIGITS),
    )
}

/// Checks T1 of a Code 1 in constant time; returns N_B.
pub fn check_request_code(
    key: &SecretKey,
    payee: Phone,
    payer: Phone,
    amount: Amount,
    code: &Code,
) -> Result<u16, PurseError> {
    let (nonce_b, tag) = split_request_code(code);
    let fields = RequestFields {
        payee,
        payer,
        amount,
        nonce_b,
    };
    let expected = request_tag(key, &fields, REQUEST_TAG_DIGITS);
    if bool::from(expected.ct_eq(&tag)) {
        Ok(nonce_b)
    } else {
        Err(PurseError::RequestCodeMismatch)
    }
}

/// Checks R of a Code 2 against a pending request in constant time; returns N_A when it verifies.
pub fn check_response_code(key: &SecretKey, request: &RequestFields, code: &Code) -> Option<u16> {
    let (nonce_a, tag) = split_response_code(code);
    let fields = ResponseFields {
        payer: request.payer,
        nonce_a,
        amount: request.amount,
        nonce_b: request.nonce_b,
        payee: request.payee,
    };
    let expected = response_tag(key, &fields, RESPONSE_TAG_DIGITS);
    bool::from(expected.ct_eq(&tag)).then_some(nonce_a)
}

/// The parity of N_B names the scheme-key epoch: a request under epoch `e` has `N_B mod 2 = e mod
/// 2`. The payer then needs exactly one MAC to check Code 1 although it holds two epochs.
pub fn nonce_parity_matches(nonce_b: u16, epoch: u32) -> bool {
    u32::from(nonce_b) % 2 == epoch % 2
}
