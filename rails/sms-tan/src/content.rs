//! What the SUM of a settings message covers (protocol v3). `REG`, `LIMIT`, `DIALBACK`, `HIGH`,
//! `PASSWORD` and `DISPUTE` end with a row and that row's checksum (its recipe, as for a low
//! payment) over a *subject* account and a *setting number*, so a change to any part of the
//! message in transit makes the SUM wrong: the bank refuses it and counts the attempt.
//!
//! The setting number is a one-digit code for what changes, followed by the new value, read as
//! an amount (its whole digits, then its decimals):
//!
//! | message | code | setting number | subject |
//! |---|---|---|---|
//! | `LIMIT … DAY v` | 1 | `1` then v with the account's decimals (`DAY 500` → `1500.00`); `NONE` → `1` | 000000000000 |
//! | `LIMIT … WEEK v` | 2 | `2` then v | 000000000000 |
//! | `LIMIT … EACH v` | 3 | `3` then v | 000000000000 |
//! | `LIMIT … TO payee v` | 4 | `4` then v | the payee |
//! | `DIALBACK … v` | 5 | `5` then v | 000000000000 |
//! | `HIGH … ON/OFF` | 6 | `61` / `60` | 000000000000 |
//! | `DISPUTE … reference` | 7 | `7` then the 8 digits | 000000000000 |
//! | `PASSWORD … password` | 8 | `8` then each character as its phone key (ABC=2 … WXYZ=9, digits as they are) | 000000000000 |
//! | `REG new-envelope …` | 9 | `9` then the new envelope's 11 digits | `0` then the 11 digits |
//!
//! With a derived recipe (LS, S1, S2, the digit sum T and two digits of the subject) the code
//! digit is S1, so a change of kind (`DAY` → `WEEK`, `ON` → `OFF` is S2) is always caught, a
//! removed limit changes LS, and a changed value keeps LS, its first digit and its digit sum
//! only within a factor 1.1. `REG` also grid-codes the new number (see
//! [`crate::grammar::EncryptedEuin`]).

use alloc::vec::Vec;

use offpay_money::Currency;

use crate::grammar::{LimitChange, Message, TypedAmount};
use crate::numbers::{AccountNumber, Euin};
use crate::recipe::AmountDigits;

/// Setting code of a daily limit.
pub const DAILY: u8 = 1;
/// Setting code of a weekly limit.
pub const WEEKLY: u8 = 2;
/// Setting code of a per-payment limit.
pub const PER_PAYMENT: u8 = 3;
/// Setting code of a per-payee limit.
pub const PER_PAYEE: u8 = 4;
/// Setting code of the dialback threshold.
pub const DIALBACK: u8 = 5;
/// Setting code of `HIGH`.
pub const FORCE_HIGH: u8 = 6;
/// Setting code of a dispute.
pub const DISPUTE: u8 = 7;
/// Setting code of the web password.
pub const PASSWORD: u8 = 8;
/// Setting code of an envelope registration.
pub const REGISTER: u8 = 9;

/// The digit a phone key gives a character (`ABC` = 2 … `WXYZ` = 9; digits as they are).
pub fn keypad_digit(character: char) -> Option<u8> {
    let upper = character.to_ascii_uppercase();
    Some(match upper {
        '0'..='9' => upper as u8 - b'0',
        'A'..='C' => 2,
        'D'..='F' => 3,
        'G'..='I' => 4,
        'J'..='L' => 5,
        'M'..='O' => 6,
        'P'..='S' => 7,
        'T'..='V' => 8,
        'W'..='Z' => 9,
        _ => return None,
    })
}

fn zero_account() -> AccountNumber {
    AccountNumber::from_digits([0; crate::limits::ACCOUNT_NUMBER_DIGITS])
        .unwrap_or_else(|| unreachable!("twelve zeros are an account number"))
}

/// Why a settings message's content could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContentError {
    /// Not a message with a SUM over its content.
    NotASetting,
    /// An amount the account's currency cannot hold (too many decimals, too large).
    BadAmount,
}

fn with_amount(
    code: u8,
    amount: Option<&TypedAmount>,
    currency: Currency,
) -> Result<AmountDigits, ContentError> {
    let mut whole: Vec<u8> = alloc::vec![code];
    let mut fraction: Vec<u8> = Vec::new();
    if let Some(amount) = amount {
        let amount = amount
            .to_amount(currency)
            .map_err(|_| ContentError::BadAmount)?;
        let digits = AmountDigits::of(&amount);
        let (integer, decimals) = digits.as_slice().split_at(digits.whole_length());
        whole.extend_from_slice(integer);
        fraction.extend_from_slice(decimals);
    }
    AmountDigits::from_parts(&whole, &fraction).ok_or(ContentError::BadAmount)
}

/// The subject account and setting number the SUM of `message` covers, for an account in
/// `currency`; `new_envelope` is the decoded number of a `REG`.
pub fn signed_content(
    message: &Message,
    currency: Currency,
    new_envelope: Option<&Euin>,
) -> Result<(AccountNumber, AmountDigits), ContentError> {
    let zero = zero_account();
    match message {
        Message::Limit { change, .. } => match change {
            LimitChange::Daily(limit) => Ok((zero, with_amount(DAILY, limit.as_ref(), currency)?)),
            LimitChange::Weekly(limit) => {
                Ok((zero, with_amount(WEEKLY, limit.as_ref(), currency)?))
            }
            LimitChange::PerPayment(limit) => {
                Ok((zero, with_amount(PER_PAYMENT, limit.as_ref(), currency)?))
            }
            LimitChange::Payee(payee, limit) => {
                Ok((*payee, with_amount(PER_PAYEE, limit.as_ref(), currency)?))
            }
        },
        Message::Dialback { threshold, .. } => {
            Ok((zero, with_amount(DIALBACK, Some(threshold), currency)?))
        }
        Message::ForceHigh { on, .. } => Ok((
            zero,
            AmountDigits::from_parts(&[FORCE_HIGH, u8::from(*on)], &[])
                .ok_or(ContentError::NotASetting)?,
        )),
        Message::Dispute { reference, .. } => {
            let mut whole: Vec<u8> = alloc::vec![DISPUTE];
            let text = alloc::format!("{reference}");
            whole.extend(
                text.bytes()
                    .filter(u8::is_ascii_digit)
                    .map(|byte| byte - b'0'),
            );
            Ok((
                zero,
                AmountDigits::from_parts(&whole, &[]).ok_or(ContentError::NotASetting)?,
            ))
        }
        Message::SetPassword { password, .. } => {
            let mut whole: Vec<u8> = alloc::vec![PASSWORD];
            for character in password.expose().chars() {
                whole.push(keypad_digit(character).ok_or(ContentError::NotASetting)?);
            }
            let digits = AmountDigits::from_parts(&whole, &[]).ok_or(ContentError::NotASetting);
            whole.iter_mut().for_each(|digit| *digit = 0);
            Ok((zero, digits?))
        }
        Message::Register { .. } => {
            let euin = new_envelope.ok_or(ContentError::NotASetting)?;
            let mut whole: Vec<u8> = alloc::vec![REGISTER];
            whole.extend_from_slice(euin.digits());
            let mut subject = [0u8; crate::limits::ACCOUNT_NUMBER_DIGITS];
            subject[1..].copy_from_slice(euin.digits());
            Ok((
                AccountNumber::from_digits(subject).ok_or(ContentError::NotASetting)?,
                AmountDigits::from_parts(&whole, &[]).ok_or(ContentError::NotASetting)?,
            ))
        }
        _ => Err(ContentError::NotASetting),
    }
}
