//! Running a deposit at the CSC: reading the clearing state, taking the CSC lock, queuing and
//! committing the batches the rail's rules decide, and deciding again when the ledger refuses
//! one. Every rule is the rail's (`offpay_microcheck::csc`, `offpay_microcheck::operator`); this
//! is the I/O and the pipelining around them ([`super::pipeline`]).

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::StatusCode;
use offpay_ledger::{Batch, BatchRefusal, Currency, LedgerStore};
use offpay_microcheck::UnixSeconds;
use offpay_microcheck::csc::{
    self, Clearance, ClearingState, DepositItem, ItemOutcome, StateRecord,
};
use offpay_microcheck::operator::OperatorError;
use offpay_microcheck::operator::clearing::{
    self, DepositReport, Fate, LoadedState, Posted, Posting, SuspenseAccounts,
};
use offpay_microcheck::operator::history;
use offpay_microcheck::operator::overlay::{BatchFate, Snapshot, Versions};
use offpay_microcheck::operator::records::MerchantRecord;
use offpay_microcheck::strategy::Strategy;
use offpay_microcheck::{MerchantPolicy, Refusal};

use super::pipeline::Locked;
use super::{api, internal, read};
use crate::AppState;
use crate::error::ApiError;
use crate::ledger::GroupNumber;
use crate::metrics::Metrics;

/// Clears and posts a deposit of `record`'s microchecks received at `now`, and answers with
/// the fate of each. Signatures and the KeyNote compliance checks run before the CSC lock is
/// taken, against a snapshot of the clearing state, so deposits from several machines do that
/// work at once. Under the lock the snapshot is brought up to date ([`super::pipeline`]), the
/// deposit is decided and its batch queued in the ledger; the lock is let go before the batch
/// is durable, so the next deposit decides while this one commits. Should the ledger refuse the
/// batch, the deposit is decided again against the state read back from the ledger, with the
/// lock held until it has posted ([`Poster::post`]).
pub(super) async fn clear_deposit(
    state: &AppState,
    record: &MerchantRecord,
    strategy: &Strategy,
    items: &[DepositItem],
    now: UnixSeconds,
) -> Result<DepositReport, ApiError> {
    let currency = strategy
        .currency()
        .map_err(|e| api(OperatorError::usage(e)))?;
    let rail = &state.rails.microcheck;
    let policy =
        clearing::policy(record, &rail.pa.principal(), &rail.pa.age_principal()).map_err(api)?;
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let prepared = tokio::task::block_in_place(|| csc::prepare(items, threads))
        .map_err(|r| api(OperatorError::Refused(r)))?;
    let keys = Arc::new(csc::keys(&prepared));
    // Noted before the snapshot is asked for ([`super::pipeline`]): it holds everything these
    // groups wrote, and it comes from the ledger's reader, not waiting for a commit.
    let (groups_done, epoch) = (state.ledger.groups_done(), rail.csc.epoch());
    let loaded = load(state, &record.id, &keys, Read::Committed).await?;
    // The compliance checks run before the lock, against the snapshot; deciding under the lock
    // reuses each answer only if the item's purchase number is still the same.
    let checks = tokio::task::block_in_place(|| csc::check(&policy, &prepared, &loaded.state, now));
    let payers = loaded.state.payers.clone();
    let received_ms = state.now().0;
    let snapshot = Snapshot {
        state: loaded.state,
        last_deposit: loaded.last_deposit,
        versions: loaded.versions,
        groups_done,
        epoch,
    };
    let rules = clearing::rules(strategy);
    let merchant_at = |last_deposit_at| csc::MerchantAccount {
        policy: policy.clone(),
        location: record.location,
        last_deposit_at,
    };
    let decide = |merchant: &csc::MerchantAccount, state: &ClearingState| {
        let mut cleared_state = state.clone();
        let outcomes = tokio::task::block_in_place(|| {
            csc::clear_checked(merchant, rules, &prepared, &checks, &mut cleared_state, now)
        });
        (outcomes, cleared_state)
    };
    let mut overlay = rail.csc.lock().await;
    if let Some(current) = rail.csc.current(&overlay, snapshot, &record.id) {
        let merchant = merchant_at(current.last_deposit);
        let (mut outcomes, cleared_state) = decide(&merchant, &current.state);
        let mut poster = Poster::new(state, &merchant, currency, now, current.versions);
        if let Some(in_flight) = poster
            .queue(&outcomes, &cleared_state, record, &mut overlay)
            .await?
        {
            drop(overlay);
            if let Some(posted) = in_flight.settle(record).await? {
                Metrics::add(&state.metrics.microcheck_deposits_pipelined, 1);
                relabel_spent(state, &prepared, &mut outcomes, &current.state).await?;
                let report = report(record, &outcomes, &posted);
                keep_history(state, &report, &prepared, &payers, received_ms).await;
                return Ok(report);
            }
            overlay = rail.csc.lock().await;
        }
    }
    // Read back under the lock: queued behind every batch in flight, so it sees how each fared.
    let loaded = load(state, &record.id, &keys, Read::AfterQueued).await?;
    let merchant = merchant_at(loaded.last_deposit);
    let (mut outcomes, cleared_state) = decide(&merchant, &loaded.state);
    let mut poster = Poster::new(state, &merchant, currency, now, loaded.versions);
    let posted = poster
        .post(
            &outcomes,
            &loaded.state,
            &cleared_state,
            record,
            &mut overlay,
        )
        .await?;
    drop(overlay);
    Metrics::add(&state.metrics.microcheck_deposits_locked, 1);
    relabel_spent(state, &prepared, &mut outcomes, &loaded.state).await?;
    let report = report(record, &outcomes, &posted);
    keep_history(state, &report, &prepared, &payers, received_ms).await;
    Ok(report)
}

/// Keeps the deposit's record for the console ([`history`]), the merchant's oldest beyond the
/// bound removed, once the deposit has posted. It is the operator's account of the deposit, not
/// money: when it cannot be written the deposit still stands and is answered, and the failure is
/// logged.
async fn keep_history(
    state: &AppState,
    report: &DepositReport,
    prepared: &[csc::Prepared],
    payers: &HashMap<String, csc::PayerAccount>,
    received_ms: u64,
) {
    let deposit = history::deposit_record(report, prepared, payers, received_ms);
    let tag = report
        .results
        .iter()
        .find_map(|answer| answer.nonce.clone())
        .unwrap_or_else(|| "none".to_owned());
    let result = async {
        let writes = read(state, move |store| {
            history::history_writes(store, &deposit, &tag)
        })
        .await?;
        let mut effects = offpay_operator::Effects::new();
        for write in writes {
            effects.write(write);
        }
        super::commit(state, effects).await
    }
    .await;
    if let Err(error) = result {
        tracing::error!(merchant = %report.merchant, error = %error.message, "microcheck deposit history not kept");
    }
}

/// Refused items that were deposited before (by an earlier deposit or one in flight beside this
/// one) are named `already_deposited` or `replayed_nonce`, whatever check refused them first: a
/// machine keeps what it was paid for apart from what it was not. Read behind every batch queued
/// so far, so a twin deposit committing at the same time is seen.
async fn relabel_spent(
    state: &AppState,
    prepared: &[csc::Prepared],
    outcomes: &mut [ItemOutcome],
    clearing_state: &ClearingState,
) -> Result<(), ApiError> {
    let candidates = csc::refused_charge_keys(prepared, outcomes, clearing_state);
    if candidates.is_empty() {
        return Ok(());
    }
    let keys: Vec<String> = candidates.iter().map(|(_, key, _)| key.clone()).collect();
    let charges = state
        .ledger
        .read_after_queued(move |store| Ok(clearing::load_charges(store, &keys)))
        .await?
        .map_err(super::record_error)?;
    clearing::relabel_spent(outcomes, &candidates, &charges);
    Ok(())
}

fn report(record: &MerchantRecord, outcomes: &[ItemOutcome], posted: &Posted) -> DepositReport {
    let report = clearing::report(&record.id, outcomes, posted);
    tracing::info!(merchant = %record.id, posted = report.posted, refused = report.refused, "microcheck deposit cleared");
    report
}

/// Which commits a read of the clearing state must see.
#[derive(Clone, Copy, Debug)]
enum Read {
    /// Those finished before it (on the ledger's reader: it does not wait for a commit).
    Committed,
    /// Also those queued before it ([`crate::ledger::Ledger::read_after_queued`]).
    AfterQueued,
}

/// Reads the clearing state of `merchant`'s deposit with `keys` from the ledger.
async fn load(
    state: &AppState,
    merchant: &str,
    keys: &Arc<csc::Keys>,
    read_at: Read,
) -> Result<LoadedState, ApiError> {
    let (merchant, keys) = (merchant.to_owned(), Arc::clone(keys));
    let job = move |store: &mut dyn LedgerStore| clearing::load_state(store, &merchant, &keys);
    match read_at {
        Read::Committed => read(state, job).await,
        Read::AfterQueued => {
            let loaded = state
                .ledger
                .read_after_queued(move |store| Ok(job(store)))
                .await?;
            loaded.map_err(super::record_error)
        }
    }
}

/// Posts what a deposit cleared. Usually in one ledger batch ([`Posting::batch`]); flags of
/// refused microchecks and the merchant's last-deposit time go in a second batch of the same
/// group commit ([`clearing::side`]).
///
/// The ledger can refuse the batch: a spent nonce (see [`clearing`]), or money the operator API
/// moved since the CSC read the balances. The refusal names the operation that failed; its
/// microcheck is refused with the ledger's reason ([`Fate::refused`]). After any refusal the
/// others are posted again in one batch, with counters rebuilt from the state before the deposit
/// plus exactly the microchecks in it (`ClearingState::apply`), until a batch posts. A refusal
/// no microcheck explains posts the rest one at a time.
///
/// Clearing records are written with the version they were read at (`expected_version`), and
/// every batch that posts joins the CSC's overlay ([`super::pipeline`]).
struct Poster<'a> {
    state: &'a AppState,
    merchant: &'a csc::MerchantAccount,
    currency: Currency,
    now: UnixSeconds,
    /// Clearing records' versions as they stand before the next batch.
    versions: Versions,
}

/// A deposit's batch queued in the ledger, the CSC lock let go.
struct InFlight {
    queued: crate::ledger::Queued,
    fate: BatchFate,
    /// Deposit indexes of the microchecks in the batch.
    indexes: Vec<usize>,
}

impl InFlight {
    /// Waits for the batch: the fate of each microcheck if it posted, `None` if the ledger
    /// refused it (nothing of it was written; decide the deposit again).
    async fn settle(self, record: &MerchantRecord) -> Result<Option<Posted>, ApiError> {
        let results = match self.queued.durable().await {
            Ok(results) => results,
            Err(error) => {
                self.fate.failed();
                return Err(error.into());
            }
        };
        let mut results = results.into_iter();
        let main = results.next();
        if let Some(Err(refusal)) = results.next() {
            log_side_refusal(record, &refusal);
        }
        match main {
            Some(Ok(_)) => Ok(Some(
                self.indexes
                    .into_iter()
                    .map(|index| (index, Fate::Posted))
                    .collect(),
            )),
            Some(Err(refusal)) => {
                self.fate.failed();
                tracing::info!(merchant = %record.id, error = %refusal.reason, "microcheck deposit: the ledger refused the batch decided while others committed; deciding it again");
                Ok(None)
            }
            None => {
                self.fate.failed();
                Err(no_result())
            }
        }
    }
}

fn no_result() -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "the ledger returned no result",
    )
}

/// Logs a refusal of the batch holding refused microchecks' flags and the last-deposit time.
fn log_side_refusal(record: &MerchantRecord, refusal: &BatchRefusal) {
    tracing::error!(merchant = %record.id, error = %refusal.reason, "microcheck deposit: flags and last-deposit record refused");
}

impl<'a> Poster<'a> {
    fn new(
        state: &'a AppState,
        merchant: &'a csc::MerchantAccount,
        currency: Currency,
        now: UnixSeconds,
        versions: Versions,
    ) -> Poster<'a> {
        Poster {
            state,
            merchant,
            currency,
            now,
            versions,
        }
    }

    fn merchant_id(&self) -> &str {
        &self.merchant.policy.merchant
    }

    fn policy(&self) -> &MerchantPolicy {
        &self.merchant.policy
    }

    /// The operator's accounts in the deposit's currency, for bounced microchecks.
    fn suspense(&self) -> Result<SuspenseAccounts, ApiError> {
        let server_currency = self.state.config.currency;
        Ok(SuspenseAccounts {
            creations: crate::rails::operator_accounts(self.currency, server_currency),
            suspense: crate::rails::operator_account_id(
                crate::rails::SUSPENSE,
                self.currency,
                server_currency,
            )
            .ok_or_else(|| internal("no suspense account id"))?,
        })
    }

    /// [`Posting::batch`] of `cleared` with the shared records in `state`, at the versions now.
    fn batch(&self, cleared: &[&Clearance], state: &ClearingState) -> Result<Posting, ApiError> {
        let suspense = match cleared.iter().any(|c| c.bounced()) {
            true => Some(self.suspense()?),
            false => None,
        };
        Posting::batch(
            cleared,
            state,
            self.merchant_id(),
            &self.versions,
            suspense.as_ref(),
            self.now,
        )
        .map_err(api)
    }

    fn side(&self, outcomes: &[ItemOutcome]) -> Result<Batch, ApiError> {
        clearing::side(outcomes, self.merchant_id(), self.now).map_err(super::record_error)
    }

    /// Queues the deposit's batches (when its cleared microchecks fit in one) and adds them to
    /// the overlay, without waiting for them to commit. `None`: nothing queued (nothing cleared,
    /// or a deposit too large for one batch); post it with [`Poster::post`].
    async fn queue(
        &mut self,
        outcomes: &[ItemOutcome],
        cleared_state: &ClearingState,
        record: &MerchantRecord,
        overlay: &mut Locked<'_>,
    ) -> Result<Option<InFlight>, ApiError> {
        let cleared = clearing::cleared(outcomes);
        if cleared.is_empty() || clearing::chunks(&cleared).len() != 1 {
            return Ok(None);
        }
        let posting = self.batch(&cleared, cleared_state)?;
        let side = self.side(outcomes)?;
        let mut batches = vec![posting.batch, side];
        crate::fraud::settle_in_place(&self.state.ledger, &mut batches).await?;
        let queued = self.state.ledger.submit(batches, self.state.now()).await?;
        let after = clearing::versions_after(&self.versions, &posting.written);
        let fate = self.state.rails.microcheck.csc.add(
            overlay,
            queued.group(),
            &record.id,
            &posting.written,
            &after,
            cleared_state,
            &cleared,
            self.now,
        );
        Ok(Some(InFlight {
            queued,
            fate,
            indexes: cleared.iter().map(|c| c.index).collect(),
        }))
    }

    /// A batch of `cleared` writing `written` with their values in `state` committed: the
    /// versions move on, and the overlay learns of it.
    fn posted(
        &mut self,
        cleared: &[&Clearance],
        state: &ClearingState,
        written: &[(StateRecord, String)],
        overlay: &mut Locked<'_>,
    ) {
        self.versions = clearing::versions_after(&self.versions, written);
        // Committed already: its group has finished by now.
        let group = GroupNumber::finished_by(self.state.ledger.groups_done());
        self.state.rails.microcheck.csc.add(
            overlay,
            group,
            &self.policy().merchant,
            written,
            &self.versions,
            state,
            cleared,
            self.now,
        );
    }

    /// Posts the deposit, waiting for each batch to commit (the CSC lock held throughout).
    async fn post(
        &mut self,
        outcomes: &[ItemOutcome],
        initial: &ClearingState,
        cleared_state: &ClearingState,
        record: &MerchantRecord,
        overlay: &mut Locked<'_>,
    ) -> Result<Posted, ApiError> {
        let cleared = clearing::cleared(outcomes);
        let mut side = Some(self.side(outcomes)?);
        let chunks = clearing::chunks(&cleared);
        let mut posted = Posted::new();
        if chunks.len() == 1 {
            // The usual case: `clear` already brought the state up to date with exactly these.
            self.post_chunk(
                &cleared,
                initial,
                cleared_state,
                side.take(),
                record,
                &mut posted,
                overlay,
            )
            .await?;
            return Ok(posted);
        }
        let mut base = initial.clone();
        for chunk in chunks {
            let mut state = base.clone();
            for clearance in chunk {
                state.apply(self.merchant, clearance);
            }
            self.post_chunk(
                chunk,
                &base,
                &state,
                side.take(),
                record,
                &mut posted,
                overlay,
            )
            .await?;
            for clearance in chunk {
                if posted.get(&clearance.index).is_some_and(Fate::is_posted) {
                    base.apply(self.merchant, clearance);
                }
            }
        }
        if let Some(side) = side
            && let Err(refusal) = self.commit_one(side).await?
        {
            log_side_refusal(record, &refusal);
        }
        Ok(posted)
    }

    /// Posts one batch's worth of cleared microchecks on top of `base` (the state with
    /// everything posted before them); `state` is `base` with all of `chunk` applied. `side`,
    /// when given, commits in the same group as the first attempt.
    #[allow(clippy::too_many_arguments)]
    async fn post_chunk(
        &mut self,
        chunk: &[&Clearance],
        base: &ClearingState,
        state: &ClearingState,
        side: Option<Batch>,
        record: &MerchantRecord,
        posted: &mut Posted,
        overlay: &mut Locked<'_>,
    ) -> Result<(), ApiError> {
        let mut cleared: Vec<&Clearance> = chunk.to_vec();
        let posting = self.batch(&cleared, state)?;
        let mut batches = vec![posting.batch];
        batches.extend(side);
        crate::fraud::settle_in_place(&self.state.ledger, &mut batches).await?;
        let results = self.state.ledger.commit(batches, self.state.now()).await?;
        if let Some(Err(refusal)) = results.get(1) {
            log_side_refusal(record, refusal);
        }
        let mut refusal = match results.into_iter().next() {
            Some(Ok(_)) => {
                posted.extend(cleared.iter().map(|c| (c.index, Fate::Posted)));
                self.posted(&cleared, state, &posting.written, overlay);
                return Ok(());
            }
            Some(Err(refusal)) => refusal,
            None => return Err(no_result()),
        };
        let mut owners = posting.owners;
        loop {
            let owner = owners.get(refusal.index).copied().flatten();
            let spent = if clearing::may_be_spent(&refusal.reason, owner) {
                self.spent_nonces(&cleared).await?
            } else {
                HashMap::new()
            };
            if spent.is_empty() {
                tracing::warn!(merchant = %record.id, error = %refusal.reason, "microcheck deposit: the ledger refused a batch; posting again without the microcheck it names");
                match owner {
                    Some(position) => {
                        let clearance = cleared[position];
                        posted.insert(clearance.index, Fate::refused(refusal.reason, clearance));
                        cleared.remove(position);
                    }
                    None => return self.post_each(&cleared, base, posted, overlay).await,
                }
            } else {
                tracing::info!(merchant = %record.id, spent = spent.len(), "microcheck deposit: refusing microchecks whose nonce was deposited before");
                let mut position = 0;
                cleared.retain(|clearance| {
                    let keep = match spent.get(&position) {
                        Some(refusal) => {
                            posted.insert(clearance.index, Fate::Spent(refusal.clone()));
                            false
                        }
                        None => true,
                    };
                    position += 1;
                    keep
                });
            }
            if cleared.is_empty() {
                return Ok(());
            }
            let mut state = base.clone();
            for clearance in &cleared {
                state.apply(self.merchant, clearance);
            }
            let next = self.batch(&cleared, &state)?;
            match self.commit_one(next.batch).await? {
                Ok(()) => {
                    posted.extend(cleared.iter().map(|c| (c.index, Fate::Posted)));
                    self.posted(&cleared, &state, &next.written, overlay);
                    return Ok(());
                }
                Err(again) => {
                    refusal = again;
                    owners = next.owners;
                }
            }
        }
    }

    /// Posts `cleared` one microcheck per batch, each with the counters as they stand after it.
    async fn post_each(
        &mut self,
        cleared: &[&Clearance],
        base: &ClearingState,
        posted: &mut Posted,
        overlay: &mut Locked<'_>,
    ) -> Result<(), ApiError> {
        let mut state = base.clone();
        for clearance in cleared {
            let mut next = state.clone();
            next.apply(self.merchant, clearance);
            let one = std::slice::from_ref(clearance);
            let posting = self.batch(one, &next)?;
            match self.commit_one(posting.batch).await? {
                Ok(()) => {
                    posted.insert(clearance.index, Fate::Posted);
                    self.posted(one, &next, &posting.written, overlay);
                    state = next;
                }
                Err(refusal) => {
                    posted.insert(clearance.index, Fate::refused(refusal.reason, clearance));
                }
            }
        }
        Ok(())
    }

    /// Reads the charge records of `cleared` and returns, by position, the refusal of each
    /// microcheck deposited before ([`clearing::spent`]).
    async fn spent_nonces(
        &self,
        cleared: &[&Clearance],
    ) -> Result<HashMap<usize, Refusal>, ApiError> {
        let keys = clearing::charge_keys(cleared);
        let charges = read(self.state, move |store| {
            clearing::load_charges(store, &keys)
        })
        .await?;
        Ok(clearing::spent(cleared, &charges))
    }

    async fn commit_one(&self, batch: Batch) -> Result<Result<(), BatchRefusal>, ApiError> {
        let mut batches = vec![batch];
        crate::fraud::settle_in_place(&self.state.ledger, &mut batches).await?;
        let mut results = self.state.ledger.commit(batches, self.state.now()).await?;
        match results.pop() {
            Some(result) => Ok(result.map(|_| ())),
            None => Err(no_result()),
        }
    }
}
