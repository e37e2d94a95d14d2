//! Test helpers: commit effects to a [`MemoryStore`] the way the server's runner does, and run a
//! load → decide → commit loop on it.

use offpay_ledger::{LedgerStore, MemoryStore, Refusal, Timestamp};
use offpay_operator::{Decision, Effects};

/// Commits `effects`; true when every batch committed, false when one was refused as stale.
/// Panics on any other refusal.
pub fn commit(store: &mut MemoryStore, effects: Effects, now: Timestamp) -> bool {
    let batches = effects.into_batches();
    if batches.is_empty() {
        return true;
    }
    let results = store
        .commit(&batches, now)
        .expect("the memory store commits");
    for result in results {
        match result {
            Ok(_) => {}
            Err(refusal) if matches!(refusal.reason, Refusal::RecordVersionMismatch { .. }) => {
                return false;
            }
            Err(refusal) => panic!("refused: {refusal}"),
        }
    }
    true
}

/// Loads, decides and commits, again from the load when a write was stale, like the server's
/// runner (at most 8 times).
pub fn run<L, T, E: std::fmt::Debug>(
    store: &mut MemoryStore,
    now: Timestamp,
    mut load: impl FnMut(&mut dyn LedgerStore) -> L,
    mut decide: impl FnMut(L) -> Result<Decision<T>, E>,
) -> Result<T, E> {
    for _ in 0..8 {
        let loaded = load(store);
        match decide(loaded)? {
            Decision::Commit { effects, reply } => {
                if commit(store, effects, now) {
                    return Ok(reply);
                }
            }
            Decision::Reload => {}
        }
    }
    panic!("the records kept changing")
}

use std::sync::Arc;

use offpay_ledger::{Amount, Currency, Transfer, TransferId as LedgerTransferId, TransferKind};
use offpay_operator::accounts::{OPERATOR_FLOAT, operator_account_id, operator_accounts};
use offpay_operator::{Loaded, SeededEntropy};

use crate::envelope::{Envelope, RowCount};
use crate::keys::MasterKey;
use crate::numbers::{AccountNumber, Euin, PhoneNumber};
use crate::operator::admin::{self, CreateAccount};
use crate::operator::inbound::{InboundAnswer, InboundLoad, InboundSms, decide};
use crate::operator::records::{self, AccountRecord, EnvelopeRecord};
use crate::operator::settings::SettingsForm;
use crate::operator::{Operator, Settings};

/// The master key of the test operator.
pub const MASTER: [u8; 32] = [0x5a; 32];
/// A start time: 2026-09-21 (a Monday) about 15:33 UTC.
pub const T0: Timestamp = Timestamp(1_790_000_000_000);
pub const PAYER: &str = "111100002222";
pub const PAYEE: &str = "901020377865";
pub const PAYER_PHONE: &str = "+254700000001";
pub const PAYEE_PHONE: &str = "+254700000002";
pub const PAYER_EUIN: &str = "26399912345";

pub fn kes(text: &str) -> Amount {
    Amount::parse(text, Currency::KES).unwrap()
}

pub fn number(text: &str) -> AccountNumber {
    AccountNumber::parse(text).unwrap()
}

pub fn phone(text: &str) -> PhoneNumber {
    PhoneNumber::parse(text).unwrap()
}

/// Kenya: the tests' operator reads national phone numbers there.
pub fn kenya() -> offpay_operator::phone::Country {
    offpay_operator::phone::Country::parse("KE").unwrap()
}

/// Fees KES 10 / 15 / 25, callback from KES 500000.
pub fn settings() -> Settings {
    serde_json::from_str::<SettingsForm>(
        r#"{"version":1,"fees":[{"currency":"KES","low":"10","middle":"15","high":"25"}],
            "dialback_defaults":[{"currency":"KES","amount":"500000"}],"rates":[],
            "hard_currencies":[],"utc_offset_minutes":0,"euin_prefix":263,
            "operator_name":"offpay","sms_number":"+254700000000"}"#,
    )
    .unwrap()
    .settings()
    .unwrap()
}

/// An operator over a memory store, with a payer (KES 10000, envelope [`PAYER_EUIN`] bound) and a
/// payee (notices to [`PAYEE_PHONE`]).
pub struct World {
    pub store: MemoryStore,
    pub operator: Arc<Operator>,
    pub entropy: SeededEntropy,
    pub envelope: Envelope,
    pub now: Timestamp,
    messages: u64,
}

impl World {
    pub fn new() -> World {
        let operator = Operator::new(
            MasterKey::from_bytes(MASTER),
            settings(),
            Currency::KES,
            kenya(),
        )
        .unwrap();
        let euin = Euin::parse(PAYER_EUIN).unwrap();
        let envelope = Envelope::derive(operator.master(), euin, RowCount::Twenty);
        let mut world = World {
            store: MemoryStore::new(),
            operator: Arc::new(operator),
            entropy: SeededEntropy::from_seed(1),
            envelope,
            now: T0,
            messages: 0,
        };
        world.open(PAYER, None, Some(kes("10000")));
        world.open(PAYEE, Some(PAYEE_PHONE), None);
        world.print(&euin);
        world.bind(&euin, PAYER);
        world
    }

    pub fn open(&mut self, receive: &str, notify: Option<&str>, deposit: Option<Amount>) {
        let request = CreateAccount {
            receive_number: Some(receive.into()),
            currency: None,
            notify_phone: notify.map(str::to_owned),
            bound_phones: Vec::new(),
            require_pay_number: false,
        };
        let plan = request.plan(Currency::KES, kenya()).unwrap();
        let (operator, entropy, now) = (self.operator.clone(), &self.entropy, self.now);
        run(
            &mut self.store,
            now,
            |store| plan.load(store).unwrap(),
            |existing| admin::decide_new_account(existing, &plan, &operator, entropy, now.0),
        )
        .unwrap();
        if let Some(deposit) = deposit {
            let mut effects = Effects::new();
            effects.create_accounts(operator_accounts(Currency::KES, Currency::KES));
            effects.post(Transfer {
                id: LedgerTransferId::new(format!("cash-in:{receive}")).unwrap(),
                debit_account: operator_account_id(OPERATOR_FLOAT, Currency::KES, Currency::KES)
                    .unwrap(),
                credit_account: records::ledger_account(&number(receive)),
                amount: deposit,
                kind: TransferKind::Posted,
                memo: "cash in".into(),
            });
            assert!(commit(&mut self.store, effects, self.now));
        }
    }

    pub fn print(&mut self, euin: &Euin) {
        let mut effects = Effects::new();
        effects.write(
            crate::operator::apply::create(
                records::envelope_key(euin),
                &EnvelopeRecord::unallocated(euin, RowCount::Twenty, None, self.now.0)
                    .sealed(self.operator.master(), &records::envelope_key(euin)),
            )
            .unwrap(),
        );
        assert!(commit(&mut self.store, effects, self.now));
    }

    pub fn bind(&mut self, euin: &Euin, account: &str) {
        let account = number(account);
        let (operator, now) = (self.operator.clone(), self.now);
        run(
            &mut self.store,
            now,
            |store| admin::load_bind(store, euin, &account).unwrap(),
            |load| admin::decide_bind(load, euin, &account, &operator, now),
        )
        .unwrap();
    }

    /// The inbound message `text` from `from`, with message id `id`, as a webhook delivers it.
    pub fn sms_with_id(&mut self, id: &str, from: &str, text: &str) -> InboundAnswer {
        let sms = InboundSms {
            gateway: "webhook".into(),
            message_id: id.into(),
            from: phone(from),
            text: text.into(),
            answer_inline: true,
        };
        let (operator, now) = (self.operator.clone(), self.now);
        let entropy = &self.entropy;
        let mut attempt = 0;
        run(
            &mut self.store,
            now,
            |store| {
                attempt += 1;
                InboundLoad::start(operator.clone(), sms.clone(), now, attempt > 1)
                    .run_on(store, None, entropy)
                    .unwrap()
            },
            |loaded| decide(loaded, now, &operator, &[]),
        )
        .unwrap()
    }

    pub fn sms(&mut self, from: &str, text: &str) -> InboundAnswer {
        self.messages += 1;
        let id = format!("gw-{}", self.messages);
        self.sms_with_id(&id, from, text)
    }

    pub fn low(&self, payee: &str, amount: &str, row: u8) -> String {
        crate::compose::low_text(
            &self.envelope,
            PAYER_EUIN,
            &number(payee),
            &kes(amount),
            row,
        )
        .unwrap()
    }

    pub fn balance(&mut self, account: &str) -> i64 {
        self.store
            .account(&records::ledger_account(&number(account)))
            .unwrap()
            .map_or(0, |account| account.balance())
    }

    pub fn account(&mut self, account: &str) -> AccountRecord {
        Loaded::<AccountRecord>::read(&mut self.store, &records::account_key(&number(account)))
            .unwrap()
            .value
            .unwrap()
    }

    pub fn envelope_record(&mut self, euin: &str) -> Loaded<EnvelopeRecord> {
        Loaded::read(
            &mut self.store,
            &records::envelope_key(&Euin::parse(euin).unwrap()),
        )
        .unwrap()
    }
}

/// The 8-digit reference after `REF ` in a reply.
pub fn reference_in(reply: &str) -> String {
    reply
        .split("REF ")
        .nth(1)
        .map(|rest| rest.chars().take(8).collect())
        .unwrap_or_else(|| panic!("no reference in {reply}"))
}

/// The TAN of `row` of the world's payer envelope.
pub fn tan(world: &World, row: u8) -> String {
    world.envelope.row(row).unwrap().tan().reveal()
}

/// A settings message of the world's payer envelope with its row's SUM: `text` has `000000`
/// where the SUM goes.
pub fn signed(world: &World, text: &str) -> String {
    crate::compose::setting_text(&world.envelope, Currency::KES, text)
        .unwrap_or_else(|| panic!("not a settings message: {text}"))
}
