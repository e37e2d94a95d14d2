//! An in-memory operator for scenario tests: accounts, envelopes, pending callbacks and a
//! double-entry ledger, applying each [`Outcome`] the way a server would (compare-and-set on the
//! envelope row set, idempotent postings), and counting spending with the operator's own
//! spending windows (`offpay_sms_tan::operator::spending`).
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};

use offpay_money::{Amount, Currency};
use offpay_sms_tan::civil_time::UnixSeconds;
use offpay_sms_tan::compose::{grid_text, low_text};
use offpay_sms_tan::engine::{Effect, Inbound, OutboundSms, run_to_outcome};
use offpay_sms_tan::operator::spending::{SpendingWindow, payment_of};
use offpay_sms_tan::{
    AccountNumber, AccountView, CurrencyClass, Engine, EngineConfig, Envelope, EnvelopeStatus,
    EnvelopeView, Euin, LedgerAccount, MasterKey, Outcome, PayeeContext, PayerContext, PayerRef,
    PendingCallback, PhoneNumber, RowCount, ScheduledPayment, SecurityLevel, Spending, TransferId,
};

pub const MASTER: [u8; 32] = [0x5a; 32];
pub const T0: UnixSeconds = UnixSeconds(1_790_000_000);

pub fn master() -> MasterKey {
    MasterKey::from_bytes(MASTER)
}

pub fn kes(text: &str) -> Amount {
    Amount::parse(text, Currency::KES).unwrap()
}

pub fn phone(text: &str) -> PhoneNumber {
    PhoneNumber::parse(text).unwrap()
}

pub fn account(text: &str) -> AccountNumber {
    AccountNumber::parse(text).unwrap()
}

pub struct Bank {
    pub engine: Engine,
    pub envelopes: BTreeMap<Euin, EnvelopeView>,
    pub accounts: BTreeMap<AccountNumber, AccountView>,
    pub balances: HashMap<LedgerAccount, i128>,
    /// Each payer's spending window, as the operator keeps it.
    pub spending: HashMap<AccountNumber, SpendingWindow>,
    /// The time of the last message (spending windows are read and moved at it).
    pub now: UnixSeconds,
    pub pending: BTreeMap<(Euin, u8), PendingCallback>,
    pub scheduled: Vec<ScheduledPayment>,
    pub posted: HashSet<TransferId>,
    pub sent: Vec<OutboundSms>,
    pub disputes: Vec<(AccountNumber, u32)>,
    /// Replays reported to the fraud queue (`Effect::ReportReplay`).
    pub replays: usize,
    pub passwords: HashMap<AccountNumber, String>,
    next_message: u64,
}

impl Bank {
    pub fn new(config: EngineConfig) -> Bank {
        Bank {
            engine: Engine::new(config, master()).unwrap(),
            envelopes: BTreeMap::new(),
            accounts: BTreeMap::new(),
            balances: HashMap::new(),
            spending: HashMap::new(),
            now: T0,
            pending: BTreeMap::new(),
            scheduled: Vec::new(),
            posted: HashSet::new(),
            sent: Vec::new(),
            disputes: Vec::new(),
            replays: 0,
            passwords: HashMap::new(),
            next_message: 0,
        }
    }

    /// A printed, unallocated envelope, and its secrets as the holder sees them inside.
    pub fn print_envelope(&mut self, euin: &str, rows: RowCount) -> Envelope {
        let euin = Euin::parse(euin).unwrap();
        self.envelopes
            .insert(euin, EnvelopeView::unallocated(euin, rows));
        Envelope::derive(&master(), euin, rows)
    }

    /// An account with a deposit, its first envelope bound at an agent.
    pub fn open_account(
        &mut self,
        receive: &str,
        pay: &str,
        deposit: Amount,
        envelope: Option<&Envelope>,
    ) -> AccountNumber {
        let receive = account(receive);
        let view = AccountView::new(
            receive,
            account(pay),
            deposit.currency(),
            CurrencyClass::Soft,
        );
        self.accounts.insert(receive, view);
        self.balances.insert(
            LedgerAccount::Customer(receive),
            i128::from(deposit.minor()),
        );
        *self
            .balances
            .entry(LedgerAccount::Fees(deposit.currency()))
            .or_default() -= i128::from(deposit.minor());
        if let Some(envelope) = envelope {
            self.bind_at_agent(&envelope.euin, receive);
        }
        receive
    }

    pub fn bind_at_agent(&mut self, euin: &Euin, account: AccountNumber) {
        let effect = self
            .engine
            .bind_at_agent(&self.envelopes[euin], account)
            .unwrap();
        let mut outcome = offpay_sms_tan::engine::Outcome::empty();
        outcome.effects.push(effect);
        self.apply(&outcome);
    }

    pub fn account_mut(&mut self, number: &AccountNumber) -> &mut AccountView {
        self.accounts.get_mut(number).unwrap()
    }

    pub fn balance(&self, number: &AccountNumber) -> i128 {
        self.balances
            .get(&LedgerAccount::Customer(*number))
            .copied()
            .unwrap_or(0)
    }

    pub fn payer_context(&self, reference: PayerRef) -> Option<PayerContext> {
        let (envelope, account) = match reference {
            PayerRef::Envelope(euin) => {
                let envelope = self.envelopes.get(&euin)?.clone();
                let account = match envelope.status {
                    EnvelopeStatus::Active { account } | EnvelopeStatus::Locked { account } => {
                        self.accounts.get(&account)?.clone()
                    }
                    _ => {
                        // The engine answers unallocated and retired envelopes itself; give it
                        // some account so it can say so.
                        let any = self.accounts.values().next()?.clone();
                        return Some(PayerContext {
                            balance: Amount::zero(any.currency),
                            spending: Spending::none(any.currency),
                            envelope,
                            account: any,
                        });
                    }
                };
                (envelope, account)
            }
            PayerRef::PayNumber(number) => {
                let account = self
                    .accounts
                    .values()
                    .find(|view| view.pay_number == number)?
                    .clone();
                let envelope = self
                    .envelopes
                    .values()
                    .find(|view| {
                        matches!(view.status, EnvelopeStatus::Active { account: a } | EnvelopeStatus::Locked { account: a } if a == account.receive_number)
                    })?
                    .clone();
                (envelope, account)
            }
        };
        Some(self.context_for(envelope, account))
    }

    fn window(&self, account: &AccountNumber, currency: Currency) -> SpendingWindow {
        self.spending
            .get(account)
            .cloned()
            .unwrap_or_else(|| SpendingWindow::empty(currency))
    }

    fn context_for(&self, envelope: EnvelopeView, account: AccountView) -> PayerContext {
        let currency = account.currency;
        let balance = self.balance(&account.receive_number).max(0) as u64;
        PayerContext {
            envelope,
            balance: Amount::from_minor(balance, currency).unwrap(),
            spending: self
                .window(&account.receive_number, currency)
                .spending(self.now, 0),
            account,
        }
    }

    pub fn payer_context_by_account(&self, number: &AccountNumber) -> Option<PayerContext> {
        let account = self.accounts.get(number)?.clone();
        let envelope = self
            .envelopes
            .values()
            .find(|view| matches!(view.status, EnvelopeStatus::Active { account: a } | EnvelopeStatus::Locked { account: a } if a == *number))?
            .clone();
        Some(self.context_for(envelope, account))
    }

    pub fn payee_context(
        &self,
        payee: AccountNumber,
        payer: AccountNumber,
    ) -> Option<PayeeContext> {
        let account = self.accounts.get(&payee)?.clone();
        let envelope = self
            .envelopes
            .values()
            .find(|view| matches!(view.status, EnvelopeStatus::Active { account: a } if a == payee))
            .cloned();
        let payer_currency = self
            .accounts
            .get(&payer)
            .map(|view| view.currency)
            .unwrap_or(account.currency);
        Some(PayeeContext {
            account,
            envelope,
            paid_by_payer_today: self
                .window(&payer, payer_currency)
                .paid_today_to(&payee, self.now, 0),
        })
    }

    /// Delivers one SMS with a fresh gateway message id.
    pub fn sms(&mut self, from: &str, text: &str, now: UnixSeconds) -> Outcome {
        self.next_message += 1;
        let id = format!("gw-{}", self.next_message);
        self.sms_with_id(&id, from, text, now)
    }

    /// Delivers one SMS with a given gateway message id (to simulate gateway retries).
    pub fn sms_with_id(&mut self, id: &str, from: &str, text: &str, now: UnixSeconds) -> Outcome {
        self.now = now;
        let inbound = Inbound {
            message_id: id.to_string(),
            from: phone(from),
            text: text.to_string(),
            received_at: now,
        };
        let outcome = {
            let me = &*self;
            run_to_outcome(
                &me.engine,
                inbound,
                |reference| me.payer_context(reference),
                |euin, row| me.pending.get(&(euin, row)).cloned(),
                |payee, payer| me.payee_context(payee, payer),
                |euin| me.envelopes.get(&euin).cloned(),
            )
        };
        self.apply(&outcome);
        outcome
    }

    pub fn apply(&mut self, outcome: &Outcome) {
        for reply in &outcome.replies {
            assert!(reply.text.len() <= 160, "reply too long: {}", reply.text);
            assert!(
                reply.text.chars().all(|c| c.is_ascii_graphic() || c == ' '),
                "not GSM-7 safe: {}",
                reply.text
            );
            assert!(!reply.text.is_empty());
        }
        for effect in &outcome.effects {
            match effect {
                Effect::UpdateEnvelope {
                    euin,
                    expected_used_rows,
                    used_rows,
                    consecutive_failures,
                    status,
                    binding,
                } => {
                    let view = self.envelopes.get_mut(euin).unwrap();
                    assert_eq!(
                        view.used_rows, *expected_used_rows,
                        "compare-and-set on the row set"
                    );
                    view.used_rows = *used_rows;
                    view.consecutive_failures = *consecutive_failures;
                    view.status = *status;
                    view.binding = *binding;
                }
                Effect::CreatePending(pending) => {
                    self.pending
                        .insert((pending.euin, pending.callback_row), pending.clone());
                }
                Effect::RemovePending { euin, callback_row } => {
                    self.pending.remove(&(*euin, *callback_row));
                }
                Effect::Schedule(payment) => self.scheduled.push(payment.clone()),
                Effect::SetLimits { account, limits } => {
                    self.account_mut(account).limits = limits.clone()
                }
                Effect::SetDialbackThreshold { account, threshold } => {
                    self.account_mut(account).dialback_threshold = Some(*threshold)
                }
                Effect::SetAlwaysCallback { account, on } => {
                    self.account_mut(account).always_callback = *on
                }
                Effect::SetWebPassword { account, password } => {
                    self.passwords
                        .insert(*account, password.expose().to_string());
                }
                Effect::OpenDispute {
                    account, reference, ..
                } => self.disputes.push((*account, reference.value())),
                Effect::SendStatement { .. } => {}
                Effect::ReportReplay { .. } => self.replays += 1,
                other => panic!("unknown effect {other:?}"),
            }
        }
        let fresh = outcome
            .postings
            .iter()
            .all(|posting| !self.posted.contains(&posting.transfer_id));
        for posting in &outcome.postings {
            if !self.posted.insert(posting.transfer_id) {
                continue;
            }
            let minor = i128::from(posting.amount.minor());
            *self.balances.entry(posting.debit).or_default() -= minor;
            *self.balances.entry(posting.credit).or_default() += minor;
        }
        if fresh && let Some((payer, payee, amount)) = payment_of(&outcome.postings) {
            let limits = self.accounts[&payer].limits.clone();
            let now = self.now;
            self.spending
                .entry(payer)
                .or_insert_with(|| SpendingWindow::empty(amount.currency()))
                .record_payment(&limits, &payee, amount, now, 0);
        }
        // Money is conserved in every currency.
        let mut sums: HashMap<Currency, i128> = HashMap::new();
        for (account, minor) in &self.balances {
            let currency = match account {
                LedgerAccount::Customer(number) => self.accounts[number].currency,
                LedgerAccount::Fees(currency) | LedgerAccount::ExchangeFloat(currency) => *currency,
            };
            *sums.entry(currency).or_default() += minor;
        }
        for (currency, sum) in sums {
            assert_eq!(sum, 0, "money not conserved in {currency}");
        }
        self.sent.extend(outcome.replies.iter().cloned());
    }

    pub fn envelope(&self, euin: &Euin) -> &EnvelopeView {
        &self.envelopes[euin]
    }
}

/// What the holder writes for a low-security payment with `row` of `envelope`.
pub fn low_pay(envelope: &Envelope, payer: &str, payee: &str, amount: &Amount, row: u8) -> String {
    low_text(envelope, payer, &account(payee), amount, row).unwrap()
}

/// What the holder writes for a middle (`PAYG`) or high (`PAYC`) payment.
pub fn grid_pay(
    envelope: &Envelope,
    keyword: &str,
    payer: &str,
    payee: &str,
    amount: &Amount,
    row: u8,
) -> String {
    let level = match keyword {
        "PAYG" => SecurityLevel::Middle,
        "PAYC" => SecurityLevel::High,
        other => panic!("{other} is not a grid keyword"),
    };
    grid_text(envelope, level, payer, &account(payee), amount, row).unwrap()
}

pub fn tan(envelope: &Envelope, row: u8) -> String {
    envelope.row(row).unwrap().tan().reveal()
}

/// The checksum row `row`'s recipe gives over `payee` and `amount`, as six digits: what the
/// holder writes in an OK (protocol v2) and compares with the bank's `SUM` in a callback.
pub fn sum(envelope: &Envelope, row: u8, payee: &str, amount: &Amount) -> String {
    let checksum = envelope
        .row(row)
        .unwrap()
        .recipe()
        .checksum(&account(payee), amount);
    checksum.iter().map(|d| char::from(b'0' + d)).collect()
}

/// A settings message with its row's SUM (protocol v3): `text` has `000000` where the SUM goes;
/// the payer's account is in KES.
pub fn signed(envelope: &Envelope, text: &str) -> String {
    offpay_sms_tan::compose::setting_text(envelope, offpay_money::Currency::KES, text)
        .unwrap_or_else(|| panic!("not a settings message: {text}"))
}

/// The `REG` the holder of `envelope` writes with `row` to register `new_envelope`.
pub fn register(envelope: &Envelope, payer: &str, new_envelope: &str, row: u8) -> String {
    let new_envelope = Euin::parse(new_envelope).unwrap();
    offpay_sms_tan::compose::register_text(envelope, payer, &new_envelope, row).unwrap()
}
