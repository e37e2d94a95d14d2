//! Rail 1 in a run: software purses (an agent, honest customers, and adversaries with full
//! control of their purse files), paying by codes offline and syncing with the operator's half
//! (`offpay_purse::book`) over the shared ledger.
//!
//! Adversaries: a payer who copies and restores its purse file to spend twice, paying honest
//! payees and its accomplice (colluding payer and payee); a payee who re-requests until its
//! purse draws a recorded N_B again and replays the recorded Code 2; a third party typing wrong
//! Code 2s against a merchant; a payer and payee that stay offline past their validity and two
//! scheme-key rotations and then set their phone clocks back to pay (issue 17, attack 4); a
//! database insider who edits the operator's records (shadow accounts, the book header).
//! Faults: lost sync answers, replayed uploads, device crashes (the purse reopened from what it
//! last wrote), drifting and jumping device clocks, operator restarts; operator actions: floats,
//! scheme-key rotations, blocks and unblocks, limit changes.

use offpay_ledger::{LedgerStore, Timestamp as LedgerTimestamp};
use offpay_money::{Amount, Currency};
use offpay_purse::book::{self, PurseChange, PurseOperator};
use offpay_purse::crypto::MasterKey;
use offpay_purse::{
    Code, Command, OfflineLimits, OperatorId, OperatorSecrets, Outcome, Phone, Pin, Provisioning,
    Purse, PurseKind, Timestamp,
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
const CLOCK_BACK_PAYER: &str = "+254722000004";
const CLOCK_BACK_PAYEE: &str = "+254722000005";
const INSIDER_ACCOMPLICE: &str = "+254722000006";

/// Days the clock-back pair waits at a time (the run's clock jumps, the operator makes its
/// routine rotation): one more than the default validity, so a rotation is never too soon.
pub const CLOCK_BACK_WAIT_DAYS: u64 = 31;
/// Waits the clock-back pair makes before it gives up (two rotations retire its keys).
pub const CLOCK_BACK_WAITS_MAX: u32 = 4;
/// Shortest and longest validity the operator gives in a limit change, in days (never more than
/// the default, so that [`CLOCK_BACK_WAIT_DAYS`] stays past the rotation guard).
pub const LIMIT_VALIDITY_DAYS: (u64, u64) = (7, 30);
/// Percent of honest purses that sync during each month the clock-back pair waits (the others
/// stay offline: a phone switched off, a holder away).
pub const WAIT_SYNC_PERCENT: u64 = 80;
/// Flag kinds that would name a database insider's edit.
pub const INSIDER_CAUGHT_KINDS: &[&str] =
    &["unexpected_credit", "balance_mismatch", "record_tampered"];
/// Percent of runs with a database insider.
pub const INSIDER_RUNS_PERCENT: u64 = 50;
/// The operator credit id a database insider gives a credit it queues (far above any the
/// operator assigns in a run).
pub const INSIDER_CREDIT_ID: u64 = 9_000_000;
/// What a database insider's forged credit is worth, in minor units.
pub const INSIDER_CREDIT_MINOR: u64 = 200_000;

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
    /// Stays offline and does nothing (the clock-back pair before its attack).
    dormant: bool,
    /// The step at which the purse last applied a sync answer.
    synced_step: u64,
}

/// What a database insider changed in the operator's records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum InsiderEdit {
    /// Queued an operator credit with no posting on an accomplice's shadow account.
    ForgedCredit,
    /// Unblocked its accomplice (which the operator had blocked) in its shadow account and the
    /// book header.
    Unblock,
    /// Raised an accomplice's offline limits in its shadow account.
    RaisedLimits,
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
    /// Whether the restorer's file paid after the copy was taken (the restored copy then
    /// spends the same value again).
    restorer_copy_paid: bool,
    /// Payments the replaying payee recorded.
    recorded: Vec<Recorded>,
    replays: u32,
    /// What the replaying payee was really paid, minor units, and what its purse held before.
    replayer_paid_minor: u64,
    currency: Currency,
    /// The honest payee the restorer paid last.
    restorer_payee: Option<usize>,
    /// The operator's clock (seconds) when the fleet was provisioned.
    setup_seconds: u64,
    /// Times the clock-back pair waited, and whether it attacked.
    clock_back_waits: u32,
    clock_back_done: bool,
    /// Purses the operator blocked, with the step of the block.
    blocked_at: std::collections::BTreeMap<usize, u64>,
    /// Whether this run has a database insider, and what it did: how many flags named its
    /// accomplice before, and the accomplice's balance before and after the sync that followed.
    insider: bool,
    insider_edit: Option<(InsiderEdit, usize, u64, u64)>,
    /// The keys of the records the insider edited.
    insider_keys: Vec<String>,
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
            restorer_copy_paid: false,
            recorded: Vec::new(),
            replays: if world.rng.percent(REPLAY_RUNS_PERCENT) {
                0
            } else {
                REPLAY_ATTACKS_MAX
            },
            replayer_paid_minor: 0,
            currency,
            restorer_payee: None,
            setup_seconds: seconds(world.now),
            clock_back_waits: 0,
            clock_back_done: false,
            blocked_at: std::collections::BTreeMap::new(),
            insider: false,
            insider_edit: None,
            insider_keys: Vec::new(),
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
        rail.provision(
            world,
            CLOCK_BACK_PAYER,
            PurseKind::Customer,
            Role::Adversary,
            "clock-back",
        );
        rail.provision(
            world,
            CLOCK_BACK_PAYEE,
            PurseKind::Customer,
            Role::Adversary,
            "clock-back-payee",
        );
        rail.provision(
            world,
            INSIDER_ACCOMPLICE,
            PurseKind::Customer,
            Role::Adversary,
            "insider-accomplice",
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
        // So does the clock-back payer; then the pair goes offline.
        let clock_back = rail.index_of(CLOCK_BACK_PAYER);
        if let Ok(bought) = Amount::from_minor(RESTORER_PAYMENT_MINOR_MAX, currency) {
            rail.pay(world, 0, clock_back, bought);
        }
        rail.devices[clock_back].dormant = true;
        let clock_back_payee = rail.index_of(CLOCK_BACK_PAYEE);
        rail.devices[clock_back_payee].dormant = true;
        rail.insider = world.rng.percent(INSIDER_RUNS_PERCENT);
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
            dormant: false,
            synced_step: world.step,
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
        // An honest purse that paid within its validity and syncs after two rotations is not
        // flagged `payment_with_retired_key` (seed 4): the operator dates its payments by the
        // answer it applied. At most an incident names it when its payee was as late as it was
        // (`retired_key_payment_unverifiable`, which accuses no one and blocks nothing).
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
                self.devices[index].synced_step = world.step;
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
        // A record the operator did not seal refuses the sync and raises `record_tampered`.
        let reply = world.run(
            |store, _| book::load(store, &plan),
            |loaded, now| book::refuse_tampered(operator.decide_sync(&loaded, upload, now), now),
        );
        match reply {
            Ok(Err(tampered)) => {
                world.event(format!("purse upload {phone} refused: {tampered}"));
                None
            }
            Ok(Ok(reply)) => {
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
                if let Some(blocked) = self.blocked_at.get(&payer).copied() {
                    // Every purse learns a block at its next sync: neither a payer nor a payee
                    // that synced after the block lets the blocked purse pay. (A restorer's
                    // file restored from before its sync has not learnt its own block: only
                    // its payees bound it.)
                    let payee_knew = self.devices[payee].synced_step > blocked;
                    let payer_knew = self.devices[payer].synced_step > blocked
                        && self.devices[payer].role == Role::Honest;
                    world.check(
                        "purse_blocked_payer_refused_after_sync",
                        !payee_knew && !payer_knew,
                        || {
                            format!(
                                "{payer_phone}, blocked at step {blocked}, paid {payee_phone} \
                                 (payer synced at {}, payee at {})",
                                self.devices[payer].synced_step, self.devices[payee].synced_step
                            )
                        },
                    );
                }
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
                if !self.devices[index].dormant {
                    self.sync(world, index, lose);
                }
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
            87..=90 => self.replay_attack(world),
            91..=93 => self.wrong_codes(world),
            94..=96 => self.clock_back_attack(world),
            97..=98 => self.operator_action(world),
            _ => self.insider_edit(world),
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
        if self.devices[payee].dormant {
            return;
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
                self.restorer_copy_paid = self.restorer_pays(world, restorer);
            }
            Some(copy) => {
                world.counters.attacks += 1;
                let Ok(restored) = Purse::decode_state(&copy) else {
                    world.fail("purse_state_round_trips", "the restorer's copy");
                    return;
                };
                self.devices[restorer].purse = restored;
                world.event("purse restorer restores its file");
                let paid = self.restorer_pays(world, restorer);
                // The same value spent twice: by the file after the copy and by the restored
                // copy, or twice by the restored copy. (A copy that pays when the file paid
                // nothing after it — its first payment refused, say — spends nothing twice.)
                let mut spent_twice = paid && self.restorer_copy_paid;
                if paid && world.rng.percent(40) {
                    // Draining one payee: restore before every payment, never sync.
                    for _ in 1..DRAIN_PAYMENTS_MAX {
                        let Ok(restored) = Purse::decode_state(&copy) else {
                            break;
                        };
                        self.devices[restorer].purse = restored;
                        spent_twice |= self.restorer_copy_payee_drain(world, restorer);
                    }
                }
                if spent_twice {
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
    /// the payee it paid last. True when it paid.
    fn restorer_copy_payee_drain(&mut self, world: &mut World, restorer: usize) -> bool {
        let Some(payee) = self.restorer_payee else {
            return false;
        };
        let amount = self.devices[restorer]
            .purse
            .balance()
            .minor()
            .min(RESTORER_PAYMENT_MINOR_MAX);
        if amount == 0 {
            return false;
        }
        Amount::from_minor(amount, self.currency)
            .ok()
            .and_then(|amount| self.pay(world, restorer, payee, amount))
            .is_some()
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

    /// The clock-back pair (issue 17, attack 4): a payer and its accomplice stay offline while
    /// months pass and the operator rotates the scheme key twice; then both set their phone
    /// clocks back to just after their last sync, within the validity their purses last saw,
    /// and the payer pays the accomplice with a scheme key two rotations old. The purses never
    /// went back on a time they saw (they did nothing meanwhile), so only the operator's epoch
    /// check can tell. It cannot tell this pair from an honest pair that paid in time and
    /// synced late, so it names the payer in an incident (`retired_key_payment_unverifiable`,
    /// not blocked): the payer spent its own balance, within its offline limit since its last
    /// sync, so nobody loses. A restored or copied purse (older keys than its last sync left
    /// it) is still flagged and blocked (`payment_with_retired_key`).
    fn clock_back_attack(&mut self, world: &mut World) {
        if self.clock_back_done || self.clock_back_waits >= CLOCK_BACK_WAITS_MAX {
            return;
        }
        let payer = self.index_of(CLOCK_BACK_PAYER);
        let payee = self.index_of(CLOCK_BACK_PAYEE);
        let held = self.devices[payee]
            .purse
            .scheme_epochs()
            .into_iter()
            .min()
            .unwrap_or(0);
        let Some(generation) = book_u64(world, "generation_epoch") else {
            world.fail("purse_operator", "the book header does not read");
            return;
        };
        if u64::from(held).saturating_add(1) >= generation {
            // The pair waits: a month passes, most honest purses sync meanwhile, and the
            // operator makes its routine rotation.
            self.clock_back_waits += 1;
            world.counters.faults += 1;
            world.advance_ms(CLOCK_BACK_WAIT_DAYS * 43_200_000);
            for index in 0..self.devices.len() {
                if self.devices[index].role == Role::Honest && world.rng.percent(WAIT_SYNC_PERCENT)
                {
                    self.sync(world, index, false);
                }
            }
            world.advance_ms(CLOCK_BACK_WAIT_DAYS * 43_200_000);
            world.event(format!(
                "purse clock-back pair waits {CLOCK_BACK_WAIT_DAYS} days (holds epoch {held}, generation {generation})"
            ));
            self.rotate(world);
            return;
        }
        self.clock_back_done = true;
        world.counters.attacks += 1;
        // A cheat only if its validity really ended (with rotations faster than the validity,
        // which the rotation guard refuses, the pair may still be within it).
        let past_validity = self.devices[payer].purse.limits().valid_until.0 < seconds(world.now);
        let back = self.setup_seconds as i64 + 3600 - seconds(world.now) as i64;
        self.devices[payer].skew_seconds = back;
        self.devices[payee].skew_seconds = back;
        let balance = self.devices[payer].purse.balance().minor();
        if balance == 0 {
            return;
        }
        let amount = world
            .rng
            .between(1, balance.min(RESTORER_PAYMENT_MINOR_MAX));
        let Ok(amount) = Amount::from_minor(amount, self.currency) else {
            return;
        };
        let paid = self.pay(world, payer, payee, amount).is_some();
        world.event(format!(
            "purse clock-back payment under epoch {held} (generation {generation}): paid {paid}"
        ));
        if paid && past_validity {
            world.expect_flag(
                Rail::Purse,
                phone(CLOCK_BACK_PAYER).to_string(),
                &[
                    "payment_with_retired_key",
                    "retired_key_payment_unverifiable",
                ],
                "paid past its validity with its clock set back (a scheme key two rotations old)",
            );
        }
    }

    /// The operator blocks or unblocks a purse (a lost phone, a suspected cheat, a mistake put
    /// right), or changes a customer purse's offline limits and validity. Every purse learns a
    /// block at its next sync (`purse_blocked_payer_refused_after_sync`); new limits keep every
    /// purse within its bounds (`purse_within_bounds`).
    fn operator_action(&mut self, world: &mut World) {
        let index = 1 + world.rng.index(self.devices.len() - 1);
        if self.devices[index].dormant {
            return;
        }
        let phone = self.devices[index].purse.identity().phone;
        let change = if world.rng.percent(50) {
            PurseChange::Blocked(!self.blocked_at.contains_key(&index))
        } else {
            let now = *self.devices[index].purse.limits();
            let minor = |value: u64| Amount::from_minor(value, self.currency);
            let single = world.rng.between(500_000, 2_000_000);
            let spent = world.rng.between(single, 5_000_000);
            let (Ok(single), Ok(spent)) = (minor(single), minor(spent)) else {
                return;
            };
            let days = world
                .rng
                .between(LIMIT_VALIDITY_DAYS.0, LIMIT_VALIDITY_DAYS.1);
            PurseChange::Limits {
                limits: OfflineLimits {
                    max_single_payment: single,
                    max_spent_since_sync: spent,
                    ..now
                },
                validity_seconds: days * 86_400,
            }
        };
        let operator = &self.operator;
        let result = world.run(
            |store, _| book::load(store, &PurseOperator::purse_plan(phone)),
            |loaded, _| operator.decide_change(&loaded, phone, &change),
        );
        world.counters.operations += 1;
        world.event(format!(
            "purse operator {phone} {change:?} -> {:?}",
            result.is_ok()
        ));
        match (result, &change) {
            (Ok(_), PurseChange::Blocked(true)) => {
                self.blocked_at.insert(index, world.step);
            }
            (Ok(_), PurseChange::Blocked(false)) => {
                self.blocked_at.remove(&index);
            }
            (Ok(_), _) => {}
            (Err(error), _) => world.fail("purse_operator", format!("{change:?}: {error}")),
        }
    }

    /// A database insider (write access to the store, no master key) edits the operator's
    /// records once in a run, for its accomplice (a purse that does nothing else wrong): queues
    /// an operator credit with no float behind it on the accomplice's shadow account (the
    /// accomplice collects it and spends it at the agent), raises the accomplice's offline
    /// limits, or unblocks it after the operator blocked it. It cannot seal what it writes (no
    /// master key), so it keeps the seal the record carried: the accomplice's sync that follows
    /// is refused and `record_tampered` raised, and the operator then puts back its own copy of
    /// the records. The end of the run measures whether the edit took effect and whether
    /// anything flagged it (docs/SIMULATOR.md, findings: seeds 13, 1 and 6, fixed).
    fn insider_edit(&mut self, world: &mut World) {
        if !self.insider || self.insider_edit.is_some() {
            return;
        }
        let edit = match world.rng.below(3) {
            0 => InsiderEdit::ForgedCredit,
            1 => InsiderEdit::Unblock,
            _ => InsiderEdit::RaisedLimits,
        };
        let target = self.index_of(INSIDER_ACCOMPLICE);
        let target_phone = self.devices[target].purse.identity().phone;
        let purse_id = self.devices[target].purse.identity().purse_id;
        let shadow_key = format!("shadow/{}", purse_id.0);
        let Some(mut shadow) = read_record(world, &shadow_key) else {
            world.fail("purse_operator", format!("{shadow_key} does not read"));
            return;
        };
        let mut writes = Vec::new();
        let mut originals = vec![(shadow_key.clone(), stored_bytes(world, &shadow_key))];
        match edit {
            InsiderEdit::ForgedCredit => {
                if let Some(credits) = shadow
                    .get_mut("queued_credits")
                    .and_then(serde_json::Value::as_array_mut)
                {
                    credits.push(serde_json::json!({
                        "credit_id": INSIDER_CREDIT_ID,
                        "amount_minor": INSIDER_CREDIT_MINOR,
                        "memo": "float",
                    }));
                }
            }
            InsiderEdit::Unblock => {
                if shadow.get("blocked") != Some(&serde_json::Value::Bool(true)) {
                    // The operator has not blocked the accomplice: nothing to undo yet.
                    return;
                }
                shadow["blocked"] = serde_json::Value::Bool(false);
                shadow["blocked_at_epoch"] = serde_json::Value::Null;
                let Some(mut header) = read_record(world, "book") else {
                    world.fail("purse_operator", "the book header does not read");
                    return;
                };
                originals.push(("book".to_owned(), stored_bytes(world, "book")));
                let wanted = serde_json::Value::String(target_phone.to_string());
                if let Some(blocked) = header
                    .get_mut("blocked")
                    .and_then(serde_json::Value::as_array_mut)
                {
                    // The header keeps phones as numbers.
                    blocked.retain(|phone| {
                        *phone != wanted && phone.as_u64() != Some(target_phone.number())
                    });
                }
                writes.push(("book".to_owned(), header));
            }
            InsiderEdit::RaisedLimits => {
                if let Some(limits) = shadow.get_mut("limits") {
                    let most = limits["max_balance"].clone();
                    limits["max_spent_since_sync"] = most;
                }
            }
        }
        writes.push((shadow_key, shadow));
        let flags_before = flags_on(world, target_phone, &self.insider_keys);
        let mut effects = offpay_operator::Effects::new();
        for (key, value) in writes {
            // The insider keeps the seal the record carried (it cannot make one without the
            // master key) and changes what it covers.
            let original = originals
                .iter()
                .find(|(original, _)| *original == key)
                .map(|(_, bytes)| bytes.clone())
                .unwrap_or_default();
            let mut bytes = seal_of(&original).to_vec();
            bytes.extend_from_slice(value.to_string().as_bytes());
            effects.write(offpay_ledger::Operation::PutRecord(
                offpay_ledger::RecordWrite {
                    namespace: book::NAMESPACE.into(),
                    key: key.clone(),
                    value: Some(bytes),
                    expected_version: None,
                },
            ));
            self.insider_keys.push(key);
        }
        if !matches!(world.commit(effects), Ok(true)) {
            world.fail("purse_operator", "the insider's write did not commit");
            return;
        }
        world.counters.attacks += 1;
        world.event(format!("purse insider {edit:?} on {target_phone}"));
        let before = self.devices[target].purse.balance().minor();
        self.sync(world, target, false);
        let after = self.devices[target].purse.balance().minor();
        self.insider_edit = Some((edit, flags_before, before, after));
        if flags_on(world, target_phone, &self.insider_keys) > flags_before {
            // The operator, alerted by the fraud queue, puts back its own copy of the records
            // (the authentic sealed bytes) so that the book works again.
            let mut effects = offpay_operator::Effects::new();
            for (key, bytes) in originals {
                effects.write(offpay_ledger::Operation::PutRecord(
                    offpay_ledger::RecordWrite {
                        namespace: book::NAMESPACE.into(),
                        key,
                        value: Some(bytes),
                        expected_version: None,
                    },
                ));
            }
            if !matches!(world.commit(effects), Ok(true)) {
                world.fail(
                    "purse_operator",
                    "restoring the sealed records did not commit",
                );
                return;
            }
            world.event(format!(
                "purse operator restored the sealed records the insider edited for {target_phone}"
            ));
        }
        if edit == InsiderEdit::ForgedCredit && after > before {
            // The accomplice spends what it collected at the agent.
            let spend = (after - before).min(RESTORER_PAYMENT_MINOR_MAX);
            if let Ok(amount) = Amount::from_minor(spend, self.currency) {
                self.pay(world, target, 0, amount);
            }
        }
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
                    self.devices[index].dormant = false;
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
        // Every loss sits on an adversary's account: no honest purse's ledger account is
        // negative.
        for index in 0..self.devices.len() {
            let phone = self.devices[index].purse.identity().phone;
            let Ok(account) = book::purse_account_id(phone) else {
                continue;
            };
            let ledger = world.balance(&account);
            let role = self.devices[index].role;
            world.check(
                "purse_loss_on_adversary_accounts",
                ledger >= 0 || role == Role::Adversary,
                || format!("honest {phone}'s ledger account is at {ledger}"),
            );
        }
        self.insider_check(world);
    }

    /// Whether the database insider's edit took effect, and whether anything flagged its
    /// accomplice or the records it edited since (the accomplice does nothing else wrong). An
    /// edit that took effect unflagged is a finding: the book's records are sealed
    /// (short-code-purse.md §14, attacker 7), so it shows only if the seal stopped being checked.
    fn insider_check(&mut self, world: &mut World) {
        let Some((edit, flags_before, before, after)) = self.insider_edit else {
            return;
        };
        let device = &self.devices[self.index_of(INSIDER_ACCOMPLICE)];
        let phone = device.purse.identity().phone;
        let took_effect = match edit {
            // The accomplice's purse took the forged credit at the sync after the edit.
            InsiderEdit::ForgedCredit => after >= before + INSIDER_CREDIT_MINOR,
            InsiderEdit::Unblock => !device.purse.is_blocked(),
            InsiderEdit::RaisedLimits => {
                device.purse.limits().max_spent_since_sync == device.purse.limits().max_balance
            }
        };
        let kinds: Vec<String> = world
            .flags()
            .into_iter()
            .filter(|(_, flag)| {
                flag.rail == book::RAIL
                    && (flag.subject == phone.to_string()
                        || self.insider_keys.contains(&flag.subject))
            })
            .map(|(_, flag)| flag.kind)
            .collect();
        // What would name the edit: a credit the operator never queued, a balance that does
        // not add up, a record that is not the operator's.
        let flagged = flags_on(world, phone, &self.insider_keys) > flags_before;
        world.event(format!(
            "purse insider {edit:?} on {phone}: took effect {took_effect}, flags {kinds:?}"
        ));
        if took_effect && !flagged {
            let name = match edit {
                InsiderEdit::ForgedCredit => "purse_insider_forged_credit_unflagged",
                InsiderEdit::Unblock => "purse_insider_unblock_unflagged",
                InsiderEdit::RaisedLimits => "purse_insider_limits_unflagged",
            };
            world.finding(name, format!("{phone}: {edit:?}"));
        }
    }
}

/// A field of the book header, as a number.
fn book_u64(world: &mut World, field: &str) -> Option<u64> {
    read_record(world, "book")?.get(field)?.as_u64()
}

/// A record of the purse book, as JSON (its seal stripped).
fn read_record(world: &mut World, key: &str) -> Option<serde_json::Value> {
    let record = world.store.record(book::NAMESPACE, key).ok().flatten()?;
    serde_json::from_slice(offpay_purse::seal::content(&record.value)).ok()
}

/// A record of the purse book as stored (sealed).
fn stored_bytes(world: &mut World, key: &str) -> Vec<u8> {
    world
        .store
        .record(book::NAMESPACE, key)
        .ok()
        .flatten()
        .map(|record| record.value)
        .unwrap_or_default()
}

/// The seal a stored record carries (everything before its content).
fn seal_of(stored: &[u8]) -> &[u8] {
    let content = offpay_purse::seal::content(stored);
    &stored[..stored.len() - content.len()]
}

/// Flags of the purse rail naming `phone` that would name an insider's edit
/// ([`INSIDER_CAUGHT_KINDS`]).
fn flags_on(world: &mut World, phone: Phone, keys: &[String]) -> usize {
    let subject = phone.to_string();
    world
        .flags()
        .iter()
        .filter(|(_, flag)| {
            flag.rail == book::RAIL
                && ((flag.subject == subject && INSIDER_CAUGHT_KINDS.contains(&flag.kind.as_str()))
                    || (flag.kind == "record_tampered" && keys.contains(&flag.subject)))
        })
        .count()
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
