//! An in-memory world for wallet tests and benches: devices with memory storage, a lossy,
//! duplicating, reordering network, crashes (clean or torn writes), the money office, and
//! simulated time. Everything follows from one seed.
#![allow(dead_code)]

mod twin;
pub use twin::TwinOffice;

use std::collections::BTreeMap;

use offpay_money::{Amount, Currency};
use offpay_wallet::record::{Record, parse_log};
use offpay_wallet::{
    Action, Event, Flag, Limits, MemoryStorage, OfficeKeys, Outcome, Posting, Role, SeededEntropy,
    TransferId, Wallet, WalletId, WalletKeys,
};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

pub const CURRENCY: Currency = Currency::KES;
pub const START_MS: u64 = 1_700_000_000_000;
pub const VALIDITY_MS: u64 = 30 * 24 * 3600 * 1000;
pub const CHARGE_MINOR: u64 = 100_000;
/// How long a sale waits for its intended buyer to answer before the seller gives up.
pub const SALE_ANSWER_TIMEOUT_MS: u64 = 10_000;
/// Simulated time allowed for the network to fall quiet.
pub const QUIESCE_MS_MAX: u64 = 600_000;

pub fn amount(minor: u64) -> Amount {
    Amount::from_minor(minor, CURRENCY).expect("test amount")
}

pub fn limits() -> Limits {
    Limits {
        balance_max: amount(10_000_000),
        payment_max: amount(50_000),
        offline_spend_max: amount(5_000_000),
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct NetConfig {
    /// Probability that a datagram is lost.
    pub loss: f64,
    /// Probability that a datagram is delivered twice.
    pub duplicate: f64,
    /// Delivery delay is uniform in 1..=latency_ms_max: datagrams overtake each other.
    pub latency_ms_max: u64,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    pub datagrams: u64,
    pub seller_datagrams: u64,
    pub buyer_datagrams: u64,
    pub delivered: u64,
    pub refused: u64,
    pub persists: u64,
    pub crashes: u64,
}

/// Where to cut the power, counted in actions performed since `Sim::step` was last reset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashPoint {
    None,
    /// The device about to perform action number k dies instead.
    Before(u64),
    /// The device that performed action number k dies right after.
    After(u64),
    /// Like `Before`, but a persist that is cut leaves half its frame on disk.
    Torn(u64),
}

/// One deterministic fault on the k-th datagram sent (counted from 1 since the simulation began).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DatagramFault {
    None,
    /// The datagram is lost.
    Drop(u64),
    /// The datagram arrives twice.
    Duplicate(u64),
    /// The datagram arrives this many ms late, after those sent behind it (reordering).
    Delay(u64, u64),
}

pub struct Device {
    pub keys: WalletKeys,
    pub storage: MemoryStorage,
    pub wallet: Option<Wallet>,
    pub restart_at: Option<u64>,
}

struct Packet {
    deliver_at: u64,
    order: u64,
    to: usize,
    bytes: Vec<u8>,
}

#[derive(Clone, Debug)]
pub struct Sale {
    pub seller: usize,
    pub buyer: usize,
    pub transfer_id: TransferId,
    pub amount: u64,
    pub chosen: bool,
    pub started_at: u64,
}

enum UserAction {
    Choose {
        seller: usize,
        transfer_id: TransferId,
        buyer: usize,
    },
    Approve {
        buyer: usize,
        transfer_id: TransferId,
    },
}

pub struct Sim {
    pub now: u64,
    pub office: TwinOffice,
    pub devices: Vec<Device>,
    pub net: NetConfig,
    pub rng: StdRng,
    pub entropy: SeededEntropy,
    packets: Vec<Packet>,
    packet_order: u64,
    pub stats: Stats,
    pub step: u64,
    pub crash: CrashPoint,
    /// Probability of a crash before any action (random tests).
    pub random_crash: f64,
    pub crash_enabled: bool,
    /// Delay before a crashed device comes back.
    pub restart_delay_ms: (u64, u64),
    pub think_ms: u64,
    pub sales: Vec<Sale>,
    user: Vec<(u64, UserAction)>,
    pub charged_minor: u64,
    pub postings: Vec<Posting>,
    pub flags: Vec<Flag>,
    pub refusals: BTreeMap<String, u64>,
    /// Wallet id of each device.
    pub ids: Vec<WalletId>,
    /// Every datagram sent: (from, to, bytes).
    pub sent: Vec<(usize, usize, Vec<u8>)>,
    /// A deterministic fault on one datagram (exhaustive checks).
    pub fault: DatagramFault,
    /// A deliberate protocol fault given to every wallet (negative variants of the checks).
    pub defect: Option<offpay_wallet::Defect>,
}

impl Sim {
    pub fn new(devices: usize, seed: u64, net: NetConfig) -> Sim {
        let mut entropy = SeededEntropy::from_seed(seed);
        let office = TwinOffice::new(OfficeKeys::generate(&mut entropy), VALIDITY_MS);
        let mut sim = Sim {
            now: START_MS,
            office,
            devices: Vec::new(),
            net,
            rng: StdRng::seed_from_u64(seed),
            entropy,
            packets: Vec::new(),
            packet_order: 0,
            stats: Stats::default(),
            step: 0,
            crash: CrashPoint::None,
            random_crash: 0.0,
            crash_enabled: false,
            restart_delay_ms: (1_000, 1_000),
            think_ms: 50,
            sales: Vec::new(),
            user: Vec::new(),
            charged_minor: 0,
            postings: Vec::new(),
            flags: Vec::new(),
            refusals: BTreeMap::new(),
            ids: Vec::new(),
            sent: Vec::new(),
            fault: DatagramFault::None,
            defect: None,
        };
        for _ in 0..devices {
            sim.add_device(CHARGE_MINOR);
        }
        sim
    }

    /// Issues, creates and charges a new wallet; returns its index.
    pub fn add_device(&mut self, charge_minor: u64) -> usize {
        self.add_device_with(charge_minor, limits())
    }

    /// [`Sim::add_device`] with the limits given.
    pub fn add_device_with(&mut self, charge_minor: u64, limits: Limits) -> usize {
        let keys = WalletKeys::generate(&mut self.entropy);
        let credential = self
            .office
            .issue_wallet(
                keys.signing_public(),
                keys.encryption_public(),
                limits,
                self.now,
                &mut self.entropy,
            )
            .expect("issue");
        let (wallet, actions) =
            Wallet::create(keys.clone(), credential, self.office.public(), self.now)
                .expect("create");
        let index = self.devices.len();
        self.ids.push(wallet.id());
        self.devices.push(Device {
            keys,
            storage: MemoryStorage::new(),
            wallet: Some(wallet),
            restart_at: None,
        });
        self.execute(index, actions);
        let defect = self.defect;
        self.wallet_mut(index).inject_defect(defect);
        if charge_minor > 0 {
            self.charge(index, charge_minor);
        }
        self.wallet_mut(index).set_buyer_mode(true);
        index
    }

    pub fn charge(&mut self, index: usize, minor: u64) {
        let id = self.wallet(index).id();
        let (voucher, posting) = self.office.charge(id, amount(minor)).expect("charge");
        self.postings.push(posting);
        self.charged_minor += minor;
        let actions = self
            .wallet_mut(index)
            .apply_charge(&voucher)
            .expect("apply charge");
        self.execute(index, actions);
    }

    pub fn wallet(&self, index: usize) -> &Wallet {
        self.devices[index].wallet.as_ref().expect("device is up")
    }

    pub fn wallet_mut(&mut self, index: usize) -> &mut Wallet {
        self.devices[index].wallet.as_mut().expect("device is up")
    }

    fn crash_now(&mut self, index: usize) {
        self.stats.crashes += 1;
        let device = &mut self.devices[index];
        device.wallet = None;
        let (low, high) = self.restart_delay_ms;
        let delay = if high > low {
            self.rng.random_range(low..=high)
        } else {
            low
        };
        device.restart_at = Some(self.now + delay);
    }

    /// Performs actions in order, as a device would, with crashes injected.
    pub fn execute(&mut self, index: usize, actions: Vec<Action>) {
        for action in actions {
            if self.devices[index].wallet.is_none() {
                return;
            }
            self.step += 1;
            if self.crash_enabled {
                let before = match self.crash {
                    CrashPoint::Before(k) | CrashPoint::Torn(k) => k == self.step,
                    _ => false,
                } || (self.random_crash > 0.0
                    && self.rng.random_bool(self.random_crash));
                if before {
                    let torn = matches!(self.crash, CrashPoint::Torn(k) if k == self.step)
                        || (self.random_crash > 0.0 && self.rng.random_bool(0.5));
                    if let (true, Action::Persist(frame)) = (torn, &action) {
                        self.devices[index].storage.tear(frame);
                    }
                    self.crash_now(index);
                    return;
                }
            }
            match action {
                Action::Persist(frame) => {
                    use offpay_wallet::LogStorage;
                    self.devices[index]
                        .storage
                        .append(&frame)
                        .expect("memory append");
                    self.stats.persists += 1;
                }
                Action::Send { to, datagram } => {
                    let target = self.ids.iter().position(|id| *id == to);
                    if let Some(target) = target {
                        self.send(index, target, datagram);
                    }
                }
                Action::Broadcast(datagram) => {
                    for target in 0..self.devices.len() {
                        if target != index {
                            self.send(index, target, datagram.clone());
                        }
                    }
                }
                Action::Notify(event) => self.on_event(index, event),
            }
            if self.crash_enabled && self.crash == CrashPoint::After(self.step) {
                self.crash_now(index);
                return;
            }
        }
    }

    fn send(&mut self, from: usize, to: usize, bytes: Vec<u8>) {
        self.stats.datagrams += 1;
        self.sent.push((from, to, bytes.clone()));
        if self.is_seller_of_traffic(from, to) {
            self.stats.seller_datagrams += 1;
        } else {
            self.stats.buyer_datagrams += 1;
        }
        let number = self.stats.datagrams;
        if self.rng.random_bool(self.net.loss) || self.fault == DatagramFault::Drop(number) {
            return;
        }
        let copies = if self.rng.random_bool(self.net.duplicate)
            || self.fault == DatagramFault::Duplicate(number)
        {
            2
        } else {
            1
        };
        let extra_delay = match self.fault {
            DatagramFault::Delay(k, ms) if k == number => ms,
            _ => 0,
        };
        for _ in 0..copies {
            let latency = if self.net.latency_ms_max > 1 {
                self.rng.random_range(1..=self.net.latency_ms_max)
            } else {
                1
            };
            self.packet_order += 1;
            self.packets.push(Packet {
                deliver_at: self.now + latency + extra_delay,
                order: self.packet_order,
                to,
                bytes: bytes.clone(),
            });
        }
    }

    fn is_seller_of_traffic(&self, from: usize, _to: usize) -> bool {
        self.sales.iter().any(|s| s.seller == from)
    }

    fn on_event(&mut self, index: usize, event: Event) {
        match event {
            Event::BuyerAnswered { transfer_id, buyer } => {
                let intended = self
                    .sales
                    .iter()
                    .find(|s| s.transfer_id == transfer_id && s.seller == index && !s.chosen)
                    .map(|s| s.buyer);
                if let Some(intended) = intended
                    && buyer == self.ids[intended]
                {
                    self.user.push((
                        self.now,
                        UserAction::Choose {
                            seller: index,
                            transfer_id,
                            buyer: intended,
                        },
                    ));
                }
            }
            Event::PriceOffered { transfer_id, .. } => {
                self.user.push((
                    self.now + self.think_ms,
                    UserAction::Approve {
                        buyer: index,
                        transfer_id,
                    },
                ));
            }
            _ => {}
        }
    }

    pub fn start_sale(&mut self, seller: usize, buyer: usize, minor: u64) -> Option<TransferId> {
        let now = self.now;
        let wallet = self.devices[seller].wallet.as_mut()?;
        let (transfer_id, actions) = wallet
            .start_sale(amount(minor), now, &mut self.entropy)
            .ok()?;
        self.sales.push(Sale {
            seller,
            buyer,
            transfer_id,
            amount: minor,
            chosen: false,
            started_at: now,
        });
        self.execute(seller, actions);
        Some(transfer_id)
    }

    fn perform_user(&mut self, action: UserAction) {
        let now = self.now;
        match action {
            UserAction::Choose {
                seller,
                transfer_id,
                buyer,
            } => {
                let buyer_id = self.ids[buyer];
                let Some(wallet) = self.devices[seller].wallet.as_mut() else {
                    return;
                };
                if let Ok(actions) =
                    wallet.choose_buyer(transfer_id, buyer_id, now, &mut self.entropy)
                {
                    if let Some(sale) = self.sales.iter_mut().find(|s| s.transfer_id == transfer_id)
                    {
                        sale.chosen = true;
                    }
                    self.execute(seller, actions);
                }
            }
            UserAction::Approve { buyer, transfer_id } => {
                let Some(wallet) = self.devices[buyer].wallet.as_mut() else {
                    return;
                };
                if let Ok(actions) = wallet.approve(transfer_id, now, &mut self.entropy) {
                    self.execute(buyer, actions);
                }
            }
        }
    }

    pub fn restart(&mut self, index: usize) {
        let keys = self.devices[index].keys.clone();
        let now = self.now;
        let (wallet, actions, _report) =
            Wallet::recover(keys, &mut self.devices[index].storage, now).expect("recover");
        self.devices[index].wallet = Some(wallet);
        self.devices[index].restart_at = None;
        let defect = self.defect;
        self.wallet_mut(index).inject_defect(defect);
        self.wallet_mut(index).set_buyer_mode(true);
        self.execute(index, actions);
    }

    fn next_event_at(&self) -> Option<u64> {
        let packets = self.packets.iter().map(|p| p.deliver_at).min();
        let timers = self
            .devices
            .iter()
            .filter_map(|d| d.wallet.as_ref().and_then(Wallet::next_timeout))
            .min();
        let restarts = self.devices.iter().filter_map(|d| d.restart_at).min();
        let user = self.user.iter().map(|(at, _)| *at).min();
        let sale_expiry = self
            .sales
            .iter()
            .filter(|s| !s.chosen && s.started_at + SALE_ANSWER_TIMEOUT_MS >= self.now)
            .map(|s| s.started_at + SALE_ANSWER_TIMEOUT_MS)
            .min();
        [packets, timers, restarts, user, sale_expiry]
            .into_iter()
            .flatten()
            .min()
    }

    /// Runs until nothing is scheduled before `deadline`; returns whether the world fell quiet.
    pub fn run_until(&mut self, deadline: u64) -> bool {
        loop {
            let Some(at) = self.next_event_at() else {
                return true;
            };
            if at > deadline {
                self.now = deadline;
                return false;
            }
            self.now = self.now.max(at);
            self.tick();
        }
    }

    fn tick(&mut self) {
        let now = self.now;
        for index in 0..self.devices.len() {
            if self.devices[index].restart_at.is_some_and(|at| at <= now) {
                self.restart(index);
            }
        }
        let mut due: Vec<Packet> = Vec::new();
        let mut rest = Vec::new();
        for packet in self.packets.drain(..) {
            if packet.deliver_at <= now {
                due.push(packet);
            } else {
                rest.push(packet);
            }
        }
        self.packets = rest;
        due.sort_by_key(|p| (p.deliver_at, p.order));
        for packet in due {
            self.deliver(packet.to, &packet.bytes);
        }
        let mut user = Vec::new();
        let mut later = Vec::new();
        for (at, action) in self.user.drain(..) {
            if at <= now {
                user.push(action);
            } else {
                later.push((at, action));
            }
        }
        self.user = later;
        for action in user {
            self.perform_user(action);
        }
        for index in 0..self.devices.len() {
            let due = self.devices[index]
                .wallet
                .as_ref()
                .and_then(Wallet::next_timeout)
                .is_some_and(|at| at <= now);
            if due {
                let actions = self.devices[index]
                    .wallet
                    .as_mut()
                    .expect("device is up")
                    .handle_timeout(now, &mut self.entropy)
                    .expect("timeout");
                self.execute(index, actions);
            }
        }
        let expired: Vec<(usize, TransferId)> = self
            .sales
            .iter()
            .filter(|s| !s.chosen && s.started_at + SALE_ANSWER_TIMEOUT_MS <= now)
            .map(|s| (s.seller, s.transfer_id))
            .collect();
        for (seller, transfer_id) in expired {
            if let Some(wallet) = self.devices[seller].wallet.as_mut() {
                let _ = wallet.cancel_sale(transfer_id);
            }
            if let Some(sale) = self.sales.iter_mut().find(|s| s.transfer_id == transfer_id) {
                // Never chosen: nothing was logged; mark it so it no longer waits.
                sale.started_at = 0;
            }
        }
    }

    pub fn deliver(&mut self, to: usize, bytes: &[u8]) {
        let now = self.now;
        let Some(wallet) = self.devices[to].wallet.as_mut() else {
            return;
        };
        match wallet.handle_datagram(bytes, now, &mut self.entropy) {
            Ok(received) => {
                self.stats.delivered += 1;
                self.execute(to, received.actions);
            }
            Err(error) => {
                self.stats.refused += 1;
                *self.refusals.entry(format!("{error}")).or_default() += 1;
            }
        }
    }

    /// Lets every retransmission run out.
    pub fn quiesce(&mut self) {
        let deadline = self.now + QUIESCE_MS_MAX;
        assert!(self.run_until(deadline), "the world did not fall quiet");
    }

    pub fn restart_all(&mut self) {
        for index in 0..self.devices.len() {
            if self.devices[index].wallet.is_none() {
                self.restart(index);
            }
        }
    }

    /// One device syncs with the money office (no crashes during syncs).
    pub fn sync(&mut self, index: usize) {
        let now = self.now;
        let (actions, upload) = self.devices[index]
            .wallet
            .as_mut()
            .expect("device is up")
            .begin_sync(now, &mut self.entropy)
            .expect("begin sync");
        self.execute(index, actions);
        let reconciliation = self
            .office
            .reconcile(&upload.encode(), now)
            .expect("reconcile");
        self.postings
            .extend(reconciliation.postings.iter().copied());
        self.flags.extend(reconciliation.flags.iter().cloned());
        let reply =
            offpay_wallet::SyncReply::decode(&reconciliation.reply.encode()).expect("reply");
        let actions = self
            .wallet_mut(index)
            .finish_sync(&reply)
            .expect("finish sync");
        self.execute(index, actions);
    }

    /// Everyone comes back and syncs until every decision has reached every wallet.
    pub fn settle(&mut self) {
        self.crash_enabled = false;
        self.restart_all();
        self.quiesce();
        for _round in 0..3 {
            for index in 0..self.devices.len() {
                self.sync(index);
            }
            self.quiesce();
        }
    }

    /// The durable outcome of every transfer on each device, read from its log.
    pub fn log_outcomes(&self, index: usize) -> BTreeMap<TransferId, (Role, Option<Outcome>)> {
        let parsed = parse_log(self.devices[index].storage.bytes()).expect("log parses");
        let mut outcomes = BTreeMap::new();
        for logged in parsed.records {
            match logged.record {
                Record::SellerPending { terms, .. } => {
                    outcomes.insert(terms.transfer_id, (Role::Seller, None));
                }
                Record::SellerCommitted { transfer_id, .. } => {
                    outcomes.insert(transfer_id, (Role::Seller, Some(Outcome::Posted)));
                }
                Record::SellerVoided { transfer_id } => {
                    outcomes.insert(transfer_id, (Role::Seller, Some(Outcome::Voided)));
                }
                Record::BuyerPrepared { terms, .. } => {
                    outcomes.insert(terms.transfer_id, (Role::Buyer, None));
                }
                Record::BuyerPosted { transfer_id, .. } => {
                    outcomes.insert(transfer_id, (Role::Buyer, Some(Outcome::Posted)));
                }
                Record::BuyerVoided { transfer_id } => {
                    outcomes.insert(transfer_id, (Role::Buyer, Some(Outcome::Voided)));
                }
                Record::Resolved { resolution } => {
                    if let Some(entry) = outcomes.get_mut(&resolution.transfer_id)
                        && entry.0 == Role::Buyer
                    {
                        entry.1 = Some(resolution.outcome);
                    }
                }
                _ => {}
            }
        }
        outcomes
    }

    /// The whole-system check: atomicity on every chosen sale, money conserved in the wallets
    /// and in the office's view, and the office's view equal to every wallet's balance.
    /// Returns (posted, voided).
    pub fn check(&self) -> (usize, usize) {
        let mut all: Vec<BTreeMap<TransferId, (Role, Option<Outcome>)>> = Vec::new();
        for index in 0..self.devices.len() {
            all.push(self.log_outcomes(index));
        }
        let (mut posted, mut voided) = (0, 0);
        for sale in self.sales.iter().filter(|s| s.chosen) {
            let seller = all[sale.seller].get(&sale.transfer_id);
            let buyer = all[sale.buyer].get(&sale.transfer_id);
            let seller_outcome = match seller {
                Some((Role::Seller, Some(outcome))) => *outcome,
                // Chosen but the pending record never reached the disk: nothing was promised.
                None => Outcome::Voided,
                other => panic!(
                    "sale {} undecided at the seller: {other:?}",
                    sale.transfer_id
                ),
            };
            match (seller_outcome, buyer) {
                (Outcome::Posted, Some((Role::Buyer, Some(Outcome::Posted)))) => posted += 1,
                (Outcome::Voided, None)
                | (Outcome::Voided, Some((Role::Buyer, Some(Outcome::Voided)))) => voided += 1,
                (outcome, buyer) => panic!(
                    "transfer {} is {outcome:?} at the seller but {buyer:?} at the buyer",
                    sale.transfer_id
                ),
            }
        }
        let mut wallets_total: u128 = 0;
        for index in 0..self.devices.len() {
            let wallet = self.wallet(index);
            assert_eq!(wallet.held().minor(), 0, "value still held after settling");
            let balance = wallet.balance().minor();
            wallets_total += u128::from(balance);
            assert_eq!(
                self.office.shadow_minor(&wallet.id()),
                Some(i128::from(balance)),
                "office view differs from wallet {index}"
            );
        }
        assert_eq!(
            wallets_total,
            u128::from(self.charged_minor),
            "wallets do not add up"
        );
        assert_eq!(
            self.office.shadow_total_minor(),
            i128::from(self.charged_minor),
            "office view does not add up"
        );
        assert!(
            self.flags.is_empty(),
            "honest run raised flags: {:?}",
            self.flags
        );
        (posted, voided)
    }
}
