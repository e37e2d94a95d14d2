//! Rail 3 in a run: device wallets selling to each other over a lossy, duplicating, reordering
//! local link (two-phase transfers, the log forced before each promise), crashing with torn
//! writes and recovering from their logs, syncing with the money office's operator half
//! (`offpay_wallet::operator::Office`) over the shared ledger.
//!
//! Adversaries: a holder who copies its wallet log and restores it to spend again (a software
//! wallet's full control); an interceptor on the link who drops, duplicates, delays and replays
//! datagrams and flips bits in them. Faults: crashes at any action (a persist cut in half),
//! lost sync replies, operator restarts, device clocks that drift and jump (each wallet reads
//! its own). Operator actions: charges, blocking the cheat's wallet.

use std::collections::BTreeMap;
use std::sync::Arc;

use offpay_ledger::Timestamp;
use offpay_money::{Amount, Currency};
use offpay_operator::SeededEntropy as OperatorEntropy;
use offpay_operator::accounts::{OPERATOR_FLOAT, operator_account_id, operator_accounts};
use offpay_wallet::operator::{ChargeRequest, IssueRequest, Office, Plan, load};
use offpay_wallet::{
    Action, Event, Limits, LogStorage, MemoryStorage, OfficeKeys, SyncReply, TransferId, Wallet,
    WalletId, WalletKeys,
};

use crate::world::{Rail, Role, World};

/// Honest wallets in a run.
pub const HONEST_WALLETS: usize = 4;
/// Datagrams in flight on the link at most (the newest beyond are lost).
pub const PACKETS_MAX: usize = 256;
/// Rounds of the link's event loop one sale may take.
pub const LOOP_ROUNDS_MAX: usize = 200;
/// Simulated time one round of the link moves, in milliseconds.
pub const ROUND_MS: u64 = 250;
/// Largest sale, in minor units.
pub const SALE_MINOR_MAX: u64 = 40_000;
/// Percent of actions before which a device crashes (during a sale).
pub const CRASH_PERCENT: u64 = 2;
/// Rounds a crashed device stays down.
pub const DOWN_ROUNDS: u64 = 6;
/// How long credentials are valid.
pub const VALIDITY_MS: u64 = 7 * 86_400_000;

/// A wallet clock's drift per step, in milliseconds either way, and how far drift takes it.
pub const CLOCK_DRIFT_MS_MAX: u64 = 90_000;
/// How far a drifting clock wanders from the office's, in milliseconds.
pub const CLOCK_DRIFT_BOUND_MS: i64 = 3_600_000;
/// How far a jumping clock lands from the office's, in milliseconds either way (a phone set to
/// the wrong day, or its clock reset).
pub const CLOCK_JUMP_MS_MAX: u64 = 2 * 86_400_000;
/// Percent of clock changes that are jumps rather than drift.
pub const CLOCK_JUMP_PERCENT: u64 = 30;

const CURRENCY: Currency = Currency::KES;

fn kes(minor: u64) -> Amount {
    Amount::from_minor(minor, CURRENCY).unwrap_or_else(|_| panic!("an amount"))
}

/// The limits of every wallet of a run: 1,000 / 500 / 600.
fn limits() -> Limits {
    Limits {
        balance_max: kes(100_000),
        payment_max: kes(50_000),
        offline_spend_max: kes(60_000),
    }
}

struct Device {
    keys: WalletKeys,
    storage: MemoryStorage,
    wallet: Option<Wallet>,
    down_until: Option<u64>,
    role: Role,
    id: WalletId,
    /// Charges the office posted that the wallet refused (a violation since seed 17), minor units.
    stranded_minor: u64,
    /// The highest balance a charge voucher left the wallet at while over its maximum (the
    /// office charges on its view, which lacks offline receipts; 0 once back within it).
    charged_above_maximum_minor: u64,
    /// How far the wallet's clock is from the link's (and the office's), in milliseconds.
    skew_ms: i64,
}

struct Packet {
    deliver_at: u64,
    to: usize,
    bytes: Vec<u8>,
}

/// Rail 3's part of a run.
pub struct WalletRail {
    office_keys: OfficeKeys,
    office: Office,
    entropy: OperatorEntropy,
    devices: Vec<Device>,
    packets: Vec<Packet>,
    /// Sales whose buyer the seller is waiting for: transfer → intended buyer.
    sales: BTreeMap<TransferId, usize>,
    /// Recorded datagrams the interceptor replays.
    recorded: Vec<(usize, Vec<u8>)>,
    /// The cheat's copy of its log.
    cheat_copy: Option<MemoryStorage>,
    /// Payments the cheat made since the copy, on the original branch and the restored one.
    cheat_paid_since_copy: (u32, u32),
    /// Whether the cheat runs on its restored copy.
    restored: bool,
    now_ms: u64,
    charged_minor: u64,
    /// Whether wallet clocks drift and jump and the operator blocks the cheat.
    clocks_and_blocks: bool,
}

impl std::fmt::Debug for WalletRail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalletRail")
            .field("devices", &self.devices.len())
            .finish_non_exhaustive()
    }
}

impl WalletRail {
    /// Issues the wallets (honest ones and a cheat) and charges them.
    /// `clocks_and_blocks`: wallet device clocks drift and jump, and the operator blocks the
    /// cheat once it restored its log.
    pub fn new(world: &mut World, clocks_and_blocks: bool) -> WalletRail {
        let mut rng = world.rng.fork();
        let office_keys = OfficeKeys::generate(&mut rng);
        let entropy = crate::rng::operator_entropy(&mut world.rng);
        let mut rail = WalletRail {
            office: Office::new(office_keys.clone(), VALIDITY_MS),
            office_keys,
            entropy,
            devices: Vec::new(),
            packets: Vec::new(),
            sales: BTreeMap::new(),
            recorded: Vec::new(),
            cheat_copy: None,
            cheat_paid_since_copy: (0, 0),
            restored: false,
            now_ms: world.now.0,
            charged_minor: 0,
            clocks_and_blocks,
        };
        for index in 0..=HONEST_WALLETS {
            let role = if index == HONEST_WALLETS {
                Role::Adversary
            } else {
                Role::Honest
            };
            rail.issue(world, role);
        }
        for index in 0..rail.devices.len() {
            let charge = world.rng.between(20_000, 80_000);
            rail.charge(world, index, charge);
        }
        rail
    }

    fn cheat(&self) -> usize {
        self.devices.len() - 1
    }

    fn sync_clock(&mut self, world: &World) {
        self.now_ms = self.now_ms.max(world.now.0);
    }

    /// What wallet `index`'s own clock reads.
    fn device_now(&self, index: usize) -> u64 {
        (self.now_ms as i64)
            .saturating_add(self.devices[index].skew_ms)
            .max(0) as u64
    }

    /// A wallet's clock drifts a little, or jumps (set to the wrong day, reset).
    fn clock(&mut self, world: &mut World) {
        world.counters.faults += 1;
        let index = world.rng.index(self.devices.len());
        let device = &mut self.devices[index];
        if world.rng.percent(CLOCK_JUMP_PERCENT) {
            device.skew_ms =
                world.rng.below(2 * CLOCK_JUMP_MS_MAX + 1) as i64 - CLOCK_JUMP_MS_MAX as i64;
        } else {
            let drift =
                world.rng.below(2 * CLOCK_DRIFT_MS_MAX + 1) as i64 - CLOCK_DRIFT_MS_MAX as i64;
            device.skew_ms = device
                .skew_ms
                .saturating_add(drift)
                .clamp(-CLOCK_DRIFT_BOUND_MS, CLOCK_DRIFT_BOUND_MS);
        }
        world.event(format!("wallet {index} clock skew {} ms", device.skew_ms));
    }

    fn issue(&mut self, world: &mut World, role: Role) {
        let keys = WalletKeys::generate(&mut world.rng);
        let request = IssueRequest {
            signing_key: keys.signing_public(),
            encryption_key: keys.encryption_public(),
            limits: limits(),
            operator_accounts: operator_accounts(CURRENCY, CURRENCY),
        };
        let (office, entropy) = (&self.office, &self.entropy);
        let credential = world.run(
            |store, _| load(store, &Plan::issue()),
            |working, now| office.issue(working, &request, now, entropy),
        );
        world.counters.operations += 1;
        let credential = match credential {
            Ok(credential) => credential,
            Err(error) => {
                world.fail("wallet_office", format!("issue: {error}"));
                return;
            }
        };
        match Wallet::create(keys.clone(), credential, self.office.public(), self.now_ms) {
            Ok((wallet, actions)) => {
                let id = wallet.id();
                world.party(Rail::Wallet, id.to_string(), role);
                world.event(format!("wallet issue {id} {role:?}"));
                self.devices.push(Device {
                    keys,
                    storage: MemoryStorage::new(),
                    wallet: Some(wallet),
                    down_until: None,
                    role,
                    id,
                    stranded_minor: 0,
                    charged_above_maximum_minor: 0,
                    skew_ms: 0,
                });
                let index = self.devices.len() - 1;
                self.execute(world, index, actions, false);
                if let Some(wallet) = self.devices[index].wallet.as_mut() {
                    wallet.set_buyer_mode(true);
                }
            }
            Err(error) => world.fail("wallet_device", format!("create: {error}")),
        }
    }

    fn charge(&mut self, world: &mut World, index: usize, minor: u64) {
        let Some(funding) = operator_account_id(OPERATOR_FLOAT, CURRENCY, CURRENCY) else {
            return;
        };
        let request = ChargeRequest {
            wallet: self.devices[index].id,
            amount: kes(minor),
            funding,
            operator_accounts: operator_accounts(CURRENCY, CURRENCY),
        };
        let office = &self.office;
        let wallet_id = self.devices[index].id;
        let charged = world.run(
            |store, _| load(store, &Plan::charge(wallet_id)),
            |working, _| office.charge(working, &request),
        );
        world.counters.operations += 1;
        match charged {
            Ok((voucher, _)) => {
                self.charged_minor += minor;
                world.event(format!("wallet charge {wallet_id} {minor}"));
                if let Some(wallet) = self.devices[index].wallet.as_mut() {
                    match wallet.apply_charge(&voucher) {
                        Ok(actions) => {
                            self.execute(world, index, actions, false);
                            if let Some(wallet) = self.devices[index].wallet.as_ref() {
                                let balance = wallet.balance().minor();
                                let device = &mut self.devices[index];
                                device.charged_above_maximum_minor =
                                    device.charged_above_maximum_minor.max(balance);
                            }
                        }
                        Err(error) => {
                            // The office checked its view (the shadow, without what the wallet
                            // received offline since its sync); the wallet takes a posted voucher
                            // even over its maximum (seed 17 found it refusing one).
                            self.devices[index].stranded_minor += minor;
                            world.fail(
                                "wallet_charge_reaches_the_wallet",
                                format!("wallet {index}: {minor} posted, refused: {error}"),
                            );
                        }
                    }
                }
            }
            Err(error) => world.event(format!("wallet charge refused: {error}")),
        }
    }

    /// Performs a device's actions in order; with `crashes`, the device may die before any of
    /// them (a persist cut in half).
    fn execute(&mut self, world: &mut World, index: usize, actions: Vec<Action>, crashes: bool) {
        for action in actions {
            if self.devices[index].wallet.is_none() {
                return;
            }
            if crashes && world.rng.percent(CRASH_PERCENT) {
                world.counters.faults += 1;
                if let (true, Action::Persist(frame)) = (world.rng.percent(50), &action) {
                    self.devices[index].storage.tear(frame);
                    world.event(format!("wallet {index} crash, torn write"));
                } else {
                    world.event(format!("wallet {index} crash"));
                }
                self.devices[index].wallet = None;
                self.devices[index].down_until = Some(self.now_ms + DOWN_ROUNDS * ROUND_MS);
                return;
            }
            match action {
                Action::Persist(frame) => {
                    if self.devices[index].storage.append(&frame).is_err() {
                        world.fail("wallet_device", "a memory append failed");
                    }
                }
                Action::Send { to, datagram } => {
                    if let Some(target) = self.devices.iter().position(|device| device.id == to) {
                        self.send(world, target, datagram);
                    }
                }
                Action::Broadcast(datagram) => {
                    for target in 0..self.devices.len() {
                        if target != index {
                            self.send(world, target, datagram.clone());
                        }
                    }
                }
                Action::Notify(event) => self.on_event(world, index, event),
            }
        }
    }

    /// The link: loses, duplicates, delays; the interceptor records what it sees.
    fn send(&mut self, world: &mut World, to: usize, bytes: Vec<u8>) {
        if self.recorded.len() < 32 && world.rng.percent(10) {
            self.recorded.push((to, bytes.clone()));
        }
        if world.rng.percent(5) {
            world.counters.faults += 1;
            return;
        }
        let copies = if world.rng.percent(5) { 2 } else { 1 };
        for _ in 0..copies {
            if self.packets.len() >= PACKETS_MAX {
                return;
            }
            let delay = world.rng.between(1, 3 * ROUND_MS);
            self.packets.push(Packet {
                deliver_at: self.now_ms + delay,
                to,
                bytes: bytes.clone(),
            });
        }
    }

    fn on_event(&mut self, world: &mut World, index: usize, event: Event) {
        match event {
            Event::BuyerAnswered { transfer_id, buyer } => {
                let Some(intended) = self.sales.get(&transfer_id).copied() else {
                    return;
                };
                if self.devices[intended].id != buyer {
                    return;
                }
                self.sales.remove(&transfer_id);
                let now = self.device_now(index);
                if let Some(wallet) = self.devices[index].wallet.as_mut()
                    && let Ok(actions) =
                        wallet.choose_buyer(transfer_id, buyer, now, &mut world.rng)
                {
                    self.execute(world, index, actions, true);
                }
            }
            Event::PriceOffered { transfer_id, .. } => {
                let now = self.device_now(index);
                if let Some(wallet) = self.devices[index].wallet.as_mut()
                    && let Ok(actions) = wallet.approve(transfer_id, now, &mut world.rng)
                {
                    self.execute(world, index, actions, true);
                }
            }
            Event::Posted { role, amount, .. } => {
                world.event(format!("wallet {index} posted {role:?} {amount}"));
                if index == self.cheat()
                    && matches!(role, offpay_wallet::Role::Buyer)
                    && self.cheat_copy.is_some()
                {
                    if self.restored {
                        self.cheat_paid_since_copy.1 += 1;
                    } else {
                        self.cheat_paid_since_copy.0 += 1;
                    }
                }
            }
            _ => {}
        }
    }

    /// Runs the link until it falls quiet (or the round bound).
    fn run_link(&mut self, world: &mut World) {
        for _ in 0..LOOP_ROUNDS_MAX {
            self.now_ms += ROUND_MS;
            let now = self.now_ms;
            for index in 0..self.devices.len() {
                if self.devices[index].down_until.is_some_and(|at| at <= now) {
                    self.restart(world, index);
                }
            }
            let mut due = Vec::new();
            let mut index = 0;
            while index < self.packets.len() {
                if self.packets[index].deliver_at <= now {
                    due.push(self.packets.remove(index));
                } else {
                    index += 1;
                }
            }
            // Reordered: in a random order among those due.
            while !due.is_empty() {
                let packet = due.remove(world.rng.index(due.len()));
                self.deliver(world, packet.to, &packet.bytes);
            }
            for index in 0..self.devices.len() {
                let now = self.device_now(index);
                let due = self.devices[index]
                    .wallet
                    .as_ref()
                    .and_then(Wallet::next_timeout)
                    .is_some_and(|at| at <= now);
                if due && let Some(wallet) = self.devices[index].wallet.as_mut() {
                    match wallet.handle_timeout(now, &mut world.rng) {
                        Ok(actions) => self.execute(world, index, actions, true),
                        Err(error) => world.fail("wallet_device", format!("timeout: {error}")),
                    }
                }
            }
            // Quiet when nothing is on the link and every device is up; timers still pending
            // fire in a later step's rounds.
            let quiet = self.packets.is_empty()
                && self
                    .devices
                    .iter()
                    .all(|device| device.down_until.is_none());
            if quiet {
                break;
            }
        }
        self.sales.clear();
    }

    fn deliver(&mut self, world: &mut World, to: usize, bytes: &[u8]) {
        let now = self.device_now(to);
        let Some(wallet) = self.devices[to].wallet.as_mut() else {
            return;
        };
        // A refused datagram changes nothing (the wallet says why; the link does not care).
        if let Ok(received) = wallet.handle_datagram(bytes, now, &mut world.rng) {
            self.execute(world, to, received.actions, true);
        }
    }

    fn restart(&mut self, world: &mut World, index: usize) {
        let keys = self.devices[index].keys.clone();
        let now = self.device_now(index);
        match Wallet::recover(keys, &mut self.devices[index].storage, now) {
            Ok((mut wallet, actions, _)) => {
                wallet.set_buyer_mode(true);
                self.devices[index].wallet = Some(wallet);
                self.devices[index].down_until = None;
                world.event(format!("wallet {index} recovers"));
                self.execute(world, index, actions, false);
            }
            Err(error) => {
                self.devices[index].down_until = None;
                world.fail("wallet_recovers_after_a_crash", format!("{index}: {error}"));
            }
        }
    }

    /// One step of the rail.
    pub fn step(&mut self, world: &mut World) {
        self.sync_clock(world);
        match world.rng.below(100) {
            41..=43 if self.clocks_and_blocks => self.clock(world),
            44 if self.clocks_and_blocks => self.operator_block(world),
            0..=44 => self.sale(world),
            45..=69 => {
                let index = world.rng.index(self.devices.len());
                let lose = world.rng.percent(10);
                self.sync(world, index, lose);
            }
            70..=74 => {
                let index = world.rng.index(self.devices.len() - 1);
                let minor = world.rng.between(1_000, 20_000);
                self.charge(world, index, minor);
            }
            75..=86 => self.cheat_step(world),
            87..=93 => self.interceptor(world),
            _ => {
                world.counters.faults += 1;
                self.office = Office::new(self.office_keys.clone(), VALIDITY_MS);
                world.event("wallet office restart");
                world.check_acknowledged();
            }
        }
        world.now = Timestamp(world.now.0.max(self.now_ms));
    }

    fn sale(&mut self, world: &mut World) {
        let seller = world.rng.index(self.devices.len());
        let mut buyer = world.rng.index(self.devices.len());
        if buyer == seller {
            buyer = (buyer + 1) % self.devices.len();
        }
        self.sale_between(world, seller, buyer);
    }

    fn sale_between(&mut self, world: &mut World, seller: usize, buyer: usize) {
        let minor = world.rng.between(100, SALE_MINOR_MAX);
        let now = self.device_now(seller);
        let Some(wallet) = self.devices[seller].wallet.as_mut() else {
            return;
        };
        world.counters.operations += 1;
        match wallet.start_sale(kes(minor), now, &mut world.rng) {
            Ok((transfer_id, actions)) => {
                world.event(format!(
                    "wallet sale {seller}->{buyer} {minor} {transfer_id}"
                ));
                self.sales.insert(transfer_id, buyer);
                self.execute(world, seller, actions, true);
                self.run_link(world);
            }
            Err(error) => world.event(format!("wallet sale refused: {error}")),
        }
    }

    /// A sync; `lose_reply` drops the office's reply on its way back.
    fn sync(&mut self, world: &mut World, index: usize, lose_reply: bool) {
        let now = self.device_now(index);
        let Some(wallet) = self.devices[index].wallet.as_mut() else {
            return;
        };
        let before = wallet.credential().expires_at_ms;
        let (actions, upload) = match wallet.begin_sync(now, &mut world.rng) {
            Ok(begun) => begun,
            Err(error) => {
                world.event(format!("wallet {index} sync not begun: {error}"));
                return;
            }
        };
        self.execute(world, index, actions, false);
        world.counters.operations += 1;
        let bytes = Arc::new(upload.encode());
        let office = &self.office;
        let reconciled = world.run(
            |store, _| load(store, &Plan::sync(bytes.clone())),
            |working, now| office.sync(working, &bytes, now),
        );
        let reconciliation = match reconciled {
            Ok(reconciliation) => reconciliation,
            Err(error) => {
                world.event(format!("wallet {index} sync refused: {error}"));
                return;
            }
        };
        world.event(format!(
            "wallet {index} sync postings {} flags {}",
            reconciliation.postings.len(),
            reconciliation.flags.len()
        ));
        if lose_reply {
            world.counters.faults += 1;
            world.event(format!("wallet {index} sync reply lost"));
            return;
        }
        let Ok(reply) = SyncReply::decode(&reconciliation.reply.encode()) else {
            world.fail("wallet_office", "a reply that does not decode");
            return;
        };
        let Some(wallet) = self.devices[index].wallet.as_mut() else {
            return;
        };
        match wallet.finish_sync(&reply) {
            Ok(actions) => self.execute(world, index, actions, false),
            Err(error) => world.event(format!("wallet {index} reply refused: {error}")),
        }
        let after = self.devices[index]
            .wallet
            .as_ref()
            .map(|wallet| wallet.credential().expires_at_ms);
        let blocked = self.blocked_at_office(world, index);
        world.check(
            "wallet_blocked_never_renewed",
            !(blocked && after.is_some_and(|after| after > before)),
            || format!("wallet {index} was blocked by the office and got a renewed credential"),
        );
    }

    fn blocked_at_office(&mut self, world: &mut World, index: usize) -> bool {
        let id = self.devices[index].id;
        let office = &self.office;
        let Ok(working) = load(&mut world.store, &Plan::show(id)) else {
            return false;
        };
        office
            .show(working, id)
            .ok()
            .flatten()
            .is_some_and(|view| view.summary.blocked_at_ms.is_some())
    }

    /// The operator blocks the cheat's wallet once it has restored its log (a victim's report,
    /// or the case the office opened): from then on it is never renewed
    /// (`wallet_blocked_never_renewed`) and its peers learn the block at their next sync.
    fn operator_block(&mut self, world: &mut World) {
        if !self.restored {
            return;
        }
        let index = self.cheat();
        let id = self.devices[index].id;
        let office = &self.office;
        let result = world.run(
            |store, _| load(store, &Plan::block(id)),
            |working, now| office.block(working, id, now),
        );
        world.counters.operations += 1;
        world.event(format!(
            "wallet operator blocks {index}: {}",
            result.is_ok()
        ));
        if let Err(error) = result {
            world.fail("wallet_operator", format!("block {index}: {error}"));
        }
    }

    /// The cheat: copies its log, pays, restores the copy, pays again.
    fn cheat_step(&mut self, world: &mut World) {
        let cheat = self.cheat();
        if self.devices[cheat].wallet.is_none() {
            return;
        }
        world.counters.attacks += 1;
        match self.cheat_copy.take() {
            None => {
                self.cheat_copy = Some(self.devices[cheat].storage.clone());
                self.restored = false;
                self.cheat_paid_since_copy = (0, 0);
                world.event("wallet cheat copies its log");
                let seller = world.rng.index(HONEST_WALLETS);
                self.sale_between(world, seller, cheat);
            }
            Some(copy) => {
                self.devices[cheat].storage = copy.clone();
                self.devices[cheat].wallet = None;
                self.restored = true;
                world.event("wallet cheat restores its log");
                self.restart(world, cheat);
                self.cheat_copy = Some(copy);
                let seller = world.rng.index(HONEST_WALLETS);
                self.sale_between(world, seller, cheat);
                let (original, restored) = self.cheat_paid_since_copy;
                if original > 0 && restored > 0 {
                    world.expect_flag(
                        Rail::Wallet,
                        self.devices[cheat].id.to_string(),
                        &[
                            "double_spend",
                            "forked_log",
                            "overspent",
                            "blocked_wallet_paid",
                        ],
                        "paid from a restored wallet log",
                    );
                }
                self.cheat_copy = None;
            }
        }
    }

    /// The interceptor replays a recorded datagram, or one with a flipped bit.
    fn interceptor(&mut self, world: &mut World) {
        if self.recorded.is_empty() {
            return;
        }
        world.counters.attacks += 1;
        let (to, mut bytes) = self.recorded[world.rng.index(self.recorded.len())].clone();
        if world.rng.percent(50) && !bytes.is_empty() {
            let at = world.rng.index(bytes.len());
            bytes[at] ^= 1 << world.rng.below(8);
        }
        let before = self.devices[to].wallet.as_ref().map(Wallet::balance);
        self.deliver(world, to, &bytes);
        self.run_link(world);
        let after = self.devices[to].wallet.as_ref().map(Wallet::balance);
        world.event(format!(
            "wallet interceptor replay to {to}: {before:?} -> {after:?}"
        ));
    }

    /// The end of a run: everyone comes back and syncs until every decision reached everyone.
    pub fn settle(&mut self, world: &mut World) {
        self.sync_clock(world);
        for index in 0..self.devices.len() {
            if self.devices[index].wallet.is_none() {
                self.restart(world, index);
            }
        }
        self.run_link(world);
        for _ in 0..3 {
            for index in 0..self.devices.len() {
                self.sync(world, index, false);
            }
            self.run_link(world);
        }
        world.now = Timestamp(world.now.0.max(self.now_ms));
    }

    /// After every step: no wallet beyond its bounds, no honest wallet blocked.
    pub fn check(&mut self, world: &mut World) {
        for index in 0..self.devices.len() {
            if self.devices[index].role == Role::Honest {
                let blocked = self.blocked_at_office(world, index);
                world.check("honest_wallet_never_blocked", !blocked, || {
                    format!("honest wallet {index} is blocked by the office")
                });
            }
        }
        // Offline receipts never take a wallet over its maximum; a charge the office posted on
        // its view may, and the wallet then only spends down from there.
        for (index, device) in self.devices.iter_mut().enumerate() {
            let Some(wallet) = device.wallet.as_ref() else {
                continue;
            };
            let balance = wallet.balance().minor();
            let bound = wallet.credential().limits.balance_max.minor();
            if balance <= bound {
                device.charged_above_maximum_minor = 0;
            }
            let allowed = bound.max(device.charged_above_maximum_minor);
            world.check("wallet_within_bounds", balance <= allowed, || {
                format!("wallet {index} holds {balance} above its maximum {bound} (and above {allowed}, where a charge left it)")
            });
        }
        world.check(
            "wallet_link_bounded",
            self.packets.len() <= PACKETS_MAX,
            || "the link holds too many datagrams".to_owned(),
        );
    }

    /// At the end of a run: every honest wallet's ledger account holds what the wallet holds
    /// (its balance and what its purchases hold), no less and no more.
    pub fn final_check(&mut self, world: &mut World) {
        for index in 0..self.devices.len() {
            if self.devices[index].role != Role::Honest {
                continue;
            }
            let Some(wallet) = self.devices[index].wallet.as_ref() else {
                world.fail("wallet_recovers_after_a_crash", format!("{index} is down"));
                continue;
            };
            let (balance, held) = (wallet.balance().minor(), wallet.held().minor());
            let Ok(account) = offpay_wallet::operator::wallet_account(&self.devices[index].id)
            else {
                continue;
            };
            let ledger = world.balance(&account);
            let stranded = self.devices[index].stranded_minor as i64;
            // What the holder has: what it can spend and what a purchase still holds (released
            // or paid when the seller's side is decided; a seller that never decides is voided
            // by the office after its window).
            let gap = ledger - (balance + held) as i64;
            // Never out of pocket: the ledger holds at least what the wallet holds.
            world.check("honest_wallet_not_out_of_pocket", gap >= 0, || {
                format!("wallet {index}: ledger {ledger}, wallet {balance}, held {held}")
            });
            // Nor above it (but for a charge the wallet refused): every payment the wallet made
            // is posted, even to a seller that rolled its log back and voided the sale after
            // committing it (seed 208 of the wallet alone found it never posted).
            world.check("honest_wallet_ledger_agrees", gap <= stranded, || {
                format!(
                    "wallet {index}: ledger {ledger}, wallet {balance}, held {held}, refused charges {stranded}"
                )
            });
        }
        let _ = self.charged_minor;
    }
}
