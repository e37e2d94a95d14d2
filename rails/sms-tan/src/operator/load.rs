//! Load plans: which records each of the engine's requests needs, read from the ledger's store
//! with the version of each, and turned into the contexts the engine reads.
//!
//! A server may keep a read cache of envelope and account records ([`ReadCache`]). Only the
//! payer's envelope and account are read through it: every decision that moves money writes both
//! of them back conditionally on the version read (the row set, the spending window), so a stale
//! cached copy makes the commit fail and the decision is made again from the store. The payee's
//! account, which a payment reads but does not write, is always read from the store.

use std::collections::HashMap;

use offpay_ledger::{Amount, Currency, LedgerStore};
use offpay_operator::{Loaded, RecordError, StoredRecord};

use crate::account::{AccountView, CurrencyClass, Spending};
use crate::civil_time::{CivilDateTime, UnixSeconds};
use crate::engine::{PayeeContext, PayerContext, PendingCallback};
use crate::envelope::{EnvelopeStatus, EnvelopeView};
use crate::grammar::PayerRef;
use crate::keys::MasterKey;
use crate::numbers::{AccountNumber, Euin};
use crate::operator::Operator;
use crate::operator::records::{
    self, AccountRecord, EnvelopeRecord, PayIndexRecord, PendingRecord, reference_of,
};
use crate::posting::Reference;
use crate::reply::StatementEntry;

/// A cache of envelope and account records a server keeps between messages (see the module
/// documentation for what it may answer).
pub trait ReadCache: Send + Sync {
    /// The envelope under `key`, if cached.
    fn envelope(&self, key: &str) -> Option<Loaded<EnvelopeRecord>>;
    /// The account under `key`, if cached.
    fn account(&self, key: &str) -> Option<Loaded<AccountRecord>>;
    /// Remembers an envelope read from the store or written.
    fn keep_envelope(&self, record: &Loaded<EnvelopeRecord>);
    /// Remembers an account read from the store or written.
    fn keep_account(&self, record: &Loaded<AccountRecord>);
}

/// Records read while handling one message, with the version each was read at. Decisions write
/// them back through [`Loaded::write`], conditional on that version.
#[derive(Debug, Default)]
pub struct RecordSet {
    /// Envelopes by key.
    pub envelopes: HashMap<String, Loaded<EnvelopeRecord>>,
    /// Accounts by key.
    pub accounts: HashMap<String, Loaded<AccountRecord>>,
    /// Pending callbacks by key.
    pub pending: HashMap<String, Loaded<PendingRecord>>,
    /// Records read whose MAC did not match: refused (treated as absent) and raised in the fraud
    /// queue by the decision.
    pub tampered: Vec<Tampered>,
}

/// The kind named when an envelope and its account disagree on the rows used
/// ([`AccountRecord::rows_disagree`]): one was rolled back to an earlier authentic copy.
pub const ROLLBACK_KIND: &str = "envelope-rows-rollback";

/// The kind named when an envelope bound to an account is not the account's current one
/// (`AccountRecord::current_envelope`, under the account's settings MAC): a retired envelope
/// was put back to an earlier, active copy, so that the lost envelope a thief holds pays again.
pub const NOT_CURRENT_KIND: &str = "envelope-not-current";

/// A stored record whose MAC did not match what it holds: written or changed outside the
/// operator's code (a database edit). It is refused and moves nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tampered {
    /// The record kind (`pending`, `scheduled`, `account`).
    pub kind: &'static str,
    /// Its storage key.
    pub key: String,
    /// What it claimed, for the operator.
    pub evidence: serde_json::Value,
}

impl Tampered {
    /// The fraud flag this finding raises.
    pub fn flag(&self, now: offpay_ledger::Timestamp) -> offpay_operator::FraudFlag {
        offpay_operator::FraudFlag::new(
            crate::operator::apply::FRAUD_RAIL,
            "record_tampered",
            &self.key,
            if self.kind == ROLLBACK_KIND {
                format!(
                    "envelope record {} and its account disagree on the rows used: one was put \
                     back to an earlier copy outside the operator's code; refused, nothing moved",
                    self.key
                )
            } else if self.kind == NOT_CURRENT_KIND {
                format!(
                    "envelope record {} says it is in use, but its account uses another: a \
                     retired envelope was put back to an earlier copy outside the operator's \
                     code; refused, nothing moved",
                    self.key
                )
            } else {
                format!(
                    "stored {} record {} does not match its MAC: written or changed outside the \
                     operator's code; refused, nothing moved",
                    self.kind, self.key
                )
            },
            serde_json::json!({ "kind": self.kind, "key": self.key, "claimed": self.evidence }),
            now,
        )
    }
}

impl RecordSet {
    /// The account `number` as read, if it was.
    pub fn account(&self, number: &AccountNumber) -> Option<&Loaded<AccountRecord>> {
        self.accounts.get(&records::account_key(number))
    }

    /// The envelope `euin` as read, if it was.
    pub fn envelope(&self, euin: &Euin) -> Option<&Loaded<EnvelopeRecord>> {
        self.envelopes.get(&records::envelope_key(euin))
    }
}

/// Reads for one step: the store, the cache (if the step may use it) and the records read so far.
pub struct Reader<'a> {
    store: &'a mut dyn LedgerStore,
    cache: Option<&'a dyn ReadCache>,
    records: &'a mut RecordSet,
}

impl std::fmt::Debug for Reader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("cached", &self.cache.is_some())
            .finish()
    }
}

impl<'a> Reader<'a> {
    /// Reads from `store`, through `cache` when given, into `records`.
    pub fn new(
        store: &'a mut dyn LedgerStore,
        cache: Option<&'a dyn ReadCache>,
        records: &'a mut RecordSet,
    ) -> Reader<'a> {
        Reader {
            store,
            cache,
            records,
        }
    }

    /// The store itself, for reads that are not records.
    pub fn store(&mut self) -> &mut dyn LedgerStore {
        self.store
    }

    /// Reads the account `number`: from what this message read already, else the cache (when
    /// `cached`), else the store.
    pub fn account(
        &mut self,
        number: &AccountNumber,
        cached: bool,
    ) -> Result<Option<AccountRecord>, RecordError> {
        let key = records::account_key(number);
        if let Some(loaded) = self.records.accounts.get(&key) {
            return Ok(loaded.value.clone());
        }
        let hit = match (cached, self.cache) {
            (true, Some(cache)) => cache.account(&key),
            _ => None,
        };
        let loaded = match hit {
            Some(loaded) => loaded,
            None => {
                let loaded = Loaded::<AccountRecord>::read(self.store, &key)?;
                if let (Some(cache), Some(_)) = (self.cache, &loaded.value) {
                    cache.keep_account(&loaded);
                }
                loaded
            }
        };
        let value = loaded.value.clone();
        self.records.accounts.insert(key, loaded);
        Ok(value)
    }

    /// Reads the envelope `euin` (through the cache, when given). A record whose MAC does not
    /// match (used rows, failures, lock or status changed in the database) is answered as absent
    /// and noted in [`RecordSet::tampered`]: the message naming it moves nothing and counts
    /// against no one.
    pub fn envelope(
        &mut self,
        euin: &Euin,
        master: &MasterKey,
    ) -> Result<Option<EnvelopeRecord>, RecordError> {
        let key = records::envelope_key(euin);
        let value = match self.records.envelopes.get(&key) {
            Some(loaded) => loaded.value.clone(),
            None => {
                let loaded = match self.cache.and_then(|cache| cache.envelope(&key)) {
                    Some(loaded) => loaded,
                    None => {
                        let loaded = Loaded::<EnvelopeRecord>::read(self.store, &key)?;
                        if let (Some(cache), Some(record)) = (self.cache, &loaded.value)
                            && record.authentic(master, &key)
                        {
                            cache.keep_envelope(&loaded);
                        }
                        loaded
                    }
                };
                let value = loaded.value.clone();
                self.records.envelopes.insert(key.clone(), loaded);
                value
            }
        };
        match value {
            Some(record) if !record.authentic(master, &key) => {
                if !self.records.tampered.iter().any(|found| found.key == key) {
                    self.records.tampered.push(Tampered {
                        kind: EnvelopeRecord::MAC_KIND,
                        key,
                        evidence: serde_json::json!({
                            "euin": euin.to_string(),
                            "status": records::status_name(&record.view.status),
                            "used_rows": record.view.used_rows.bits(),
                            "consecutive_failures": record.view.consecutive_failures,
                        }),
                    });
                }
                Ok(None)
            }
            value => Ok(value),
        }
    }

    /// Reads the pending callback of `euin` and `row`.
    /// A record whose MAC does not match is answered as absent and noted in
    /// [`RecordSet::tampered`].
    pub fn pending(
        &mut self,
        euin: &Euin,
        row: u8,
        master: &MasterKey,
    ) -> Result<Option<PendingCallback>, RecordError> {
        let key = records::pending_key(euin, row);
        let loaded = Loaded::<PendingRecord>::read(self.store, &key)?;
        let callback = match &loaded.value {
            Some(record) if record.authentic(master, &key) => Some(record.callback.clone()),
            Some(record) => {
                self.records.tampered.push(Tampered {
                    kind: PendingRecord::MAC_KIND,
                    key: key.clone(),
                    evidence: serde_json::json!({
                        "payer": record.callback.payer.to_string(),
                        "payee": record.callback.payee.to_string(),
                        "amount": record.callback.amount.to_string(),
                    }),
                });
                None
            }
            None => None,
        };
        self.records.pending.insert(key, loaded);
        Ok(callback)
    }

    /// Reads any other record of this rail (not kept in the record set).
    pub fn record<R: StoredRecord>(&mut self, key: &str) -> Result<Loaded<R>, RecordError> {
        Loaded::read(self.store, key)
    }
}

/// How the payer is looked up.
#[derive(Clone, Debug)]
pub enum PayerLookup {
    /// By envelope.
    Envelope(Euin),
    /// By pay number: the number typed and its keyed tag.
    PayNumber(AccountNumber, [u8; 16]),
    /// By receive number (scheduler, web login).
    Account(AccountNumber),
}

impl PayerLookup {
    /// From the engine's request (the pay number's tag needs the master key).
    pub fn of(reference: PayerRef, master: &MasterKey) -> PayerLookup {
        match reference {
            PayerRef::Envelope(euin) => PayerLookup::Envelope(euin),
            PayerRef::PayNumber(number) => {
                PayerLookup::PayNumber(number, master.pay_number_tag(&number))
            }
        }
    }
}

/// The available balance of an SMS account, in its currency (never negative).
pub fn available(
    store: &mut dyn LedgerStore,
    number: &AccountNumber,
    currency: Currency,
) -> Result<Amount, RecordError> {
    let minor = store
        .account(&records::ledger_account(number))?
        .map_or(0, |account| account.available().max(0));
    Ok(
        Amount::from_minor(u64::try_from(minor).unwrap_or(0), currency)
            .unwrap_or(Amount::zero(currency)),
    )
}

fn current_envelope(
    reader: &mut Reader<'_>,
    account: &AccountRecord,
    master: &MasterKey,
) -> Result<Option<EnvelopeView>, RecordError> {
    let Some(euin) = account.current_envelope else {
        return Ok(None);
    };
    Ok(reader.envelope(&euin, master)?.map(|record| record.view))
}

/// Loads the payer context: the envelope and the account it is bound to (through the cache), the
/// available balance (from the store) and the spending window as of `now`.
pub fn load_payer(
    reader: &mut Reader<'_>,
    lookup: &PayerLookup,
    operator: &Operator,
    now: UnixSeconds,
) -> Result<Option<PayerContext>, RecordError> {
    let (envelope, account, pay_number) = match lookup {
        PayerLookup::Envelope(euin) => {
            let Some(envelope) = reader.envelope(euin, operator.master())? else {
                return Ok(None);
            };
            let view = envelope.view;
            let bound = match view.status {
                EnvelopeStatus::Active { account } | EnvelopeStatus::Locked { account } => account,
                EnvelopeStatus::Unallocated | EnvelopeStatus::Retired => {
                    // The engine answers "not in use" itself; it needs some account to read.
                    let currency = operator.server_currency();
                    let placeholder = AccountNumber::from_digits([0; 12])
                        .unwrap_or_else(|| unreachable!("12 zeros"));
                    let account =
                        AccountView::new(placeholder, placeholder, currency, CurrencyClass::Soft);
                    return Ok(Some(PayerContext {
                        envelope: view,
                        account,
                        balance: Amount::zero(currency),
                        spending: Spending::none(currency),
                    }));
                }
            };
            let Some(account) = reader.account(&bound, true)? else {
                return Ok(None);
            };
            (view, account, None)
        }
        PayerLookup::PayNumber(number, tag) => {
            let index = reader.record::<PayIndexRecord>(&records::pay_index_key(tag))?;
            let Some(PayIndexRecord(receive)) = index.value else {
                return Ok(None);
            };
            let Some(account) = reader.account(&receive, true)? else {
                return Ok(None);
            };
            // The index is not sealed; the account's own tag is (in its settings MAC). An index
            // entry pointing a pay number at another account finds no account.
            if !bool::from(subtle::ConstantTimeEq::ct_eq(
                &account.pay_tag[..],
                &tag[..],
            )) {
                return Ok(None);
            }
            let Some(view) = current_envelope(reader, &account, operator.master())? else {
                return Ok(None);
            };
            (view, account, Some(*number))
        }
        PayerLookup::Account(number) => {
            let Some(account) = reader.account(number, true)? else {
                return Ok(None);
            };
            let Some(view) = current_envelope(reader, &account, operator.master())? else {
                return Ok(None);
            };
            (view, account, None)
        }
    };
    let key = records::account_key(&account.receive_number);
    if !account.settings_authentic(operator.master(), &key) {
        // Settings written outside the operator's code: this account pays nothing.
        reader.records.tampered.push(Tampered {
            kind: AccountRecord::MAC_KIND,
            key,
            evidence: serde_json::json!({
                "account": account.receive_number.to_string(),
                "limits": account.limits_wire(),
                "bound_phones": account.bound_phones.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "always_callback": account.always_callback,
            }),
        });
        return Ok(None);
    }
    if !account.spending_authentic(operator.master(), &key) {
        // A spending window written outside the operator's code (today's or this week's total
        // lowered, so the limits would let more through): this account pays nothing.
        reader.records.tampered.push(Tampered {
            kind: AccountRecord::SPENDING_MAC_KIND,
            key,
            evidence: serde_json::json!({
                "account": account.receive_number.to_string(),
                "day": account.spending.day,
                "today_minor": account.spending.today.minor(),
                "week": account.spending.week,
                "this_week_minor": account.spending.this_week.minor(),
            }),
        });
        return Ok(None);
    }
    // The envelope and its account, each authentic, must also agree with each other; if they do
    // not, one of them was put back to an earlier authentic copy. Both MACs verify; the pair does
    // not.
    let disagreement = if account.current_envelope != Some(envelope.euin) {
        // Every binding (at an agent, or by REG) makes the envelope its account's current one,
        // in the same batch, and a REG retires the old one: an envelope in use that its account
        // does not name is an old copy put back (the lost envelope a thief holds, made to pay).
        Some((
            NOT_CURRENT_KIND,
            serde_json::json!({
                "euin": envelope.euin.to_string(),
                "account": account.receive_number.to_string(),
                "current_envelope": account.current_envelope.map(|euin| euin.to_string()),
            }),
        ))
    } else if account.rows_disagree(&envelope) {
        // The envelope's used rows and the ones its account recorded with the last row used
        // disagree: rows un-used to replay a paid message, or spending un-counted.
        Some((
            ROLLBACK_KIND,
            serde_json::json!({
                "euin": envelope.euin.to_string(),
                "account": account.receive_number.to_string(),
                "envelope_used_rows": envelope.used_rows.bits(),
                "account_recorded_rows": account.envelope_rows.map_or(0, |(_, rows)| rows.bits()),
            }),
        ))
    } else {
        None
    };
    if let Some((kind, evidence)) = disagreement {
        let envelope_key = records::envelope_key(&envelope.euin);
        if reader.cache.is_some() {
            // A cached copy may be older than the other record (an account read before the
            // envelope was bound, or before its rows were used): decide on the store's own, read
            // in this one transaction.
            reader.cache = None;
            reader.records.envelopes.remove(&envelope_key);
            reader.records.accounts.remove(&key);
            return load_payer(reader, lookup, operator, now);
        }
        reader.records.tampered.push(Tampered {
            kind,
            key: envelope_key,
            evidence,
        });
        return Ok(None);
    }
    let offset = operator.utc_offset_minutes();
    let view = account.view(pay_number, operator.class_of(account.currency));
    let balance = available(reader.store(), &account.receive_number, account.currency)?;
    Ok(Some(PayerContext {
        envelope,
        account: view,
        balance,
        spending: account.spending.spending(now, offset),
    }))
}

/// Loads the payee context: the payee's account (always from the store), its current active
/// envelope (for a coded notice) and what `payer` paid it today.
pub fn load_payee(
    reader: &mut Reader<'_>,
    payee: &AccountNumber,
    payer: &AccountNumber,
    operator: &Operator,
    now: UnixSeconds,
) -> Result<Option<PayeeContext>, RecordError> {
    let Some(account) = reader.account(payee, false)? else {
        return Ok(None);
    };
    let view = account.view(None, operator.class_of(account.currency));
    let envelope = current_envelope(reader, &account, operator.master())?
        .filter(|view| matches!(view.status, EnvelopeStatus::Active { .. }));
    let paid_by_payer_today = match reader.account(payer, true)? {
        Some(record) => record
            .spending
            .paid_today_to(payee, now, operator.utc_offset_minutes()),
        None => Amount::zero(account.currency),
    };
    Ok(Some(PayeeContext {
        account: view,
        envelope,
        paid_by_payer_today,
    }))
}

/// Entries for a statement SMS: the newest `limit` transfers of the account, and its balance.
pub fn statement_entries(
    store: &mut dyn LedgerStore,
    number: &AccountNumber,
    currency: Currency,
    utc_offset_minutes: i32,
    limit: usize,
) -> Result<(Vec<StatementEntry>, Amount), RecordError> {
    let id = records::ledger_account(number);
    let history = store.history(&id, None, limit)?;
    // The fee of an SMS payment is its own leg, with the payment's reference in its memo: it is
    // shown with its payment, not as a payment of its own.
    let memo_reference = |memo: &str| {
        memo.rsplit("REF ")
            .next()
            .and_then(|text| Reference::parse(text.trim()))
    };
    let is_fee = |memo: &str| memo.starts_with("sms fee ");
    let payments: Vec<Reference> = history
        .iter()
        .filter(|record| !is_fee(&record.transfer.memo))
        .filter_map(|record| memo_reference(&record.transfer.memo))
        .collect();
    let mut fees: Vec<(Reference, u64)> = Vec::new();
    for record in &history {
        let transfer = &record.transfer;
        if is_fee(&transfer.memo)
            && let Some(main) = memo_reference(&transfer.memo)
            && payments.contains(&main)
        {
            match fees.iter_mut().find(|(reference, _)| *reference == main) {
                Some((_, total)) => *total = total.saturating_add(transfer.amount.minor()),
                None => fees.push((main, transfer.amount.minor())),
            }
        }
    }
    let mut entries: Vec<StatementEntry> = Vec::with_capacity(history.len());
    for record in history {
        let transfer = &record.transfer;
        let fee_leg = is_fee(&transfer.memo);
        let main = memo_reference(&transfer.memo);
        if fee_leg && main.is_some_and(|main| payments.contains(&main)) {
            continue;
        }
        let minor = i128::from(transfer.amount.minor());
        let paid_out = transfer.debit_account == id;
        let other = if paid_out {
            &transfer.credit_account
        } else {
            &transfer.debit_account
        };
        let Some(date) = CivilDateTime::from_unix(
            UnixSeconds(record.committed_at.0 / 1000),
            utc_offset_minutes,
        ) else {
            continue;
        };
        let counterparty = match other.as_str().strip_prefix(records::LEDGER_PREFIX) {
            Some(number) => number.to_owned(),
            None if fee_leg => "fee".to_owned(),
            None if transfer.memo.starts_with("sms exchange") => "exchange".to_owned(),
            None => "cash".to_owned(),
        };
        let reference = main.unwrap_or_else(|| reference_of(transfer.id.as_str()));
        let fee_minor = fees
            .iter()
            .find(|(fee_reference, _)| !fee_leg && *fee_reference == reference)
            .map_or(0, |(_, total)| *total);
        entries.push(StatementEntry {
            date,
            minor: if paid_out { -minor } else { minor },
            currency: transfer.amount.currency(),
            reference,
            counterparty,
            fee_minor,
        });
    }
    let balance = store
        .account(&id)?
        .map_or(0, |account| account.balance().max(0));
    let balance = Amount::from_minor(u64::try_from(balance).unwrap_or(0), currency)
        .unwrap_or(Amount::zero(currency));
    Ok((entries, balance))
}
