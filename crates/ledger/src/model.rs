//! What the ledger holds: accounts, transfers, records, and the batches that change them.

use offpay_money::{Amount, Currency};
use serde::{Deserialize, Serialize};

use crate::ids::{AccountId, TransferId};

/// Most operations in one batch (TigerBeetle's batch size: a batch fills about 1 MiB).
pub const BATCH_OPERATIONS_MAX: usize = 8190;
/// Longest memo on a transfer, in bytes.
pub const MEMO_LENGTH_MAX: usize = 256;
/// Longest record namespace, in bytes.
pub const RECORD_NAMESPACE_LENGTH_MAX: usize = 32;
/// Longest record key, in bytes.
pub const RECORD_KEY_LENGTH_MAX: usize = 256;
/// Largest record value, in bytes.
pub const RECORD_VALUE_LENGTH_MAX: usize = 1 << 20;
/// Most transfers one history page returns.
pub const HISTORY_PAGE_MAX: usize = 1000;
/// Most records one scan returns.
pub const RECORD_PAGE_MAX: usize = 1000;

/// Milliseconds since the Unix epoch (UTC), passed in by the caller so that the ledger has no
/// clock of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

/// What an account is for. The kind decides nothing inside the ledger (limits do); it tells
/// operators and reports what they are looking at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AccountKind {
    /// A customer's purse, wallet or bank account.
    Customer,
    /// A merchant taking payments.
    Merchant,
    /// An agent's float, used to turn cash into purse credit and back.
    AgentFloat,
    /// The operator's own float: money enters circulation from here, so it runs negative.
    OperatorFloat,
    /// Unmatched or flagged items waiting for a decision.
    Suspense,
    /// Fees collected.
    Fees,
}

impl AccountKind {
    /// Every kind, for parsers and reports.
    pub const ALL: [AccountKind; 6] = [
        AccountKind::Customer,
        AccountKind::Merchant,
        AccountKind::AgentFloat,
        AccountKind::OperatorFloat,
        AccountKind::Suspense,
        AccountKind::Fees,
    ];

    /// The name used in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            AccountKind::Customer => "customer",
            AccountKind::Merchant => "merchant",
            AccountKind::AgentFloat => "agent_float",
            AccountKind::OperatorFloat => "operator_float",
            AccountKind::Suspense => "suspense",
            AccountKind::Fees => "fees",
        }
    }

    /// Parses [`AccountKind::as_str`]'s names.
    pub fn parse(text: &str) -> Option<AccountKind> {
        AccountKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
    }

    /// The balance floor an account of this kind gets unless the creator says otherwise: zero for
    /// everything that holds real customers' or agents' money, none for the operator float (it
    /// issues money) and for suspense (it holds both sides of unmatched items).
    pub fn default_balance_min(self) -> Option<i64> {
        match self {
            AccountKind::OperatorFloat | AccountKind::Suspense => None,
            AccountKind::Customer
            | AccountKind::Merchant
            | AccountKind::AgentFloat
            | AccountKind::Fees => Some(0),
        }
    }
}

/// The balance bounds of an account, in minor units, checked in the same atomic step as every
/// transfer that touches it. `None` means unbounded on that side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BalanceLimits {
    /// The balance, less pending debits, must stay at or above this.
    pub balance_min: Option<i64>,
    /// The balance, plus pending credits, must stay at or below this.
    pub balance_max: Option<i64>,
}

/// An account to create.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewAccount {
    /// Client-chosen id; creating the same account twice is harmless.
    pub id: AccountId,
    /// What it is for.
    pub kind: AccountKind,
    /// The one currency it holds.
    pub currency: Currency,
    /// Balance bounds.
    pub limits: BalanceLimits,
}

/// An account as stored: its definition and its four running sums (all in minor units).
///
/// The balance is `credits_posted - debits_posted`: positive when the operator owes the holder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Id.
    pub id: AccountId,
    /// Kind.
    pub kind: AccountKind,
    /// Currency.
    pub currency: Currency,
    /// Balance bounds.
    pub limits: BalanceLimits,
    /// Sum of pending debits not yet posted or voided.
    pub debits_pending: i64,
    /// Sum of posted debits.
    pub debits_posted: i64,
    /// Sum of pending credits not yet posted or voided.
    pub credits_pending: i64,
    /// Sum of posted credits.
    pub credits_posted: i64,
    /// When the account was created.
    pub created_at: Timestamp,
    /// Sequence number of the newest transfer that debits or credits this account (0: none).
    /// Each transfer points back to the previous one of both its accounts, so an account's
    /// history is a chain walked from here, and the store needs no secondary index on accounts.
    pub last_sequence: u64,
}

impl Account {
    /// A fresh account with zero sums.
    pub fn open(definition: &NewAccount, now: Timestamp) -> Account {
        Account {
            id: definition.id.clone(),
            kind: definition.kind,
            currency: definition.currency,
            limits: definition.limits,
            debits_pending: 0,
            debits_posted: 0,
            credits_pending: 0,
            credits_posted: 0,
            created_at: now,
            last_sequence: 0,
        }
    }

    /// Posted balance: credits less debits.
    pub fn balance(&self) -> i64 {
        self.credits_posted - self.debits_posted
    }

    /// What may still be debited: the posted balance less pending debits.
    pub fn available(&self) -> i64 {
        self.credits_posted - self.debits_posted - self.debits_pending
    }

    /// Whether this stored account was created from `definition`.
    pub fn matches(&self, definition: &NewAccount) -> bool {
        self.id == definition.id
            && self.kind == definition.kind
            && self.currency == definition.currency
            && self.limits == definition.limits
    }
}

/// What a transfer does.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type", content = "pending_id")]
pub enum TransferKind {
    /// Moves money at once.
    Posted,
    /// Reserves money: debits pending, credits pending, until posted or voided.
    Pending,
    /// Posts the named pending transfer in full.
    PostPending(TransferId),
    /// Voids the named pending transfer: the reservation is released.
    VoidPending(TransferId),
}

/// A transfer request: move `amount` from `debit_account` to `credit_account`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    /// Client-chosen idempotency key.
    pub id: TransferId,
    /// The account that pays.
    pub debit_account: AccountId,
    /// The account that is paid.
    pub credit_account: AccountId,
    /// How much; both accounts must be in this currency. For post and void it must equal the
    /// pending transfer's amount.
    pub amount: Amount,
    /// Posted at once, pending, or the resolution of a pending transfer.
    pub kind: TransferKind,
    /// Free text for statements (at most [`MEMO_LENGTH_MAX`] bytes).
    pub memo: String,
}

/// Where a pending transfer stands. Posted and voided are final.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PendingState {
    /// Reserved, waiting.
    Pending,
    /// Posted by a later transfer.
    Posted,
    /// Voided by a later transfer.
    Voided,
}

impl PendingState {
    /// Name in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            PendingState::Pending => "pending",
            PendingState::Posted => "posted",
            PendingState::Voided => "voided",
        }
    }

    /// Parses [`PendingState::as_str`]'s names.
    pub fn parse(text: &str) -> Option<PendingState> {
        [
            PendingState::Pending,
            PendingState::Posted,
            PendingState::Voided,
        ]
        .into_iter()
        .find(|state| state.as_str() == text)
    }
}

/// A transfer as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferRecord {
    /// The request as it was accepted.
    #[serde(flatten)]
    pub transfer: Transfer,
    /// For a pending transfer: where it stands now. `None` for every other kind.
    pub pending_state: Option<PendingState>,
    /// Commit order: increases with every stored transfer.
    pub sequence: u64,
    /// When it was committed.
    pub committed_at: Timestamp,
    /// Sequence of the debit account's previous transfer (0: this is its first).
    pub debit_previous: u64,
    /// Sequence of the credit account's previous transfer (0: this is its first).
    pub credit_previous: u64,
}

impl TransferRecord {
    /// The previous transfer in `account`'s history, if `account` is one of this transfer's
    /// accounts and there is one.
    pub fn previous_for(&self, account: &AccountId) -> Option<u64> {
        let previous = if self.transfer.debit_account == *account {
            self.debit_previous
        } else if self.transfer.credit_account == *account {
            self.credit_previous
        } else {
            return None;
        };
        (previous != 0).then_some(previous)
    }
}

/// A small versioned document stored beside the ledger (rail state: purse shadows, fraud flags,
/// outgoing SMS…), written atomically with the transfers of its batch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Groups records (e.g. `purse`).
    pub namespace: String,
    /// Unique within the namespace.
    pub key: String,
    /// The document.
    pub value: Vec<u8>,
    /// 1 on first write, +1 on every write after.
    pub version: u64,
}

/// Writes (or deletes, with `value: None`) a record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordWrite {
    /// Namespace.
    pub namespace: String,
    /// Key.
    pub key: String,
    /// New value, or `None` to delete.
    pub value: Option<Vec<u8>>,
    /// Optimistic concurrency: when set, the batch is refused unless the record is at this
    /// version now (0 = must not exist).
    pub expected_version: Option<u64>,
}

/// Checks, without writing, that a record is at a version: the batch is refused
/// ([`Refusal::RecordVersionMismatch`]) unless it is. What a batch decided on a record it read
/// earlier (a caller's credentials, say) then holds when the batch commits, or nothing of the
/// batch does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordCheck {
    /// Namespace.
    pub namespace: String,
    /// Key.
    pub key: String,
    /// The version the record must be at (0 = must not exist), counting writes made earlier in
    /// the same group.
    pub version: u64,
}

/// One step of a batch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// Create an account (idempotent).
    CreateAccount(NewAccount),
    /// Move money.
    Transfer(Transfer),
    /// Change an account's balance limits; the new limits must hold for the current balance.
    SetLimits {
        /// Account.
        account: AccountId,
        /// New limits.
        limits: BalanceLimits,
    },
    /// Write a record.
    PutRecord(RecordWrite),
    /// Check a record's version; writes nothing.
    CheckRecord(RecordCheck),
}

/// Operations that commit together or not at all, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// At most [`BATCH_OPERATIONS_MAX`].
    pub operations: Vec<Operation>,
}

impl Batch {
    /// A batch of transfers only.
    pub fn transfers(transfers: impl IntoIterator<Item = Transfer>) -> Batch {
        Batch {
            operations: transfers.into_iter().map(Operation::Transfer).collect(),
        }
    }
}

/// What one operation of a committed batch did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Outcome {
    /// The account was created.
    AccountCreated,
    /// The same account already existed; nothing changed.
    AccountExists,
    /// The transfer was applied now.
    TransferCommitted,
    /// The same transfer had been applied before; nothing changed.
    TransferExists,
    /// Limits changed.
    LimitsSet,
    /// The record was written (or deleted) and is now at this version.
    RecordWritten {
        /// New version (0 after a delete).
        version: u64,
    },
    /// The record was at the version checked; nothing changed.
    RecordChecked,
}

/// Why a batch was refused. Nothing of a refused batch is applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("operation {} of the batch was refused: {reason}", index + 1)]
pub struct BatchRefusal {
    /// Zero-based index of the first operation that failed.
    pub index: usize,
    /// Why.
    pub reason: Refusal,
}

/// Why an operation was refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case", tag = "code")]
#[non_exhaustive]
pub enum Refusal {
    /// The batch is empty.
    #[error("the batch is empty")]
    EmptyBatch,
    /// More than [`BATCH_OPERATIONS_MAX`] operations.
    #[error("the batch has more than {BATCH_OPERATIONS_MAX} operations")]
    BatchTooLarge,
    /// An account with this id exists with another definition.
    #[error("account {account} already exists with another kind, currency or limits")]
    AccountConflict {
        /// The id.
        account: AccountId,
    },
    /// No such account.
    #[error("unknown account {account}")]
    UnknownAccount {
        /// The id.
        account: AccountId,
    },
    /// The limits given are inverted, or do not hold for the account's current balance.
    #[error("limits for account {account} are inconsistent or do not hold for its balance")]
    InvalidLimits {
        /// The id.
        account: AccountId,
    },
    /// A transfer with this id exists with another body.
    #[error("transfer {transfer} already exists with a different body")]
    TransferConflict {
        /// The id.
        transfer: TransferId,
    },
    /// Debit and credit name the same account.
    #[error("transfer {transfer} debits and credits the same account")]
    SameAccount {
        /// The id.
        transfer: TransferId,
    },
    /// Zero amount.
    #[error("transfer {transfer} has a zero amount")]
    ZeroAmount {
        /// The id.
        transfer: TransferId,
    },
    /// The transfer's currency differs from an account's.
    #[error(
        "transfer {transfer} is in {transfer_currency} but account {account} holds {account_currency}"
    )]
    CurrencyMismatch {
        /// The id.
        transfer: TransferId,
        /// The account.
        account: AccountId,
        /// Transfer currency.
        transfer_currency: Currency,
        /// Account currency.
        account_currency: Currency,
    },
    /// The debit would take the account below its minimum.
    #[error("transfer {transfer}: account {account} has insufficient funds")]
    InsufficientFunds {
        /// The id.
        transfer: TransferId,
        /// The account.
        account: AccountId,
    },
    /// The credit would take the account above its maximum.
    #[error("transfer {transfer}: account {account} would exceed its maximum balance")]
    BalanceMaxExceeded {
        /// The id.
        transfer: TransferId,
        /// The account.
        account: AccountId,
    },
    /// A running sum would overflow 64 bits.
    #[error("transfer {transfer} would overflow a balance")]
    Overflow {
        /// The id.
        transfer: TransferId,
    },
    /// Post or void of a transfer that does not exist or is not pending.
    #[error("transfer {transfer}: {pending} is not a pending transfer")]
    PendingNotFound {
        /// The id.
        transfer: TransferId,
        /// The referenced id.
        pending: TransferId,
    },
    /// Post or void of a pending transfer already posted or voided.
    #[error("transfer {transfer}: pending transfer {pending} is already {state}")]
    PendingAlreadyResolved {
        /// The id.
        transfer: TransferId,
        /// The referenced id.
        pending: TransferId,
        /// Its state.
        state: String,
    },
    /// Post or void whose accounts or amount differ from the pending transfer's.
    #[error(
        "transfer {transfer} does not match pending transfer {pending} (accounts and amount must be the same)"
    )]
    PendingMismatch {
        /// The id.
        transfer: TransferId,
        /// The referenced id.
        pending: TransferId,
    },
    /// Memo too long.
    #[error("transfer {transfer}: the memo is longer than {MEMO_LENGTH_MAX} bytes")]
    MemoTooLong {
        /// The id.
        transfer: TransferId,
    },
    /// Record namespace, key or value out of bounds.
    #[error("record {namespace}/{key}: namespace, key or value too long or empty")]
    RecordInvalid {
        /// Namespace.
        namespace: String,
        /// Key.
        key: String,
    },
    /// Record version differs from the expected one.
    #[error("record {namespace}/{key} is at version {actual}, not {expected}")]
    RecordVersionMismatch {
        /// Namespace.
        namespace: String,
        /// Key.
        key: String,
        /// Expected.
        expected: u64,
        /// Actual.
        actual: u64,
    },
}

/// Per-currency sums over all accounts. Both sums must be zero: every transfer debits one account
/// exactly as much as it credits another.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurrencyTotal {
    /// Currency.
    pub currency: Currency,
    /// Number of accounts.
    pub accounts: u64,
    /// Sum of posted balances (credits − debits).
    pub posted_sum: i128,
    /// Sum of pending credits − pending debits.
    pub pending_sum: i128,
}

impl CurrencyTotal {
    /// True when both sums are zero.
    pub fn balanced(&self) -> bool {
        self.posted_sum == 0 && self.pending_sum == 0
    }
}
