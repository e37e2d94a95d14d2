//! Rail 4 in a run: payer devices buying at vending machines offline with KeyNote microchecks,
//! machines depositing at the clearing center (the CSC's operator half,
//! `offpay_microcheck::operator::clearing`, over the shared ledger), the Provisioning Agent's
//! registrations and credentials.
//!
//! Adversaries: a merchant that deposits microchecks twice, replays a nonce under another
//! microcheck and inflates amounts; a thief with a payer's lost device, buying after the loss is
//! reported; a payer asking the PA online for transaction credentials it may not have (a class
//! outside its voucher, the adult class, more than its funds less what earlier ones hold, more
//! than the strategy's daily count). Faults: machine clocks that drift ahead (within the
//! tolerance), late deposits, operator restarts. Operator actions: registrations, funding,
//! lost-device reports, blocking and unblocking the asking payer.

use offpay_keynote::PrivateKey;
use offpay_ledger::{Batch, LedgerStore, Refusal, Transfer, TransferId, TransferKind};
use offpay_microcheck::credential::{self, Classes, PayerTemplate};
use offpay_microcheck::csc::{self, DepositItem, ItemOutcome, Location, MerchantAccount};
use offpay_microcheck::machine::{Machine, MachineConfig, StockItem};
use offpay_microcheck::operator::clearing::{self, Posting, SuspenseAccounts};
use offpay_microcheck::operator::pa::{self, RegisterMerchant, RegisterPayer};
use offpay_microcheck::operator::records::{self, PayerRecord};
use offpay_microcheck::payer::{LogEntry, PayerDevice};
use offpay_microcheck::strategy::Strategy;
use offpay_microcheck::wire::Message;
use offpay_microcheck::{MerchantPolicy, PayerPolicy, UnixSeconds};
use offpay_money::{Amount, Currency};
use offpay_operator::accounts::{OPERATOR_FLOAT, SUSPENSE, operator_account_id, operator_accounts};
use offpay_operator::{Effects, Loaded};

use crate::world::{Rail, Role, World};

/// Honest payers in a run.
pub const PAYERS: usize = 3;
/// Honest machines in a run.
pub const MACHINES: usize = 2;
/// Sales a machine keeps before it must deposit.
pub const UNDEPOSITED_MAX: usize = 24;
/// Items of one deposit.
pub const DEPOSIT_ITEMS_MAX: usize = UNDEPOSITED_MAX;
/// How far ahead an honest machine's clock may run, in seconds (within the CSC's tolerance).
pub const MACHINE_SKEW_SECONDS_MAX: u64 = 3600;
/// Times one deposit is posted again after the ledger refused a microcheck of it.
pub const DEPOSIT_ATTEMPTS_MAX: usize = DEPOSIT_ITEMS_MAX + 2;
/// What each payer's account is funded with, minor units.
pub const FUNDING_MINOR: u64 = 100_000;
/// How long a payer credential is valid.
pub const CREDENTIAL_SECONDS: u64 = 30 * 86_400;
/// Log entries a device keeps (for its per-merchant day counts).
pub const LOG_MAX: usize = 256;

/// What the online asker's account is funded with, minor units.
pub const ASKER_FUNDING_MINOR: u64 = 20_000;
/// Most one online credential the asker asks for is worth, minor units (above the offline
/// credential's 5.00, within the strategy's online limit).
pub const ASK_MINOR_MAX: u64 = 2_500;
/// Online credentials the asker asks for in one go.
pub const ASKS_PER_ATTACK_MAX: u64 = 12;
/// Online credentials the run remembers for the asker (the PA holds at most
/// `TRANSACTION_HOLDS_MAX` at once).
pub const ASKED_KEPT_MAX: usize = 256;

const CURRENCY: Currency = Currency::KES;
const CHEAT_MERCHANT: &str = "vm-cheat";
const ASKER: &str = "asker";
/// The one class on the asker's voucher.
const ASKER_CLASS: &str = "drink";
/// Classes the asker asks for.
const ASKED_CLASSES: [&str; 3] = ["drink", "food", offpay_microcheck::offer::ADULT_CLASS];

fn seconds(world: &World) -> UnixSeconds {
    UnixSeconds(world.now.0 / 1000)
}

fn stock() -> Vec<StockItem> {
    let item = |item: u32, product: &str, class: &str, price: &str| StockItem {
        item,
        product: product.into(),
        product_class: class.into(),
        price: price.into(),
        count: 100_000,
    };
    vec![
        item(1, "Water", "drink", "0.83"),
        item(2, "Sandwich", "food", "4.50"),
        item(3, "Tea", "drink", "1.20"),
    ]
}

struct Payer {
    name: String,
    device: PayerDevice,
    log: Vec<LogEntry>,
    /// What the holder bought, minor units (its own purchases; a thief's are not in it).
    spent_minor: u64,
    /// What a thief bought with this payer's lost device, minor units.
    stolen_minor: u64,
    /// The device a thief holds (the old key), once the holder reported it lost.
    stolen: Option<PayerDevice>,
    /// When the holder reported the old device lost.
    reported_at: Option<UnixSeconds>,
}

struct Vending {
    id: String,
    machine: Machine,
    role: Role,
    skew_seconds: u64,
    location: Location,
    /// Sales not yet deposited, with the payer and whether its first key (the one a loss
    /// report retires) signed them.
    undeposited: Vec<(DepositItem, usize, bool)>,
    /// Every sale ever made, minor units (what an honest machine must be paid).
    sold_minor: u64,
    /// Sales refused at deposit because of the machine's own delay (its loss by the rules).
    forfeited_minor: u64,
    /// Sales the cheat deposited already (it deposits them again).
    deposited: Vec<DepositItem>,
}

/// Rail 4's part of a run.
pub struct MicrocheckRail {
    pa_seed: [u8; 32],
    age_seed: [u8; 32],
    pa: pa::Pa,
    pa_key: PrivateKey,
    age_key: PrivateKey,
    strategy: Strategy,
    payers: Vec<Payer>,
    machines: Vec<Vending>,
    nonces: u64,
    /// Online credentials the PA issued to the asker: (UTC date, amount in minor units, hold
    /// until).
    issued_online: Vec<(String, u64, u64)>,
    /// Whether the operator has blocked the asker.
    asker_blocked: bool,
}

impl std::fmt::Debug for MicrocheckRail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MicrocheckRail")
            .field("payers", &self.payers.len())
            .finish_non_exhaustive()
    }
}

impl MicrocheckRail {
    /// Registers the machines and the payers, funds the payers, issues their credentials.
    pub fn new(world: &mut World) -> MicrocheckRail {
        let pa_seed = world.rng.bytes32();
        let age_seed = world.rng.bytes32();
        let pa_key = PrivateKey::ed25519_from_seed(&pa_seed);
        let age_key = PrivateKey::ed25519_from_seed(&age_seed);
        let mut rail = MicrocheckRail {
            pa_seed,
            age_seed,
            pa: pa::Pa::new(
                PrivateKey::ed25519_from_seed(&pa_seed),
                PrivateKey::ed25519_from_seed(&age_seed),
            ),
            pa_key,
            age_key,
            strategy: Strategy::default_for(CURRENCY),
            payers: Vec::new(),
            machines: Vec::new(),
            nonces: 0,
            issued_online: Vec::new(),
            asker_blocked: false,
        };
        for index in 0..=MACHINES {
            let (id, role) = if index == MACHINES {
                (CHEAT_MERCHANT.to_owned(), Role::Adversary)
            } else {
                (format!("vm-{index}"), Role::Honest)
            };
            rail.register_machine(world, &id, role, index);
        }
        for index in 0..PAYERS {
            let name = format!("payer-{index}");
            let key = PrivateKey::ed25519_from_seed(&world.rng.bytes32());
            rail.register_payer(world, &name, &key);
            rail.fund(world, &name);
            let device = rail.device(world, key);
            world.party(Rail::Microcheck, name.clone(), Role::Honest);
            rail.payers.push(Payer {
                name,
                device,
                log: Vec::new(),
                spent_minor: 0,
                stolen_minor: 0,
                stolen: None,
                reported_at: None,
            });
        }
        // The online asker: a drink-only voucher, not an adult, a small balance.
        let key = PrivateKey::ed25519_from_seed(&world.rng.bytes32());
        rail.register_payer_as(
            world,
            ASKER,
            &key,
            Some(vec![ASKER_CLASS.to_owned()]),
            ASKER_FUNDING_MINOR,
        );
        world.party(Rail::Microcheck, ASKER, Role::Adversary);
        rail
    }

    fn register_machine(&mut self, world: &mut World, id: &str, role: Role, index: usize) {
        let key = PrivateKey::ed25519_from_seed(&world.rng.bytes32());
        let request = RegisterMerchant {
            id: id.to_owned(),
            key: records::key_identifier(&key.principal()),
            app_domain: None,
            latitude: Some(format!("-1.{}", 2000 + index)),
            longitude: Some("36.8219".into()),
        };
        let registered = pa::register_merchant(
            &request,
            &self.strategy,
            operator_accounts(CURRENCY, CURRENCY),
        );
        let (effects, record) = match registered {
            Ok(registered) => registered,
            Err(error) => {
                world.fail("microcheck_operator", format!("register {id}: {error}"));
                return;
            }
        };
        if !matches!(world.commit(effects), Ok(true)) {
            world.fail("microcheck_operator", format!("register {id}"));
            return;
        }
        let now = seconds(world);
        let machine = MerchantPolicy::new(
            id,
            &self.strategy.app_domain,
            &self.pa_key.principal(),
            Some(&self.age_key.principal()),
        )
        .ok()
        .and_then(|policy| {
            let merchant_credential = credential::issue_merchant(
                &self.pa_key,
                &key.principal(),
                id,
                &self.strategy.app_domain,
                now.minus(60),
                now.plus(365 * 86_400),
            )
            .ok()?;
            Machine::new(
                MachineConfig {
                    policy,
                    currency: CURRENCY,
                    key,
                    merchant_credential: String::from_utf8_lossy(merchant_credential.text())
                        .into_owned(),
                },
                stock(),
                [],
            )
            .ok()
        });
        let Some(machine) = machine else {
            world.fail("microcheck_machine", format!("machine {id}"));
            return;
        };
        world.party(Rail::Microcheck, id, role);
        self.machines.push(Vending {
            id: id.to_owned(),
            machine,
            role,
            skew_seconds: 0,
            location: record.location,
            undeposited: Vec::new(),
            sold_minor: 0,
            forfeited_minor: 0,
            deposited: Vec::new(),
        });
    }

    fn register_payer(&mut self, world: &mut World, name: &str, key: &PrivateKey) {
        self.register_payer_with(world, name, key, None);
    }

    fn register_payer_as(
        &mut self,
        world: &mut World,
        name: &str,
        key: &PrivateKey,
        classes: Option<Vec<String>>,
        funding_minor: u64,
    ) {
        self.register_payer_with(world, name, key, classes);
        self.fund_with(world, name, funding_minor);
    }

    fn register_payer_with(
        &mut self,
        world: &mut World,
        name: &str,
        key: &PrivateKey,
        classes: Option<Vec<String>>,
    ) {
        let request = RegisterPayer {
            name: name.to_owned(),
            key: records::key_identifier(&key.principal()),
            adult: false,
            classes,
        };
        let strategy = &self.strategy;
        let now = seconds(world);
        let registered = world.run(
            |store, _| Loaded::<PayerRecord>::read(store, &records::payer_key(name)),
            |existing, _| {
                pa::register_payer(
                    &request,
                    &existing,
                    strategy,
                    operator_accounts(CURRENCY, CURRENCY),
                    now,
                )
                .map(|(effects, answer)| offpay_operator::Decision::commit(effects, answer))
            },
        );
        world.counters.operations += 1;
        if let Err(error) = registered {
            world.fail("microcheck_operator", format!("register {name}: {error}"));
        }
    }

    fn fund(&mut self, world: &mut World, name: &str) {
        self.fund_with(world, name, FUNDING_MINOR);
    }

    fn fund_with(&mut self, world: &mut World, name: &str, minor: u64) {
        let (Some(float), Ok(account), Ok(id), Ok(amount)) = (
            operator_account_id(OPERATOR_FLOAT, CURRENCY, CURRENCY),
            records::payer_account(name),
            TransferId::new(format!("sim-fund:{name}")),
            Amount::from_minor(minor, CURRENCY),
        ) else {
            return;
        };
        let mut effects = Effects::new();
        effects.post(Transfer {
            id,
            debit_account: float,
            credit_account: account,
            amount,
            kind: TransferKind::Posted,
            memo: "fund".into(),
        });
        if !matches!(world.commit(effects), Ok(true)) {
            world.fail("microcheck_operator", format!("funding {name}"));
        }
    }

    /// A payer device for `key` with a credential from the PA.
    fn device(&self, world: &World, key: PrivateKey) -> PayerDevice {
        let now = seconds(world);
        let template = PayerTemplate {
            serial: format!("sim-{}", now.0),
            tier: "daily".into(),
            app_domain: self.strategy.app_domain.clone(),
            currency: CURRENCY,
            amount_max: Amount::from_minor(500, CURRENCY).unwrap_or_else(|_| panic!("5.00")),
            not_before: now.minus(60),
            not_after: now.plus(CREDENTIAL_SECONDS),
            per_merchant_day_max: 50,
            classes: Classes::Any,
        };
        let issued = credential::issue_payer(&self.pa_key, &key.principal(), &template)
            .map(|assertion| String::from_utf8_lossy(assertion.text()).into_owned());
        let credentials: Vec<String> = issued.into_iter().collect();
        PayerPolicy::new(&self.pa_key.principal())
            .and_then(|policy| PayerDevice::new(key, policy, &credentials))
            .unwrap_or_else(|_| panic!("a payer device"))
    }

    /// One step of the rail.
    pub fn step(&mut self, world: &mut World) {
        match world.rng.below(100) {
            0..=49 => {
                let payer = world.rng.index(self.payers.len());
                let machine = world.rng.index(self.machines.len());
                self.buy(world, payer, machine, false);
            }
            50..=69 => {
                let machine = world.rng.index(self.machines.len());
                self.deposit(world, machine);
            }
            70..=74 => self.drift(world),
            75..=79 => self.report_lost(world),
            80..=84 => {
                let payer = world.rng.index(self.payers.len());
                let machine = world.rng.index(MACHINES);
                self.buy(world, payer, machine, true);
            }
            85..=89 => self.online_asker(world),
            90..=95 => self.cheat_deposit(world),
            _ => {
                world.counters.faults += 1;
                self.pa = pa::Pa::new(
                    PrivateKey::ed25519_from_seed(&self.pa_seed),
                    PrivateKey::ed25519_from_seed(&self.age_seed),
                );
                world.event("microcheck operator restart");
                world.check_acknowledged();
            }
        }
    }

    /// The online asker: the operator may first block or unblock it; then it asks the PA for
    /// transaction credentials (`Pa::transaction`, as the server's route does) for offers of
    /// any class and of amounts up to its whole balance, several in a row. Every credential the
    /// PA issues must keep the rules of the online strategy (protocol §5.2): the payer's classes
    /// and no adult class without adulthood, its funds less what earlier credentials hold, at
    /// most the strategy's count in a UTC day, nothing to a blocked payer.
    fn online_asker(&mut self, world: &mut World) {
        if world.rng.percent(20) {
            self.block_asker(world, !self.asker_blocked);
        }
        world.counters.attacks += 1;
        let asks = world.rng.between(1, ASKS_PER_ATTACK_MAX);
        for _ in 0..asks {
            self.ask_online(world);
        }
    }

    fn block_asker(&mut self, world: &mut World, blocked: bool) {
        let now = seconds(world);
        let request = pa::BlockRequest {
            reason: Some("simulated customer care".into()),
        };
        let result = world.run(
            |store, _| Loaded::<PayerRecord>::read(store, &records::payer_key(ASKER)),
            |payer, _| {
                pa::set_blocked(&payer, blocked, &request, now)
                    .map(|(effects, _)| offpay_operator::Decision::commit(effects, ()))
            },
        );
        world.counters.operations += 1;
        world.event(format!(
            "microcheck operator blocks {ASKER}: {blocked} {result:?}"
        ));
        match result {
            Ok(()) => self.asker_blocked = blocked,
            Err(error) => world.fail("microcheck_operator", format!("block: {error}")),
        }
    }

    fn ask_online(&mut self, world: &mut World) {
        let now = seconds(world);
        let class = ASKED_CLASSES[world.rng.index(ASKED_CLASSES.len())];
        let minor = world.rng.between(501, ASK_MINOR_MAX);
        let Ok(amount) = Amount::from_minor(minor, CURRENCY) else {
            return;
        };
        let mut nonce = [0u8; 16];
        world.rng.fill(&mut nonce);
        let offer = offpay_microcheck::offer::Offer {
            merchant: self.machines[0].id.clone(),
            currency: CURRENCY.code().to_owned(),
            product: "Radio".into(),
            product_class: class.to_owned(),
            date: now.date(),
            timestamp: now.stamp(),
            amount: amount.decimal().to_string(),
            app_domain: self.strategy.app_domain.clone(),
            nonce: hex::encode(nonce),
        };
        let body = serde_json::json!({ "offer": offer });
        let pa = &self.pa;
        let strategy = &self.strategy;
        let result = world.run(
            |store, _| pa::load_transaction(store, ASKER),
            |state, _| {
                let Some(state) = state else {
                    return Err(offpay_microcheck::operator::OperatorError::NotFound {
                        what: "payer",
                        id: ASKER.to_owned(),
                    });
                };
                pa.transaction(&state, strategy, &body, now)
                    .map(|(effects, _, _)| offpay_operator::Decision::commit(effects, ()))
            },
        );
        world.counters.operations += 1;
        world.event(format!(
            "microcheck online {ASKER} {class} {amount}: {}",
            match &result {
                Ok(()) => "issued".to_owned(),
                Err(error) => format!("refused: {error}"),
            }
        ));
        if result.is_err() {
            return;
        }
        let today = now.date();
        let until = now
            .plus(strategy.transaction_validity_seconds)
            .plus(offpay_microcheck::limits::TRANSACTION_HOLD_SECONDS)
            .0;
        if self.issued_online.len() >= ASKED_KEPT_MAX {
            self.issued_online.remove(0);
        }
        self.issued_online.push((today.clone(), minor, until));
        world.check(
            "microcheck_online_nothing_to_a_blocked_payer",
            !self.asker_blocked,
            || format!("{ASKER} is blocked and got an online credential"),
        );
        world.check(
            "microcheck_online_within_classes",
            class == ASKER_CLASS,
            || format!("{ASKER} (voucher: {ASKER_CLASS}, not an adult) got one for {class}"),
        );
        let today_count = self
            .issued_online
            .iter()
            .filter(|(date, _, _)| *date == today)
            .count();
        let day_max = strategy.transaction_day_max as usize;
        world.check(
            "microcheck_online_within_day_max",
            today_count <= day_max,
            || {
                format!(
                    "{ASKER} got {today_count} online credentials on {today}; at most {day_max}"
                )
            },
        );
        // None of them is ever deposited: each holds its amount until it lapses.
        let held: u64 = self
            .issued_online
            .iter()
            .filter(|(_, _, until)| *until > now.0)
            .map(|(_, minor, _)| minor)
            .sum();
        let funds = records::payer_account(ASKER)
            .map(|account| world.balance(&account))
            .unwrap_or(0);
        world.check(
            "microcheck_online_covered_by_funds",
            i128::from(held) <= i128::from(funds),
            || format!("{ASKER} holds {held} in online credentials on a balance of {funds}"),
        );
    }

    /// A purchase: select, check the offer, pay, the machine decides. `thief`: with the payer's
    /// lost device, if a thief holds one.
    fn buy(&mut self, world: &mut World, payer: usize, machine: usize, thief: bool) {
        if self.machines[machine].undeposited.len() >= UNDEPOSITED_MAX {
            self.deposit(world, machine);
        }
        if thief && self.payers[payer].stolen.is_none() {
            return;
        }
        self.nonces += 1;
        let mut nonce = [0u8; 16];
        world.rng.fill(&mut nonce);
        let item = [1, 2, 3][world.rng.index(3)];
        let machine_now = seconds(world).plus(self.machines[machine].skew_seconds);
        let device_now = seconds(world);
        let vending = &mut self.machines[machine];
        let Ok(awaiting) = vending.machine.select(item, machine_now, &nonce) else {
            return;
        };
        let Message::Offer {
            offer,
            merchant_credential,
            offer_signature,
            ..
        } = awaiting.message().clone()
        else {
            return;
        };
        let holder = &mut self.payers[payer];
        let first_key = thief || holder.stolen.is_none();
        let device = if thief {
            match holder.stolen.as_mut() {
                Some(device) => device,
                None => return,
            }
        } else {
            &mut holder.device
        };
        world.counters.operations += 1;
        if thief {
            world.counters.attacks += 1;
        }
        let terms =
            match device.check_offer(&offer, &merchant_credential, &offer_signature, device_now) {
                Ok(terms) => terms,
                Err(refusal) => {
                    world.event(format!("microcheck offer refused: {}", refusal.code()));
                    return;
                }
            };
        let count =
            offpay_microcheck::payer::purchases_today(&holder.log, &offer.merchant, &offer.date);
        let prepared = match device.pay(&terms, count, device_now, &[]) {
            Ok(prepared) => prepared,
            Err(refusal) => {
                world.event(format!("microcheck payment refused: {}", refusal.code()));
                return;
            }
        };
        let Message::Payment {
            microcheck,
            credentials,
            ..
        } = prepared.message
        else {
            return;
        };
        let sale = match vending.machine.pay(awaiting, &microcheck, &credentials) {
            Ok(sale) => sale,
            Err(refusal) => {
                world.event(format!("microcheck machine refused: {}", refusal.code()));
                return;
            }
        };
        if holder.log.len() >= LOG_MAX {
            holder.log.remove(0);
        }
        holder.log.push(prepared.log_entry);
        let item = DepositItem::from(&sale.record);
        let _receipt = vending.machine.complete(sale);
        let Ok(amount) = Amount::parse(&item.offer.amount, CURRENCY) else {
            world.fail("microcheck_machine", "a sale's amount does not parse");
            return;
        };
        if thief {
            holder.stolen_minor += amount.minor();
        } else {
            holder.spent_minor += amount.minor();
        }
        vending.sold_minor += amount.minor();
        vending.undeposited.push((item, payer, first_key));
        world.event(format!(
            "microcheck {} buys at {} {} {}",
            holder.name,
            vending.id,
            amount.minor(),
            if thief { "(thief)" } else { "" }
        ));
    }

    /// The machine deposits what it sold (the cheat first inflates one amount).
    fn deposit(&mut self, world: &mut World, machine: usize) {
        let count = self.machines[machine]
            .undeposited
            .len()
            .min(DEPOSIT_ITEMS_MAX);
        if count == 0 {
            return;
        }
        let taken: Vec<(DepositItem, usize, bool)> =
            self.machines[machine].undeposited.drain(..count).collect();
        let items: Vec<DepositItem> = taken.iter().map(|(item, _, _)| item.clone()).collect();
        world.counters.operations += 1;
        let mut sent = items.clone();
        if self.machines[machine].role == Role::Adversary && world.rng.percent(30) {
            world.counters.attacks += 1;
            let index = world.rng.index(sent.len());
            sent[index].offer.amount = "4.99".into();
            world.event(format!(
                "microcheck {} inflates an amount",
                self.machines[machine].id
            ));
        }
        let now = seconds(world);
        let outcomes = self.clear(world, machine, &sent);
        let mut forfeited = 0;
        for ((item, payer, first_key), outcome) in taken.iter().zip(&outcomes) {
            if let ItemOutcome::Refused { refusal, .. } = outcome {
                world.event(format!(
                    "microcheck {} deposit refused {}: {}",
                    self.machines[machine].id,
                    item.offer.nonce,
                    refusal.code()
                ));
                if let Ok(amount) = Amount::parse(&item.offer.amount, CURRENCY) {
                    forfeited += amount.minor();
                }
                if self.machines[machine].role == Role::Honest {
                    // An honest machine's sale is refused by the rules only when it deposits
                    // a lost key's microcheck later than the window after the report.
                    let signed_by_retired_key =
                        *first_key && self.payers[*payer].reported_at.is_some();
                    let window_passed = self.payers[*payer].reported_at.is_some_and(|reported| {
                        now.0
                            > reported.0
                                + offpay_microcheck::limits::LOST_KEY_DEPOSIT_WINDOW_SECONDS
                    });
                    let late = refusal.code() == "deposited_too_late"
                        && signed_by_retired_key
                        && window_passed;
                    world.check("honest_machine_paid_for_its_sales", late, || {
                        format!(
                            "{}'s sale {} refused: {refusal}",
                            self.machines[machine].id, item.offer.nonce
                        )
                    });
                }
            }
        }
        self.machines[machine].forfeited_minor += forfeited;
        if self.machines[machine].role == Role::Adversary {
            let cleared = items
                .iter()
                .zip(&outcomes)
                .filter(|(_, outcome)| matches!(outcome, ItemOutcome::Cleared(_)))
                .map(|(item, _)| item.clone());
            self.machines[machine].deposited.extend(cleared);
            let keep = self.machines[machine]
                .deposited
                .len()
                .saturating_sub(UNDEPOSITED_MAX);
            self.machines[machine].deposited.drain(..keep);
        }
    }

    /// The cheat deposits microchecks it was paid for already.
    fn cheat_deposit(&mut self, world: &mut World) {
        let cheat = self.machines.len() - 1;
        if self.machines[cheat].deposited.is_empty() {
            return;
        }
        world.counters.attacks += 1;
        let index = world.rng.index(self.machines[cheat].deposited.len());
        let mut again = self.machines[cheat].deposited[index].clone();
        if world.rng.percent(50) {
            // The same nonce under another amount: a replayed nonce.
            again.offer.amount = "0.84".into();
        }
        let before = self.merchant_balance(world, cheat);
        let outcomes = self.clear(world, cheat, std::slice::from_ref(&again));
        let after = self.merchant_balance(world, cheat);
        world.event(format!("microcheck cheat deposits again: {outcomes:?}"));
        world.check("microcheck_paid_once", after == before, || {
            format!(
                "the cheat was paid {} more for a microcheck deposited before",
                after - before
            )
        });
    }

    fn merchant_balance(&mut self, world: &mut World, machine: usize) -> i64 {
        records::merchant_account(&self.machines[machine].id)
            .map_or(0, |account| world.balance(&account))
    }

    /// The CSC on one deposit, in this thread: load, check, clear, post; a microcheck the
    /// ledger refuses (deposited meanwhile) is refused and the rest posted again.
    fn clear(
        &mut self,
        world: &mut World,
        machine: usize,
        items: &[DepositItem],
    ) -> Vec<ItemOutcome> {
        let now = seconds(world);
        let id = self.machines[machine].id.clone();
        let Ok(policy) = MerchantPolicy::new(
            &id,
            &self.strategy.app_domain,
            &self.pa_key.principal(),
            Some(&self.age_key.principal()),
        ) else {
            world.fail("microcheck_operator", "a merchant policy");
            return Vec::new();
        };
        let prepared = match csc::prepare(items, 1) {
            Ok(prepared) => prepared,
            Err(refusal) => {
                world.event(format!(
                    "microcheck deposit refused whole: {}",
                    refusal.code()
                ));
                return Vec::new();
            }
        };
        let keys = csc::keys(&prepared);
        let rules = clearing::rules(&self.strategy);
        let (Some(suspense), true) = (operator_account_id(SUSPENSE, CURRENCY, CURRENCY), true)
        else {
            return Vec::new();
        };
        let suspense = SuspenseAccounts {
            creations: operator_accounts(CURRENCY, CURRENCY),
            suspense,
        };
        let mut refused_by_ledger: Vec<usize> = Vec::new();
        for _ in 0..DEPOSIT_ATTEMPTS_MAX {
            let loaded = match clearing::load_state(&mut world.store, &id, &keys) {
                Ok(loaded) => loaded,
                Err(error) => {
                    world.fail("microcheck_records_decode", error.to_string());
                    return Vec::new();
                }
            };
            let checks = csc::check(&policy, &prepared, &loaded.state, now);
            let merchant = MerchantAccount {
                policy: policy.clone(),
                location: self.machines[machine].location,
                last_deposit_at: loaded.last_deposit,
            };
            let mut state = loaded.state.clone();
            let mut outcomes =
                csc::clear_checked(&merchant, rules, &prepared, &checks, &mut state, now);
            // Those the ledger refused before: refused now (their charge exists).
            let mut cleared: Vec<&csc::Clearance> = Vec::new();
            let mut state = loaded.state.clone();
            for outcome in &outcomes {
                if let ItemOutcome::Cleared(clearance) = outcome
                    && !refused_by_ledger.contains(&clearance.index)
                {
                    state.apply(&merchant, clearance);
                    cleared.push(clearance);
                }
            }
            let side = match clearing::side(&outcomes, &id, now) {
                Ok(side) => side,
                Err(error) => {
                    world.fail("microcheck_operator", error.to_string());
                    return outcomes;
                }
            };
            let mut batches: Vec<Batch> = Vec::new();
            let posting = if cleared.is_empty() {
                None
            } else {
                match Posting::batch(
                    &cleared,
                    &state,
                    &id,
                    &loaded.versions,
                    Some(&suspense),
                    now,
                ) {
                    Ok(posting) => Some(posting),
                    Err(error) => {
                        world.fail("microcheck_operator", error.to_string());
                        return outcomes;
                    }
                }
            };
            if let Some(posting) = &posting {
                batches.push(posting.batch.clone());
            }
            batches.push(side);
            let results = match world.store.commit(&batches, world.now) {
                Ok(results) => results,
                Err(error) => {
                    world.fail("microcheck_ledger", error.to_string());
                    return outcomes;
                }
            };
            let main = results.into_iter().next();
            match (posting, main) {
                (Some(posting), Some(Err(refusal))) => {
                    let owner = posting.owners.get(refusal.index).copied().flatten();
                    match owner {
                        Some(position)
                            if clearing::may_be_spent(&refusal.reason, Some(position)) =>
                        {
                            refused_by_ledger.push(cleared[position].index);
                            continue;
                        }
                        _ if matches!(refusal.reason, Refusal::RecordVersionMismatch { .. }) => {
                            continue;
                        }
                        _ => {
                            world.fail("microcheck_ledger", format!("refused: {refusal}"));
                            return outcomes;
                        }
                    }
                }
                (Some(posting), Some(Ok(_))) => {
                    for operation in &posting.batch.operations {
                        if let offpay_ledger::Operation::Transfer(transfer) = operation {
                            world.acknowledge(transfer.id.clone());
                        }
                    }
                }
                _ => {}
            }
            for outcome in &mut outcomes {
                if let ItemOutcome::Cleared(clearance) = outcome
                    && refused_by_ledger.contains(&clearance.index)
                {
                    *outcome = ItemOutcome::Refused {
                        index: clearance.index,
                        nonce: Some(clearance.nonce.clone()),
                        refusal: offpay_microcheck::Refusal::AlreadyDeposited {
                            nonce: clearance.nonce.clone(),
                        },
                        findings: Vec::new(),
                    };
                }
            }
            return outcomes;
        }
        world.fail("microcheck_ledger", "a deposit kept being refused");
        Vec::new()
    }

    /// A machine's clock runs ahead (within the CSC's tolerance), or comes back.
    fn drift(&mut self, world: &mut World) {
        world.counters.faults += 1;
        let machine = world.rng.index(self.machines.len());
        self.machines[machine].skew_seconds = world.rng.below(MACHINE_SKEW_SECONDS_MAX + 1);
        world.event(format!(
            "microcheck {} clock +{}s",
            self.machines[machine].id, self.machines[machine].skew_seconds
        ));
    }

    /// A payer reports its device lost: the operator registers its new device's key (retiring
    /// the old one); a thief keeps the old device.
    fn report_lost(&mut self, world: &mut World) {
        let payer = world.rng.index(self.payers.len());
        if self.payers[payer].stolen.is_some() {
            return;
        }
        world.counters.operations += 1;
        let name = self.payers[payer].name.clone();
        let key = PrivateKey::ed25519_from_seed(&world.rng.bytes32());
        self.register_payer(world, &name, &key);
        let device = self.device(world, key);
        let old = std::mem::replace(&mut self.payers[payer].device, device);
        self.payers[payer].stolen = Some(old);
        self.payers[payer].reported_at = Some(seconds(world));
        world.event(format!("microcheck {name} reports its device lost"));
    }

    /// The end of a run: every machine deposits what it holds.
    pub fn settle(&mut self, world: &mut World) {
        for machine in 0..self.machines.len() {
            while !self.machines[machine].undeposited.is_empty() {
                self.deposit(world, machine);
            }
        }
    }

    /// After every step: no honest payer charged more than it (and a thief with its lost
    /// device) bought; devices and machines within their bounds.
    pub fn check(&mut self, world: &mut World) {
        for payer in 0..self.payers.len() {
            let Ok(account) = records::payer_account(&self.payers[payer].name) else {
                continue;
            };
            let balance = world.balance(&account);
            let charged = FUNDING_MINOR as i64 - balance;
            let bought = (self.payers[payer].spent_minor + self.payers[payer].stolen_minor) as i64;
            world.check(
                "honest_payer_charged_only_what_was_bought",
                charged <= bought,
                || {
                    format!(
                        "{} charged {charged}, bought {bought}",
                        self.payers[payer].name
                    )
                },
            );
        }
        for machine in &self.machines {
            world.check(
                "microcheck_machine_within_bounds",
                machine.undeposited.len() <= UNDEPOSITED_MAX,
                || format!("{} holds too many sales", machine.id),
            );
        }
    }

    /// At the end of a run: every honest machine was paid for every sale (less what the rules
    /// make it bear), and the cheat never more than it sold.
    pub fn final_check(&mut self, world: &mut World) {
        for machine in 0..self.machines.len() {
            let balance = self.merchant_balance(world, machine);
            let vending = &self.machines[machine];
            let owed = vending.sold_minor as i64 - vending.forfeited_minor as i64;
            match vending.role {
                Role::Honest => {
                    world.check("honest_machine_paid_for_its_sales", balance == owed, || {
                        format!("{}: paid {balance}, sold {owed}", vending.id)
                    })
                }
                Role::Adversary => world.check(
                    "microcheck_paid_once",
                    balance <= vending.sold_minor as i64,
                    || {
                        format!(
                            "{}: paid {balance}, sold {}",
                            vending.id, vending.sold_minor
                        )
                    },
                ),
            }
        }
        let _: Option<&dyn LedgerStore> = None;
    }
}
