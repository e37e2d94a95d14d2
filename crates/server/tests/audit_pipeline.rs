//! The audit chain's pipelined rounds (`crates/server/src/audit.rs`): a round is planned on the
//! head the round before it will write and queued while that one is being written. These stories
//! hold the ledger writer inside a group commit (a gate around its store) so that two rounds are
//! in flight for certain, then let the first one be refused, fail, or never be written (a crash):
//! the round queued after it is decided again and commits, and the chain verifies. Each runs on
//! SQLite, and on a fresh PostgreSQL database (with the chain lock's connection) when
//! `OFFPAY_TEST_DATABASE_URL` is set.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a failed unwrap is a failed test"
)]

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use offpay_ledger::{
    Account, AccountId, AccountKind, Amount, BalanceLimits, Batch, BatchRefusal, Currency,
    CurrencyTotal, GroupResult, LedgerStore, NewAccount, Operation, Outcome, Record, RecordWrite,
    StoreError, Timestamp, Transfer, TransferId, TransferKind, TransferRecord,
};
use offpay_operator::{Attempt, Effects};
use offpay_server::audit::{self, AuditChain, ContextParts, OperatorContext};
use offpay_server::ledger::{Ledger, LedgerThread};
use offpay_server::runner::{ATTEMPTS_MAX, RunError};
use offpay_test_support::database::{self, FreshDatabase};
use serde_json::Value;

const KEY: [u8; 32] = [7; 32];
const WAIT: Duration = Duration::from_secs(10);

/// What the gate does with the group commits that reach it.
#[derive(Debug, Default)]
struct GateState {
    /// Commits wait at the gate while it is closed.
    closed: bool,
    /// Commits that reached the gate so far.
    arrived: usize,
    /// Commits still to fail with a database error (a lost connection, say) at the gate.
    failing: usize,
    /// Every commit from now on fails: the process is gone before it wrote them.
    dead: bool,
}

#[derive(Debug, Default)]
struct Gate {
    state: Mutex<GateState>,
    changed: Condvar,
}

impl Gate {
    fn update(&self, change: impl FnOnce(&mut GateState)) {
        change(&mut self.state.lock().unwrap());
        self.changed.notify_all();
    }

    fn arrived(&self) -> usize {
        self.state.lock().unwrap().arrived
    }

    /// Waits (blocking; call off the runtime's threads) until `count` commits have arrived.
    fn wait_arrived(&self, count: usize) {
        let state = self.state.lock().unwrap();
        let (state, timeout) = self
            .changed
            .wait_timeout_while(state, WAIT, |state| state.arrived < count)
            .unwrap();
        assert!(
            !timeout.timed_out(),
            "only {} commits reached the writer",
            state.arrived
        );
    }
}

/// The writer's store behind a [`Gate`].
struct GatedStore {
    inner: Box<dyn LedgerStore>,
    gate: Arc<Gate>,
}

impl LedgerStore for GatedStore {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    fn commit(&mut self, batches: &[Batch], now: Timestamp) -> Result<GroupResult, StoreError> {
        let mut state = self.gate.state.lock().unwrap();
        state.arrived += 1;
        self.gate.changed.notify_all();
        let mut state = self
            .gate
            .changed
            .wait_while(state, |state| state.closed)
            .unwrap();
        if state.dead {
            return Err(StoreError::Database("the process is gone".into()));
        }
        if state.failing > 0 {
            state.failing -= 1;
            return Err(StoreError::Database("the connection was lost".into()));
        }
        drop(state);
        self.inner.commit(batches, now)
    }

    fn account(&mut self, id: &AccountId) -> Result<Option<Account>, StoreError> {
        self.inner.account(id)
    }

    fn accounts(
        &mut self,
        after: Option<&AccountId>,
        limit: usize,
    ) -> Result<Vec<Account>, StoreError> {
        self.inner.accounts(after, limit)
    }

    fn transfer(&mut self, id: &TransferId) -> Result<Option<TransferRecord>, StoreError> {
        self.inner.transfer(id)
    }

    fn history(
        &mut self,
        account: &AccountId,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<TransferRecord>, StoreError> {
        self.inner.history(account, before, limit)
    }

    fn totals(&mut self) -> Result<Vec<CurrencyTotal>, StoreError> {
        self.inner.totals()
    }

    fn record(&mut self, namespace: &str, key: &str) -> Result<Option<Record>, StoreError> {
        self.inner.record(namespace, key)
    }

    fn records(
        &mut self,
        namespace: &str,
        key_prefix: &str,
        after_key: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        self.inner.records(namespace, key_prefix, after_key, limit)
    }

    fn read_transaction(
        &mut self,
        reads: &mut dyn FnMut(&mut dyn LedgerStore) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.inner.read_transaction(reads)
    }
}

/// Where the stories' ledger lives: a SQLite file, or a fresh PostgreSQL database.
struct Place {
    url: String,
    _directory: tempfile::TempDir,
    _database: Option<FreshDatabase>,
}

impl Place {
    fn all() -> Vec<Place> {
        let mut places = vec![Place::sqlite()];
        match database::postgres_url() {
            Some(url) => {
                let fresh = FreshDatabase::create(&url);
                places.push(Place {
                    url: fresh.url.clone(),
                    _directory: tempfile::tempdir().unwrap(),
                    _database: Some(fresh),
                });
            }
            None => eprintln!("skipped the PostgreSQL run: OFFPAY_TEST_DATABASE_URL is not set"),
        }
        places
    }

    fn sqlite() -> Place {
        let directory = tempfile::tempdir().unwrap();
        Place {
            url: format!("sqlite://{}", directory.path().join("ledger.db").display()),
            _directory: directory,
            _database: None,
        }
    }

    fn postgres(&self) -> bool {
        self._database.is_some()
    }

    /// A "process": its own ledger (writer behind `gate`, reader, and for PostgreSQL the lock
    /// connection) and its own chain state with the deployment's key.
    fn start(&self, gate: &Arc<Gate>) -> Process {
        let (url, postgres) = (self.url.clone(), self.postgres());
        // The PostgreSQL client runs a runtime of its own: opened off the test's runtime.
        let (store, reader, locks) = std::thread::spawn(move || {
            let store = offpay_server::open_store_url(&url).unwrap();
            let reader: Box<dyn LedgerStore> = match url.strip_prefix("sqlite://") {
                Some(path) => Box::new(
                    offpay_ledger_sqlite::SqliteStore::open_reader(std::path::Path::new(path))
                        .unwrap(),
                ),
                None => offpay_server::open_store_url(&url).unwrap(),
            };
            let locks = postgres.then(|| offpay_server::open_store_url(&url).unwrap());
            (store, reader, locks)
        })
        .join()
        .unwrap();
        let gated = Box::new(GatedStore {
            inner: store,
            gate: gate.clone(),
        });
        let (ledger, thread) = Ledger::start_with_locks(gated, reader, locks).unwrap();
        assert_eq!(ledger.shares_locks(), self.postgres());
        Process {
            ledger,
            thread: Some(thread),
            chain: Arc::new(AuditChain::with_key(&KEY)),
        }
    }
}

struct Process {
    ledger: Ledger,
    thread: Option<LedgerThread>,
    chain: Arc<AuditChain>,
}

impl Process {
    fn context(&self, request: &str) -> OperatorContext {
        OperatorContext::new(ContextParts {
            chain: self.chain.clone(),
            user: Some("fatuma".into()),
            role: None,
            remote: "127.0.0.1".into(),
            request_id: request.into(),
            action: "POST /api/v1/transfers".into(),
            path: "/api/v1/transfers".into(),
            request: Value::Null,
            idempotency_key: None,
            approval: None,
            credential: None,
        })
    }

    /// Creates the accounts (outside any operator request: no entry).
    async fn accounts(&self) {
        let operations = [
            ("float", AccountKind::OperatorFloat, None),
            ("alice", AccountKind::Customer, Some(0)),
            ("bob", AccountKind::Customer, Some(0)),
        ]
        .into_iter()
        .map(|(id, kind, balance_min)| {
            Operation::CreateAccount(NewAccount {
                id: AccountId::new(id).unwrap(),
                kind,
                currency: kes(),
                limits: BalanceLimits {
                    balance_min,
                    balance_max: None,
                },
            })
        })
        .collect();
        let results = self
            .ledger
            .commit(vec![Batch { operations }], Timestamp(1))
            .await
            .unwrap();
        assert!(results.iter().all(Result::is_ok), "{results:?}");
    }

    /// One operator action posting `id`, tried once.
    async fn try_once(
        &self,
        id: &str,
        from: &str,
        to: &str,
        amount: &str,
    ) -> Result<Attempt<Vec<Outcome>>, RunError> {
        let mut effects = Effects::new();
        effects.post(Transfer {
            id: TransferId::new(id).unwrap(),
            debit_account: AccountId::new(from).unwrap(),
            credit_account: AccountId::new(to).unwrap(),
            amount: Amount::parse(amount, kes()).unwrap(),
            kind: TransferKind::Posted,
            memo: String::new(),
        });
        audit::commit_audited(
            &self.ledger,
            &self.context(id),
            effects,
            Timestamp(2),
            |_| false,
        )
        .await
    }

    /// One operator action posting `id`, decided again on `Conflict` as the runner does;
    /// answers how many conflicts it met before it committed.
    async fn post(&self, id: &str, from: &str, to: &str, amount: &str) -> usize {
        for conflicts in 0..ATTEMPTS_MAX {
            match self.try_once(id, from, to, amount).await {
                Ok(Attempt::Done(_)) => return conflicts,
                Ok(Attempt::Conflict) => {}
                Err(error) => panic!("{id}: {error}"),
            }
        }
        panic!("{id}: still in conflict after {ATTEMPTS_MAX} attempts");
    }

    async fn balance(&self, id: &'static str) -> i64 {
        self.ledger
            .read(move |store| store.account(&AccountId::new(id).unwrap()))
            .await
            .unwrap()
            .unwrap()
            .balance()
    }

    /// The keys of the tip records standing.
    async fn tips(&self) -> Vec<String> {
        self.ledger
            .read(|store| store.records(audit::NAMESPACE, "tip/", None, 100))
            .await
            .unwrap()
            .into_iter()
            .map(|record| record.key)
            .collect()
    }

    async fn verify(&self) -> audit::Verification {
        let chain = self.chain.clone();
        self.ledger
            .read(move |store| audit::verify(store, &chain))
            .await
            .unwrap()
    }

    /// Waits until the writer has a request queued behind the group it is writing: the round
    /// after it was planned and queued while the one before is not yet durable.
    async fn wait_queued(&self) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.ledger.queue_depth() == 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no round was queued while the one before it was being written"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Room for a second action of the same round, or a round of its own, to be queued too.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    /// Drops this process's ledger handles and chain, and waits for its ledger threads.
    fn stop(mut self) {
        let thread = self.thread.take();
        drop(self);
        if let Some(thread) = thread {
            thread.join();
        }
    }
}

fn kes() -> Currency {
    Currency::new("KES", 2).unwrap()
}

async fn wait_arrived(gate: &Arc<Gate>, count: usize) {
    let gate = gate.clone();
    tokio::task::spawn_blocking(move || gate.wait_arrived(count))
        .await
        .unwrap();
}

/// Round N holds an action the ledger refuses (alice overdraws); round N+1 was planned on the
/// head N would have written and queued behind it. N+1's actions meet a stale head, are decided
/// again on the head the store really has, and commit; the chain verifies with no gap.
async fn a_refused_action_does_not_break_the_round_queued_after_it(place: &Place) {
    let gate = Arc::new(Gate::default());
    let process = Arc::new(place.start(&gate));
    process.accounts().await;
    assert_eq!(process.post("first", "float", "alice", "1.00").await, 0);

    gate.update(|state| state.closed = true);
    let arrived = gate.arrived();
    let refused = {
        let process = process.clone();
        tokio::spawn(async move {
            process
                .try_once("overdraw", "alice", "bob", "1000.00")
                .await
        })
    };
    wait_arrived(&gate, arrived + 1).await;
    let queued: Vec<_> = (0..2)
        .map(|index| {
            let process = process.clone();
            tokio::spawn(async move {
                process
                    .post(&format!("after-{index}"), "float", "alice", "2.00")
                    .await
            })
        })
        .collect();
    process.wait_queued().await;
    gate.update(|state| state.closed = false);

    match refused.await.unwrap() {
        Err(RunError::Refused(BatchRefusal { .. })) => {}
        other => panic!("the overdraft was not refused: {other:?}"),
    }
    let mut conflicts = 0;
    for task in queued {
        conflicts += task.await.unwrap();
    }
    assert!(
        conflicts >= 1,
        "the rounds queued behind the refused one were decided again"
    );
    assert_eq!(process.balance("alice").await, 100 + 2 * 200);
    assert_eq!(process.balance("bob").await, 0);
    let verification = process.verify().await;
    assert_eq!(verification.first_break, None, "{verification:?}");
    assert_eq!(verification.entries_checked, 3);
    assert_eq!(verification.head_number, 3);
    Arc::into_inner(process).unwrap().stop();
}

/// The group holding round N fails (the database connection is lost during it); round N+1,
/// queued behind it, meets a stale head and commits when decided again; N's action sent again
/// commits too. Then the process dies with two rounds queued and unwritten, and a new process on
/// the same database (the chain's head not in its memory) appends after the last durable entry:
/// the chain verifies throughout.
async fn a_ledger_error_or_a_crash_mid_pipeline_leaves_a_whole_chain(place: &Place) {
    let gate = Arc::new(Gate::default());
    let process = Arc::new(place.start(&gate));
    process.accounts().await;
    assert_eq!(process.post("first", "float", "alice", "1.00").await, 0);

    gate.update(|state| {
        state.closed = true;
        state.failing = 1;
    });
    let arrived = gate.arrived();
    let lost = {
        let process = process.clone();
        tokio::spawn(async move { process.try_once("lost", "float", "alice", "3.00").await })
    };
    wait_arrived(&gate, arrived + 1).await;
    let after = {
        let process = process.clone();
        tokio::spawn(async move { process.post("after", "float", "alice", "5.00").await })
    };
    process.wait_queued().await;
    gate.update(|state| state.closed = false);
    match lost.await.unwrap() {
        Err(RunError::Ledger(_)) => {}
        other => panic!("the failed group was not reported: {other:?}"),
    }
    assert!(
        after.await.unwrap() >= 1,
        "the round queued behind the failed one was decided again"
    );
    // The client sends the failed request again (same transfer id).
    process.post("lost", "float", "alice", "3.00").await;
    assert_eq!(process.balance("alice").await, 100 + 500 + 300);
    let verification = process.verify().await;
    assert_eq!(verification.first_break, None, "{verification:?}");
    assert_eq!(verification.entries_checked, 3);

    // A crash with two rounds in flight: nothing of them reaches the database.
    gate.update(|state| state.closed = true);
    let arrived = gate.arrived();
    let doom = |id: &'static str| {
        let process = process.clone();
        tokio::spawn(async move { process.try_once(id, "float", "alice", "7.00").await })
    };
    let mut doomed = vec![doom("gone-0")];
    wait_arrived(&gate, arrived + 1).await;
    doomed.push(doom("gone-1"));
    process.wait_queued().await;
    gate.update(|state| {
        state.dead = true;
        state.closed = false;
    });
    for task in doomed {
        assert!(
            task.await.unwrap().is_err(),
            "nothing of a dead process commits"
        );
    }
    Arc::into_inner(process).unwrap().stop();

    let restarted = place.start(&Arc::new(Gate::default()));
    let verification = restarted.verify().await;
    assert_eq!(verification.first_break, None, "{verification:?}");
    assert_eq!(verification.entries_checked, 3);
    assert_eq!(restarted.post("later", "float", "alice", "1.00").await, 0);
    assert_eq!(restarted.balance("alice").await, 100 + 500 + 300 + 100);
    let verification = restarted.verify().await;
    assert_eq!(verification.first_break, None, "{verification:?}");
    assert_eq!(verification.entries_checked, 4);
    assert_eq!(verification.head_number, 4);
    restarted.stop();
}

/// Another process appends while this one has two rounds in flight (it went on without the chain
/// lock, or this process's lock connection was lost): round N is refused for its stale head, and
/// the head then stands at the very version round N+1 was planned on, with other contents. N+1
/// must not commit after an entry that does not exist: its first entry takes the tip N would have
/// left, which is not there, so it is decided again; the chain stays one line.
async fn another_process_appending_mid_pipeline_cannot_fork_the_chain(place: &Place) {
    let gate = Arc::new(Gate::default());
    let process = Arc::new(place.start(&gate));
    let other = place.start(&Arc::new(Gate::default()));
    process.accounts().await;
    assert_eq!(process.post("first", "float", "alice", "1.00").await, 0);

    gate.update(|state| state.closed = true);
    let arrived = gate.arrived();
    let stale = {
        let process = process.clone();
        tokio::spawn(async move { process.try_once("stale", "float", "alice", "3.00").await })
    };
    wait_arrived(&gate, arrived + 1).await;
    let queued = {
        let process = process.clone();
        tokio::spawn(async move { process.post("queued", "float", "alice", "5.00").await })
    };
    process.wait_queued().await;
    // On PostgreSQL the other process waits for the chain lock this one holds, gives up after
    // CHAIN_LOCK_WAIT_MAX and appends without it.
    assert_eq!(other.post("other", "float", "bob", "7.00").await, 0);
    gate.update(|state| state.closed = false);

    assert!(
        matches!(stale.await.unwrap(), Ok(Attempt::Conflict)),
        "round N met the other process's head"
    );
    assert!(
        queued.await.unwrap() >= 1,
        "round N+1 was decided again, not committed after an entry that does not exist"
    );
    process.post("stale", "float", "alice", "3.00").await;
    let verification = process.verify().await;
    assert_eq!(verification.first_break, None, "{verification:?}");
    assert_eq!(verification.entries_checked, 4);
    assert_eq!(process.balance("alice").await, 100 + 300 + 500);
    assert_eq!(process.balance("bob").await, 700);
    other.stop();
    Arc::into_inner(process).unwrap().stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn another_process_appending_mid_pipeline_cannot_fork_the_chain_on_every_backend() {
    for place in Place::all() {
        another_process_appending_mid_pipeline_cannot_fork_the_chain(&place).await;
    }
}

/// A chain written before tips (its newest entry left none) is appended to as before, and from
/// then on exactly one tip stands: the newest entry's.
async fn a_chain_without_tips_is_appended_to_and_one_tip_stands(place: &Place) {
    let process = place.start(&Arc::new(Gate::default()));
    process.accounts().await;
    assert_eq!(process.post("first", "float", "alice", "1.00").await, 0);
    let tips = process.tips().await;
    assert_eq!(tips.len(), 1, "{tips:?}");
    let operations = tips
        .into_iter()
        .map(|key| {
            Operation::PutRecord(RecordWrite {
                namespace: audit::NAMESPACE.into(),
                key,
                value: None,
                expected_version: None,
            })
        })
        .collect();
    let results = process
        .ledger
        .commit(vec![Batch { operations }], Timestamp(3))
        .await
        .unwrap();
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(process.tips().await.len(), 0);
    process.stop();

    let process = place.start(&Arc::new(Gate::default()));
    assert_eq!(process.post("second", "float", "alice", "1.00").await, 0);
    assert_eq!(process.post("third", "float", "alice", "1.00").await, 0);
    let verification = process.verify().await;
    assert_eq!(verification.first_break, None, "{verification:?}");
    assert_eq!(verification.entries_checked, 3);
    let head = process
        .ledger
        .read(|store| store.record(audit::NAMESPACE, audit::HEAD_KEY))
        .await
        .unwrap()
        .unwrap();
    let head: audit::AuditHead = serde_json::from_slice(&head.value).unwrap();
    assert_eq!(process.tips().await, [audit::tip_key(&head.hash)]);
    process.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_chain_without_tips_is_appended_to_and_one_tip_stands_on_every_backend() {
    for place in Place::all() {
        a_chain_without_tips_is_appended_to_and_one_tip_stands(&place).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_action_does_not_break_the_round_queued_after_it_on_every_backend() {
    for place in Place::all() {
        a_refused_action_does_not_break_the_round_queued_after_it(&place).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_ledger_error_or_a_crash_mid_pipeline_leaves_a_whole_chain_on_every_backend() {
    for place in Place::all() {
        a_ledger_error_or_a_crash_mid_pipeline_leaves_a_whole_chain(&place).await;
    }
}
