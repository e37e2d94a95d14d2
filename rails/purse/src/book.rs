//! The operator's book kept in ledger records, and the operator's decisions over it.
//!
//! **Records** (namespace [`NAMESPACE`]), one per piece, so that an operation reads and writes
//! only what it touches (a sync costs O(its entries and counterparties), never O(all purses)):
//!
//! | key | record type | value |
//! |---|---|---|
//! | `book` | [`BookHeader`] | shared state: operator, currency, scheme epochs, id counters, blocked phones |
//! | `shadow/<purse id>` | [`ShadowAccount`] | one purse's shadow account |
//! | `phone/<E.164>` | [`PhoneIndex`] | the purse id of a phone |
//! | `debits/<payee>/<payer>` | [`OpenDebits`] | debits the payer reported that the payee has not |
//! | `credits/<payer>/<payee>` | [`OpenCredits`] | credits the payee reported that the payer has not |
//! | `pair/<low id>-<high id>` | [`PairVersion`] | pairwise-key version of a pair |
//! | `syncs/<purse id>` | [`SyncHistory`] | the purse's last [`SYNC_HISTORY_MAX`] syncs, for the console |
//! | `smsin/…`, `statement/…` | see [`crate::sms_book`] | SMS parts and statement counters |
//! | `cfg:records-sealed` | [`crate::seal::SealedMarker`] | that an earlier release's records were sealed |
//!
//! Every record is JSON; format version 1 is the shape release 0.1 wrote (the header also
//! carries its own `version` field). A record that does not decode is an error naming its key.
//! Every record above but the SMS book's is stored **sealed** ([`crate::seal`]): a MAC under a
//! key derived from the master key over its storage key and content. A decision checks the seal
//! of every record it loaded before it decides anything, and refuses the whole operation when
//! one is wrong or absent ([`BookError::Tampered`], [`refuse_tampered`]).
//!
//! **Decisions.** An operation loads its pieces ([`LoadPlan`], [`load`]), builds a partial
//! [`OperatorBook`], runs, and returns [`Effects`]: the postings, the fraud flags and the changed
//! records, each written on condition that it is still at the version read. The server's runner
//! commits them in one batch (or a few, for a huge upload: see [`Effects::into_batches`]), so the
//! book and the ledger never disagree, and a conflicting writer in another process turns into a
//! fresh load and decision instead of a lost update.
//!
//! **Ledger accounts**: `purse:<E.164>` per purse (kind `customer`, or `agent_float` for agents),
//! with no balance floor, because the shadow follows what the purse reports and a cloned purse
//! spent twice must be able to go negative (the loss is then visible on its account); the
//! operator's float and suspense accounts ([`offpay_operator::accounts`]).

use alloc::borrow::ToOwned;
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use offpay_ledger::{
    AccountId, AccountKind, Amount, BalanceLimits, Currency, LedgerStore, NewAccount, Operation,
    RECORD_PAGE_MAX, RecordWrite, StoreError, Transfer, TransferId, TransferKind,
};
use offpay_operator::accounts::{OPERATOR_FLOAT, SUSPENSE, operator_account_id, operator_accounts};
use offpay_operator::record::{RecordError, StoredRecord, corrupt, decode_json, encode_json};
use offpay_operator::{Decision, Effects, FraudFlag};
use serde::{Deserialize, Serialize};

use crate::error::PurseError;
use crate::operator::{
    BalanceMove, BookHeader, BookParts, CreditKey, DebitKey, Flag, LedgerAccount, OpenCredit,
    OpenDebit, OperatorBook, OperatorSecrets, Posting, ShadowAccount, sync_counterparties,
};
use crate::purse::{EntryKind, OfflineLimits};
use crate::seal::{MacState, RecordSealer, Tampered, TamperedRecord};
use crate::sync::SyncUpload;
use crate::trust::TrustClass;
use crate::types::{Phone, PurseId, PurseKind, Timestamp};

/// Record namespace of the operator book.
pub const NAMESPACE: &str = "purse";
/// Format version of the book's records (the JSON shapes release 0.1 wrote).
pub const RECORD_FORMAT_VERSION: u32 = 1;
/// Pages read when scanning one purse's open payments (each of `RECORD_PAGE_MAX` records).
pub const SCAN_PAGES_MAX: usize = 1024;
/// Milliseconds per second (ledger timestamps are milliseconds, purse timestamps seconds).
const MILLISECONDS_PER_SECOND: u64 = 1000;
/// Rail name in the fraud queue.
pub const RAIL: &str = "purse";
/// Prefix of a purse's ledger account.
pub const ACCOUNT_PREFIX: &str = "purse:";
/// Prefix of an agent's settlement account (what the operator owes it for value handed back).
pub const SETTLEMENT_PREFIX: &str = "settlement:";

pub use crate::params::VALIDITY_DAYS_MAX;
/// Longest memo on an operator credit, in bytes.
pub const FLOAT_MEMO_BYTES_MAX: usize = crate::params::MEMO_BYTES_MAX;

pub(crate) const KEY_BOOK: &str = "book";

const _: () = assert!(SCAN_PAGES_MAX > 0);

/// Why an operator operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BookError {
    /// The protocol refused the message or request.
    #[error(transparent)]
    Purse(#[from] PurseError),
    /// The store failed to read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored record does not decode.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// The operator's request is out of bounds; nothing changed.
    #[error("{message}")]
    Invalid {
        /// A stable code for machines.
        code: &'static str,
        /// What is wrong, for people.
        message: String,
    },
    /// A record the operation loaded was written or changed outside the operator's code (its
    /// seal is wrong or absent): refused whole, nothing moved (see [`refuse_tampered`]).
    #[error(transparent)]
    Tampered(#[from] Tampered),
    /// A broken invariant of this module.
    #[error("internal error: {0}")]
    Internal(&'static str),
}

/// A decision's result with a refusal for tampered records turned into a decision of its own:
/// commit one `record_tampered` flag per record and nothing else, then answer the refusal.
/// Every runner of the book's decisions wraps them in this, so that the flag is committed
/// while the operation moves nothing.
pub fn refuse_tampered<T>(
    result: Result<Decision<T>, BookError>,
    now: offpay_ledger::Timestamp,
) -> Result<Decision<Result<T, Tampered>>, BookError> {
    match result {
        Ok(Decision::Commit { effects, reply }) => Ok(Decision::commit(effects, Ok(reply))),
        Ok(Decision::Reload) => Ok(Decision::Reload),
        Err(BookError::Tampered(tampered)) => {
            Ok(Decision::commit(tampered.effects(now), Err(tampered)))
        }
        Err(error) => Err(error),
    }
}

// ---------------------------------------------------------------------------------------------
// Record types.

macro_rules! json_record {
    ($type:ty) => {
        impl StoredRecord for $type {
            const NAMESPACE: &'static str = NAMESPACE;
            const FORMAT_VERSION: u32 = RECORD_FORMAT_VERSION;
            fn encode(&self, key: &str) -> Result<Vec<u8>, RecordError> {
                encode_json(self, key)
            }
            fn decode(key: &str, bytes: &[u8]) -> Result<Self, RecordError> {
                decode_json(key, crate::seal::content(bytes))
            }
        }
    };
}

/// `phone/<E.164>`: the purse id of a phone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PhoneIndex(pub u64);

/// `debits/<payee>/<payer>`: the payer's reported debits the payee has not reported.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OpenDebits(pub Vec<(DebitKey, OpenDebit)>);

/// `credits/<payer>/<payee>`: the payee's reported credits the payer has not reported.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OpenCredits(pub Vec<(CreditKey, OpenCredit)>);

/// `pair/<low id>-<high id>`: the version of a pair's pairwise key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PairVersion(pub u16);

/// Syncs kept per purse in its [`SyncHistory`].
pub const SYNC_HISTORY_MAX: usize = 50;
/// Flag names kept per sync in a [`SyncRecord`] (the fraud queue holds every flag).
pub const SYNC_FLAGS_KEPT_MAX: usize = 16;
/// Key prefix of the purses' sync histories.
pub const SYNC_HISTORY_PREFIX: &str = "syncs/";

/// Key of purse `purse_id`'s sync history.
pub fn sync_history_key(purse_id: PurseId) -> String {
    format!("{SYNC_HISTORY_PREFIX}{}", purse_id.0)
}

/// `syncs/<purse id>`: the purse's last [`SYNC_HISTORY_MAX`] accepted syncs, newest first,
/// written in the batch of each sync (so it never tells of a sync that did not commit).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SyncHistory(pub Vec<SyncRecord>);

/// One accepted sync of a purse.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncRecord {
    /// The upload's sequence number.
    pub sequence: u32,
    /// When it was accepted (operator clock), milliseconds since the epoch.
    pub at_ms: u64,
    /// Entries the upload carried.
    pub entries: u32,
    /// Ledger postings it made.
    pub postings: u32,
    /// Payments it matched.
    pub matched: u32,
    /// The balance the purse reported, minor units.
    pub reported_balance_minor: i64,
    /// What the server's shadow says the purse should report after it, minor units (what it
    /// holds plus what the operator moved out of it).
    pub shadow_balance_minor: i64,
    /// Names of the flags it raised (the first [`SYNC_FLAGS_KEPT_MAX`]).
    pub flags: Vec<String>,
    /// How many flags it raised.
    pub flags_total: u32,
}

json_record!(SyncHistory);
json_record!(PhoneIndex);
json_record!(OpenDebits);
json_record!(OpenCredits);
json_record!(PairVersion);
json_record!(ShadowAccount);

impl StoredRecord for BookHeader {
    const NAMESPACE: &'static str = NAMESPACE;
    const FORMAT_VERSION: u32 = RECORD_FORMAT_VERSION;
    fn encode(&self, key: &str) -> Result<Vec<u8>, RecordError> {
        encode_json(self, key)
    }
    fn decode(key: &str, bytes: &[u8]) -> Result<Self, RecordError> {
        let header: BookHeader = decode_json(key, crate::seal::content(bytes))?;
        if header.version != crate::params::FORMAT_VERSION {
            return Err(corrupt::<BookHeader>(
                key,
                format!("book format version {}", header.version),
            ));
        }
        Ok(header)
    }
}

fn shadow_key(purse_id: PurseId) -> String {
    format!("shadow/{}", purse_id.0)
}
fn phone_key(phone: Phone) -> String {
    format!("phone/{phone}")
}
fn debits_key(payee: u64, payer: u64) -> String {
    format!("debits/+{payee}/+{payer}")
}
fn credits_key(payer: u64, payee: u64) -> String {
    format!("credits/+{payer}/+{payee}")
}
fn pair_key(low: PurseId, high: PurseId) -> String {
    format!("pair/{}-{}", low.0, high.0)
}

// ---------------------------------------------------------------------------------------------
// Loading: the pieces of the book an operation needs.

/// Which records an operation needs.
#[derive(Clone, Debug, Default)]
pub struct LoadPlan {
    /// The purse the operation is about, by id (sync) ...
    pub purse: Option<PurseId>,
    /// ... or by phone (admin operations).
    pub phone: Option<Phone>,
    /// Scan the purse's open debits (as payee) and open credits (as payer).
    pub scan_own: bool,
    /// Payees of the purse's debits: the open debits it may add to.
    pub payees: BTreeSet<Phone>,
    /// Payers of its credits and its pairwise peers: their shadows, the open credits it may add
    /// to, and the pair's key version.
    pub counterparties: BTreeSet<Phone>,
    /// Extra keys to read even if absent (new records of a provisioning).
    pub extra: Vec<String>,
}

/// Records as read: key → (version, value). Version 0 and `None`: read and absent.
#[derive(Clone, Debug, Default)]
pub struct RecordSet {
    records: BTreeMap<String, (u64, Option<Vec<u8>>)>,
}

impl RecordSet {
    fn read(&mut self, store: &mut dyn LedgerStore, key: &str) -> Result<(), StoreError> {
        if self.records.contains_key(key) {
            return Ok(());
        }
        let entry = match store.record(NAMESPACE, key)? {
            Some(record) => (record.version, Some(record.value)),
            None => (0, None),
        };
        self.records.insert(key.to_owned(), entry);
        Ok(())
    }

    fn scan(&mut self, store: &mut dyn LedgerStore, prefix: &str) -> Result<(), StoreError> {
        let mut after: Option<String> = None;
        for _ in 0..SCAN_PAGES_MAX {
            let page = store.records(NAMESPACE, prefix, after.as_deref(), RECORD_PAGE_MAX)?;
            let full = page.len() == RECORD_PAGE_MAX;
            after = page.last().map(|record| record.key.clone());
            for record in page {
                self.records
                    .insert(record.key, (record.version, Some(record.value)));
            }
            if !full {
                return Ok(());
            }
        }
        Err(StoreError::Corrupt(format!(
            "more than {} purse records under {prefix}",
            SCAN_PAGES_MAX * RECORD_PAGE_MAX
        )))
    }

    fn value(&self, key: &str) -> Option<&[u8]> {
        self.records
            .get(key)
            .and_then(|(_, value)| value.as_deref())
    }

    /// The version a key was read at (0: absent or not read).
    pub(crate) fn version_of(&self, key: &str) -> u64 {
        self.records.get(key).map_or(0, |(version, _)| *version)
    }

    pub(crate) fn decoded_record<R: StoredRecord>(
        &self,
        key: &str,
    ) -> Result<Option<R>, RecordError> {
        self.decoded(key)
    }

    fn decoded<R: StoredRecord>(&self, key: &str) -> Result<Option<R>, RecordError> {
        self.value(key)
            .map(|bytes| R::decode(key, bytes))
            .transpose()
    }

    /// The phone of purse `purse_id`, if its shadow was loaded.
    pub fn shadow_phone(&self, purse_id: PurseId) -> Result<Option<Phone>, RecordError> {
        Ok(self
            .decoded::<ShadowAccount>(&shadow_key(purse_id))?
            .map(|shadow| shadow.phone))
    }

    fn phone_purse(&self, phone: Phone) -> Result<Option<PurseId>, RecordError> {
        Ok(self
            .decoded::<PhoneIndex>(&phone_key(phone))?
            .map(|index| PurseId(index.0)))
    }
}

fn store_error(error: RecordError) -> StoreError {
    match error {
        RecordError::Store(error) => error,
        other => StoreError::Corrupt(other.to_string()),
    }
}

/// Runs `plan` against the store (on any connection; every read is one committed state when
/// run inside a read transaction).
pub fn load(store: &mut dyn LedgerStore, plan: &LoadPlan) -> Result<RecordSet, StoreError> {
    let mut set = RecordSet::default();
    set.read(store, KEY_BOOK)?;
    for key in &plan.extra {
        set.read(store, key)?;
    }
    let mut own: Option<(PurseId, Phone)> = None;
    if let Some(phone) = plan.phone {
        set.read(store, &phone_key(phone))?;
        if let Some(purse_id) = set.phone_purse(phone).map_err(store_error)? {
            set.read(store, &shadow_key(purse_id))?;
            own = Some((purse_id, phone));
        }
    }
    if let Some(purse_id) = plan.purse {
        set.read(store, &shadow_key(purse_id))?;
        if let Some(phone) = set.shadow_phone(purse_id).map_err(store_error)? {
            set.read(store, &phone_key(phone))?;
            own = Some((purse_id, phone));
        }
    }
    let Some((purse_id, phone)) = own else {
        return Ok(set);
    };
    if plan.scan_own {
        set.scan(store, &format!("debits/{phone}/"))?;
        set.scan(store, &format!("credits/{phone}/"))?;
    }
    // Records under the purse's own prefixes came with the scans; a sync only adds records
    // under its counterparties' prefixes.
    for payee in &plan.payees {
        if *payee != phone {
            set.read(store, &debits_key(payee.number(), phone.number()))?;
        }
    }
    for counterparty in &plan.counterparties {
        if *counterparty == phone {
            continue;
        }
        set.read(store, &phone_key(*counterparty))?;
        if let Some(peer) = set.phone_purse(*counterparty).map_err(store_error)? {
            set.read(store, &shadow_key(peer))?;
            let (low, high) = if purse_id <= peer {
                (purse_id, peer)
            } else {
                (peer, purse_id)
            };
            set.read(store, &pair_key(low, high))?;
        }
        set.read(store, &credits_key(counterparty.number(), phone.number()))?;
        if !plan.scan_own {
            set.read(store, &debits_key(phone.number(), counterparty.number()))?;
            set.read(store, &credits_key(phone.number(), counterparty.number()))?;
        }
    }
    Ok(set)
}

// ---------------------------------------------------------------------------------------------
// The operator: secrets, currency, and its decisions.

/// What a sync did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncReply {
    /// The authenticated answer for the purse.
    pub answer: Vec<u8>,
    /// Ledger postings made (or found already made).
    pub postings: usize,
    /// Payments matched.
    pub matched: usize,
    /// Fraud flags raised.
    pub flags: usize,
    /// The upload's sequence number.
    pub sequence: u32,
}

/// A provisioned purse.
#[derive(Clone)]
pub struct Provisioned {
    /// Its id.
    pub purse_id: PurseId,
    /// Its phone.
    pub phone: Phone,
    /// Customer or agent.
    pub kind: PurseKind,
    /// The provisioning record (contains keys).
    pub provisioning: Vec<u8>,
}

impl core::fmt::Debug for Provisioned {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Provisioned")
            .field("purse_id", &self.purse_id)
            .field("phone", &self.phone)
            .field("kind", &self.kind)
            .field("provisioning", &"<redacted>")
            .finish()
    }
}

/// An operator change to one purse (the admin operations).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PurseChange {
    /// Queue an operator credit (float top-up) for the purse's next sync.
    Float {
        /// How much.
        amount: Amount,
        /// What for.
        memo: String,
    },
    /// New offline limits, delivered at the next sync.
    Limits {
        /// The limits.
        limits: OfflineLimits,
        /// How long a sync keeps them valid.
        validity_seconds: u64,
    },
    /// Block or unblock (every purse learns it at its next sync).
    Blocked(bool),
    /// Unblock the PIN at the next sync.
    UnblockPin,
    /// Issue the next one-time PIN reset code (the reply) to a holder the operator identified.
    PinReset,
    /// The holder's language (a code of two or three lowercase letters; `None`: the operator's
    /// default), for the statements the operator sends.
    Language(Option<String>),
    /// Agent settlement, step 1: take `amount` of the agent purse's value back at its next sync.
    Settle {
        /// How much.
        amount: Amount,
    },
    /// Agent settlement, step 2: the operator paid the agent `amount` for value handed back.
    SettlementPaid {
        /// How much.
        amount: Amount,
        /// The payment's reference (bank or cash receipt); names the ledger transfer.
        reference: String,
    },
}

impl PurseChange {
    /// Refuses a change outside the operator's bounds.
    pub fn check(&self) -> Result<(), BookError> {
        match self {
            PurseChange::Float { memo, .. } if memo.len() > FLOAT_MEMO_BYTES_MAX => {
                Err(BookError::Invalid {
                    code: "memo_too_long",
                    message: format!("the memo is longer than {FLOAT_MEMO_BYTES_MAX} bytes"),
                })
            }
            PurseChange::Limits {
                validity_seconds, ..
            } if *validity_seconds == 0
                || *validity_seconds > VALIDITY_DAYS_MAX * crate::params::SECONDS_PER_DAY =>
            {
                Err(BookError::Invalid {
                    code: "invalid_validity",
                    message: format!("validity_days must be 1 to {VALIDITY_DAYS_MAX}"),
                })
            }
            PurseChange::Language(Some(code))
                if !(2..=3).contains(&code.len())
                    || !code.bytes().all(|byte| byte.is_ascii_lowercase()) =>
            {
                Err(BookError::Invalid {
                    code: "invalid_language",
                    message: "a language is a code such as en, sw or fr".to_owned(),
                })
            }
            _ => Ok(()),
        }
    }
}

/// The operator's half of the purse rail over its ledger records: its secrets and currency.
pub struct PurseOperator {
    secrets: OperatorSecrets,
    sealer: RecordSealer,
    currency: Currency,
    server_currency: Currency,
}

impl core::fmt::Debug for PurseOperator {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PurseOperator")
            .field("operator", &self.secrets.operator())
            .field("currency", &self.currency)
            .finish_non_exhaustive()
    }
}

/// The ledger account of the purse with `phone`.
pub fn purse_account_id(phone: Phone) -> Result<AccountId, BookError> {
    AccountId::new(format!("{ACCOUNT_PREFIX}{phone}"))
        .map_err(|_| BookError::Internal("purse account id"))
}

/// The ledger account of what the operator owes the agent with `phone` for value it handed back.
pub fn settlement_account_id(phone: Phone) -> Result<AccountId, BookError> {
    AccountId::new(format!("{SETTLEMENT_PREFIX}{phone}"))
        .map_err(|_| BookError::Internal("settlement account id"))
}

fn ledger_timestamp_seconds(now: offpay_ledger::Timestamp) -> Timestamp {
    Timestamp(now.0 / MILLISECONDS_PER_SECOND)
}

impl PurseOperator {
    /// An operator with `secrets`, for purses in `currency` (the server's currency).
    pub fn new(secrets: OperatorSecrets, currency: Currency) -> PurseOperator {
        PurseOperator {
            sealer: RecordSealer::new(&secrets),
            secrets,
            currency,
            server_currency: currency,
        }
    }

    /// The secrets (to open uploads before loading).
    pub fn secrets(&self) -> &OperatorSecrets {
        &self.secrets
    }

    /// The sealer of the book's records.
    pub fn sealer(&self) -> &RecordSealer {
        &self.sealer
    }

    /// Checks the seal of every sealed record `set` holds; any wrong or absent one refuses the
    /// operation ([`BookError::Tampered`], naming every such record).
    pub fn check_sealed(&self, set: &RecordSet) -> Result<(), BookError> {
        let mut tampered = Vec::new();
        for (key, (_, value)) in &set.records {
            let Some(stored) = value else { continue };
            if !crate::seal::is_sealed_key(key) {
                continue;
            }
            let state = self.sealer.state(key, stored);
            if state != MacState::Authentic {
                tampered.push(TamperedRecord::new(
                    key,
                    stored,
                    state,
                    crate::seal::shadow_phone(key, stored),
                ));
            }
        }
        if tampered.is_empty() {
            Ok(())
        } else {
            Err(Tampered(tampered).into())
        }
    }

    /// Sealed records a sync loaded that are authentic but disagree with each other: an earlier
    /// copy of one was put back (a rollback). A shadow is checked against its purse's sync
    /// history (no sync the history holds may be newer than the shadow's last accepted upload)
    /// and against the header's blocked list (a shadow is blocked exactly when the header lists
    /// its phone). Refused like a tampered record, naming both.
    fn check_not_rolled_back(
        &self,
        loaded: &RecordSet,
        book: &OperatorBook,
    ) -> Result<(), BookError> {
        let mut stale = Vec::new();
        let mut push = |key: &str| {
            if let Some(Some(stored)) = loaded.records.get(key).map(|(_, value)| value.as_ref())
                && !stale
                    .iter()
                    .any(|record: &TamperedRecord| record.key == key)
            {
                stale.push(TamperedRecord::new(
                    key,
                    stored,
                    MacState::RolledBack,
                    crate::seal::shadow_phone(key, stored),
                ));
            }
        };
        let blocked = book.header().blocked;
        for (key, (_, value)) in &loaded.records {
            let Some(stored) = value else { continue };
            if let Some(id) = key.strip_prefix(SYNC_HISTORY_PREFIX) {
                let purse_id = PurseId(
                    id.parse()
                        .map_err(|_| corrupt::<SyncHistory>(key, "key is not syncs/<id>"))?,
                );
                let newest = SyncHistory::decode(key, stored)?
                    .0
                    .iter()
                    .map(|record| record.sequence)
                    .max();
                if let (Some(newest), Some(shadow)) = (newest, book.shadow(purse_id))
                    && newest > shadow.last_sequence
                {
                    push(&shadow_key(purse_id));
                    push(key);
                }
            } else if key.starts_with("shadow/") {
                let shadow = ShadowAccount::decode(key, stored)?;
                if shadow.blocked != blocked.contains(&shadow.phone) {
                    push(key);
                    push(KEY_BOOK);
                }
            }
        }
        if stale.is_empty() {
            Ok(())
        } else {
            Err(Tampered(stale).into())
        }
    }

    fn account_id(&self, name: &str) -> Result<AccountId, BookError> {
        operator_account_id(name, self.currency, self.server_currency)
            .ok_or(BookError::Internal("operator account id"))
    }

    fn header_of(&self, set: &RecordSet) -> Result<BookHeader, BookError> {
        match set.decoded::<BookHeader>(KEY_BOOK)? {
            Some(header) => {
                if header.operator != self.secrets.operator() {
                    return Err(PurseError::WrongOperator {
                        expected: header.operator,
                        found: self.secrets.operator(),
                    }
                    .into());
                }
                Ok(header)
            }
            None => Ok(OperatorBook::new(self.secrets.operator(), self.currency).header()),
        }
    }

    /// The next purse id the stored header would assign (read before a provisioning's plan).
    pub fn next_purse_id(&self, set: &RecordSet) -> Result<PurseId, BookError> {
        self.check_sealed(set)?;
        Ok(PurseId(self.header_of(set)?.next_purse_id))
    }

    fn parts_of(&self, set: &RecordSet) -> Result<BookParts, BookError> {
        let mut parts = BookParts {
            header: self.header_of(set)?,
            shadows: Vec::new(),
            open_debits: Vec::new(),
            open_credits: Vec::new(),
            pairwise_versions: Vec::new(),
        };
        for (key, (_, value)) in &set.records {
            let Some(bytes) = value else { continue };
            if key.starts_with("shadow/") {
                parts.shadows.push(ShadowAccount::decode(key, bytes)?);
            } else if key.starts_with("debits/") {
                parts.open_debits.extend(OpenDebits::decode(key, bytes)?.0);
            } else if key.starts_with("credits/") {
                parts
                    .open_credits
                    .extend(OpenCredits::decode(key, bytes)?.0);
            } else if let Some(pair) = key.strip_prefix("pair/") {
                let version = PairVersion::decode(key, bytes)?.0;
                let (low, high) = pair
                    .split_once('-')
                    .and_then(|(low, high)| Some((low.parse().ok()?, high.parse().ok()?)))
                    .ok_or_else(|| corrupt::<PairVersion>(key, "key is not pair/<low>-<high>"))?;
                parts
                    .pairwise_versions
                    .push(((PurseId(low), PurseId(high)), version));
            }
        }
        Ok(parts)
    }

    fn book_of(&self, set: &RecordSet) -> Result<OperatorBook, BookError> {
        self.check_sealed(set)?;
        Ok(OperatorBook::from_parts(self.parts_of(set)?)?)
    }

    fn ledger_account(
        &self,
        account: LedgerAccount,
        book: &OperatorBook,
    ) -> Result<AccountId, BookError> {
        match account {
            LedgerAccount::Purse(purse_id) => {
                let shadow = book
                    .shadow(purse_id)
                    .ok_or(BookError::Internal("posting names a purse not loaded"))?;
                purse_account_id(shadow.phone)
            }
            LedgerAccount::AgentSettlement(purse_id) => {
                let shadow = book
                    .shadow(purse_id)
                    .ok_or(BookError::Internal("posting names a purse not loaded"))?;
                settlement_account_id(shadow.phone)
            }
            LedgerAccount::Suspense => self.account_id(SUSPENSE),
            LedgerAccount::OperatorFloat => self.account_id(OPERATOR_FLOAT),
        }
    }

    fn transfer(&self, posting: &Posting, book: &OperatorBook) -> Result<Transfer, BookError> {
        Ok(Transfer {
            id: TransferId::new(posting.transfer_id.clone())
                .map_err(|_| BookError::Internal("posting transfer id"))?,
            debit_account: self.ledger_account(posting.from, book)?,
            credit_account: self.ledger_account(posting.to, book)?,
            amount: posting.amount,
            kind: TransferKind::Posted,
            memo: posting.memo.clone(),
        })
    }

    fn settlement_account(&self, phone: Phone) -> Result<NewAccount, BookError> {
        Ok(NewAccount {
            id: settlement_account_id(phone)?,
            kind: AccountKind::Suspense,
            currency: self.currency,
            limits: BalanceLimits {
                balance_min: None,
                balance_max: None,
            },
        })
    }

    /// The load plan of a sync of `upload` by the purse whose phone is `phone`, and the phones
    /// whose operations it must be serialised with.
    pub fn sync_plan(upload: &SyncUpload, phone: Phone) -> (LoadPlan, BTreeSet<Phone>) {
        let mut locked = sync_counterparties(upload);
        locked.insert(phone);
        let mut payees = BTreeSet::new();
        let mut counterparties: BTreeSet<Phone> =
            upload.pairwise_requests.iter().copied().collect();
        for entry in &upload.entries {
            match entry.kind {
                EntryKind::Debit { payee, .. } => {
                    payees.insert(payee);
                }
                EntryKind::Credit { payer, .. } | EntryKind::PaymentCredit { payer, .. } => {
                    counterparties.insert(payer);
                }
                EntryKind::OperatorCredit { .. } | EntryKind::Settlement { .. } => {}
            }
        }
        let plan = LoadPlan {
            purse: Some(upload.purse_id),
            scan_own: true,
            payees,
            counterparties,
            extra: vec![sync_history_key(upload.purse_id)],
            ..LoadPlan::default()
        };
        (plan, locked)
    }

    /// Reconciles the authenticated upload `bytes` against what `loaded` holds and decides the
    /// postings, flags and record writes. An upload that fails authentication, is malformed,
    /// belongs to another operator or is a replay decides nothing.
    pub fn decide_sync(
        &self,
        loaded: &RecordSet,
        bytes: &[u8],
        now: offpay_ledger::Timestamp,
    ) -> Result<Decision<SyncReply>, BookError> {
        self.decide_sync_answering(loaded, bytes, now, crate::params::ANSWER_CREDITS_MAX)
    }

    /// [`PurseOperator::decide_sync`] with an answer of at most `credits_max` credits (the SMS
    /// path's bound, so that the answer fits its texts).
    pub fn decide_sync_answering(
        &self,
        loaded: &RecordSet,
        bytes: &[u8],
        now: offpay_ledger::Timestamp,
        credits_max: usize,
    ) -> Result<Decision<SyncReply>, BookError> {
        let mut book = self.book_of(loaded)?;
        self.check_not_rolled_back(loaded, &book)?;
        let outcome = book.handle_upload_answering(
            &self.secrets,
            bytes,
            ledger_timestamp_seconds(now),
            credits_max,
        )?;
        let mut effects = Effects::new();
        for posting in &outcome.postings {
            for account in [posting.from, posting.to] {
                if let LedgerAccount::AgentSettlement(purse_id) = account
                    && let Some(shadow) = book.shadow(purse_id)
                {
                    effects.create_account(self.settlement_account(shadow.phone)?);
                }
            }
        }
        for posting in &outcome.postings {
            effects.post(self.transfer(posting, &book)?);
        }
        for flag in &outcome.flags {
            let (fraud, discriminator) = fraud_flag(flag, now);
            effects.flag(&fraud, &discriminator);
        }
        let shadow_balance_minor = book
            .shadow(outcome.purse_id)
            .map_or(0, |shadow| shadow.balance_minor + shadow.moved_out_minor);
        effects.write_all(changed_records(loaded, &book.into_parts(), &self.sealer)?);
        effects.write(sync_history_write(
            loaded,
            &outcome,
            shadow_balance_minor,
            now,
            &self.sealer,
        )?);
        let reply = SyncReply {
            answer: outcome.answer,
            postings: outcome.postings.len(),
            matched: outcome.matched.len(),
            flags: outcome.flags.len(),
            sequence: outcome.sequence,
        };
        Ok(Decision::commit(effects, reply))
    }

    /// The load plan of a provisioning of `phone`, given the id the header would assign.
    pub fn provision_plan(phone: Phone, next_id: PurseId) -> LoadPlan {
        LoadPlan {
            phone: Some(phone),
            extra: vec![shadow_key(next_id)],
            ..LoadPlan::default()
        }
    }

    /// Provisions a purse for `phone` with the id `next_id` (read from the header before the
    /// plan was made): assigns it, creates its ledger account and shadow. When another
    /// provisioning took the id meanwhile, asks for a reload.
    pub fn decide_provision(
        &self,
        loaded: &RecordSet,
        next_id: PurseId,
        phone: Phone,
        kind: PurseKind,
        now: offpay_ledger::Timestamp,
    ) -> Result<Decision<Provisioned>, BookError> {
        self.decide_provision_as(loaded, next_id, phone, kind, TrustClass::Software, now)
    }

    /// [`PurseOperator::decide_provision`] in a trust class.
    pub fn decide_provision_as(
        &self,
        loaded: &RecordSet,
        next_id: PurseId,
        phone: Phone,
        kind: PurseKind,
        class: TrustClass,
        now: offpay_ledger::Timestamp,
    ) -> Result<Decision<Provisioned>, BookError> {
        let mut book = self.book_of(loaded)?;
        if book.header().next_purse_id != next_id.0 {
            return Ok(Decision::Reload);
        }
        let provisioning = book.provision_as(
            &self.secrets,
            phone,
            kind,
            class,
            ledger_timestamp_seconds(now),
        )?;
        let mut effects = Effects::new();
        effects.create_accounts(operator_accounts(self.currency, self.server_currency));
        effects.create_account(NewAccount {
            id: purse_account_id(phone)?,
            kind: match kind {
                PurseKind::Agent => AccountKind::AgentFloat,
                _ => AccountKind::Customer,
            },
            currency: self.currency,
            limits: BalanceLimits {
                balance_min: None,
                balance_max: None,
            },
        });
        // The phone and shadow records were read absent: they are written on condition that
        // they still are.
        effects.write_all(changed_records(loaded, &book.into_parts(), &self.sealer)?);
        Ok(Decision::commit(
            effects,
            Provisioned {
                purse_id: provisioning.purse_id,
                phone,
                kind,
                provisioning: provisioning.encode(),
            },
        ))
    }

    /// The load plan of an operation on the purse with `phone`.
    pub fn purse_plan(phone: Phone) -> LoadPlan {
        LoadPlan {
            phone: Some(phone),
            ..LoadPlan::default()
        }
    }

    /// Applies an operator change to the purse with `phone`. A float returns the credit's
    /// transfer id.
    pub fn decide_change(
        &self,
        loaded: &RecordSet,
        phone: Phone,
        change: &PurseChange,
    ) -> Result<Decision<Option<String>>, BookError> {
        change.check()?;
        let mut book = self.book_of(loaded)?;
        let purse_id = book
            .purse_by_phone(phone)
            .ok_or(PurseError::UnknownPhone(phone))?;
        let (reply, postings) = match change {
            PurseChange::Float { amount, memo } => {
                let posting = book.queue_operator_credit(purse_id, *amount, memo)?;
                (Some(posting.transfer_id.clone()), vec![posting])
            }
            PurseChange::Limits {
                limits,
                validity_seconds,
            } => {
                book.set_limits(purse_id, *limits, *validity_seconds)?;
                (None, Vec::new())
            }
            PurseChange::Blocked(blocked) => {
                book.set_blocked(purse_id, *blocked)?;
                (None, Vec::new())
            }
            PurseChange::UnblockPin => {
                book.unblock_pin(purse_id)?;
                (None, Vec::new())
            }
            PurseChange::PinReset => {
                let code = book.issue_pin_reset(&self.secrets, purse_id)?;
                (Some(code.display()), Vec::new())
            }
            PurseChange::Language(language) => {
                book.set_language(purse_id, language.clone())?;
                (None, Vec::new())
            }
            PurseChange::Settle { amount } => {
                let id = book.queue_settlement(purse_id, *amount)?;
                (Some(id.to_string()), Vec::new())
            }
            PurseChange::SettlementPaid { amount, reference } => {
                let posting = book.pay_settlement(purse_id, *amount, reference)?;
                (Some(posting.transfer_id.clone()), vec![posting])
            }
        };
        let mut effects = Effects::new();
        if !postings.is_empty() {
            effects.create_accounts(operator_accounts(self.currency, self.server_currency));
        }
        if matches!(change, PurseChange::SettlementPaid { .. }) {
            effects.create_account(self.settlement_account(phone)?);
        }
        for posting in &postings {
            effects.post(self.transfer(posting, &book)?);
        }
        effects.write_all(changed_records(loaded, &book.into_parts(), &self.sealer)?);
        Ok(Decision::commit(effects, reply))
    }

    /// The load plan of moving the balance of the lost purse `lost` to the purse `new`.
    pub fn move_plan(lost: Phone, new: Phone) -> LoadPlan {
        LoadPlan {
            phone: Some(lost),
            counterparties: [new].into_iter().collect(),
            ..LoadPlan::default()
        }
    }

    /// A lost phone: blocks `lost` and moves what is safe of its shadow balance to `new` (see
    /// [`OperatorBook::move_balance`]).
    pub fn decide_move(
        &self,
        loaded: &RecordSet,
        lost: Phone,
        new: Phone,
    ) -> Result<Decision<BalanceMove>, BookError> {
        let mut book = self.book_of(loaded)?;
        let lost_id = book
            .purse_by_phone(lost)
            .ok_or(PurseError::UnknownPhone(lost))?;
        let new_id = book
            .purse_by_phone(new)
            .ok_or(PurseError::UnknownPhone(new))?;
        let moved = book.move_balance(lost_id, new_id)?;
        let mut effects = Effects::new();
        if let Some(posting) = &moved.posting {
            effects.create_accounts(operator_accounts(self.currency, self.server_currency));
            effects.post(self.transfer(posting, &book)?);
        }
        effects.write_all(changed_records(loaded, &book.into_parts(), &self.sealer)?);
        Ok(Decision::commit(effects, moved))
    }

    /// Rotates the scheme key (two-phase) at `now`, no sooner than the longest purse validity
    /// after the previous rotation unless `force` (a compromised key; see
    /// [`OperatorBook::rotate_scheme_key_at`]); replies (generation epoch, newest epoch).
    pub fn decide_rotate(
        &self,
        loaded: &RecordSet,
        now: offpay_ledger::Timestamp,
        force: bool,
    ) -> Result<Decision<(u32, u32)>, BookError> {
        let mut book = self.book_of(loaded)?;
        let newest = book.rotate_scheme_key_at(ledger_timestamp_seconds(now), force)?;
        let generation = book.generation_epoch();
        let mut effects = Effects::new();
        effects.write_all(changed_records(loaded, &book.into_parts(), &self.sealer)?);
        Ok(Decision::commit(effects, (generation, newest)))
    }

    /// The shadow account of the purse with `phone` (loaded by [`PurseOperator::purse_plan`]).
    pub fn shadow(&self, loaded: &RecordSet, phone: Phone) -> Result<ShadowAccount, BookError> {
        let book = self.book_of(loaded)?;
        Ok(book.shadow_by_phone(phone)?.clone())
    }
}

/// A purse flag as an entry of the fraud queue, with the discriminator that makes the same
/// finding raised again (a retried upload) the same entry.
fn fraud_flag(flag: &Flag, now: offpay_ledger::Timestamp) -> (FraudFlag, String) {
    let evidence = serde_json::to_value(flag).unwrap_or(serde_json::Value::Null);
    let discriminator = format!(
        "{}:{:016x}",
        flag.sync_sequence,
        fnv1a(evidence.to_string().as_bytes())
    );
    (
        FraudFlag::new(
            RAIL,
            flag.kind.name(),
            &flag.phone.to_string(),
            flag.to_string(),
            evidence,
            now,
        ),
        discriminator,
    )
}

/// FNV-1a, to name a flag by its evidence (not a security function).
fn fnv1a(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(PRIME)
    })
}

// ---------------------------------------------------------------------------------------------
// Writing back what changed.

/// The records `parts` consist of, encoded.
fn records_of(parts: &BookParts) -> Result<BTreeMap<String, Vec<u8>>, BookError> {
    let mut out = BTreeMap::new();
    out.insert(KEY_BOOK.to_owned(), parts.header.encode(KEY_BOOK)?);
    for shadow in &parts.shadows {
        let key = shadow_key(shadow.purse_id);
        out.insert(key.clone(), shadow.encode(&key)?);
        let key = phone_key(shadow.phone);
        out.insert(key.clone(), PhoneIndex(shadow.purse_id.0).encode(&key)?);
    }
    let mut debits: BTreeMap<String, Vec<(DebitKey, OpenDebit)>> = BTreeMap::new();
    for debit in &parts.open_debits {
        debits
            .entry(debits_key(debit.0.0, debit.0.1))
            .or_default()
            .push(debit.clone());
    }
    for (key, list) in debits {
        let bytes = OpenDebits(list).encode(&key)?;
        out.insert(key, bytes);
    }
    let mut credits: BTreeMap<String, Vec<(CreditKey, OpenCredit)>> = BTreeMap::new();
    for credit in &parts.open_credits {
        credits
            .entry(credits_key(credit.0.0, credit.0.1))
            .or_default()
            .push(credit.clone());
    }
    for (key, list) in credits {
        let bytes = OpenCredits(list).encode(&key)?;
        out.insert(key, bytes);
    }
    for ((low, high), version) in &parts.pairwise_versions {
        let key = pair_key(*low, *high);
        out.insert(key.clone(), PairVersion(*version).encode(&key)?);
    }
    Ok(out)
}

/// Writes for every record that changed, each conditional on the version it was read at.
/// The write of purse's sync history with `outcome` added first (the oldest beyond
/// [`SYNC_HISTORY_MAX`] dropped), on condition that the history is still at the version read.
fn sync_history_write(
    loaded: &RecordSet,
    outcome: &crate::operator::SyncOutcome,
    shadow_balance_minor: i64,
    now: offpay_ledger::Timestamp,
    sealer: &RecordSealer,
) -> Result<Operation, BookError> {
    let key = sync_history_key(outcome.purse_id);
    let Some((version, _)) = loaded.records.get(&key) else {
        return Err(BookError::Internal(
            "a sync did not read its purse's history",
        ));
    };
    let mut history = loaded.decoded::<SyncHistory>(&key)?.unwrap_or_default();
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    history.0.insert(
        0,
        SyncRecord {
            sequence: outcome.sequence,
            at_ms: now.0,
            entries: count(outcome.entries),
            postings: count(outcome.postings.len()),
            matched: count(outcome.matched.len()),
            reported_balance_minor: outcome.reported_balance_minor,
            shadow_balance_minor,
            flags: outcome
                .flags
                .iter()
                .take(SYNC_FLAGS_KEPT_MAX)
                .map(|flag| flag.kind.name().to_owned())
                .collect(),
            flags_total: count(outcome.flags.len()),
        },
    );
    history.0.truncate(SYNC_HISTORY_MAX);
    Ok(Operation::PutRecord(RecordWrite {
        namespace: NAMESPACE.to_owned(),
        key: key.clone(),
        value: Some(sealer.seal(&key, &history.encode(&key)?)),
        expected_version: Some(*version),
    }))
}

/// A purse's sync history, newest first (empty when it never synced since histories were kept).
pub fn load_sync_history(
    store: &mut dyn LedgerStore,
    purse_id: PurseId,
) -> Result<SyncHistory, RecordError> {
    let key = sync_history_key(purse_id);
    match store.record(NAMESPACE, &key)? {
        Some(record) => SyncHistory::decode(&key, &record.value),
        None => Ok(SyncHistory::default()),
    }
}

/// Written records are sealed; one whose content did not change is left as it is (it was read
/// sealed: [`PurseOperator::check_sealed`] refused the decision otherwise).
fn changed_records(
    loaded: &RecordSet,
    parts: &BookParts,
    sealer: &RecordSealer,
) -> Result<Vec<Operation>, BookError> {
    let new = records_of(parts)?;
    let mut writes = Vec::new();
    for (key, value) in &new {
        let Some((version, old)) = loaded.records.get(key) else {
            if key.starts_with("phone/") {
                continue; // phones of shadows read by id; they never change
            }
            return Err(BookError::Internal(
                "an operation changed a purse record it did not read",
            ));
        };
        if old.as_deref().map(crate::seal::content) == Some(value.as_slice()) {
            continue;
        }
        writes.push(Operation::PutRecord(RecordWrite {
            namespace: NAMESPACE.to_owned(),
            key: key.clone(),
            value: Some(sealer.seal(key, value)),
            expected_version: Some(*version),
        }));
    }
    for (key, (version, old)) in &loaded.records {
        // Sync histories are not part of the book: a sync writes its purse's own.
        // Sync histories, SMS assemblies and statement counters are not part of the book
        // either: their own decisions write them.
        let outside_book = key.starts_with(SYNC_HISTORY_PREFIX)
            || key.starts_with(crate::sms_book::SMS_ASSEMBLY_PREFIX)
            || key.starts_with(crate::sms_book::STATEMENT_PREFIX);
        if old.is_some() && !new.contains_key(key) && !outside_book {
            writes.push(Operation::PutRecord(RecordWrite {
                namespace: NAMESPACE.to_owned(),
                key: key.clone(),
                value: None,
                expected_version: Some(*version),
            }));
        }
    }
    Ok(writes)
}

#[cfg(test)]
mod tests {
    use offpay_ledger::{Batch, BatchRefusal, MemoryStore, Outcome as LedgerOutcome, Refusal};

    use super::*;
    use crate::crypto::MasterKey;
    use crate::purse::Outcome;
    use crate::types::{OperatorId, Pin};
    use crate::{Provisioning, Purse};

    const NOW: offpay_ledger::Timestamp = offpay_ledger::Timestamp(1_780_000_000_000);

    fn operator() -> PurseOperator {
        let id = OperatorId::new("test-op").unwrap();
        PurseOperator::new(
            OperatorSecrets::new(id, MasterKey::from_bytes([7u8; 32])),
            Currency::KES,
        )
    }

    fn phone(text: &str) -> Phone {
        Phone::parse(text).unwrap()
    }

    /// Commits a decision's effects: the store's answer for each batch.
    fn commit(
        store: &mut MemoryStore,
        effects: Effects,
    ) -> Vec<Result<Vec<LedgerOutcome>, BatchRefusal>> {
        store.commit(&effects.into_batches(), NOW).unwrap()
    }

    /// The runner's loop, on a memory store: load, decide, commit (once).
    fn run<T>(
        store: &mut MemoryStore,
        plan: &LoadPlan,
        decide: impl FnOnce(&RecordSet) -> Result<Decision<T>, BookError>,
    ) -> T {
        let loaded = load(store, plan).unwrap();
        let Decision::Commit { effects, reply } = decide(&loaded).unwrap() else {
            panic!("unexpected reload")
        };
        for result in commit(store, effects) {
            result.unwrap();
        }
        reply
    }

    fn provision(store: &mut MemoryStore, operator: &PurseOperator, number: &str) -> Purse {
        let header = load(store, &LoadPlan::default()).unwrap();
        let next_id = operator.next_purse_id(&header).unwrap();
        let provisioned = run(
            store,
            &PurseOperator::provision_plan(phone(number), next_id),
            |loaded| {
                operator.decide_provision(loaded, next_id, phone(number), PurseKind::Agent, NOW)
            },
        );
        Purse::provision(
            &Provisioning::decode(&provisioned.provisioning).unwrap(),
            Pin::parse("1234").unwrap(),
        )
    }

    fn balance(store: &mut MemoryStore, id: &str) -> i64 {
        store
            .account(&AccountId::new(id).unwrap())
            .unwrap()
            .map_or(0, |account| account.balance())
    }

    #[test]
    fn a_float_reaches_the_purse_at_its_sync_and_every_posting_balances() {
        let mut store = MemoryStore::new();
        let operator = operator();
        let mut purse = provision(&mut store, &operator, "+254700000001");
        let amount = Amount::parse("500", Currency::KES).unwrap();
        let credit = run(
            &mut store,
            &PurseOperator::purse_plan(phone("+254700000001")),
            |loaded| {
                operator.decide_change(
                    loaded,
                    phone("+254700000001"),
                    &PurseChange::Float {
                        amount,
                        memo: "float".into(),
                    },
                )
            },
        );
        assert!(credit.is_some());
        assert_eq!(balance(&mut store, "operator:float"), -50_000);
        assert_eq!(balance(&mut store, "operator:suspense"), 50_000);

        let Outcome::SyncUpload { upload, .. } = purse.start_sync(Timestamp(1_780_000_000)) else {
            panic!("a sync upload")
        };
        let opened = operator.secrets().open_upload(&upload).unwrap();
        let (plan, locked) = PurseOperator::sync_plan(&opened, phone("+254700000001"));
        assert!(locked.contains(&phone("+254700000001")));
        let reply = run(&mut store, &plan, |loaded| {
            operator.decide_sync(loaded, &upload, NOW)
        });
        assert_eq!(reply.flags, 0);
        purse.apply_answer(&reply.answer).unwrap();
        // The purse applied the credit; its next sync reports it and the operator posts
        // suspense → purse.
        let Outcome::SyncUpload { upload, .. } = purse.start_sync(Timestamp(1_780_000_100)) else {
            panic!("a sync upload")
        };
        let opened = operator.secrets().open_upload(&upload).unwrap();
        let (plan, _) = PurseOperator::sync_plan(&opened, phone("+254700000001"));
        let reply = run(&mut store, &plan, |loaded| {
            operator.decide_sync(loaded, &upload, NOW)
        });
        assert_eq!(reply.postings, 1);
        assert_eq!(balance(&mut store, "purse:+254700000001"), 50_000);
        assert_eq!(balance(&mut store, "operator:suspense"), 0);
        let shadow = operator
            .shadow(
                &load(
                    &mut store,
                    &PurseOperator::purse_plan(phone("+254700000001")),
                )
                .unwrap(),
                phone("+254700000001"),
            )
            .unwrap();
        assert_eq!(shadow.balance_minor, 50_000);
    }

    #[test]
    fn each_sync_is_kept_in_the_purses_history_newest_first_and_bounded() {
        let mut store = MemoryStore::new();
        let operator = operator();
        let number = "+254700000001";
        let mut purse = provision(&mut store, &operator, number);
        let id = purse.identity().purse_id;
        assert!(load_sync_history(&mut store, id).unwrap().0.is_empty());
        let syncs = SYNC_HISTORY_MAX + 2;
        let mut last_upload = Vec::new();
        for n in 0..syncs {
            let at = Timestamp(1_780_000_000 + n as u64);
            let Outcome::SyncUpload { upload, .. } = purse.start_sync(at) else {
                panic!("a sync upload")
            };
            let opened = operator.secrets().open_upload(&upload).unwrap();
            let (plan, _) = PurseOperator::sync_plan(&opened, phone(number));
            let now = offpay_ledger::Timestamp(at.0 * 1000);
            let reply = run(&mut store, &plan, |loaded| {
                operator.decide_sync(loaded, &upload, now)
            });
            purse.apply_answer(&reply.answer).unwrap();
            last_upload = upload;
        }
        let history = load_sync_history(&mut store, id).unwrap();
        assert_eq!(history.0.len(), SYNC_HISTORY_MAX, "bounded");
        let newest = &history.0[0];
        assert_eq!(newest.at_ms, (1_780_000_000 + syncs as u64 - 1) * 1000);
        assert!(history.0.windows(2).all(|w| w[0].sequence > w[1].sequence));
        assert_eq!(newest.reported_balance_minor, newest.shadow_balance_minor);
        assert!(newest.flags.is_empty() && newest.flags_total == 0);
        // A replayed upload is refused and leaves the history as it was.
        let loaded = load(
            &mut store,
            &PurseOperator::sync_plan(
                &operator.secrets().open_upload(&last_upload).unwrap(),
                phone(number),
            )
            .0,
        )
        .unwrap();
        assert!(operator.decide_sync(&loaded, &last_upload, NOW).is_err());
        assert_eq!(load_sync_history(&mut store, id).unwrap(), history);
        // Other operations on the purse leave its history alone (they never read it).
        run(
            &mut store,
            &PurseOperator::purse_plan(phone(number)),
            |loaded| operator.decide_change(loaded, phone(number), &PurseChange::Blocked(true)),
        );
        assert_eq!(load_sync_history(&mut store, id).unwrap(), history);
    }

    #[test]
    fn a_decision_on_a_stale_load_is_refused_whole() {
        let mut store = MemoryStore::new();
        let operator = operator();
        provision(&mut store, &operator, "+254700000002");
        let plan = PurseOperator::purse_plan(phone("+254700000002"));
        let loaded = load(&mut store, &plan).unwrap();
        let decide = |change: &PurseChange| {
            let Decision::Commit { effects, .. } = operator
                .decide_change(&loaded, phone("+254700000002"), change)
                .unwrap()
            else {
                panic!("unexpected reload")
            };
            effects
        };
        let first = decide(&PurseChange::Blocked(true));
        let second = decide(&PurseChange::UnblockPin);
        assert!(commit(&mut store, first).iter().all(Result::is_ok));
        let results = commit(&mut store, second);
        assert!(matches!(
            results.last(),
            Some(Err(BatchRefusal {
                reason: Refusal::RecordVersionMismatch { .. },
                ..
            }))
        ));
        let shadow = operator
            .shadow(&load(&mut store, &plan).unwrap(), phone("+254700000002"))
            .unwrap();
        assert!(shadow.blocked);
        assert!(!shadow.pin_unblock_requested);
    }

    #[test]
    fn a_provisioning_whose_id_was_taken_meanwhile_reloads() {
        let mut store = MemoryStore::new();
        let operator = operator();
        let header = load(&mut store, &LoadPlan::default()).unwrap();
        let next_id = operator.next_purse_id(&header).unwrap();
        let plan = PurseOperator::provision_plan(phone("+254700000003"), next_id);
        let loaded = load(&mut store, &plan).unwrap();
        provision(&mut store, &operator, "+254700000004");
        let reloaded = load(&mut store, &plan).unwrap();
        assert!(matches!(
            operator
                .decide_provision(
                    &reloaded,
                    next_id,
                    phone("+254700000003"),
                    PurseKind::Customer,
                    NOW
                )
                .unwrap(),
            Decision::Reload
        ));
        // On the load taken before, the decision is made, and the commit is refused as stale.
        let Decision::Commit { effects, .. } = operator
            .decide_provision(
                &loaded,
                next_id,
                phone("+254700000003"),
                PurseKind::Customer,
                NOW,
            )
            .unwrap()
        else {
            panic!("a decision on the earlier load")
        };
        assert!(commit(&mut store, effects).iter().any(Result::is_err));
    }

    #[test]
    fn a_corrupt_record_is_an_error_naming_its_key_never_a_default() {
        let mut store = MemoryStore::new();
        let operator = operator();
        provision(&mut store, &operator, "+254700000005");
        let broken = Batch {
            operations: vec![Operation::PutRecord(RecordWrite {
                namespace: NAMESPACE.into(),
                key: "shadow/1".into(),
                value: Some(b"{\"purse_id\":".to_vec()),
                expected_version: None,
            })],
        };
        store.commit(&[broken], NOW).unwrap();
        let loaded = load(
            &mut store,
            &PurseOperator::purse_plan(phone("+254700000005")),
        );
        let error = match loaded {
            Ok(loaded) => operator
                .shadow(&loaded, phone("+254700000005"))
                .unwrap_err()
                .to_string(),
            Err(error) => error.to_string(),
        };
        assert!(error.contains("shadow/1"), "{error}");
    }

    #[test]
    fn out_of_bounds_operator_changes_are_refused() {
        let too_long = PurseChange::Float {
            amount: Amount::parse("1", Currency::KES).unwrap(),
            memo: "x".repeat(FLOAT_MEMO_BYTES_MAX + 1),
        };
        assert!(matches!(
            too_long.check(),
            Err(BookError::Invalid {
                code: "memo_too_long",
                ..
            })
        ));
        let limits = |validity_seconds| PurseChange::Limits {
            limits: OfflineLimits::defaults(PurseKind::Customer, Currency::KES, Timestamp(0)),
            validity_seconds,
        };
        assert!(limits(0).check().is_err());
        assert!(
            limits(VALIDITY_DAYS_MAX * crate::params::SECONDS_PER_DAY)
                .check()
                .is_ok()
        );
        assert!(
            limits(VALIDITY_DAYS_MAX * crate::params::SECONDS_PER_DAY + 1)
                .check()
                .is_err()
        );
    }

    /// The rotation guard, through the stored book: the second rotation is refused and stores
    /// nothing; a header written before the guard knew of it decodes with the longest validity.
    #[test]
    fn a_rotation_too_soon_is_refused_through_the_stored_book() {
        let mut store = MemoryStore::new();
        let operator = operator();
        provision(&mut store, &operator, "+254700000001");
        let rotated = run(&mut store, &LoadPlan::default(), |loaded| {
            operator.decide_rotate(loaded, NOW, false)
        });
        assert_eq!(rotated, (1, 2));
        let loaded = load(&mut store, &LoadPlan::default()).unwrap();
        let a_day_later = offpay_ledger::Timestamp(NOW.0 + 86_400_000);
        let refused = operator.decide_rotate(&loaded, a_day_later, false);
        assert!(
            matches!(
                refused,
                Err(BookError::Purse(PurseError::RotationTooSoon { .. }))
            ),
            "{refused:?}"
        );
        let forced = operator.decide_rotate(&loaded, a_day_later, true).unwrap();
        assert!(matches!(forced, Decision::Commit { reply: (2, 3), .. }));

        let mut old = serde_json::to_value(BookHeader {
            last_rotation_at: None,
            ..OperatorBook::new(OperatorId::new("test-op").unwrap(), Currency::KES).header()
        })
        .unwrap();
        let fields = old.as_object_mut().unwrap();
        fields.remove("last_rotation_at");
        fields.remove("longest_validity_seconds");
        let decoded = BookHeader::decode(KEY_BOOK, old.to_string().as_bytes()).unwrap();
        assert_eq!(decoded.last_rotation_at, None);
        assert_eq!(
            decoded.longest_validity_seconds,
            VALIDITY_DAYS_MAX * crate::params::SECONDS_PER_DAY
        );
    }
}
