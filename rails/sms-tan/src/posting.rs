//! What a verified payment asks the ledger to do: plain data with deterministic, idempotent ids.

use alloc::string::String;
use core::fmt;

use offpay_money::{Amount, Currency};
use sha2::{Digest, Sha256};

use crate::limits::REFERENCE_DIGITS;
use crate::numbers::AccountNumber;

const TRANSFER_LABEL: &[u8] = b"offpay/sms-tan/v1/transfer";

/// A ledger transfer id: 16 bytes of SHA-256 over the inbound message id and the payment, so a
/// gateway retry of the same SMS yields the same id and the ledger posts it once.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransferId(pub [u8; 16]);

impl TransferId {
    /// The id of leg `leg` of the payment made by inbound message `message_id`.
    pub fn derive(
        message_id: &str,
        payer: &AccountNumber,
        payee: &AccountNumber,
        amount: &Amount,
        fee: &Amount,
        leg: PostingKind,
    ) -> TransferId {
        let mut hash = Sha256::new();
        hash.update(TRANSFER_LABEL);
        hash.update((message_id.len() as u64).to_be_bytes());
        hash.update(message_id.as_bytes());
        hash.update(payer.to_string_bytes());
        hash.update(payee.to_string_bytes());
        hash.update(amount.minor().to_be_bytes());
        hash.update(amount.currency().code().as_bytes());
        hash.update(fee.minor().to_be_bytes());
        hash.update(fee.currency().code().as_bytes());
        hash.update([leg.tag()]);
        let digest = hash.finalize();
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        TransferId(id)
    }

    /// As a u128 (big-endian).
    pub fn as_u128(&self) -> u128 {
        u128::from_be_bytes(self.0)
    }

    /// Lowercase hex.
    pub fn hex(&self) -> String {
        let mut out = String::with_capacity(32);
        for byte in self.0 {
            let _ = fmt::Write::write_fmt(&mut out, format_args!("{byte:02x}"));
        }
        out
    }
}

impl fmt::Debug for TransferId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TransferId({})", self.hex())
    }
}

trait DigitBytes {
    fn to_string_bytes(&self) -> [u8; crate::limits::ACCOUNT_NUMBER_DIGITS];
}

impl DigitBytes for AccountNumber {
    fn to_string_bytes(&self) -> [u8; crate::limits::ACCOUNT_NUMBER_DIGITS] {
        self.digits().map(|digit| b'0' + digit)
    }
}

/// An 8-digit payment reference shown in confirmations and typed in a DISPUTE.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference(u32);

impl Reference {
    const RANGE: u32 = 10u32.pow(REFERENCE_DIGITS as u32);

    /// The reference of a payment, from its main transfer id.
    pub fn of(id: &TransferId) -> Reference {
        Reference((id.as_u128() % u128::from(Self::RANGE)) as u32)
    }

    /// Parses exactly 8 digits.
    pub fn parse(text: &str) -> Option<Reference> {
        if text.len() != REFERENCE_DIGITS || !text.bytes().all(|byte| byte.is_ascii_digit()) {
            return None;
        }
        text.parse().ok().map(Reference)
    }

    /// The value.
    pub fn value(&self) -> u32 {
        self.0
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08}", self.0)
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reference({self})")
    }
}

/// A ledger account this rail moves money between.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LedgerAccount {
    /// A customer account, by its receive number.
    Customer(AccountNumber),
    /// The operator's fee income in a currency.
    Fees(Currency),
    /// The operator's exchange float in a currency (cross-currency payments pass through it).
    ExchangeFloat(Currency),
}

/// What one posting is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PostingKind {
    /// Payer to payee (same currency).
    Payment,
    /// Payer to the fee account.
    Fee,
    /// Payer to the exchange float, in the payer's currency.
    ExchangeOut,
    /// Exchange float to the payee, in the payee's currency.
    ExchangeIn,
}

impl PostingKind {
    fn tag(self) -> u8 {
        match self {
            PostingKind::Payment => 1,
            PostingKind::Fee => 2,
            PostingKind::ExchangeOut => 3,
            PostingKind::ExchangeIn => 4,
        }
    }
}

/// One transfer for the ledger: debit one account, credit another, same currency.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Posting {
    /// Idempotency id.
    pub transfer_id: TransferId,
    /// Debited account.
    pub debit: LedgerAccount,
    /// Credited account.
    pub credit: LedgerAccount,
    /// How much.
    pub amount: Amount,
    /// Why.
    pub kind: PostingKind,
    /// The payment's reference (shared by its legs).
    pub reference: Reference,
}

#[cfg(test)]
mod tests {
    use super::*;
    use offpay_money::Currency;

    #[test]
    fn ids_are_deterministic_and_cover_every_field() {
        let payer = AccountNumber::parse("111111111111").unwrap();
        let payee = AccountNumber::parse("901020377865").unwrap();
        let amount = Amount::parse("200000.00", Currency::KES).unwrap();
        let fee = Amount::parse("10", Currency::KES).unwrap();
        let id = TransferId::derive("msg-1", &payer, &payee, &amount, &fee, PostingKind::Payment);
        assert_eq!(
            id,
            TransferId::derive("msg-1", &payer, &payee, &amount, &fee, PostingKind::Payment)
        );
        assert_ne!(
            id,
            TransferId::derive("msg-2", &payer, &payee, &amount, &fee, PostingKind::Payment)
        );
        assert_ne!(
            id,
            TransferId::derive("msg-1", &payer, &payee, &amount, &fee, PostingKind::Fee)
        );
        let other_amount = Amount::parse("200000.01", Currency::KES).unwrap();
        assert_ne!(
            id,
            TransferId::derive(
                "msg-1",
                &payer,
                &payee,
                &other_amount,
                &fee,
                PostingKind::Payment
            )
        );
        assert_eq!(id.hex().len(), 32);
        let reference = Reference::of(&id);
        assert_eq!(Reference::parse(&reference.to_string()), Some(reference));
    }
}
