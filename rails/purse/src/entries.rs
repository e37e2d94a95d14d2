//! What a purse's log and its sync messages are made of, shared by the purse and the sync
//! messages (so neither depends on the other): the offline limits, the keys a code is made with,
//! log entries, and the tickets the operator hands over for peers.

use offpay_money::{Amount, Currency};

use crate::error::PurseError;
use crate::params::*;
use crate::ticket::TicketCode;
use crate::types::{Phone, PurseKind, Timestamp};
use crate::wire::{Reader, Writer};

/// The offline risk limits the secure element enforces; the operator renews them at each sync.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct OfflineLimits {
    /// The purse refuses to receive beyond this balance.
    pub max_balance: Amount,
    /// Largest single payment.
    pub max_single_payment: Amount,
    /// Most the purse may pay out between two syncs.
    pub max_spent_since_sync: Amount,
    /// Payments above this need a pairwise key K_AB; at or below, the scheme key K suffices.
    pub small_payment_limit: Amount,
    /// After this time the purse must sync before paying (receiving still works).
    pub valid_until: Timestamp,
}

impl OfflineLimits {
    /// The default limits for a purse kind, in major units of `currency`: a customer may hold
    /// 70,000, pay 20,000 at once and 50,000 between syncs; an agent 10,000,000 / 1,000,000 /
    /// 5,000,000. Payments up to 2,500 use the scheme key. Valid for
    /// [`VALIDITY_DAYS_DEFAULT`] days from `now`.
    pub fn defaults(kind: PurseKind, currency: Currency, now: Timestamp) -> OfflineLimits {
        let major = |units: u64| {
            Amount::from_minor(units.saturating_mul(currency.minor_per_major()), currency)
                .unwrap_or(Amount::zero(currency))
        };
        let (max_balance, max_single_payment, max_spent_since_sync) = match kind {
            PurseKind::Customer => (major(70_000), major(20_000), major(50_000)),
            PurseKind::Agent => (major(10_000_000), major(1_000_000), major(5_000_000)),
        };
        OfflineLimits {
            max_balance,
            max_single_payment,
            max_spent_since_sync,
            small_payment_limit: major(2_500),
            valid_until: now.plus_seconds(VALIDITY_DAYS_DEFAULT * SECONDS_PER_DAY),
        }
    }

    pub(crate) fn currency(&self) -> Currency {
        self.max_balance.currency()
    }

    pub(crate) fn encode(&self, writer: &mut Writer) {
        writer.minor(self.max_balance);
        writer.minor(self.max_single_payment);
        writer.minor(self.max_spent_since_sync);
        writer.minor(self.small_payment_limit);
        writer.u64(self.valid_until.0);
    }

    pub(crate) fn decode(
        reader: &mut Reader<'_>,
        currency: Currency,
    ) -> Result<OfflineLimits, PurseError> {
        Ok(OfflineLimits {
            max_balance: reader.amount(currency)?,
            max_single_payment: reader.amount(currency)?,
            max_spent_since_sync: reader.amount(currency)?,
            small_payment_limit: reader.amount(currency)?,
            valid_until: Timestamp(reader.u64()?),
        })
    }
}

/// Which key a code was made with.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum KeyRef {
    /// The scheme key K of this epoch (payments up to the small-payment limit).
    Scheme {
        /// Epoch number.
        epoch: u32,
    },
    /// The pairwise key K_AB of this version.
    Pairwise {
        /// Version of the key for this pair.
        version: u16,
    },
}

impl KeyRef {
    pub(crate) fn encode(&self, writer: &mut Writer) {
        match self {
            KeyRef::Scheme { epoch } => {
                writer.u8(1);
                writer.u32(*epoch);
            }
            KeyRef::Pairwise { version } => {
                writer.u8(2);
                writer.u16(*version);
            }
        }
    }

    pub(crate) fn decode(reader: &mut Reader<'_>) -> Result<KeyRef, PurseError> {
        match reader.u8()? {
            1 => Ok(KeyRef::Scheme {
                epoch: reader.u32()?,
            }),
            2 => Ok(KeyRef::Pairwise {
                version: reader.u16()?,
            }),
            _ => Err(PurseError::Malformed("key reference")),
        }
    }
}

/// What one log entry records.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum EntryKind {
    /// The purse paid `payee` (Code 2 shown).
    Debit {
        /// B.
        payee: Phone,
        /// N_B from Code 1.
        nonce_b: u16,
        /// N_A drawn for Code 2.
        nonce_a: u16,
        /// Key used.
        key: KeyRef,
    },
    /// The purse received from `payer` (Code 2 entered and verified).
    Credit {
        /// A.
        payer: Phone,
        /// N_B of the request.
        nonce_b: u16,
        /// N_A from Code 2.
        nonce_a: u16,
        /// Key used.
        key: KeyRef,
    },
    /// The operator credited the purse (a float top-up or another operator credit), delivered at a
    /// sync.
    OperatorCredit {
        /// The operator's id for the credit.
        credit_id: u64,
    },
    /// The operator took value back (an agent settlement), delivered at a sync.
    Settlement {
        /// The operator's id for it.
        debit_id: u64,
    },
    /// The operator credited a payment whose Code 2 the purse never received: the payer's upload
    /// showed the debit.
    PaymentCredit {
        /// A.
        payer: Phone,
        /// The payer purse's counter of the debit.
        payer_counter: u32,
        /// N_B of the payment.
        nonce_b: u16,
        /// N_A of the payment.
        nonce_a: u16,
    },
}

/// One movement of value in or out of the purse, numbered by the purse's counter.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct LogEntry {
    /// The purse's counter: 1, 2, 3... with no gaps.
    pub counter: u32,
    /// Purse clock when it happened.
    pub time: Timestamp,
    /// How much.
    pub amount: Amount,
    /// What happened.
    pub kind: EntryKind,
}

impl LogEntry {
    /// True when value left the purse.
    pub fn is_debit(&self) -> bool {
        matches!(
            self.kind,
            EntryKind::Debit { .. } | EntryKind::Settlement { .. }
        )
    }

    pub(crate) fn encode(&self, writer: &mut Writer) {
        writer.u32(self.counter);
        writer.u64(self.time.0);
        writer.minor(self.amount);
        match self.kind {
            EntryKind::Debit {
                payee,
                nonce_b,
                nonce_a,
                key,
            } => {
                writer.u8(1);
                writer.phone(payee);
                writer.u16(nonce_b);
                writer.u16(nonce_a);
                key.encode(writer);
            }
            EntryKind::Credit {
                payer,
                nonce_b,
                nonce_a,
                key,
            } => {
                writer.u8(2);
                writer.phone(payer);
                writer.u16(nonce_b);
                writer.u16(nonce_a);
                key.encode(writer);
            }
            EntryKind::OperatorCredit { credit_id } => {
                writer.u8(3);
                writer.u64(credit_id);
            }
            EntryKind::Settlement { debit_id } => {
                writer.u8(5);
                writer.u64(debit_id);
            }
            EntryKind::PaymentCredit {
                payer,
                payer_counter,
                nonce_b,
                nonce_a,
            } => {
                writer.u8(4);
                writer.phone(payer);
                writer.u32(payer_counter);
                writer.u16(nonce_b);
                writer.u16(nonce_a);
            }
        }
    }

    pub(crate) fn decode(
        reader: &mut Reader<'_>,
        currency: Currency,
    ) -> Result<LogEntry, PurseError> {
        let counter = reader.u32()?;
        let time = Timestamp(reader.u64()?);
        let amount = reader.amount(currency)?;
        let kind = match reader.u8()? {
            1 => EntryKind::Debit {
                payee: reader.phone()?,
                nonce_b: reader.u16()?,
                nonce_a: reader.u16()?,
                key: KeyRef::decode(reader)?,
            },
            2 => EntryKind::Credit {
                payer: reader.phone()?,
                nonce_b: reader.u16()?,
                nonce_a: reader.u16()?,
                key: KeyRef::decode(reader)?,
            },
            3 => EntryKind::OperatorCredit {
                credit_id: reader.u64()?,
            },
            4 => EntryKind::PaymentCredit {
                payer: reader.phone()?,
                payer_counter: reader.u32()?,
                nonce_b: reader.u16()?,
                nonce_a: reader.u16()?,
            },
            5 => EntryKind::Settlement {
                debit_id: reader.u64()?,
            },
            _ => return Err(PurseError::Malformed("entry kind")),
        };
        if counter == 0 || amount.is_zero() {
            return Err(PurseError::Malformed("entry"));
        }
        Ok(LogEntry {
            counter,
            time,
            amount,
            kind,
        })
    }
}

/// A ticket the operator gave this purse for a peer to type in (the delay-tolerant
/// Needham–Schroeder hand-over, when the peer cannot sync soon).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PeerTicket {
    /// Who should type it.
    pub peer: Phone,
    /// The 48-digit code.
    pub code: TicketCode,
}
