//! Rail 1 in a run: software purses (an agent, honest customers, and adversaries with full
//! control of their purse files), paying by codes offline and syncing with the operator's half
//! (`offpay_purse::book`) over the shared ledger.
//!
//! Adversaries: a payer who copies and restores its purse file to spend twice, paying honest
//! payees and its accomplice (colluding payer and payee); a payee who re-requests until its
//! purse draws a recorded N_B again and replays the recorded Code 2; a third party typing wrong
//! Code 2s against a merchant. Faults: lost sync answers, replayed
//! uploads, device crashes (the purse reopened from what it last wrote), drifting and jumping
//! device clocks, operator restarts; operator actions: floats and scheme-key rotations.

use offpay_ledger::Timestamp as LedgerTimestamp;
use offpay_money::{Amount, Currency};
use offpay_purse::book::{self, PurseChange, PurseOperator};
use offpay_purse::crypto::MasterKey;
use offpay_purse::{
    Code, Command, OperatorId, OperatorSecrets, Outcome, Phone, Pin, Provisioning, Purse,
    PurseKind, Timestamp,
};

use crate::world::{Rail, Role, World};

/// Honest customer purses in a run.
pub const CUSTOMERS_MAX: usize = 5;
/// Requests a replaying payee makes to draw a recorded N_B again (the N_B space of one key
/// parity is 5,000 values).
pub const REPLAY_REQUESTS_MAX: usize = 200;
/// Wrong Code 2s one attack types.
pub const WRONG_CODES_PER_ATTACK_MAX: u32 = 8;
/// Largest honest payment, in minor units.
pub const PAYMENT_MINOR_MAX: u64 = 50_000;
/// Largest payment of the restorer, in minor units: the small-payment limit (larger payments
/// need a pairwise key).
pub const RESTORER_PAYMENT_MINOR_MAX: u64 = 250_000;
/// Percent of the restorer's payments that go to its accomplice (the replaying payee).
pub const COLLUDE_PERCENT: u64 = 25;
/// Payments a draining restorer makes to one payee, restoring its file before each: past the
/// payee's receive cap (20,000 = 8 × 2,500).
pub const DRAIN_PAYMENTS_MAX: usize = 10;
/// Device clock drift per step, in seconds either way.
pub const DRIFT_SECONDS_MAX: u64 = 90;
/// Rounds of syncs at the end of a run: honest purses, adversaries, then everyone twice.
pub const SETTLE_ROUNDS: usize = 4;
/// Syncs a purse tries at the end of a run until the operator takes one.
pub const SETTLE_SYNCS_MAX: usize = 16;
/// Replay attacks one run tries (each costs up to [`REPLAY_REQUESTS_MAX`] requests).
pub const REPLAY_ATTACKS_MAX: u32 = 1;
/// Percent of runs whose replaying payee tries at all (the attack is the costliest step).
pub const REPLAY_RUNS_PERCENT: u64 = 50;

const PIN: &str = "2580";
const AGENT: &str = "+254711000000";
const RESTORER: &str = "+254722000001";
const REPLAYER: &str = "+254722000002";
const WRONG_CODER: &str = "+254722000003";

/// One purse of the run.
struct Device {
    purse: Purse,
    role: Role,
    /// Seconds the device clock is ahead of (or, negative, behind) the operator's.
    skew_seconds: i64,
    /// What an honest holder knows its purse holds (minor units), updated by each operation it
    /// sees complete.
    label: &'static str,
    /// What this (honest) payee took from each adversary since its last sync, minor units.
    taken_from_adversaries: std::collections::BTreeMap<String, u64>,
}

/// A recorded payment a replaying payee keeps.
struct Recorded {
    payer: usize,
    code1: Code,
    code2: Code,
    amount: Amount,
}

/// Rail 1's part of a run.
pub struct PurseRail {
    operator: PurseOperator,
    master: [u8; 32],
    devices: Vec<Device>,
    /// A copy of the restorer's purse file, taken before it paid.
    restorer_copy: Option<Vec<u8>>,
    /// Payments the replaying payee recorded.
    recorded: Vec<Recorded>,
    replays: u32,
    /// What the replaying payee was really paid, minor units, and what its purse held before.
    replayer_paid_minor: u64,
    currency: Currency,
    /// The honest payee the restorer paid last.
    restorer_payee: Option<usize>,
}

impl std::fmt::Debug for PurseRail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PurseRail")
            .field("devices", &self.devices.len())
            .finish_non_exhaustive()
    }
}

fn phone(text: &str) -> Phone {
    Phone::parse(text).unwrap_or_else(|_| panic!("a test phone number: {text}"))
}

fn pin() -> Pin {
    Pin::parse(PIN).unwrap_or_else(|_| panic!("the test PIN"))
}

fn seconds(now: LedgerTimestamp) -> u64 {
    now.0 / 1000
}

impl PurseRail {
    /// Provisions the fleet: an agent with a float, honest customers, three adversaries.
    pub fn new(world: &mut World) -> PurseRail {
        let master = world.rng.bytes32();
        let currency = Currency::KES;
        let operator = operator(master, currency);
        let mut rail = PurseRail {
            operator,
            master,
            devices: Vec::new(),
            restorer_copy: None,
            recorded: Vec::new(),
            replays: if world.rng.percent(REPLAY_RUNS_PERCENT) {
                0
            } else {
                REPLAY_ATTACKS_MAX
            },
            replayer_paid_minor: 0,
            currency,
            restorer_payee: None,
        };
        rail.provision(world, AGENT, PurseKind::Agent, Role::Honest, "agent");
        let customers = 3 + world.rng.index(CUSTOMERS_MAX - 2);
        for index in 0..customers {
            let number = format!("+2547330000{index:02}");
            rail.provision(
                world,
                &number,
                PurseKind::Customer,
                Role::Honest,
                "customer",
            );
        }
        rail.provision(
            world,
            RESTORER,
            PurseKind::Customer,
            Role::Adversary,
            "restorer",
        );
        rail.provision(
            world,
            REPLAYER,
            PurseKind::Customer,
            Role::Adversary,
            "replayer",
        );
        rail.provision(
            world,
            WRONG_CODER,
            PurseKind::Customer,
            Role::Adversary,
            "wrong-coder",
        );
        let float = Amount::from_minor(5_000_000, currency).unwrap_or_else(|_| panic!("float"));
        rail.float(world, 0, float);
        for index in 0..rail.devices.len() {
            rail.sync(world, index, false);
        }
        rail.sync(world, 0, false);
        // The restorer buys value at the agent, honestly, before it starts cheating.
        let restorer = rail.index_of(RESTORER);
        for _ in 0..2 {
            if let Ok(bought) = Amount::from_minor(RESTORER_PAYMENT_MINOR_MAX, currency) {
                rail.pay(world, 0, restorer, bought);
            }
        }
        rail
    }

    fn provision(
        &mut self,
        world: &mut World,
        number: &str,
        kind: PurseKind,
        role: Role,
        label: &'static str,
    ) {
        let phone = phone(number);
        let operator = &self.operator;
        let header = book::load(&mut world.store, &book::LoadPlan::default());
        let Ok(header) = header else {
            world.fail("purse_operator", "the book header does not load");
            return;
        };
        let Ok(next_id) = operator.next_purse_id(&header) else {
            world.fail("purse_operator", "no next purse id");
            return;
        };
        let provisioned = world.run(
            |store, _| book::load(store, &PurseOperator::provision_plan(phone, next_id)),
            |loaded, now| operator.decide_provision(&loaded, next_id, phone, kind, now),
        );
        let provisioned = match provisioned {
            Ok(provisioned) => provisioned,
            Err(error) => {
                world.fail("purse_operator", format!("provisioning {phone}: {error}"));
                return;
            }
        };
        let Ok(provisioning) = Provisioning::decode(&provisioned.provisioning) else {
            world.fail("purse_operator", "a provisioning record does not decode");
            return;
        };
        world.party(Rail::Purse, phone.to_string(), role);
        world.event(format!("purse provision {phone} {label}"));
        self.devices.push(Device {
            purse: Purse::provision(&provisioning, pin()),
            role,
            skew_seconds: 0,
            label,
            taken_from_adversaries: std::collections::BTreeMap::new(),
        });
    }

    fn device_now(&self, world: &World, index: usize) -> Timestamp {
        let base = seconds(world.now) as i64 + self.devices[index].skew_seconds;
        Timestamp(base.max(0) as u64)
    }

    fn index_of(&self, number: &str) -> usize {
        let wanted = phone(number);
        self.devices
            .iter()
            .position(|device| device.purse.identity().phone == wanted)
            .unwrap_or(0)
    }

    fn float(&mut self, world: &mut World, index: usize, amount: Amount) {
        let phone = self.devices[index].purse.identity().phone;
        let operator = &self.operator;
        let change = PurseChange::Float {
            amount,
            memo: "float".into(),
        };
        let result = world.run(
            |store, _| book::load(store, &PurseOperator::purse_plan(phone)),
            |loaded, _| operator.decide_change(&loaded, phone, &change),
        );
        world.counters.operations += 1;
        world.event(format!(
            "purse float {phone} {amount} -> {:?}",
            result.is_ok()
        ));
        if let Err(error) = result {
            world.fail("purse_operator", format!("float: {error}"));
        }
    }

    /// A sync of device `index`; `lose_answer` drops the operator's answer on its way back.
    /// True when the operator took the upload.
    fn sync(&mut self, world: &mut World, index: usize, lose_answer: bool) -> bool {
        let now = self.device_now(world, index);
        let Outcome::SyncUpload { upload, .. } = self.devices[index].purse.start_sync(now) else {
            world.fail("purse_device", "start_sync gave no upload");
            return false;
        };
        let phone = self.devices[index].purse.identity().phone;
        world.counters.operations += 1;
        let answer = self.upload(world, phone, &upload);
        let Some(answer) = answer else { return false };
        if lose_answer {
            world.counters.faults += 1;
            world.event(format!("purse sync {phone}: answer lost"));
            // The interceptor (or a bad radio) may also replay the upload: changes nothing.
            if world.rng.percent(50) {
                let again = self.upload(world, phone, &upload);
                world.event(format!(
                    "purse upload replayed {phone}: {}",
                    again.is_some()
                ));
            }
            return true;
        }
        let applied = self.devices[index].purse.apply_answer(&answer);
        match applied {
            Ok(Outcome::SyncApplied(report)) => {
                self.devices[index].taken_from_adversaries.clear();
                world.event(format!(
                    "purse sync {phone} seq {} blocked {} credits {}",
                    report.sequence,
                    report.blocked,
                    report.credits.len()
                ));
            }
            Ok(other) => world.fail("purse_device", format!("answer gave {other:?}")),
            Err(error) => world.event(format!("purse sync {phone} answer refused: {error}")),
        }
        true
    }

    /// The operator's half of one upload: open, plan, load, decide, commit. The answer, or
    /// `None` when the operator refused it (a replay, a stale upload).
    fn upload(&mut self, world: &mut World, phone: Phone, upload: &[u8]) -> Option<Vec<u8>> {
        let operator = &self.operator;
        let opened = match operator.secrets().open_upload(upload) {
            Ok(opened) => opened,
            Err(error) => {
                world.event(format!("purse upload {phone} refused: {error}"));
                return None;
            }
        };
        let (plan, _) = PurseOperator::sync_plan(&opened, phone);
        let reply = world.run(
            |store, _| book::load(store, &plan),
            |loaded, now| operator.decide_sync(&loaded, upload, now),
        );
        match reply {
            Ok(reply) => {
                world.event(format!(
                    "purse upload {phone} seq {} postings {} flags {}",
                    reply.sequence, reply.postings, reply.flags
                ));
                Some(reply.answer)
            }
            Err(error) => {
                world.event(format!("purse upload {phone} refused: {error}"));
                None
            }
        }
    }

    /// Payee asks, payer pays, payee accepts. The codes when the payment completed.
    fn pay(
        &mut self,
        world: &mut World,
        payer: usize,
        payee: usize,
        amount: Amount,
    ) -> Option<(Code, Code)> {
        let payer_phone = self.devices[payer].purse.identity().phone;
        let payee_phone = self.devices[payee].purse.identity().phone;
        let now_payee = self.device_now(world, payee);
        let now_payer = self.device_now(world, payer);
        let request = Command::Request {
            payer: payer_phone,
            amount,
        };
        let code1 = match self.devices[payee]
            .purse
            .handle(request, now_payee, &mut world.rng)
        {
            Ok(Outcome::Requested { code1, .. }) => code1,
            other => {
                world.event(format!(
                    "purse request {payee_phone}<-{payer_phone} {amount} refused: {other:?}"
                ));
                return None;
            }
        };
        let pay = Command::Pay {
            payee: payee_phone,
            amount,
            code1,
            pin: pin(),
        };
        let code2 = match self.devices[payer]
            .purse
            .handle(pay, now_payer, &mut world.rng)
        {
            Ok(Outcome::Paid { code2, .. }) => code2,
            other => {
                world.event(format!(
                    "purse pay {payer_phone}->{payee_phone} {amount} refused: {other:?}"
                ));
                let _ = self.devices[payee].purse.handle(
                    Command::CancelRequest {
                        nonce_b: nonce_of(&code1),
                    },
                    now_payee,
                    &mut world.rng,
                );
                return None;
            }
        };
        let accept = Command::Accept {
            code2,
            request: Some(nonce_of(&code1)),
        };
        match self.devices[payee]
            .purse
            .handle(accept, now_payee, &mut world.rng)
        {
            Ok(Outcome::Received { .. }) => {
                world.event(format!("purse paid {payer_phone}->{payee_phone} {amount}"));
                if self.devices[payer].role == Role::Adversary
                    && self.devices[payee].role == Role::Honest
                {
                    let cap = self.devices[payee]
                        .purse
                        .limits()
                        .max_single_payment
                        .minor();
                    let taken = self.devices[payee]
                        .taken_from_adversaries
                        .entry(payer_phone.to_string())
                        .or_default();
                    *taken += amount.minor();
                    let taken = *taken;
                    // The threat model's bound: a restoring payer takes at most cap_p from
                    // payee p between p's syncs.
                    world.check("purse_restore_loss_within_payee_cap", taken <= cap, || {
                        format!(
                            "{payee_phone} took {taken} from {payer_phone} between syncs; cap {cap}"
                        )
                    });
                }
                Some((code1, code2))
            }
            other => {
                // The payer's purse wrote the debit; the payee refused the code. The payer
                // shows its code again (SHOW CODE) and the payee types it into a new request
                // is not modelled: such a payment stays open at the operator, and the
                // invariants below do not count it as owed to anyone.
                world.fail(
                    "purse_honest_payment_completes",
                    format!("{payee_phone} refused {payer_phone}'s code 2: {other:?}"),
                );
                None
            }
        }
    }

    /// One step of the rail.
    pub fn step(&mut self, world: &mut World) {
        let choice = world.rng.below(100);
        match choice {
            0..=39 => self.honest_payment(world),
            40..=64 => {
                let index = world.rng.index(self.devices.len());
                let lose = world.rng.percent(10);
                self.sync(world, index, lose);
            }
            65..=67 => {
                let amount =
                    Amount::from_minor(world.rng.between(100_000, 2_000_000), self.currency)
                        .unwrap_or_else(|_| panic!("float"));
                self.float(world, 0, amount);
            }
            68..=69 => self.rotate(world),
            70..=73 => self.crash(world),
            74..=79 => self.drift(world),
            80..=86 => self.restore_attack(world),
            87..=92 => self.replay_attack(world),
            _ => self.wrong_codes(world),
        }
    }

    fn honest_payment(&mut self, world: &mut World) {
        let honest: Vec<usize> = (0..self.devices.len())
            .filter(|index| self.devices[*index].role == Role::Honest)
            .collect();
        let payer = honest[world.rng.index(honest.len())];
        // Honest payers pay anyone, adversaries included (a merchant who cheats later).
        let mut payee = world.rng.index(self.devices.len());
        if payee == payer {
            payee = (payee + 1) % self.devices.len();
        }
        let balance = self.devices[payer].purse.balance().minor();
        if balance == 0 {
            return;
        }
        let amount = world.rng.between(1, balance.min(PAYMENT_MINOR_MAX));
        let Ok(amount) = Amount::from_minor(amount, self.currency) else {
            return;
        };
        world.counters.operations += 1;
        let paid = self.pay(world, payer, payee, amount);
        if let Some((code1, code2)) = paid
            && self.devices[payee].label == "replayer"
        {
            self.replayer_paid_minor += amount.minor();
            self.recorded.push(Recorded {
                payer,
                code1,
                code2,
                amount,
            });
            if self.recorded.len() > 8 {
                self.recorded.remove(0);
            }
        }
    }

    /// A scheme-key rotation asked for at any time: the operator half refuses one sooner than
    /// the longest purse validity after the previous one (`rotation_too_soon`), so no honest
    /// purse is left holding only a retired key (seed 1 found that before the guard).
    fn rotate(&mut self, world: &mut World) {
        let operator = &self.operator;
        let result = world.run(
            |store, _| book::load(store, &book::LoadPlan::default()),
            |loaded, now| operator.decide_rotate(&loaded, now, false),
        );
        world.counters.operations += 1;
        world.event(format!("purse rotate {result:?}"));
    }

    /// A device crash: the purse reopens from what it last wrote (every operation is written
    /// before its outcome is shown), or the operator restarts.
    fn crash(&mut self, world: &mut World) {
        world.counters.faults += 1;
        if world.rng.percent(30) {
            self.operator = operator(self.master, self.currency);
            world.event("purse operator restart");
            world.check_acknowledged();
            return;
        }
        let index = world.rng.index(self.devices.len());
        let state = self.devices[index].purse.encode_state();
        match Purse::decode_state(&state) {
            Ok(purse) => {
                world.check(
                    "purse_state_round_trips",
                    purse.encode_state() == state,
                    || "a reopened purse writes different bytes".to_owned(),
                );
                self.devices[index].purse = purse;
                world.event(format!("purse crash {index}"));
            }
            Err(error) => world.fail("purse_state_round_trips", error.to_string()),
        }
    }

    fn drift(&mut self, world: &mut World) {
        world.counters.faults += 1;
        let index = world.rng.index(self.devices.len());
        let device = &mut self.devices[index];
        let drift = world.rng.below(2 * DRIFT_SECONDS_MAX + 1) as i64 - DRIFT_SECONDS_MAX as i64;
        if device.role == Role::Adversary && world.rng.percent(30) {
            // An adversary moves its clock anywhere within a month.
            device.skew_seconds = world.rng.below(60 * 86_400) as i64 - 30 * 86_400;
        } else {
            device.skew_seconds = (device.skew_seconds + drift).clamp(-3600, 3600);
        }
        world.event(format!("purse clock {index} skew {}", device.skew_seconds));
        let advance = world.rng.below(120_000);
        world.advance_ms(advance);
    }

    /// The restorer copies its purse file, pays an honest payee, restores the copy and pays
    /// another.
    fn restore_attack(&mut self, world: &mut World) {
        let restorer = self.index_of(RESTORER);
        match self.restorer_copy.take() {
            None => {
                if self.devices[restorer].purse.balance().minor() < 2 {
                    // Get paid first: an honest party pays the restorer.
                    return;
                }
                world.counters.attacks += 1;
                self.restorer_copy = Some(self.devices[restorer].purse.encode_state());
                world.event("purse restorer copies its file");
                self.restorer_pays(world, restorer);
            }
            Some(copy) => {
                world.counters.attacks += 1;
                let Ok(restored) = Purse::decode_state(&copy) else {
                    world.fail("purse_state_round_trips", "the restorer's copy");
                    return;
                };
                self.devices[restorer].purse = restored;
                world.event("purse restorer restores its file");
                let mut paid = self.restorer_pays(world, restorer);
                if paid && world.rng.percent(40) {
                    // Draining one payee: restore before every payment, never sync.
                    for _ in 1..DRAIN_PAYMENTS_MAX {
                        let Ok(restored) = Purse::decode_state(&copy) else {
                            break;
                        };
                        self.devices[restorer].purse = restored;
                        self.restorer_copy_payee_drain(world, restorer);
                    }
                    paid = true;
                }
                if paid {
                    world.expect_flag(
                        Rail::Purse,
                        phone(RESTORER).to_string(),
                        &[
                            "payment_missing_from_payer_log",
                            "spent_past_limit",
                            "duplicate_counter",
                            "stale_sequence",
                            "counter_gap",
                            "balance_mismatch",
                        ],
                        "paid from a restored purse file",
                    );
                }
            }
        }
    }

    /// The restorer pays an honest payee (the one it paid from the other copy of its file half
    /// the time) a large part of its balance.
    fn restorer_pays(&mut self, world: &mut World, restorer: usize) -> bool {
        let honest: Vec<usize> = (0..self.devices.len())
            .filter(|index| self.devices[*index].role == Role::Honest)
            .collect();
        let payee = match self.restorer_payee {
            Some(payee) if world.rng.percent(50) => payee,
            // Colluding payer and payee: the replaying payee takes the restorer's codes too.
            _ if world.rng.percent(COLLUDE_PERCENT) => self.index_of(REPLAYER),
            _ => honest[world.rng.index(honest.len())],
        };
        self.restorer_payee = Some(payee);
        let balance = self.devices[restorer].purse.balance().minor();
        if balance == 0 {
            return false;
        }
        let high = balance.min(RESTORER_PAYMENT_MINOR_MAX);
        let amount = world.rng.between(high.div_ceil(2), high);
        let Ok(amount) = Amount::from_minor(amount, self.currency) else {
            return false;
        };
        self.pay(world, restorer, payee, amount).is_some()
    }

    /// One payment of a draining restorer: the whole small-payment limit (or its balance) to
    /// the payee it paid last.
    fn restorer_copy_payee_drain(&mut self, world: &mut World, restorer: usize) {
        let Some(payee) = self.restorer_payee else {
            return;
        };
        let amount = self.devices[restorer]
            .purse
            .balance()
            .minor()
            .min(RESTORER_PAYMENT_MINOR_MAX);
        if amount == 0 {
            return;
        }
        if let Ok(amount) = Amount::from_minor(amount, self.currency) {
            self.pay(world, restorer, payee, amount);
        }
    }

    /// The replaying payee re-requests from a payer that paid it until its purse draws the
    /// recorded N_B again, then types the recorded Code 2.
    fn replay_attack(&mut self, world: &mut World) {
        if self.replays >= REPLAY_ATTACKS_MAX || self.recorded.is_empty() {
            return;
        }
        self.replays += 1;
        world.counters.attacks += 1;
        let replayer = self.index_of(REPLAYER);
        let recorded = &self.recorded[world.rng.index(self.recorded.len())];
        let (payer, code1, code2, amount) = (
            recorded.payer,
            recorded.code1,
            recorded.code2,
            recorded.amount,
        );
        let payer_phone = self.devices[payer].purse.identity().phone;
        let before = self.devices[replayer].purse.balance();
        let now = self.device_now(world, replayer);
        let wanted = nonce_of(&code1);
        let mut tries = 0;
        let mut accepted = false;
        while tries < REPLAY_REQUESTS_MAX {
            tries += 1;
            let request = Command::Request {
                payer: payer_phone,
                amount,
            };
            let code = match self.devices[replayer]
                .purse
                .handle(request, now, &mut world.rng)
            {
                Ok(Outcome::Requested { code1, .. }) => code1,
                _ => break, // the N_B space is used up: the purse refuses until its next sync
            };
            let nonce_b = nonce_of(&code);
            if nonce_b == wanted {
                let accept = Command::Accept {
                    code2,
                    request: Some(nonce_b),
                };
                accepted = matches!(
                    self.devices[replayer]
                        .purse
                        .handle(accept, now, &mut world.rng),
                    Ok(Outcome::Received { .. })
                );
                break;
            }
            let _ = self.devices[replayer].purse.handle(
                Command::CancelRequest { nonce_b },
                now,
                &mut world.rng,
            );
        }
        world.event(format!(
            "purse replay by payee after {tries} requests: accepted {accepted}"
        ));
        let after = self.devices[replayer].purse.balance();
        // An intact purse never takes a recorded Code 2 again: the loss bound of a replay is 0.
        world.check(
            "purse_intact_payee_replay_takes_nothing",
            after.minor() <= before.minor(),
            || format!("the intact payee purse took a replayed Code 2 of {amount}"),
        );
    }

    /// A third party names itself as payer to a merchant and types wrong Code 2s.
    fn wrong_codes(&mut self, world: &mut World) {
        world.counters.attacks += 1;
        let attacker = self.index_of(WRONG_CODER);
        let attacker_phone = self.devices[attacker].purse.identity().phone;
        let honest: Vec<usize> = (0..self.devices.len())
            .filter(|index| self.devices[*index].role == Role::Honest)
            .collect();
        let merchant = honest[world.rng.index(honest.len())];
        let now = self.device_now(world, merchant);
        let mut wrong = 0;
        for _ in 0..world.rng.between(1, u64::from(WRONG_CODES_PER_ATTACK_MAX)) {
            let request = Command::Request {
                payer: attacker_phone,
                amount: Amount::from_minor(100, self.currency).unwrap_or_else(|_| panic!("1")),
            };
            let Ok(Outcome::Requested { code1, .. }) =
                self.devices[merchant]
                    .purse
                    .handle(request, now, &mut world.rng)
            else {
                break;
            };
            let guess =
                Code::parse(&format!("{:08}", world.rng.below(100_000_000))).unwrap_or(code1);
            let accept = Command::Accept {
                code2: guess,
                request: Some(nonce_of(&code1)),
            };
            match self.devices[merchant]
                .purse
                .handle(accept, now, &mut world.rng)
            {
                Ok(Outcome::Received { .. }) => {
                    world.event("purse wrong-code guess verified");
                }
                _ => wrong += 1,
            }
            let _ = self.devices[merchant].purse.handle(
                Command::CancelRequest {
                    nonce_b: nonce_of(&code1),
                },
                now,
                &mut world.rng,
            );
        }
        world.event(format!("purse wrong codes at {merchant}: {wrong}"));
    }

    /// The end of a run: every purse syncs (honest ones first, then the adversaries, then every
    /// purse twice so that every block is learnt and every credit matched).
    pub fn settle(&mut self, world: &mut World) {
        // A payment missing from a payer's log is found once the payer applied an answer built
        // after the payee's report and uploads again: with an accomplice payee reporting only in
        // the adversaries' round, that takes two more rounds.
        for round in 0..SETTLE_ROUNDS {
            for index in 0..self.devices.len() {
                let adversary = self.devices[index].role == Role::Adversary;
                if (round == 1) == adversary || round >= 2 {
                    self.devices[index].skew_seconds = 0;
                    // A restored purse's uploads under sequences the operator accepted already
                    // are refused as replays; the purse counts on and gets through.
                    for _ in 0..SETTLE_SYNCS_MAX {
                        if self.sync(world, index, false) {
                            break;
                        }
                    }
                }
            }
            world.advance_ms(60_000);
        }
    }

    /// After every step: the operator's records decode and no purse is past its named bounds.
    pub fn check(&mut self, world: &mut World) {
        for device in &self.devices {
            let purse = &device.purse;
            world.check(
                "purse_within_bounds",
                purse.balance().minor() <= purse.limits().max_balance.minor()
                    && purse.pending_requests().len() <= offpay_purse::params::PENDING_REQUESTS_MAX,
                || format!("{} beyond its bounds", purse.identity().phone),
            );
        }
    }

    /// At the end of a run: an honest purse's ledger account holds what its purse holds.
    pub fn final_check(&mut self, world: &mut World) {
        for index in 0..self.devices.len() {
            if self.devices[index].role != Role::Honest {
                continue;
            }
            let phone = self.devices[index].purse.identity().phone;
            let device_minor = self.devices[index].purse.balance().minor() as i64;
            let Ok(account) = book::purse_account_id(phone) else {
                continue;
            };
            let ledger = world.balance(&account);
            world.check(
                "honest_purse_not_out_of_pocket",
                ledger == device_minor,
                || format!("{phone}: ledger {ledger}, purse {device_minor}"),
            );
        }
        let _ = self.replayer_paid_minor;
    }
}

fn operator(master: [u8; 32], currency: Currency) -> PurseOperator {
    let id = OperatorId::new("sim-op").unwrap_or_else(|_| panic!("an operator id"));
    PurseOperator::new(
        OperatorSecrets::new(id, MasterKey::from_bytes(master)),
        currency,
    )
}

/// N_B of a Code 1: its first four digits.
fn nonce_of(code1: &Code) -> u16 {
    (code1.as_number() / 10_000) as u16
}
