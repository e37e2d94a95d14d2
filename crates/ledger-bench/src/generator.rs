//! What the benchmark posts: the accounts of one run, which of them each transfer touches, and
//! the balances and counts the ledger must end up with.

use offpay_ledger::{
    AccountId, AccountKind, Amount, BalanceLimits, Batch, Currency, NewAccount, Operation,
    Transfer, TransferId, TransferKind,
};

use crate::random::{Random, Zipf};
use crate::{BenchConfig, BenchError, Distribution, ZIPF_THETA};

/// Largest transfer amount, in minor units (KES 100.00); amounts are uniform in
/// `1..=TRANSFER_AMOUNT_MINOR_MAX`.
pub const TRANSFER_AMOUNT_MINOR_MAX: u64 = 10_000;

/// Most draws to find a credit account different from the debit account before taking the next
/// account instead. Only tiny Zipfian runs (two or three accounts) ever need more than a few.
const DISTINCT_ACCOUNT_ATTEMPTS_MAX: u32 = 64;

/// Ids of one run: everything starts with `bench-{run_id}-`, so runs never collide and one run's
/// accounts are contiguous in id order.
#[derive(Debug)]
pub struct RunNames {
    prefix: String,
}

impl RunNames {
    pub fn new(run_id: &str) -> RunNames {
        RunNames {
            prefix: format!("bench-{run_id}-"),
        }
    }

    pub fn customer(&self, index: u64) -> Result<AccountId, BenchError> {
        account_id(format!("{}c{index}", self.prefix))
    }

    pub fn float(&self) -> Result<AccountId, BenchError> {
        account_id(format!("{}float", self.prefix))
    }

    pub fn transfer(&self, number: u64) -> Result<TransferId, BenchError> {
        TransferId::new(format!("{}t{number}", self.prefix)).map_err(|error| {
            BenchError::RunIdInvalid {
                reason: format!("it makes invalid transfer ids: {error}"),
            }
        })
    }
}

fn account_id(text: String) -> Result<AccountId, BenchError> {
    AccountId::new(text).map_err(|error| BenchError::RunIdInvalid {
        reason: format!("it makes invalid account ids: {error}"),
    })
}

/// What the ledger must hold for one account at the end of the run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Expected {
    pub debits_posted: i64,
    pub credits_posted: i64,
}

/// Generates the run's operations and keeps [`Expected`] for every account.
///
/// Account indexes `0..accounts` are customers; index `accounts` is the operator float that funds
/// them.
#[derive(Debug)]
pub struct Generator {
    names: RunNames,
    currency: Currency,
    random: Random,
    customers: Vec<AccountId>,
    float: AccountId,
    /// Zipfian rank → customer index: a seeded shuffle, so that the hottest accounts are spread
    /// over the id space (and the B-tree) instead of all sitting at its start, as in YCSB's
    /// scrambled Zipfian.
    rank_to_customer: Vec<u32>,
    zipf: Option<Zipf>,
    hot_account_percent: u8,
    funding_minor: u64,
    next_transfer: u64,
    expected: Vec<Expected>,
}

/// The customer that hot-account transfers touch.
pub const HOT_ACCOUNT_INDEX: u64 = 0;

impl Generator {
    /// `transfers_total` is every transfer the run will post after funding (batched and
    /// baseline); each customer is funded with enough to pay all of them at the largest amount,
    /// so no transfer can fail for lack of funds even though customers keep the default floor of
    /// zero.
    pub fn new(
        config: &BenchConfig,
        run_id: &str,
        transfers_total: u64,
    ) -> Result<Generator, BenchError> {
        let names = RunNames::new(run_id);
        let customers = (0..config.accounts)
            .map(|index| names.customer(index))
            .collect::<Result<Vec<_>, _>>()?;
        let float = names.float()?;
        let mut random = Random::new(config.seed);
        let mut rank_to_customer: Vec<u32> = (0..config.accounts as u32).collect();
        for index in (1..rank_to_customer.len()).rev() {
            let other = random.below(index as u64 + 1) as usize;
            rank_to_customer.swap(index, other);
        }
        let zipf = match config.distribution {
            Distribution::Uniform => None,
            Distribution::Zipfian => Some(Zipf::new(config.accounts, ZIPF_THETA)),
        };
        let funding_minor = transfers_total * TRANSFER_AMOUNT_MINOR_MAX;
        Ok(Generator {
            names,
            currency: config.currency,
            random,
            customers,
            float,
            rank_to_customer,
            zipf,
            hot_account_percent: config.hot_account_percent,
            funding_minor,
            next_transfer: 0,
            expected: vec![Expected::default(); config.accounts as usize + 1],
        })
    }

    pub fn float(&self) -> &AccountId {
        &self.float
    }

    /// The id of the run's transfer `number` (0 is the first funding transfer).
    pub fn transfer_id(&self, number: u64) -> Result<TransferId, BenchError> {
        self.names.transfer(number)
    }

    /// Transfers generated so far, funding included.
    pub fn transfers_generated(&self) -> u64 {
        self.next_transfer
    }

    /// Every account of the run with what it must hold: customers in index order, then the float.
    pub fn expected(&self) -> impl Iterator<Item = (&AccountId, &Expected)> {
        self.customers
            .iter()
            .chain(std::iter::once(&self.float))
            .zip(&self.expected)
    }

    /// Batches creating the float and every customer, at most `batch_size` operations each.
    pub fn account_batches(&self, batch_size: usize) -> Vec<Batch> {
        let float = NewAccount {
            id: self.float.clone(),
            kind: AccountKind::OperatorFloat,
            currency: self.currency,
            limits: BalanceLimits {
                balance_min: AccountKind::OperatorFloat.default_balance_min(),
                balance_max: None,
            },
        };
        let customers = self.customers.iter().map(|id| NewAccount {
            id: id.clone(),
            kind: AccountKind::Customer,
            currency: self.currency,
            limits: BalanceLimits {
                balance_min: AccountKind::Customer.default_balance_min(),
                balance_max: None,
            },
        });
        let operations: Vec<Operation> = std::iter::once(float)
            .chain(customers)
            .map(Operation::CreateAccount)
            .collect();
        operations
            .chunks(batch_size)
            .map(|chunk| Batch {
                operations: chunk.to_vec(),
            })
            .collect()
    }

    /// Batches moving the funding from the float to every customer.
    pub fn funding_batches(&mut self, batch_size: usize) -> Result<Vec<Batch>, BenchError> {
        let float_index = self.customers.len();
        let mut transfers = Vec::with_capacity(self.customers.len());
        for customer in 0..self.customers.len() {
            transfers.push(self.transfer(float_index, customer, self.funding_minor)?);
        }
        let mut batches = Vec::new();
        let mut transfers = transfers.into_iter().peekable();
        while transfers.peek().is_some() {
            batches.push(Batch::transfers(transfers.by_ref().take(batch_size)));
        }
        Ok(batches)
    }

    /// A batch of `count` transfers between customers.
    pub fn transfer_batch(&mut self, count: usize) -> Result<Batch, BenchError> {
        let mut operations = Vec::with_capacity(count);
        for _ in 0..count {
            let (debit, credit) = self.pair();
            let amount = 1 + self.random.below(TRANSFER_AMOUNT_MINOR_MAX);
            operations.push(Operation::Transfer(self.transfer(debit, credit, amount)?));
        }
        Ok(Batch { operations })
    }

    fn transfer(
        &mut self,
        debit: usize,
        credit: usize,
        amount_minor: u64,
    ) -> Result<Transfer, BenchError> {
        let id = self.names.transfer(self.next_transfer)?;
        self.next_transfer += 1;
        let amount = Amount::from_minor(amount_minor, self.currency).map_err(|error| {
            BenchError::TransfersOutOfRange {
                reason: format!("amount {amount_minor} is out of range: {error}"),
            }
        })?;
        let signed = amount.minor_signed();
        self.expected[debit].debits_posted += signed;
        self.expected[credit].credits_posted += signed;
        Ok(Transfer {
            id,
            debit_account: self.account(debit).clone(),
            credit_account: self.account(credit).clone(),
            amount,
            kind: TransferKind::Posted,
            memo: String::new(),
        })
    }

    fn account(&self, index: usize) -> &AccountId {
        self.customers.get(index).unwrap_or(&self.float)
    }

    /// Debit and credit customer indexes, distinct.
    fn pair(&mut self) -> (usize, usize) {
        if self.hot_account_percent > 0 && self.random.percent(self.hot_account_percent) {
            let hot = HOT_ACCOUNT_INDEX as usize;
            let other = self.customer_other_than(hot);
            return if self.random.below(2) == 0 {
                (hot, other)
            } else {
                (other, hot)
            };
        }
        let debit = self.customer();
        (debit, self.customer_other_than(debit))
    }

    fn customer(&mut self) -> usize {
        match &mut self.zipf {
            None => self.random.below(self.customers.len() as u64) as usize,
            Some(zipf) => self.rank_to_customer[zipf.sample(&mut self.random) as usize] as usize,
        }
    }

    fn customer_other_than(&mut self, taken: usize) -> usize {
        for _ in 0..DISTINCT_ACCOUNT_ATTEMPTS_MAX {
            let candidate = self.customer();
            if candidate != taken {
                return candidate;
            }
        }
        (taken + 1) % self.customers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(distribution: Distribution, hot_account_percent: u8) -> BenchConfig {
        BenchConfig {
            accounts: 1000,
            distribution,
            hot_account_percent,
            ..BenchConfig::default()
        }
    }

    /// How often each customer is touched by `transfers` generated transfers.
    fn touches(generator: &mut Generator, transfers: usize) -> Vec<u64> {
        let mut counts = vec![0u64; generator.customers.len()];
        let Ok(batch) = generator.transfer_batch(transfers) else {
            panic!("generating transfers failed");
        };
        for operation in &batch.operations {
            let Operation::Transfer(transfer) = operation else {
                panic!("not a transfer: {operation:?}");
            };
            assert_ne!(transfer.debit_account, transfer.credit_account);
            for side in [&transfer.debit_account, &transfer.credit_account] {
                let index = generator
                    .customers
                    .iter()
                    .position(|id| id == side)
                    .unwrap_or_else(|| panic!("{side} is not a customer"));
                counts[index] += 1;
            }
        }
        counts
    }

    #[test]
    fn the_same_seed_generates_the_same_transfers() {
        let batch = |seed| {
            let config = BenchConfig {
                seed,
                ..config(Distribution::Zipfian, 10)
            };
            let Ok(mut generator) = Generator::new(&config, "r1", 100) else {
                panic!("generator");
            };
            generator
                .transfer_batch(100)
                .map_err(|error| error.to_string())
        };
        assert_eq!(batch(5), batch(5));
        assert_ne!(batch(5), batch(6));
    }

    #[test]
    fn uniform_choice_touches_accounts_evenly() {
        let Ok(mut generator) = Generator::new(&config(Distribution::Uniform, 0), "r1", 1) else {
            panic!("generator");
        };
        let counts = touches(&mut generator, 8000);
        // 16,000 touches over 1,000 accounts: 16 each on average; no account near the Zipfian
        // head's share.
        let most = counts.iter().copied().max().unwrap_or(0);
        assert!(most < 50, "an account was touched {most} times");
        assert!(counts.iter().filter(|count| **count == 0).count() < 10);
    }

    #[test]
    fn zipfian_choice_has_one_very_hot_account() {
        let Ok(mut generator) = Generator::new(&config(Distribution::Zipfian, 0), "r1", 1) else {
            panic!("generator");
        };
        let counts = touches(&mut generator, 8000);
        let hottest = counts.iter().copied().max().unwrap_or(0) as f64;
        // Rank 1 of 1,000 at θ 0.99 draws about 13 % of picks; the credit side redraws when it
        // hits the debit account, which lowers that a little.
        let Some(zipf) = &generator.zipf else {
            panic!("no Zipf sampler");
        };
        let expected = zipf.probability(0) * 16_000.0;
        assert!(
            hottest > expected * 0.8 && hottest < expected * 1.1,
            "hottest account touched {hottest} times, theory {expected:.0}"
        );
    }

    #[test]
    fn the_hot_account_takes_its_share() {
        let Ok(mut generator) = Generator::new(&config(Distribution::Uniform, 30), "r1", 1) else {
            panic!("generator");
        };
        let counts = touches(&mut generator, 10_000);
        let hot = counts[HOT_ACCOUNT_INDEX as usize];
        // 30 % of transfers name it, plus its uniform share of the rest.
        assert!(
            (2900..3300).contains(&hot),
            "hot account touched {hot} times"
        );
    }

    #[test]
    fn expected_sums_follow_generated_transfers() {
        let Ok(mut generator) = Generator::new(&config(Distribution::Uniform, 0), "r1", 10) else {
            panic!("generator");
        };
        assert!(
            generator
                .funding_batches(300)
                .is_ok_and(|batches| batches.len() == 4)
        );
        assert!(generator.transfer_batch(500).is_ok());
        let (debits, credits) = generator.expected().fold((0, 0), |sums, (_, expected)| {
            (
                sums.0 + expected.debits_posted,
                sums.1 + expected.credits_posted,
            )
        });
        assert_eq!(debits, credits);
        assert!(debits >= 1500);
        assert_eq!(generator.transfers_generated(), 1500);
        let float = generator.expected().last().map(|(_, expected)| *expected);
        assert_eq!(
            float.map(|expected| expected.debits_posted),
            Some(1000 * 10 * TRANSFER_AMOUNT_MINOR_MAX as i64)
        );
    }
}
