//! The adversarial whole-system simulator (DESIGN.md §6, issue 21): the four rails' operator
//! halves on one ledger, their device halves, honest users and adversaries, faults and a clock,
//! all driven by one `u64` seed in one thread, with the invariants checked after every step.
//! The same seed gives the same run, byte for byte (the trace hash says so).

pub mod microcheck;
pub mod purse;
pub mod rng;
pub mod sms;
pub mod wallet;
pub mod world;

use offpay_ledger::Timestamp;

pub use world::{Counters, Rail, Violation, World};

/// Most steps one seed runs.
pub const STEPS_MAX: u32 = 100_000;
/// Steps a seed runs unless told otherwise.
pub const STEPS_DEFAULT: u32 = 120;
/// The operator's clock at the start of every run: 2026-09-21.
pub const START: Timestamp = Timestamp(1_790_000_000_000);
/// Most time one step moves the operator's clock, in milliseconds.
pub const STEP_MS_MAX: u64 = 120_000;

/// Percent of steps after which days pass.
pub const DAYS_PASS_PERCENT: u64 = 3;
/// Most days that pass at once.
pub const DAYS_PASS_MAX: u64 = 12;

const _: () = assert!(STEPS_DEFAULT <= STEPS_MAX);

/// Which rails a run includes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rails {
    /// Rail 1.
    pub purse: bool,
    /// Rail 2.
    pub sms: bool,
    /// Rail 3.
    pub wallet: bool,
    /// Rail 4.
    pub microcheck: bool,
}

impl Rails {
    /// All four.
    pub const ALL: Rails = Rails {
        purse: true,
        sms: true,
        wallet: true,
        microcheck: true,
    };

    /// The rails named in a comma-separated list (`purse,sms,wallet,microcheck`; `all`).
    pub fn parse(text: &str) -> Result<Rails, String> {
        let mut rails = Rails {
            purse: false,
            sms: false,
            wallet: false,
            microcheck: false,
        };
        for name in text
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
        {
            match name {
                "all" => rails = Rails::ALL,
                "purse" => rails.purse = true,
                "sms" | "sms-tan" => rails.sms = true,
                "wallet" => rails.wallet = true,
                "microcheck" | "vend" => rails.microcheck = true,
                other => {
                    return Err(format!(
                        "unknown rail {other:?}: give purse, sms, wallet, microcheck or all"
                    ));
                }
            }
        }
        if rails
            == (Rails {
                purse: false,
                sms: false,
                wallet: false,
                microcheck: false,
            })
        {
            return Err("name at least one rail".to_owned());
        }
        Ok(rails)
    }

    /// The comma-separated names (what [`Rails::parse`] reads).
    pub fn names(&self) -> String {
        if *self == Rails::ALL {
            return "all".to_owned();
        }
        [
            (self.purse, "purse"),
            (self.sms, "sms"),
            (self.wallet, "wallet"),
            (self.microcheck, "microcheck"),
        ]
        .iter()
        .filter(|(included, _)| *included)
        .map(|(_, name)| *name)
        .collect::<Vec<_>>()
        .join(",")
    }
}

/// How a seed runs.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Steps (at most [`STEPS_MAX`]).
    pub steps: u32,
    /// The rails in the run.
    pub rails: Rails,
    /// Keep the newest events to print when the seed fails.
    pub keep_events: bool,
    /// Wallet device clocks and the operator's block of the wallet cheat (on unless told).
    /// Off, a wallet run is what it was before they were added: the reverted-fix test of
    /// `BUYER_COMMIT_POSTS_OVER_VOID` replays its seed so (docs/SIMULATOR.md).
    pub wallet_clocks_and_blocks: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            steps: STEPS_DEFAULT,
            rails: Rails::ALL,
            keep_events: false,
            wallet_clocks_and_blocks: true,
        }
    }
}

/// What one seed did.
#[derive(Clone, Debug)]
pub struct SeedReport {
    /// The seed.
    pub seed: u64,
    /// Steps run.
    pub steps: u32,
    /// The counters.
    pub counters: Counters,
    /// The first invariant that did not hold.
    pub violation: Option<Violation>,
    /// SHA-256 of the whole event trace.
    pub trace_hash: [u8; 32],
    /// The newest events (when kept).
    pub events: Vec<String>,
    /// Open findings seen (docs/SIMULATOR.md).
    pub findings: Vec<String>,
    /// Documented residuals of the threat models seen.
    pub residuals: Vec<String>,
}

impl SeedReport {
    /// The trace hash in hex.
    pub fn trace_hex(&self) -> String {
        hex::encode(self.trace_hash)
    }
}

/// Runs one seed.
pub fn run_seed(seed: u64, options: &Options) -> SeedReport {
    let steps = options.steps.min(STEPS_MAX);
    let mut world = World::new(rng::Rng::new(seed), START, options.keep_events);
    world.event(format!("seed {seed} steps {steps}"));
    let mut purse = options
        .rails
        .purse
        .then(|| purse::PurseRail::new(&mut world));
    let mut sms = options.rails.sms.then(|| sms::SmsRail::new(&mut world));
    let mut wallet = options
        .rails
        .wallet
        .then(|| wallet::WalletRail::new(&mut world, options.wallet_clocks_and_blocks));
    let mut microcheck = options
        .rails
        .microcheck
        .then(|| microcheck::MicrocheckRail::new(&mut world));
    let mut ran = 0;
    for step in 0..steps {
        if world.violation.is_some() {
            break;
        }
        world.step = u64::from(step) + 1;
        ran = step + 1;
        let advance = world.rng.below(STEP_MS_MAX);
        world.advance_ms(advance);
        if world.rng.percent(DAYS_PASS_PERCENT) {
            // Days pass with everyone offline (credentials, limits and keys age).
            let days = world.rng.between(1, DAYS_PASS_MAX);
            world.counters.faults += 1;
            world.advance_ms(days * 86_400_000);
            world.event(format!("{days} days pass"));
        }
        let included = [
            options.rails.purse,
            options.rails.sms,
            options.rails.wallet,
            options.rails.microcheck,
        ];
        let count = included.iter().filter(|included| **included).count().max(1);
        let pick = world.rng.index(count);
        let rail = included
            .iter()
            .enumerate()
            .filter(|(_, included)| **included)
            .nth(pick)
            .map_or(0, |(index, _)| index);
        match rail {
            0 => {
                if let Some(rail) = purse.as_mut() {
                    rail.step(&mut world);
                }
            }
            1 => {
                if let Some(rail) = sms.as_mut() {
                    rail.step(&mut world);
                }
            }
            2 => {
                if let Some(rail) = wallet.as_mut() {
                    rail.step(&mut world);
                }
            }
            _ => {
                if let Some(rail) = microcheck.as_mut() {
                    rail.step(&mut world);
                }
            }
        }
        world.check_conservation();
        world.check_flags_justified();
        if let Some(rail) = purse.as_mut() {
            rail.check(&mut world);
        }
        if let Some(rail) = sms.as_mut() {
            rail.check(&mut world);
        }
        if let Some(rail) = wallet.as_mut() {
            rail.check(&mut world);
        }
        if let Some(rail) = microcheck.as_mut() {
            rail.check(&mut world);
        }
    }
    if world.violation.is_none() {
        world.step = u64::from(ran) + 1;
        world.event("settle");
        if let Some(rail) = purse.as_mut() {
            rail.settle(&mut world);
        }
        if let Some(rail) = sms.as_mut() {
            rail.settle(&mut world);
        }
        if let Some(rail) = wallet.as_mut() {
            rail.settle(&mut world);
        }
        if let Some(rail) = microcheck.as_mut() {
            rail.settle(&mut world);
        }
        world.check_conservation();
        world.check_flags_justified();
        world.check_expected_flags();
        world.check_acknowledged();
        if let Some(rail) = purse.as_mut() {
            rail.final_check(&mut world);
        }
        if let Some(rail) = sms.as_mut() {
            rail.final_check(&mut world);
        }
        if let Some(rail) = wallet.as_mut() {
            rail.final_check(&mut world);
        }
        if let Some(rail) = microcheck.as_mut() {
            rail.final_check(&mut world);
        }
    }
    SeedReport {
        seed,
        steps: ran,
        counters: world.counters,
        violation: world.violation.clone(),
        trace_hash: world.trace_hash(),
        events: std::mem::take(&mut world.events),
        findings: world.findings.iter().cloned().collect(),
        residuals: world.residuals.iter().cloned().collect(),
    }
}

/// The command that replays `seed` run with `options`.
pub fn replay_command(seed: u64, options: &Options) -> String {
    let mut command = format!("offpay sim --seed {seed} --steps {}", options.steps);
    if options.rails != Rails::ALL {
        command.push_str(&format!(" --rails {}", options.rails.names()));
    }
    command
}
