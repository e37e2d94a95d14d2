//! Rail 2 in a run: account holders paying by SMS with rows of their printed TAN envelopes,
//! through the operator's half (`offpay_sms_tan::operator`) over the shared ledger.
//!
//! Adversaries: an interceptor on the SMS channel (drops, delays, reorders, duplicates under the
//! same or a new gateway id, rewrites amounts in payments and values in settings messages,
//! towards its own account); a thief with a stolen envelope, sending from its own phone; a
//! database administrator who inserts scheduled payments from honest accounts to its own.
//! Faults: operator restarts. Operator actions: scheduler passes, per-payment limit changes.

use std::sync::Arc;

use offpay_ledger::{LedgerStore, Operation, RecordWrite, Transfer, TransferId, TransferKind};
use offpay_money::{Amount, Currency};
use offpay_operator::accounts::{OPERATOR_FLOAT, operator_account_id, operator_accounts};
use offpay_operator::{Effects, Loaded, SeededEntropy};
use offpay_sms_tan::envelope::{Envelope, RowCount};
use offpay_sms_tan::keys::MasterKey;
use offpay_sms_tan::numbers::{AccountNumber, Euin, PhoneNumber};
use offpay_sms_tan::operator::admin::{self, CreateAccount};
use offpay_sms_tan::operator::inbound::{InboundLoad, InboundSms, decide};
use offpay_sms_tan::operator::records::{self, AccountRecord, EnvelopeRecord};
use offpay_sms_tan::operator::scheduler;
use offpay_sms_tan::operator::settings::SettingsForm;
use offpay_sms_tan::operator::{Operator, Settings};

use crate::world::{Rail, Role, World};

/// Honest payers in a run.
pub const PAYERS: usize = 3;
/// Honest payees in a run.
pub const PAYEES: usize = 2;
/// Messages the interceptor holds back to deliver later.
pub const DELAYED_MAX: usize = 8;
/// Largest honest payment, in major units.
pub const PAYMENT_MAJOR_MAX: u64 = 500;
/// A payment's amount a rewrite may inflate without detection, in per mille of the amount the
/// holder wrote (the threat model's factor 1.1 of a derived recipe, §6.1).
pub const INFLATION_PER_MILLE_MAX: u64 = 1100;
/// Largest fee of one message, in minor units (the settings' high fee, KES 25).
pub const FEE_MINOR_MAX: u64 = 2_500;
/// Limit changes the run remembers.
pub const LIMIT_CHANGES_MAX: usize = 256;
/// Ledger history read per account check.
pub const HISTORY_MAX: usize = 512;

/// The invariant that an honest holder's phone-bound envelope is never locked: the
/// interceptor's replays of used rows and its rewritten messages are not the holder's wrong codes
/// (a fixed finding, seed 1; protocol §6.2). Only wrong codes on unused rows count, and the
/// holders here type every code right.
pub const INVARIANT_BOUND_ENVELOPE_NOT_LOCKED: &str = "sms_honest_bound_envelope_not_locked";

/// A documented residual seen: a low-level payment whose payee the interceptor rewrote to its own
/// account passed the checksum (the two hidden account positions unchanged; §6.2).
pub const RESIDUAL_LOW_PAYEE_SUBSTITUTION: &str = "sms_low_payee_substitution";

const INTERCEPTOR_ACCOUNT: &str = "555500001111";
const INSIDER_ACCOUNT: &str = "555500002222";
const THIEF_PHONE: &str = "+254799000001";
const GATEWAY: &str = "webhook";

/// What an honest holder meant a message to do.
#[derive(Clone, Debug)]
struct Intent {
    payee: String,
    amount_minor: u64,
    /// The interceptor's account, when it rewrote the payee of this payment: a substitution
    /// the low level's checksum misses when the two hidden account positions stay the same is
    /// the threat model's residual (§6.2), not a violation.
    substituted: Option<String>,
}

/// An honest account holder.
struct Holder {
    number: AccountNumber,
    phone: PhoneNumber,
    envelope: Envelope,
    next_row: u8,
    /// Payments the holder wrote (delivered or not).
    intents: Vec<Intent>,
    /// Settings messages the holder wrote.
    settings_sent: usize,
    /// The daily limit as the holder set it (minor units), when it set one.
    day_limit_minor: Option<Option<u64>>,
}

/// A message on its way.
#[derive(Clone)]
struct InFlight {
    id: String,
    from: String,
    text: String,
}

/// Rail 2's part of a run.
pub struct SmsRail {
    master: [u8; 32],
    operator: Arc<Operator>,
    entropy: SeededEntropy,
    holders: Vec<Holder>,
    payees: Vec<AccountNumber>,
    delayed: Vec<InFlight>,
    messages: u64,
    inserted: u64,
    /// Per-payment limits the operator set: (holder, when, the limit in minor units or none).
    limit_changes: Vec<(usize, u64, Option<u64>)>,
}

impl std::fmt::Debug for SmsRail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmsRail")
            .field("holders", &self.holders.len())
            .finish_non_exhaustive()
    }
}

fn settings() -> Settings {
    let form: Result<SettingsForm, _> = serde_json::from_str(
        r#"{"version":1,"fees":[{"currency":"KES","low":"10","middle":"15","high":"25"}],
            "dialback_defaults":[{"currency":"KES","amount":"500000"}],"rates":[],
            "hard_currencies":[],"utc_offset_minutes":0,"euin_prefix":263,
            "operator_name":"offpay","sms_number":"+254700000000"}"#,
    );
    match form.map(|form| form.settings()) {
        Ok(Ok(settings)) => settings,
        _ => panic!("the simulator's SMS settings are valid"),
    }
}

fn number(text: &str) -> AccountNumber {
    AccountNumber::parse(text).unwrap_or_else(|_| panic!("an account number: {text}"))
}

fn phone(text: &str) -> PhoneNumber {
    PhoneNumber::parse(text).unwrap_or_else(|_| panic!("a phone number: {text}"))
}

/// The simulated operator reads national phone numbers in Kenya.
fn kenya() -> offpay_operator::phone::Country {
    offpay_operator::phone::Country::parse("KE").unwrap_or_else(|_| panic!("Kenya"))
}

fn kes(minor: u64) -> Amount {
    Amount::from_minor(minor, Currency::KES).unwrap_or_else(|_| panic!("an amount"))
}

impl SmsRail {
    /// Opens the accounts, prints and binds the envelopes, deposits the payers' money.
    pub fn new(world: &mut World) -> SmsRail {
        let master = world.rng.bytes32();
        let operator = Operator::new(
            MasterKey::from_bytes(master),
            settings(),
            Currency::KES,
            kenya(),
        )
        .unwrap_or_else(|_| panic!("the SMS operator"));
        let entropy = crate::rng::operator_entropy(&mut world.rng);
        let mut rail = SmsRail {
            master,
            operator: Arc::new(operator),
            entropy,
            holders: Vec::new(),
            payees: Vec::new(),
            delayed: Vec::new(),
            messages: 0,
            inserted: 0,
            limit_changes: Vec::new(),
        };
        for index in 0..PAYERS {
            let account = format!("1111000022{index:02}");
            let phone_text = format!("+2547440000{index:02}");
            rail.open(
                world,
                &account,
                Some(&phone_text),
                std::slice::from_ref(&phone_text),
            );
            rail.deposit(world, &account, kes(1_000_000));
            let euin = Euin::issued(263, 1000 + index as u32)
                .unwrap_or_else(|_| panic!("an envelope number"));
            let envelope = Envelope::derive(rail.operator.master(), euin, RowCount::Twenty);
            rail.print(world, &euin);
            rail.bind(world, &euin, &account);
            world.party(Rail::SmsTan, account.clone(), Role::Honest);
            world.party(Rail::SmsTan, euin.to_string(), Role::Honest);
            rail.holders.push(Holder {
                number: number(&account),
                phone: phone(&phone_text),
                envelope,
                next_row: 1,
                intents: Vec::new(),
                settings_sent: 0,
                day_limit_minor: None,
            });
        }
        for index in 0..PAYEES {
            let account = format!("9010203778{index:02}");
            let phone_text = format!("+2547550000{index:02}");
            rail.open(world, &account, Some(&phone_text), &[]);
            world.party(Rail::SmsTan, account.clone(), Role::Honest);
            rail.payees.push(number(&account));
        }
        for account in [INTERCEPTOR_ACCOUNT, INSIDER_ACCOUNT] {
            rail.open(world, account, None, &[]);
            world.party(Rail::SmsTan, account, Role::Adversary);
        }
        rail
    }

    fn open(&mut self, world: &mut World, receive: &str, notify: Option<&str>, bound: &[String]) {
        let request = CreateAccount {
            receive_number: Some(receive.into()),
            currency: None,
            notify_phone: notify.map(str::to_owned),
            bound_phones: bound.to_vec(),
            require_pay_number: false,
        };
        let Ok(plan) = request.plan(Currency::KES, kenya()) else {
            world.fail("sms_operator", "an account plan");
            return;
        };
        let (operator, entropy) = (self.operator.clone(), &self.entropy);
        let opened = world.run(
            |store, _| plan.load(store),
            |existing, now| admin::decide_new_account(existing, &plan, &operator, entropy, now.0),
        );
        world.counters.operations += 1;
        if let Err(error) = opened {
            world.fail("sms_operator", format!("opening {receive}: {error}"));
        }
    }

    fn deposit(&mut self, world: &mut World, receive: &str, amount: Amount) {
        let mut effects = Effects::new();
        effects.create_accounts(operator_accounts(Currency::KES, Currency::KES));
        let (Ok(id), Some(float)) = (
            TransferId::new(format!("sim-cash-in:{receive}")),
            operator_account_id(OPERATOR_FLOAT, Currency::KES, Currency::KES),
        ) else {
            return;
        };
        effects.post(Transfer {
            id,
            debit_account: float,
            credit_account: records::ledger_account(&number(receive)),
            amount,
            kind: TransferKind::Posted,
            memo: "cash in".into(),
        });
        if !matches!(world.commit(effects), Ok(true)) {
            world.fail("sms_operator", "a cash-in");
        }
    }

    fn print(&mut self, world: &mut World, euin: &Euin) {
        let mut effects = Effects::new();
        let key = records::envelope_key(euin);
        let record = EnvelopeRecord::unallocated(euin, RowCount::Twenty, None, world.now.0)
            .sealed(self.operator.master(), &key);
        match offpay_sms_tan::operator::apply::create(key, &record) {
            Ok(operation) => effects.write(operation),
            Err(error) => world.fail("sms_operator", error.to_string()),
        }
        if !matches!(world.commit(effects), Ok(true)) {
            world.fail("sms_operator", "printing an envelope");
        }
    }

    fn bind(&mut self, world: &mut World, euin: &Euin, account: &str) {
        let account = number(account);
        let operator = self.operator.clone();
        let bound = world.run(
            |store, _| admin::load_bind(store, euin, &account),
            |load, now| admin::decide_bind(load, euin, &account, &operator, now),
        );
        if let Err(error) = bound {
            world.fail("sms_operator", format!("binding {euin}: {error}"));
        }
    }

    /// The operator takes one inbound message (as the webhook does).
    fn deliver(&mut self, world: &mut World, message: &InFlight) {
        let Ok(from) = PhoneNumber::parse(&message.from) else {
            return;
        };
        let sms = InboundSms {
            gateway: GATEWAY.into(),
            message_id: message.id.clone(),
            from,
            text: message.text.clone(),
            answer_inline: true,
        };
        let (operator, entropy) = (self.operator.clone(), &self.entropy);
        let mut attempt = 0;
        let answer = world.run(
            |store, now| {
                attempt += 1;
                InboundLoad::start(operator.clone(), sms.clone(), now, attempt > 1)
                    .run_on(store, None, entropy)
            },
            |loaded, now| decide(loaded, now, &operator, &[]),
        );
        match answer {
            Ok(answer) => world.event(format!(
                "sms {} from {}: {:?} duplicate {} {:?}",
                message.id,
                message.from,
                answer.summary.verdict,
                answer.duplicate,
                answer.replies.first()
            )),
            Err(error) => world.event(format!("sms {} refused: {error}", message.id)),
        }
    }

    fn next_id(&mut self) -> String {
        self.messages += 1;
        format!("gw-{}", self.messages)
    }

    /// The interceptor's hand on a message: deliver, duplicate, drop, delay or rewrite; the
    /// rewritten text when it rewrote it.
    fn send(
        &mut self,
        world: &mut World,
        message: InFlight,
        rewrite: impl Fn(&str, &mut crate::rng::Rng) -> Option<String>,
    ) -> Option<String> {
        let fate = world.rng.below(100);
        match fate {
            0..=64 => {
                self.deliver(world, &message);
                None
            }
            65..=72 => {
                world.counters.faults += 1;
                self.deliver(world, &message);
                self.deliver(world, &message); // the gateway's retry: same id
                None
            }
            73..=77 => {
                world.counters.attacks += 1;
                self.deliver(world, &message);
                let again = InFlight {
                    id: self.next_id(),
                    ..message
                };
                self.deliver(world, &again); // re-injected under a new id
                None
            }
            78..=82 => {
                world.counters.faults += 1;
                world.event(format!("sms {} dropped", message.id));
                None
            }
            83..=89 => {
                world.counters.faults += 1;
                if self.delayed.len() >= DELAYED_MAX {
                    let first = self.delayed.remove(0);
                    self.deliver(world, &first);
                }
                world.event(format!("sms {} delayed", message.id));
                self.delayed.push(message);
                None
            }
            _ => {
                world.counters.attacks += 1;
                match rewrite(&message.text, &mut world.rng) {
                    Some(text) => {
                        world.event(format!("sms {} rewritten", message.id));
                        let changed = InFlight {
                            text: text.clone(),
                            ..message
                        };
                        self.deliver(world, &changed);
                        Some(text)
                    }
                    None => {
                        self.deliver(world, &message);
                        None
                    }
                }
            }
        }
    }

    /// One step of the rail.
    pub fn step(&mut self, world: &mut World) {
        match world.rng.below(100) {
            0..=49 => self.pay(world),
            50..=58 => self.set_day_limit(world),
            59..=61 => self.operator_limit(world),
            62..=69 => self.release_delayed(world),
            70..=77 => self.thief(world),
            78..=87 => self.insider(world),
            88..=94 => self.scheduler(world),
            _ => {
                world.counters.faults += 1;
                let operator = Operator::new(
                    MasterKey::from_bytes(self.master),
                    settings(),
                    Currency::KES,
                    kenya(),
                )
                .unwrap_or_else(|_| panic!("the SMS operator"));
                self.operator = Arc::new(operator);
                world.event("sms operator restart");
                world.check_acknowledged();
            }
        }
    }

    fn row(&mut self, holder: usize) -> Option<u8> {
        let holder = &mut self.holders[holder];
        if holder.next_row > 20 {
            return None;
        }
        let row = holder.next_row;
        holder.next_row += 1;
        Some(row)
    }

    fn pay(&mut self, world: &mut World) {
        let holder = world.rng.index(self.holders.len());
        let Some(row) = self.row(holder) else { return };
        let payee = self.payees[world.rng.index(self.payees.len())];
        let amount = kes(world.rng.between(1, PAYMENT_MAJOR_MAX) * 100);
        let payer_text = self.holders[holder].envelope.euin.to_string();
        let Some(text) = offpay_sms_tan::compose::low_text(
            &self.holders[holder].envelope,
            &payer_text,
            &payee,
            &amount,
            row,
        ) else {
            return;
        };
        self.holders[holder].intents.push(Intent {
            payee: records::ledger_account(&payee).to_string(),
            amount_minor: amount.minor(),
            substituted: None,
        });
        world.counters.operations += 1;
        let message = InFlight {
            id: self.next_id(),
            from: self.holders[holder].phone.to_string(),
            text,
        };
        let rewritten = self.send(world, message, |text, rng| {
            // The interceptor changes one digit of the amount, or names its own account.
            let mut words: Vec<String> = text.split(' ').map(str::to_owned).collect();
            if words.len() < 6 {
                return None;
            }
            if rng.percent(50) {
                words[2] = INTERCEPTOR_ACCOUNT.to_owned();
            } else {
                let amount = &mut words[3];
                let digits: Vec<usize> = amount
                    .char_indices()
                    .filter(|(_, character)| character.is_ascii_digit())
                    .map(|(index, _)| index)
                    .collect();
                let at = digits[rng.index(digits.len())];
                let digit = (amount.as_bytes()[at] - b'0' + 1 + rng.below(8) as u8) % 10;
                amount.replace_range(at..=at, &digit.to_string());
            }
            Some(words.join(" "))
        });
        if let Some(text) = rewritten
            && text.split(' ').nth(2) == Some(INTERCEPTOR_ACCOUNT)
            && let Some(intent) = self.holders[holder].intents.last_mut()
        {
            intent.substituted =
                Some(records::ledger_account(&number(INTERCEPTOR_ACCOUNT)).to_string());
        }
    }

    /// The holder sets its daily limit; the interceptor may change the value on the way.
    fn set_day_limit(&mut self, world: &mut World) {
        let holder = world.rng.index(self.holders.len());
        let Some(row) = self.row(holder) else { return };
        let major = world.rng.between(1, 50) * 100;
        let euin = self.holders[holder].envelope.euin;
        let Some(text) = offpay_sms_tan::compose::setting_text(
            &self.holders[holder].envelope,
            Currency::KES,
            &format!("LIMIT {euin} DAY {major} {row} 000000"),
        ) else {
            world.fail("sms_device", "a settings message");
            return;
        };
        world.counters.operations += 1;
        self.holders[holder].settings_sent += 1;
        let before = self.day_limit(world, holder);
        let message = InFlight {
            id: self.next_id(),
            from: self.holders[holder].phone.to_string(),
            text,
        };
        self.send(world, message, |text, _| {
            // DAY 300 → DAY 300000: raise the holder's limit (for a thief).
            let words: Vec<&str> = text.split(' ').collect();
            if words.len() < 6 {
                return None;
            }
            let mut changed: Vec<String> = words.iter().map(|word| (*word).to_owned()).collect();
            changed[3] = format!("{}000", words[3]);
            Some(changed.join(" "))
        });
        let after = self.day_limit(world, holder);
        let intended = Some(major * 100);
        if after != before {
            self.holders[holder].day_limit_minor = Some(after);
        }
        world.check(
            "sms_settings_are_the_holders",
            after == before || after == intended,
            || {
                format!(
                    "{}: daily limit {after:?}; the holder had {before:?} and wrote {intended:?}",
                    self.holders[holder].number
                )
            },
        );
    }

    /// The operator changes a holder's per-payment limit (`PATCH /api/v1/sms/accounts/{number}`):
    /// lowered to 10–500 KES (under the largest honest payment) or lifted. From then on no
    /// payment above it leaves the account (`sms_operator_per_payment_limit_holds`).
    fn operator_limit(&mut self, world: &mut World) {
        let holder = world.rng.index(self.holders.len());
        let limit_minor =
            (!world.rng.percent(30)).then(|| world.rng.between(10, PAYMENT_MAJOR_MAX) * 100);
        let text =
            limit_minor.map_or_else(|| "none".to_owned(), |minor| format!("{}", minor / 100));
        let Ok(changes) = serde_json::from_value::<admin::AccountChanges>(
            serde_json::json!({ "per_payment": text }),
        ) else {
            world.fail("sms_operator", "account changes");
            return;
        };
        let number = self.holders[holder].number;
        let operator = self.operator.clone();
        let result = world.run(
            |store, _| Loaded::<AccountRecord>::read(store, &records::account_key(&number)),
            |loaded, _| {
                admin::decide_account_changes(loaded, &number, &changes, operator.master(), kenya())
            },
        );
        world.counters.operations += 1;
        world.event(format!(
            "sms operator limit {number} per payment {text}: {}",
            result.is_ok()
        ));
        match result {
            Ok(_) => {
                if self.limit_changes.len() >= LIMIT_CHANGES_MAX {
                    self.limit_changes.remove(0);
                }
                self.limit_changes.push((holder, world.now.0, limit_minor));
            }
            Err(error) => world.fail("sms_operator", format!("limits: {error}")),
        }
    }

    /// The per-payment limit the operator had set on `holder` at `at` (milliseconds), if any.
    fn per_payment_at(&self, holder: usize, at: u64) -> Option<u64> {
        self.limit_changes
            .iter()
            .rfind(|(who, when, _)| *who == holder && *when <= at)
            .and_then(|(_, _, limit)| *limit)
    }

    fn day_limit(&self, world: &mut World, holder: usize) -> Option<u64> {
        let key = records::account_key(&self.holders[holder].number);
        Loaded::<AccountRecord>::read(&mut world.store, &key)
            .ok()
            .and_then(|loaded| loaded.value)
            .and_then(|record| record.limits.per_day.map(|amount| amount.minor()))
    }

    fn release_delayed(&mut self, world: &mut World) {
        if self.delayed.is_empty() {
            return;
        }
        // Out of order: any held message.
        let index = world.rng.index(self.delayed.len());
        let message = self.delayed.remove(index);
        self.deliver(world, &message);
    }

    /// A thief with a holder's envelope pays itself from its own phone with an unused row.
    fn thief(&mut self, world: &mut World) {
        world.counters.attacks += 1;
        let holder = world.rng.index(self.holders.len());
        let row = self.holders[holder].next_row.clamp(1, 20);
        let payer_text = self.holders[holder].envelope.euin.to_string();
        let Some(text) = offpay_sms_tan::compose::low_text(
            &self.holders[holder].envelope,
            &payer_text,
            &number(INTERCEPTOR_ACCOUNT),
            &kes(10_000),
            20 - (row % 10),
        ) else {
            return;
        };
        let message = InFlight {
            id: self.next_id(),
            from: THIEF_PHONE.into(),
            text,
        };
        self.deliver(world, &message);
    }

    /// A database administrator inserts a scheduled payment from an honest account to its own.
    fn insider(&mut self, world: &mut World) {
        world.counters.attacks += 1;
        self.inserted += 1;
        let holder = world.rng.index(self.holders.len());
        let due = world.now.0 / 1000;
        let message_id = format!("dba-{}", self.inserted);
        let key = records::scheduled_key(offpay_sms_tan::civil_time::UnixSeconds(due), &message_id);
        let value = serde_json::json!({
            "version": 1,
            "message_id": message_id,
            "payer": self.holders[holder].number.to_string(),
            "payee": INSIDER_ACCOUNT,
            "amount_minor": 20_000,
            "currency": "KES",
            "level": "low",
            "due": due,
            "reply_to": "+254700000099",
            "reference": format!("{:08}", self.inserted),
            "mac": hex::encode([0u8; 32]),
        });
        let write = Operation::PutRecord(RecordWrite {
            namespace: records::NAMESPACE.into(),
            key: key.clone(),
            value: Some(value.to_string().into_bytes()),
            expected_version: None,
        });
        let mut effects = Effects::new();
        effects.write(write);
        if matches!(world.commit(effects), Ok(true)) {
            world.event(format!("sms insider inserts {key}"));
            world.expect_flag(
                Rail::SmsTan,
                key,
                &["record_tampered"],
                "a scheduled payment inserted by a database administrator",
            );
        }
    }

    /// One pass of the scheduler: every due scheduled payment.
    fn scheduler(&mut self, world: &mut World) {
        world.counters.operations += 1;
        let Ok(page) = world.store.records(
            records::NAMESPACE,
            records::SCHEDULED_PREFIX,
            None,
            scheduler::SCHEDULER_PAGE,
        ) else {
            return;
        };
        let (due, errors) = scheduler::due_payments(&page, world.now);
        world.check("sms_records_decode", errors.is_empty(), || {
            format!("{errors:?}")
        });
        let operator = self.operator.clone();
        for key in due {
            let result = world.run(
                |store, now| scheduler::load_scheduled(store, &key, &operator, now),
                |load, now| scheduler::decide_scheduled(load, now, &operator, &[]),
            );
            world.event(format!(
                "sms scheduled {key}: {:?}",
                result.map(|paid| paid.is_some())
            ));
        }
    }

    /// The end of a run: the interceptor delivers what it held, the scheduler runs.
    pub fn settle(&mut self, world: &mut World) {
        while !self.delayed.is_empty() {
            let message = self.delayed.remove(0);
            self.deliver(world, &message);
        }
        self.scheduler(world);
    }

    /// After every step: every debit of an honest payer's account is a fee or a payment the
    /// holder wrote (once, to the payee it named, at most the §6.1 factor over the amount), and
    /// no honest holder's envelope is locked.
    pub fn check(&mut self, world: &mut World) {
        let fees_prefix = "operator:fees";
        for holder in 0..self.holders.len() {
            let account = records::ledger_account(&self.holders[holder].number);
            let Ok(history) = world.store.history(&account, None, HISTORY_MAX) else {
                world.fail("sms_ledger", "history");
                continue;
            };
            let mut open: Vec<Intent> = self.holders[holder].intents.clone();
            let mut fees = 0usize;
            let mut problems = Vec::new();
            let mut debits: Vec<(u64, String, String)> = Vec::new();
            let mut substitutions = 0usize;
            let mut over_limit = Vec::new();
            for record in &history {
                let transfer = &record.transfer;
                if transfer.debit_account != account {
                    continue;
                }
                let to = transfer.credit_account.to_string();
                let minor = transfer.amount.minor();
                if to.starts_with(fees_prefix) {
                    fees += 1;
                    if minor > FEE_MINOR_MAX {
                        problems.push(format!("a fee of {minor}"));
                    }
                    continue;
                }
                if let Some(limit) = self.per_payment_at(holder, record.committed_at.0)
                    && minor > limit
                {
                    over_limit.push(format!("{} {minor} over {limit}", transfer.id));
                }
                debits.push((minor, to, transfer.id.to_string()));
            }
            // Largest debit first, each to the smallest intent it may come from: a matching
            // exists exactly when this finds one.
            debits.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.2.cmp(&b.2)));
            for (minor, to, id) in debits {
                let found = open
                    .iter()
                    .enumerate()
                    .filter(|(_, intent)| {
                        (intent.payee == to || intent.substituted.as_deref() == Some(to.as_str()))
                            && minor * 1000 <= intent.amount_minor * INFLATION_PER_MILLE_MAX
                    })
                    .min_by_key(|(_, intent)| intent.amount_minor)
                    .map(|(index, _)| index);
                match found {
                    Some(index) => {
                        if open[index].payee != to {
                            substitutions += 1;
                        }
                        open.remove(index);
                    }
                    None => problems.push(format!("{id} {minor} to {to}")),
                }
            }
            let sent = self.holders[holder].intents.len() + self.holders[holder].settings_sent;
            if fees > sent {
                problems.push(format!("{fees} fees for {sent} messages"));
            }
            if substitutions > 0 {
                world.residual(RESIDUAL_LOW_PAYEE_SUBSTITUTION);
            }
            let number = self.holders[holder].number;
            world.check(
                "honest_sms_payer_pays_only_what_it_wrote",
                problems.is_empty(),
                || format!("{number}: {problems:?}"),
            );
            world.check(
                "sms_operator_per_payment_limit_holds",
                over_limit.is_empty(),
                || format!("{number}: {over_limit:?}"),
            );
        }
        self.check_not_locked(world);
    }

    /// At the end of a run: conservation and flags are checked by the world; the per-step checks
    /// once again.
    pub fn final_check(&mut self, world: &mut World) {
        self.check(world);
    }

    /// No honest holder's envelope is locked: every holder binds its phone and types its codes
    /// right, so only the interceptor's replays and rewrites could have counted.
    fn check_not_locked(&mut self, world: &mut World) {
        for holder in &self.holders {
            let key = records::envelope_key(&holder.envelope.euin);
            let locked = Loaded::<EnvelopeRecord>::read(&mut world.store, &key)
                .ok()
                .and_then(|loaded| loaded.value)
                .is_some_and(|record| {
                    matches!(
                        record.view.status,
                        offpay_sms_tan::envelope::EnvelopeStatus::Locked { .. }
                    )
                });
            world.check(INVARIANT_BOUND_ENVELOPE_NOT_LOCKED, !locked, || {
                format!(
                    "{} of {} locked: the interceptor's messages counted as the holder's wrong codes",
                    holder.envelope.euin, holder.number
                )
            });
        }
    }
}
