//! The money office of the simulated world, twice: the whole book in memory ([`MoneyOffice`]),
//! and — with the `operator` feature — the operator's office on a ledger in memory, which loads
//! only what each operation's plan names and writes back only what changed. Every operation runs
//! on both; their answers, their books and the ledger's wallet accounts must agree, so every
//! scenario test also tests the load plans and the records.

use offpay_money::Amount;
use offpay_wallet::{
    ChargeVoucher, Credential, Entropy, Error, Limits, MoneyOffice, OfficeKeys, Posting,
    Reconciliation, ReissueQuote, TransferId, WalletId, WalletSummary,
};

#[cfg(feature = "operator")]
use offpay_ledger::{
    AccountId, AccountKind, BalanceLimits, Currency, MemoryStore, NewAccount, Operation, Timestamp,
};
#[cfg(feature = "operator")]
use offpay_wallet::operator::{self, ChargeRequest, IssueRequest, Office, Plan, local};

pub struct TwinOffice {
    memory: MoneyOffice,
    #[cfg(feature = "operator")]
    stored: Stored,
}

#[cfg(feature = "operator")]
struct Stored {
    office: Office,
    keys: OfficeKeys,
    store: MemoryStore,
}

/// Remembers what the in-memory office drew, so that the stored one draws the same.
struct Recording<'a> {
    inner: &'a mut dyn Entropy,
    drawn: Vec<u8>,
}

impl Entropy for Recording<'_> {
    fn fill(&mut self, destination: &mut [u8]) {
        self.inner.fill(destination);
        self.drawn.extend_from_slice(destination);
    }
}

#[cfg(feature = "operator")]
#[derive(Debug)]
struct Replay(std::sync::Mutex<Vec<u8>>);

#[cfg(feature = "operator")]
impl offpay_operator::Entropy for Replay {
    fn fill(&self, destination: &mut [u8]) -> Result<(), offpay_operator::EntropyError> {
        let mut drawn = self.0.lock().map_err(|_| offpay_operator::EntropyError)?;
        if drawn.len() < destination.len() {
            return Err(offpay_operator::EntropyError);
        }
        let rest = drawn.split_off(destination.len());
        destination.copy_from_slice(&drawn);
        *drawn = rest;
        Ok(())
    }
}

#[cfg(feature = "operator")]
fn float(currency: Currency) -> (AccountId, Vec<Operation>) {
    let id = AccountId::new("operator:float").expect("account id");
    let create = Operation::CreateAccount(NewAccount {
        id: id.clone(),
        kind: AccountKind::OperatorFloat,
        currency,
        limits: BalanceLimits {
            balance_min: None,
            balance_max: None,
        },
    });
    (id, vec![create])
}

impl TwinOffice {
    pub fn new(keys: OfficeKeys, credential_validity_ms: u64) -> TwinOffice {
        TwinOffice {
            memory: MoneyOffice::new(keys.clone(), credential_validity_ms),
            #[cfg(feature = "operator")]
            stored: Stored {
                office: Office::new(keys.clone(), credential_validity_ms),
                keys,
                store: MemoryStore::new(),
            },
        }
    }

    /// The in-memory office.
    pub fn memory(&self) -> &MoneyOffice {
        &self.memory
    }

    /// The operator's ledger.
    #[cfg(feature = "operator")]
    pub fn store(&mut self) -> &mut MemoryStore {
        &mut self.stored.store
    }

    pub fn public(&self) -> [u8; 32] {
        self.memory.public()
    }

    /// Checks that the stored office holds exactly the in-memory office's book, and that every
    /// wallet's ledger account holds the office's view of it.
    #[cfg(feature = "operator")]
    pub fn check(&mut self) {
        let stored = local::whole_office(&mut self.stored.store, self.stored.keys.clone())
            .expect("the stored office reads back");
        assert!(
            stored == self.memory,
            "the stored office differs from the one in memory"
        );
        assert_eq!(stored.encode_book(), self.memory.encode_book());
    }

    #[cfg(not(feature = "operator"))]
    pub fn check(&mut self) {}

    #[cfg(feature = "operator")]
    fn check_account(&mut self, wallet: &WalletId) {
        let id = operator::wallet_account(wallet).expect("account id");
        let balance = offpay_ledger::LedgerStore::account(&mut self.stored.store, &id)
            .expect("the ledger reads")
            .map_or(0, |account| account.balance());
        assert_eq!(
            Some(i128::from(balance)),
            self.memory.shadow_minor(wallet),
            "the ledger account of {wallet} differs from the office's view"
        );
    }

    #[cfg(feature = "operator")]
    fn run<T>(
        &mut self,
        plan: &Plan,
        now: u64,
        mut decide: impl FnMut(
            &Office,
            operator::Working,
        ) -> Result<offpay_operator::Decision<T>, Error>,
    ) -> Result<T, Error> {
        let office = self.stored.office.clone();
        local::run(&mut self.stored.store, plan, Timestamp(now), |working| {
            decide(&office, working)
        })
    }

    pub fn issue_wallet(
        &mut self,
        signing_key: [u8; 32],
        encryption_key: [u8; 32],
        limits: Limits,
        now: u64,
        entropy: &mut dyn Entropy,
    ) -> Result<Credential, Error> {
        let mut recording = Recording {
            inner: entropy,
            drawn: Vec::new(),
        };
        let issued =
            self.memory
                .issue_wallet(signing_key, encryption_key, limits, now, &mut recording);
        #[cfg(feature = "operator")]
        {
            let replay = Replay(std::sync::Mutex::new(recording.drawn));
            let (_, operator_accounts) = float(limits.balance_max.currency());
            let request = IssueRequest {
                signing_key,
                encryption_key,
                limits,
                operator_accounts,
            };
            let stored = self.run(&Plan::issue(), now, |office, working| {
                office.issue(working, &request, Timestamp(now), &replay)
            });
            assert_eq!(stored, issued, "issue");
            self.check();
        }
        issued
    }

    pub fn charge(
        &mut self,
        wallet: WalletId,
        amount: Amount,
    ) -> Result<(ChargeVoucher, Posting), Error> {
        let charged = self.memory.charge(wallet, amount);
        #[cfg(feature = "operator")]
        {
            let (funding, operator_accounts) = float(amount.currency());
            let request = ChargeRequest {
                wallet,
                amount,
                funding,
                operator_accounts,
            };
            let stored = self.run(&Plan::charge(wallet), 0, |office, working| {
                office.charge(working, &request)
            });
            assert_eq!(stored, charged, "charge");
            self.check();
            self.check_account(&wallet);
        }
        charged
    }

    pub fn reconcile(&mut self, upload: &[u8], now: u64) -> Result<Reconciliation, Error> {
        let reconciled = self.memory.reconcile(upload, now);
        #[cfg(feature = "operator")]
        {
            let plan = Plan::sync(std::sync::Arc::new(upload.to_vec()));
            let stored = self.run(&plan, now, |office, working| {
                office.sync(working, upload, Timestamp(now))
            });
            match (&stored, &reconciled) {
                (Ok(stored), Ok(memory)) => {
                    assert_eq!(stored.reply, memory.reply, "sync reply");
                    assert_eq!(stored.postings, memory.postings, "sync postings");
                    assert_eq!(stored.flags, memory.flags, "sync flags");
                }
                (stored, memory) => assert_eq!(
                    stored.as_ref().map(|_| ()),
                    memory.as_ref().map(|_| ()),
                    "sync outcome"
                ),
            }
            self.check();
            if let Ok(memory) = &reconciled {
                let mut wallets = vec![memory.reply.wallet_id];
                for posting in &memory.postings {
                    for side in [posting.from, posting.to] {
                        if let offpay_wallet::PostingAccount::Wallet(id) = side {
                            wallets.push(id);
                        }
                    }
                }
                for wallet in wallets {
                    self.check_account(&wallet);
                }
            }
        }
        reconciled
    }

    pub fn block(&mut self, wallet: WalletId, now: u64) -> Result<(), Error> {
        let blocked = self.memory.block(wallet, now);
        #[cfg(feature = "operator")]
        {
            let stored = self.run(&Plan::block(wallet), now, |office, working| {
                office.block(working, wallet, Timestamp(now))
            });
            assert_eq!(stored, blocked, "block");
            self.check();
        }
        blocked
    }

    pub fn decide_case(
        &mut self,
        wallet: WalletId,
        decision: offpay_wallet::CaseDecision,
        now: u64,
    ) -> Result<offpay_wallet::Case, Error> {
        let decided = self.memory.decide_case(wallet, decision, now);
        #[cfg(feature = "operator")]
        {
            let stored = self.run(&Plan::block(wallet), now, |office, working| {
                office.decide_case(working, wallet, decision, Timestamp(now))
            });
            assert_eq!(stored, decided, "decide case");
            self.check();
        }
        decided
    }

    pub fn reissue(
        &mut self,
        lost: WalletId,
        to: WalletId,
        now: u64,
    ) -> Result<(ReissueQuote, Posting, ChargeVoucher), Error> {
        let reissued = self.memory.reissue(lost, to, now);
        #[cfg(feature = "operator")]
        {
            let stored = self.run(&Plan::reissue(lost, to), now, |office, working| {
                office.reissue(working, lost, to, Timestamp(now))
            });
            assert_eq!(stored, reissued, "reissue");
            self.check();
            self.check_account(&lost);
            self.check_account(&to);
        }
        reissued
    }

    pub fn release_remainder(
        &mut self,
        lost: WalletId,
        to: WalletId,
        now: u64,
    ) -> Result<(Amount, Posting, ChargeVoucher), Error> {
        let released = self.memory.release_remainder(lost, to, now);
        #[cfg(feature = "operator")]
        {
            let stored = self.run(&Plan::reissue(lost, to), now, |office, working| {
                office.release(working, lost, to, Timestamp(now))
            });
            assert_eq!(stored, released, "release");
            self.check();
            self.check_account(&lost);
            self.check_account(&to);
        }
        released
    }

    pub fn resolve_abandoned(&mut self, transfer: TransferId, now: u64) -> Result<(), Error> {
        let resolved = self.memory.resolve_abandoned(transfer, now);
        #[cfg(feature = "operator")]
        {
            let stored = self.run(&Plan::void(transfer), now, |office, working| {
                office.void_abandoned(working, transfer, Timestamp(now))
            });
            assert_eq!(stored, resolved, "void");
            self.check();
        }
        resolved
    }

    pub fn reissue_quote(&mut self, wallet: &WalletId) -> Result<ReissueQuote, Error> {
        let quote = self.memory.reissue_quote(wallet);
        #[cfg(feature = "operator")]
        self.check_view(wallet);
        quote
    }

    pub fn wallet_summary(&mut self, wallet: &WalletId) -> Option<WalletSummary> {
        let summary = self.memory.wallet_summary(wallet);
        #[cfg(feature = "operator")]
        self.check_view(wallet);
        summary
    }

    /// What the operator's office shows of `wallet` is what the in-memory office knows.
    #[cfg(feature = "operator")]
    fn check_view(&mut self, wallet: &WalletId) {
        let plan = Plan::show(*wallet);
        let working = operator::load(&mut self.stored.store, &plan).expect("load");
        let view = self
            .stored
            .office
            .show(working, *wallet)
            .expect("the plan covers the view");
        assert_eq!(
            view.as_ref().map(|view| &view.summary),
            self.memory.wallet_summary(wallet).as_ref()
        );
        let blocked = self
            .memory
            .wallet_summary(wallet)
            .is_some_and(|summary| summary.blocked_at_ms.is_some());
        assert_eq!(
            view.and_then(|view| view.reissue_quote),
            self.memory.reissue_quote(wallet).ok().filter(|_| blocked)
        );
    }

    pub fn shadow_minor(&self, wallet: &WalletId) -> Option<i128> {
        self.memory.shadow_minor(wallet)
    }

    pub fn shadow_total_minor(&self) -> i128 {
        self.memory.shadow_total_minor()
    }

    pub fn encode_book(&self) -> Vec<u8> {
        self.memory.encode_book()
    }

    pub fn decision(&self, transfer: &TransferId) -> Option<offpay_wallet::Outcome> {
        self.memory.decision(transfer)
    }
}
