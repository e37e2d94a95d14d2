//! Ticket codes: a pairwise key K_AB, wrapped for its receiver, as 48 digits a person can read
//! out and type in — the delay-tolerant Needham–Schroeder hand-over when the receiver cannot sync.
//!
//! ```text
//! digits  1..39  the wrapped key AES_{W_B}(K_AB) as a 128-bit integer, zero-padded
//! digits 40..42  the key version (0..=999)
//! digits 43..48  D6(CMAC_{T_B}("TKT" ‖ A ‖ B ‖ version ‖ wrapped))
//! ```
//! where W_B and T_B are B's wrap and ticket keys, derived from B's per-purse key. Only the
//! operator (which derives every per-purse key) can make one; only B can open it.

use core::fmt;

use subtle::ConstantTimeEq;

use crate::crypto::{KEY_BYTES, SecretKey, cmac, decimal_truncate};
use crate::error::PurseError;
use crate::params::{PAIRWISE_VERSION_MAX, TICKET_CODE_DIGITS, TICKET_TAG_DIGITS};
use crate::types::Phone;

const KEY_DIGITS: usize = 39;
const VERSION_DIGITS: usize = 3;

/// A 48-digit ticket code, shown in groups of four.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TicketCode {
    digits: [u8; TICKET_CODE_DIGITS],
}

fn tag(ticket_key: &SecretKey, giver: Phone, receiver: Phone, version: u16, wrapped: &[u8]) -> u32 {
    let mut input = [0u8; 3 + 7 + 7 + 2 + KEY_BYTES];
    input[..3].copy_from_slice(b"TKT");
    input[3..10].copy_from_slice(&giver.to_bytes());
    input[10..17].copy_from_slice(&receiver.to_bytes());
    input[17..19].copy_from_slice(&version.to_be_bytes());
    input[19..].copy_from_slice(wrapped);
    decimal_truncate(&cmac(ticket_key, &input), TICKET_TAG_DIGITS)
}

#[cfg(feature = "operator")]
fn write_decimal(out: &mut [u8], mut value: u128) {
    for slot in out.iter_mut().rev() {
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

fn read_decimal(digits: &[u8]) -> Option<u128> {
    digits.iter().try_fold(0u128, |acc, digit| {
        acc.checked_mul(10)?
            .checked_add(u128::from(digit.wrapping_sub(b'0')))
    })
}

impl TicketCode {
    /// Builds the code for `receiver` (operator side): `wrapped` is K_AB under the receiver's wrap
    /// key, `ticket_key` the receiver's ticket key.
    #[cfg(feature = "operator")]
    pub(crate) fn seal(
        ticket_key: &SecretKey,
        giver: Phone,
        receiver: Phone,
        version: u16,
        wrapped: &[u8; KEY_BYTES],
    ) -> TicketCode {
        let mut digits = [b'0'; TICKET_CODE_DIGITS];
        write_decimal(&mut digits[..KEY_DIGITS], u128::from_be_bytes(*wrapped));
        write_decimal(
            &mut digits[KEY_DIGITS..KEY_DIGITS + VERSION_DIGITS],
            u128::from(version),
        );
        write_decimal(
            &mut digits[KEY_DIGITS + VERSION_DIGITS..],
            u128::from(tag(ticket_key, giver, receiver, version, wrapped)),
        );
        TicketCode { digits }
    }

    /// Checks the tag (constant time) and returns the version and the wrapped key.
    pub(crate) fn open(
        &self,
        ticket_key: &SecretKey,
        giver: Phone,
        receiver: Phone,
    ) -> Result<(u16, [u8; KEY_BYTES]), PurseError> {
        let key_value =
            read_decimal(&self.digits[..KEY_DIGITS]).ok_or(PurseError::TicketMismatch)?;
        let version = read_decimal(&self.digits[KEY_DIGITS..KEY_DIGITS + VERSION_DIGITS])
            .ok_or(PurseError::TicketMismatch)? as u16;
        let given_tag = read_decimal(&self.digits[KEY_DIGITS + VERSION_DIGITS..])
            .ok_or(PurseError::TicketMismatch)? as u32;
        let wrapped = key_value.to_be_bytes();
        let expected = tag(ticket_key, giver, receiver, version, &wrapped);
        if version == 0 || !bool::from(expected.ct_eq(&given_tag)) {
            return Err(PurseError::TicketMismatch);
        }
        Ok((version, wrapped))
    }

    /// Reads 48 digits; spaces are ignored.
    pub fn parse(text: &str) -> Result<TicketCode, PurseError> {
        let mut digits = [b'0'; TICKET_CODE_DIGITS];
        let mut found = 0usize;
        for (index, character) in text.chars().enumerate() {
            if character == ' ' {
                continue;
            }
            if !character.is_ascii_digit() {
                return Err(PurseError::CodeCharacter {
                    position: index + 1,
                    character,
                });
            }
            if found < TICKET_CODE_DIGITS {
                digits[found] = character as u8;
            }
            found += 1;
        }
        if found != TICKET_CODE_DIGITS {
            return Err(PurseError::CodeLength {
                expected: TICKET_CODE_DIGITS,
                found,
            });
        }
        TicketCode::from_digits(&digits)
    }

    pub(crate) fn from_digits(digits: &[u8; TICKET_CODE_DIGITS]) -> Result<TicketCode, PurseError> {
        if !digits.iter().all(u8::is_ascii_digit) {
            return Err(PurseError::Malformed("ticket code"));
        }
        // 39 digits can spell more than 2^128; such a code is simply wrong.
        if read_decimal(&digits[..KEY_DIGITS]).is_none() {
            return Err(PurseError::TicketMismatch);
        }
        let version = read_decimal(&digits[KEY_DIGITS..KEY_DIGITS + VERSION_DIGITS]).unwrap_or(0);
        if version > u128::from(PAIRWISE_VERSION_MAX) {
            return Err(PurseError::TicketMismatch);
        }
        Ok(TicketCode { digits: *digits })
    }

    /// The 48 ASCII digits.
    pub fn as_digits(&self) -> &[u8; TICKET_CODE_DIGITS] {
        &self.digits
    }
}

impl fmt::Display for TicketCode {
    /// `1234 5678 ...` (twelve groups of four).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, digit) in self.digits.iter().enumerate() {
            if index > 0 && index % 4 == 0 {
                f.write_str(" ")?;
            }
            write!(f, "{}", char::from(*digit))?;
        }
        Ok(())
    }
}

impl fmt::Debug for TicketCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TicketCode({self})")
    }
}
