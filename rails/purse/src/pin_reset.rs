//! PIN reset in place: the one-time reset codes an operator gives a holder who proved who they
//! are, and that the purse checks before it takes a new PIN.
//!
//! Reset code number `k` of a purse is `D12(CMAC(K_reset, operator ‖ purse id ‖ k))` with
//! `K_reset = CMAC-KDF(K_P, "offpay pin reset")`: the operator computes it from the master key
//! (it derives K_P), the purse from the K_P it holds, nobody else at all. The operator keeps only
//! how many codes it issued; the purse keeps how many it used and accepts only the next
//! [`PIN_RESET_WINDOW`] numbers, so a code works once, and a code issued but never typed is
//! overtaken by the next one. The software secure element also keeps the number used on the
//! device (beside the PIN tries), so a restored purse file does not take a used code again.

use core::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::crypto::{SecretKey, cmac, cmac_derive};
use crate::error::PurseError;
use crate::types::{OperatorId, PurseId};

/// Digits of a reset code (shown as three groups of four).
pub const PIN_RESET_CODE_DIGITS: usize = 12;
/// Reset codes a purse accepts beyond the last one it used: the operator may issue a code the
/// holder never types, and the next one still works.
pub const PIN_RESET_WINDOW: u32 = 3;
/// Wrong reset codes a purse takes before it refuses every reset code (the holder then reports
/// the phone lost and the balance moves to a new purse). A guess is right with probability at
/// most [`PIN_RESET_WINDOW`] × 10^-12.
pub const PIN_RESET_FAILURES_MAX: u8 = 3;

const LABEL_RESET_KEY: &[u8] = b"offpay pin reset";
const RESET_CODE_SPACE: u64 = 1_000_000_000_000;

const _: () = assert!(10u64.pow(PIN_RESET_CODE_DIGITS as u32) == RESET_CODE_SPACE);
const _: () = assert!(PIN_RESET_WINDOW >= 1 && PIN_RESET_FAILURES_MAX >= 1);

/// A one-time PIN reset code. Never shown by `Debug`; wiped on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct ResetCode(u64);

impl ResetCode {
    /// Reads 12 digits; spaces and dashes between them are ignored.
    pub fn parse(text: &str) -> Result<ResetCode, PurseError> {
        let mut value = 0u64;
        let mut digits = 0usize;
        for character in text.chars() {
            match character {
                ' ' | '-' => {}
                '0'..='9' => {
                    digits += 1;
                    if digits > PIN_RESET_CODE_DIGITS {
                        return Err(PurseError::CodeLength {
                            expected: PIN_RESET_CODE_DIGITS,
                            found: digits,
                        });
                    }
                    value = value * 10 + u64::from(character as u8 - b'0');
                }
                other => {
                    return Err(PurseError::CodeCharacter {
                        position: digits,
                        character: other,
                    });
                }
            }
        }
        if digits != PIN_RESET_CODE_DIGITS {
            return Err(PurseError::CodeLength {
                expected: PIN_RESET_CODE_DIGITS,
                found: digits,
            });
        }
        Ok(ResetCode(value))
    }

    /// The code as a number below 10^12 (for the APDU).
    pub fn as_number(&self) -> u64 {
        self.0
    }

    /// From a number below 10^12.
    pub fn from_number(value: u64) -> Result<ResetCode, PurseError> {
        if value >= RESET_CODE_SPACE {
            return Err(PurseError::Malformed("reset code"));
        }
        Ok(ResetCode(value))
    }

    /// Constant-time equality.
    pub fn matches(&self, other: &ResetCode) -> bool {
        use subtle::ConstantTimeEq;
        bool::from(self.0.ct_eq(&other.0))
    }

    /// The code as the holder reads it: `1234 5678 9012`.
    pub fn display(&self) -> alloc::string::String {
        let digits = alloc::format!("{:012}", self.0);
        alloc::format!("{} {} {}", &digits[0..4], &digits[4..8], &digits[8..12])
    }
}

impl fmt::Debug for ResetCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResetCode(<redacted>)")
    }
}

/// Reset code number `number` (1, 2, …) of the purse with key `purse_key`.
pub fn reset_code(
    purse_key: &SecretKey,
    operator: OperatorId,
    purse_id: PurseId,
    number: u32,
) -> ResetCode {
    let key = cmac_derive(purse_key, LABEL_RESET_KEY);
    let mut message = alloc::vec::Vec::with_capacity(1 + operator.as_bytes().len() + 12);
    message.push(operator.as_bytes().len() as u8);
    message.extend_from_slice(operator.as_bytes());
    message.extend_from_slice(&purse_id.0.to_be_bytes());
    message.extend_from_slice(&number.to_be_bytes());
    let mac = cmac(&key, &message);
    let mut high = [0u8; 8];
    high.copy_from_slice(&mac[..8]);
    // The bias towards small values is at most 10^12 / 2^64 < 2^-24.
    ResetCode(u64::from_be_bytes(high) % RESET_CODE_SPACE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_reads_back_with_spaces_and_refuses_other_lengths() {
        let code = ResetCode::parse("0123 4567 8901").unwrap();
        assert_eq!(code.as_number(), 12_345_678_901);
        assert_eq!(code.display(), "0123 4567 8901");
        assert!(matches!(
            ResetCode::parse("1234 5678 901"),
            Err(PurseError::CodeLength { found: 11, .. })
        ));
        assert!(matches!(
            ResetCode::parse("1234 5678 9012 3"),
            Err(PurseError::CodeLength { found: 13, .. })
        ));
        assert!(ResetCode::parse("1234 5678 901x").is_err());
        assert_eq!(alloc::format!("{code:?}"), "ResetCode(<redacted>)");
    }

    #[test]
    fn codes_differ_by_number_purse_and_key() {
        let operator = OperatorId::new("op1").unwrap();
        let key = SecretKey::from_bytes([7; 16]);
        let first = reset_code(&key, operator, PurseId(1), 1);
        assert!(first.matches(&reset_code(&key, operator, PurseId(1), 1)));
        assert!(!first.matches(&reset_code(&key, operator, PurseId(1), 2)));
        assert!(!first.matches(&reset_code(&key, operator, PurseId(2), 1)));
        let other = SecretKey::from_bytes([8; 16]);
        assert!(!first.matches(&reset_code(&other, operator, PurseId(1), 1)));
    }
}
