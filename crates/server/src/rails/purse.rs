//! Rail 1, the short-code purse: routes, key files, and the mapping of HTTP to the rail's
//! operations and of its errors to HTTP.
//!
//! The rules — the book's records and load plans, reconciliation, postings and fraud flags —
//! are the rail's ([`offpay_purse::book`]); this module runs its decisions with the server's
//! [`runner`] (lock stripes by phone, load, decide, conditional commit, retry).
//!
//! **Keys.** The operator's master key lives in `DATA_DIR/purse/master.key` (32 random bytes,
//! mode 0600, created at first start, never logged, never in the database); the operator id in
//! `DATA_DIR/purse/operator.id` (created from `OFFPAY_PURSE_OPERATOR`, default `offpay`). Every
//! per-purse, scheme and pairwise key is derived from the master key when needed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use offpay_ledger::{Amount, Currency, StoreError};
use offpay_operator::Entropy;
use offpay_purse::book::{self, LoadPlan, PurseOperator, RecordSet};
pub use offpay_purse::book::{
    BookError, NAMESPACE, Provisioned, PurseChange, SyncReply, purse_account_id,
};
use offpay_purse::crypto::{MASTER_KEY_BYTES, MasterKey};
use offpay_purse::seal::{self, SealStage, SealTally, StartPlan};
use offpay_purse::sms_book;
use offpay_purse::{
    Cause, OfflineLimits, OperatorId, OperatorSecrets, Phone, PurseError, PurseKind, ShadowAccount,
    TrustClass,
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::ServerConfig;
use crate::error::ApiError;
use crate::keyfile;
use crate::ledger::{Ledger, LedgerError};
use crate::rails::purse_statement::{self, StatementLine};
use crate::routes::{ADMIN, EVERYONE, FINANCE, OperatorRoutes, PROVISIONING, READ, SUPPORT};
use crate::runner::{self, LockStripes, RunError};
use crate::{AppState, StartError};

/// Directory under the data directory holding this rail's key files.
pub const KEY_DIRECTORY: &str = "purse";
/// The master key file's name.
pub const MASTER_KEY_FILE: &str = "master.key";
/// The operator id file's name.
pub const OPERATOR_FILE: &str = "operator.id";
/// Environment variable naming the operator id when the operator file is first created.
pub const OPERATOR_ENVIRONMENT: &str = "OFFPAY_PURSE_OPERATOR";
/// Operator id used when neither the file nor the environment names one.
pub const OPERATOR_DEFAULT: &str = "offpay";
/// Largest sync upload accepted (an upload of `UPLOAD_ENTRIES_MAX` entries is about 420 KB).
pub const UPLOAD_BYTES_MAX: usize = 1 << 20;
/// Lock stripes serialising operations that touch the same phones.
pub const LOCK_STRIPES: usize = 256;
/// Media type of the binary sync messages.
pub const SYNC_MEDIA_TYPE: &str = "application/octet-stream";

const _: () = assert!(LOCK_STRIPES > 0);
const _: () = assert!(UPLOAD_BYTES_MAX > offpay_purse::params::UPLOAD_ENTRIES_MAX * 48);

/// This rail's server-side state: the rail's operator half and the lock stripes.
#[derive(Debug)]
pub struct PurseRail {
    operator: PurseOperator,
    currency: Currency,
    locks: LockStripes,
}

fn load_or_create_master_key(path: &Path, entropy: &dyn Entropy) -> Result<MasterKey, StartError> {
    let (bytes, created) =
        keyfile::read_or_create(path, || keyfile::random(entropy, MASTER_KEY_BYTES))
            .map_err(keyfile::start_error("purse master key", path))?;
    let bytes: [u8; MASTER_KEY_BYTES] = bytes.as_slice().try_into().map_err(|_| {
        keyfile::start_error("purse master key", path)(keyfile::invalid(format!(
            "{} bytes, not {MASTER_KEY_BYTES}",
            bytes.len()
        )))
    })?;
    if created {
        tracing::info!(path = %path.display(), "created the purse master key");
    }
    Ok(MasterKey::from_bytes(bytes))
}

fn load_or_create_operator(path: &Path) -> Result<OperatorId, StartError> {
    let (contents, _) = keyfile::read_or_create(path, || {
        let text =
            std::env::var(OPERATOR_ENVIRONMENT).unwrap_or_else(|_| OPERATOR_DEFAULT.to_owned());
        Ok(format!("{}\n", text.trim()).into_bytes().into())
    })
    .map_err(keyfile::start_error("purse operator id", path))?;
    std::str::from_utf8(&contents)
        .map_err(|_| keyfile::invalid("not text"))
        .and_then(|text| {
            OperatorId::new(text.trim()).map_err(|error| keyfile::invalid(error.to_string()))
        })
        .map_err(keyfile::start_error("purse operator id", path))
}

impl PurseRail {
    /// Loads or creates this rail's keys under the data directory.
    pub fn start(config: &ServerConfig, entropy: &dyn Entropy) -> Result<PurseRail, StartError> {
        let directory = config.data_dir.join(KEY_DIRECTORY);
        keyfile::create_private_dir_all(&directory)
            .map_err(keyfile::start_error("cannot create", &directory))?;
        let operator = load_or_create_operator(&directory.join(OPERATOR_FILE))?;
        let master = load_or_create_master_key(&directory.join(MASTER_KEY_FILE), entropy)?;
        tracing::info!(operator = %operator, "purse rail ready");
        Ok(PurseRail::new(
            OperatorSecrets::new(operator, master),
            config.currency,
        ))
    }

    /// A rail with given secrets, for purses in `currency` (the server's currency).
    pub fn new(secrets: OperatorSecrets, currency: Currency) -> PurseRail {
        PurseRail {
            operator: PurseOperator::new(secrets, currency),
            currency,
            locks: LockStripes::new(LOCK_STRIPES),
        }
    }

    /// The operator id purses of this server carry.
    pub fn operator(&self) -> OperatorId {
        self.operator.secrets().operator()
    }
}

/// Why a purse operation failed. Nothing is half-applied: every decision commits in one ledger
/// batch, except that an upload too large for one batch may have committed its (idempotent)
/// leading postings before a later batch was refused; retrying the upload completes it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RailError {
    /// The rail refused or failed.
    #[error(transparent)]
    Book(#[from] BookError),
    /// The runner could not commit.
    #[error(transparent)]
    Run(#[from] RunError),
}

impl From<PurseError> for RailError {
    fn from(error: PurseError) -> RailError {
        RailError::Book(BookError::Purse(error))
    }
}

impl From<LedgerError> for RailError {
    fn from(error: LedgerError) -> RailError {
        RailError::Run(RunError::Ledger(error))
    }
}

impl From<StoreError> for RailError {
    fn from(error: StoreError) -> RailError {
        RailError::Book(BookError::Store(error))
    }
}

impl From<RailError> for ApiError {
    fn from(error: RailError) -> ApiError {
        match error {
            RailError::Book(BookError::Purse(error)) => purse_api_error(&error),
            RailError::Book(BookError::Invalid { code, message }) => {
                ApiError::bad_request(code, message)
            }
            RailError::Run(RunError::Ledger(error)) => ApiError::from(error),
            RailError::Run(RunError::Refused(refusal)) => ApiError::refused(&refusal),
            RailError::Book(BookError::Tampered(tampered)) => ApiError::new(
                StatusCode::CONFLICT,
                "record_tampered",
                tampered.to_string(),
            ),
            RailError::Run(RunError::Contention) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "contention",
                "the purse records kept changing under this operation; try again",
            ),
            error => {
                tracing::error!(%error, "purse rail failure");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "purse_internal",
                    error.to_string(),
                )
            }
        }
    }
}

fn purse_api_error(error: &PurseError) -> ApiError {
    let (status, code) = match error {
        PurseError::AuthenticationFailed => (StatusCode::UNAUTHORIZED, "sync_unauthenticated"),
        PurseError::SyncReplayed { .. } => (StatusCode::CONFLICT, "sync_replayed"),
        PurseError::WrongOperator { .. } => (StatusCode::FORBIDDEN, "wrong_operator"),
        PurseError::Malformed(_) | PurseError::UnsupportedVersion { .. } => {
            (StatusCode::BAD_REQUEST, "malformed_message")
        }
        PurseError::UnknownPurse(_) => (StatusCode::NOT_FOUND, "unknown_purse"),
        PurseError::UnknownPhone(_) => (StatusCode::NOT_FOUND, "unknown_phone"),
        PurseError::PhoneTaken(_) => (StatusCode::CONFLICT, "phone_taken"),
        PurseError::RotationTooSoon { .. } => (StatusCode::CONFLICT, "rotation_too_soon"),
        _ => match error.cause() {
            Cause::Input => (StatusCode::BAD_REQUEST, "invalid_input"),
            _ => (StatusCode::UNPROCESSABLE_ENTITY, "refused"),
        },
    };
    let message = match error {
        PurseError::AuthenticationFailed => {
            "the sync message failed authentication (wrong key, altered or truncated); nothing changed".to_owned()
        }
        PurseError::SyncReplayed { .. } => format!("{error}; nothing changed"),
        _ => error.to_string(),
    };
    ApiError::new(status, code, message)
}

// ---------------------------------------------------------------------------------------------
// Operations, callable without HTTP: the rail's decisions run by the server's runner.

/// Runs one of the book's decisions with the server's [`runner`]. A refusal because a record it
/// loaded was written or changed outside the operator's code (its seal is wrong or absent)
/// commits the `record_tampered` flags and nothing else, then answers the refusal.
async fn run_book<L, T, Load, LoadFuture>(
    ledger: &Ledger,
    now: offpay_ledger::Timestamp,
    load: Load,
    mut decide: impl FnMut(L) -> Result<offpay_operator::Decision<T>, RailError>,
) -> Result<T, RailError>
where
    Load: FnMut() -> LoadFuture,
    LoadFuture: Future<Output = Result<L, RailError>>,
{
    let outcome = runner::run(ledger, now, load, |loaded| match decide(loaded) {
        Ok(decision) => Ok(book::refuse_tampered(Ok(decision), now)?),
        Err(RailError::Book(error)) => Ok(book::refuse_tampered::<T>(Err(error), now)?),
        Err(error) => Err(error),
    })
    .await?;
    outcome.map_err(|tampered| {
        tracing::error!(rail = book::RAIL, %tampered, "purse records refused: their seal is wrong or absent");
        RailError::Book(BookError::Tampered(tampered))
    })
}

impl PurseRail {
    async fn load(&self, ledger: &Ledger, plan: LoadPlan) -> Result<RecordSet, RailError> {
        Ok(ledger.read(move |store| book::load(store, &plan)).await?)
    }

    /// Authenticates an upload, reconciles it, posts it and returns the answer: the sync
    /// endpoint without HTTP. An upload that fails authentication, is malformed, belongs to
    /// another operator or is a replay changes nothing.
    pub async fn sync(
        &self,
        ledger: &Ledger,
        bytes: &[u8],
        now: offpay_ledger::Timestamp,
    ) -> Result<SyncReply, RailError> {
        let upload = self.operator.secrets().open_upload(bytes)?;
        let purse_id = upload.purse_id;
        let phone_plan = LoadPlan {
            purse: Some(purse_id),
            ..LoadPlan::default()
        };
        let phone = self
            .load(ledger, phone_plan)
            .await?
            .shadow_phone(purse_id)
            .map_err(BookError::from)?
            .ok_or(PurseError::UnknownPurse(purse_id))?;
        let (plan, locked) = PurseOperator::sync_plan(&upload, phone);
        let _guards = self
            .locks
            .lock(locked.iter().map(|phone| phone.number()))
            .await;
        let reply = run_book(
            ledger,
            now,
            || self.load(ledger, plan.clone()),
            |loaded| Ok(self.operator.decide_sync(&loaded, bytes, now)?),
        )
        .await?;
        if reply.flags > 0 {
            tracing::warn!(rail = book::RAIL, purse = %purse_id, flags = reply.flags, "fraud flags raised");
        }
        tracing::info!(purse = %purse_id, sequence = reply.sequence, postings = reply.postings, matched = reply.matched, flags = reply.flags, "purse synced");
        Ok(reply)
    }

    /// Provisions a purse for `phone`: assigns its id, creates its ledger account and shadow,
    /// and returns the provisioning record (keys: hand it only to the operator's admin tool).
    pub async fn provision(
        &self,
        ledger: &Ledger,
        phone: Phone,
        kind: PurseKind,
        now: offpay_ledger::Timestamp,
    ) -> Result<Provisioned, RailError> {
        self.provision_as(ledger, phone, kind, TrustClass::Software, now)
            .await
    }

    /// [`PurseRail::provision`] in a trust class (hardware: a SIM applet's personalisation).
    pub async fn provision_as(
        &self,
        ledger: &Ledger,
        phone: Phone,
        kind: PurseKind,
        class: TrustClass,
        now: offpay_ledger::Timestamp,
    ) -> Result<Provisioned, RailError> {
        let _guards = self.locks.lock([phone.number()]).await;
        let provisioned = run_book(
            ledger,
            now,
            || async move {
                let header = self.load(ledger, LoadPlan::default()).await?;
                let next_id = self.operator.next_purse_id(&header)?;
                let plan = PurseOperator::provision_plan(phone, next_id);
                Ok::<_, RailError>((next_id, self.load(ledger, plan).await?))
            },
            |(next_id, loaded)| {
                Ok(self
                    .operator
                    .decide_provision_as(&loaded, next_id, phone, kind, class, now)?)
            },
        )
        .await?;
        tracing::info!(purse = %provisioned.purse_id, phone = %phone, "purse provisioned");
        Ok(provisioned)
    }

    /// Applies an operator change to the purse with `phone`; a float returns its transfer id.
    pub async fn change(
        &self,
        ledger: &Ledger,
        phone: Phone,
        change: PurseChange,
        now: offpay_ledger::Timestamp,
    ) -> Result<Option<String>, RailError> {
        let _guards = self.locks.lock([phone.number()]).await;
        run_book(
            ledger,
            now,
            || self.load(ledger, PurseOperator::purse_plan(phone)),
            |loaded| Ok(self.operator.decide_change(&loaded, phone, &change)?),
        )
        .await
    }

    /// A lost phone: blocks the purse of `lost` and moves what is safe of its balance to the
    /// purse of `new` (delivered at `new`'s next sync); the rest is held back until the lost
    /// purse's keys are dead, and a later call moves it.
    pub async fn move_balance(
        &self,
        ledger: &Ledger,
        lost: Phone,
        new: Phone,
        now: offpay_ledger::Timestamp,
    ) -> Result<offpay_purse::BalanceMove, RailError> {
        let _guards = self.locks.lock([lost.number(), new.number()]).await;
        let moved = run_book(
            ledger,
            now,
            || self.load(ledger, PurseOperator::move_plan(lost, new)),
            |loaded| Ok(self.operator.decide_move(&loaded, lost, new)?),
        )
        .await?;
        tracing::info!(lost = %lost, new = %new, moved = moved.moved_minor, held = moved.held_minor, "lost purse blocked, balance moved");
        Ok(moved)
    }

    /// Rotates the scheme key (two-phase); returns (generation epoch, newest epoch).
    pub async fn rotate_scheme_key(
        &self,
        ledger: &Ledger,
        now: offpay_ledger::Timestamp,
        force: bool,
    ) -> Result<(u32, u32), RailError> {
        let (generation, newest) = run_book(
            ledger,
            now,
            || self.load(ledger, LoadPlan::default()),
            |loaded| Ok(self.operator.decide_rotate(&loaded, now, force)?),
        )
        .await?;
        if force {
            tracing::warn!(generation, newest, "purse scheme key rotated by force");
        } else {
            tracing::info!(generation, newest, "purse scheme key rotated");
        }
        Ok((generation, newest))
    }

    /// Re-seals the purse-book records `checked` names, after an operator checked them
    /// ([`seal::decide_reseal`]): their seals only, and only while their stored bytes are the
    /// ones checked; the `record_tampered` flags stay in the fraud queue, and nothing else is
    /// written.
    pub async fn reseal(
        &self,
        ledger: &Ledger,
        checked: Vec<seal::CheckedRecord>,
        now: offpay_ledger::Timestamp,
    ) -> Result<seal::ResealTally, RailError> {
        let keys = seal::checked_keys(&checked);
        seal::check_reseal_keys(&keys).map_err(reseal_refused)?;
        let sealer = self.operator.sealer();
        let tally = runner::run(
            ledger,
            now,
            || {
                let keys = keys.clone();
                async move {
                    Ok::<_, RailError>(
                        ledger
                            .read(move |store| seal::load_reseal(store, &keys))
                            .await?,
                    )
                }
            },
            |loaded| seal::decide_reseal(&checked, &loaded, sealer).map_err(reseal_refused),
        )
        .await?;
        tracing::warn!(
            resealed = ?tally.resealed,
            already_sealed = ?tally.already_sealed,
            "an operator re-sealed purse records after checking them; their record_tampered \
             cases stay in the fraud queue"
        );
        Ok(tally)
    }

    /// Removes expired SMS assemblies (`smsin/<sender>/<id>` past their
    /// [`offpay_purse::params::SMS_ASSEMBLY_SECONDS_MAX`]), at most
    /// [`SMS_SWEEP_PAGES_PER_RUN`] pages a run, one commit a page; live ones are kept.
    pub async fn sweep_sms_assemblies(
        &self,
        ledger: &Ledger,
        now: offpay_ledger::Timestamp,
    ) -> Result<sms_book::Swept, RailError> {
        let mut total = sms_book::Swept::default();
        let mut after: Option<String> = None;
        for _ in 0..SMS_SWEEP_PAGES_PER_RUN {
            let page_after = after.clone();
            let (swept, last_key, full) = runner::run(
                ledger,
                now,
                || {
                    let page_after = page_after.clone();
                    async move {
                        Ok::<_, RailError>(
                            ledger
                                .read(move |store| {
                                    sms_book::load_sweep_page(store, page_after.as_deref())
                                })
                                .await?,
                        )
                    }
                },
                |page| {
                    Ok::<_, RailError>(match sms_book::decide_sweep(&page, now.0) {
                        offpay_operator::Decision::Commit { effects, reply } => {
                            offpay_operator::Decision::commit(
                                effects,
                                (reply, page.last_key.clone(), page.full),
                            )
                        }
                        offpay_operator::Decision::Reload => offpay_operator::Decision::Reload,
                    })
                },
            )
            .await?;
            total.add(&swept);
            if !full {
                break;
            }
            after = last_key;
        }
        Ok(total)
    }

    /// The sealer of the book's records (to check a record as the rail does).
    pub fn sealer(&self) -> &seal::RecordSealer {
        self.operator.sealer()
    }

    /// The shadow account of the purse with this phone.
    pub async fn shadow(&self, ledger: &Ledger, phone: Phone) -> Result<ShadowAccount, RailError> {
        let loaded = self.load(ledger, PurseOperator::purse_plan(phone)).await?;
        Ok(self.operator.shadow(&loaded, phone)?)
    }
}

fn reseal_refused(error: seal::ResealError) -> RailError {
    let code = match error {
        seal::ResealError::Keys(_) => "invalid_keys",
        seal::ResealError::NotSealed(_) => "not_a_purse_record",
        seal::ResealError::Absent(_) => "record_not_found",
        seal::ResealError::NotJson(_) => "record_not_json",
        seal::ResealError::Digest(_) => "invalid_digest",
        seal::ResealError::Changed(_) => "record_changed_since_checked",
    };
    RailError::Book(BookError::Invalid {
        code,
        message: error.to_string(),
    })
}

/// At start, before any message: the book's records an earlier release wrote without a seal
/// are sealed once, when the rail's rule ([`seal::start_plan`]) says the database is an earlier
/// release's; otherwise the start says why it sealed nothing (those records stay refused, and
/// every operation that loads one is refused and raises `record_tampered`). Returns what the
/// start did.
pub async fn seal_at_start(state: &Arc<AppState>) -> Result<StartPlan, RailError> {
    let ledger = &state.ledger;
    let sealer = state.rails.purse.operator.sealer().clone();
    let marker = ledger.read(seal::load_marker).await?;
    let found = seal::authentic_marker(marker.1.as_deref(), &sealer);
    if found
        .as_ref()
        .is_some_and(|marker| marker.stage == SealStage::Done)
    {
        return Ok(StartPlan::Done);
    }
    let mut survey = SealTally::default();
    let mut after: Option<String> = None;
    loop {
        let page_after = after.clone();
        let page = ledger
            .read(move |store| seal::load_page(store, page_after.as_deref()))
            .await?;
        survey.add(&seal::survey(&page, &sealer));
        if !page.full {
            break;
        }
        after = page.last_key;
    }
    let now = state.now();
    let plan = seal::start_plan(found.as_ref(), &survey, now);
    match &plan {
        StartPlan::Done => {}
        StartPlan::MarkOnly => mark_sealed(ledger, &sealer, SealStage::Done, &survey, now).await?,
        StartPlan::Seal => {
            mark_sealed(ledger, &sealer, SealStage::Sealing, &survey, now).await?;
            let mut total = SealTally::default();
            let mut after: Option<String> = None;
            loop {
                let page_after = after.clone();
                let tally = runner::run(
                    ledger,
                    now,
                    || {
                        let page_after = page_after.clone();
                        async move {
                            Ok::<_, RailError>(
                                ledger
                                    .read(move |store| {
                                        seal::load_page(store, page_after.as_deref())
                                    })
                                    .await?,
                            )
                        }
                    },
                    |page| {
                        Ok::<_, RailError>(match seal::decide_page(&page, &sealer) {
                            offpay_operator::Decision::Commit { effects, reply } => {
                                offpay_operator::Decision::commit(effects, (reply, page))
                            }
                            offpay_operator::Decision::Reload => offpay_operator::Decision::Reload,
                        })
                    },
                )
                .await?;
                let (tally, page) = tally;
                total.add(&tally);
                if !page.full {
                    break;
                }
                after = page.last_key;
            }
            mark_sealed(ledger, &sealer, SealStage::Done, &total, now).await?;
            tracing::warn!(
                sealed = total.missing,
                already_sealed = total.authentic,
                mismatched = total.mismatched,
                mismatched_keys = ?total.mismatched_keys,
                "sealed the purse records an earlier release wrote without a seal (trusting the \
                 database as it is now); records whose seal is wrong stay refused"
            );
        }
        StartPlan::Refuse { reason } => {
            tracing::error!(
                %reason,
                unsealed = survey.missing,
                mismatched_keys = ?survey.mismatched_keys,
                "purse records without a seal were not sealed; they stay refused"
            );
        }
    }
    Ok(plan)
}

async fn mark_sealed(
    ledger: &Ledger,
    sealer: &seal::RecordSealer,
    stage: SealStage,
    tally: &SealTally,
    now: offpay_ledger::Timestamp,
) -> Result<(), RailError> {
    runner::run(
        ledger,
        now,
        || async { Ok::<_, RailError>(ledger.read(seal::load_marker).await?) },
        |marker| {
            seal::decide_marker(&marker, stage, tally, sealer, now)
                .map_err(|_| RailError::Book(BookError::Internal("the seal marker encodes")))
        },
    )
    .await
}

// ---------------------------------------------------------------------------------------------
// HTTP.

/// Routes devices and gateways call (authenticated by the rail's own MACs or signatures).
pub fn device_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/purse/v1/sync", post(sync_endpoint))
        .route("/purse/v1/sms", post(sms_endpoint))
        .layer(DefaultBodyLimit::max(UPLOAD_BYTES_MAX))
}

/// Operator routes (mounted under `/api/v1`, behind the operator token).
pub fn operator_routes() -> OperatorRoutes {
    OperatorRoutes::new()
        .post("/purse/purses", PROVISIONING, provision_endpoint)
        .get("/purse/purses/{phone}", EVERYONE, shadow_endpoint)
        .post("/purse/purses/{phone}/float", FINANCE, float_endpoint)
        .creates_value(float_value)
        .post("/purse/purses/{phone}/limits", FINANCE, limits_endpoint)
        .post("/purse/purses/{phone}/block", SUPPORT, block_endpoint)
        .post("/purse/purses/{phone}/move", SUPPORT, move_endpoint)
        .get("/purse/purses/{phone}/statement", READ, statement_endpoint)
        .get("/purse/purses/{phone}/syncs", READ, syncs_endpoint)
        .post("/purse/purses/{phone}/settle", FINANCE, settle_endpoint)
        .moves_money()
        .post(
            "/purse/purses/{phone}/settlement-paid",
            FINANCE,
            settlement_paid_endpoint,
        )
        .moves_money()
        .post(
            "/purse/purses/{phone}/unblock-pin",
            SUPPORT,
            unblock_pin_endpoint,
        )
        .post(
            "/purse/purses/{phone}/pin-reset",
            SUPPORT,
            pin_reset_endpoint,
        )
        .post("/purse/purses/{phone}/language", SUPPORT, language_endpoint)
        .post("/purse/scheme-key/rotate", ADMIN, rotate_endpoint)
        // Trusts records as they are stored after an operator checked them: the admin's call.
        .post("/purse/records/reseal", ADMIN, reseal_endpoint)
}

/// How often the background sweep of expired SMS assemblies runs.
pub const SMS_SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(600);
/// Pages of [`offpay_purse::sms_book::SWEEP_PAGE_RECORDS`] assemblies one sweep reads at most
/// (the rest wait for the next run).
pub const SMS_SWEEP_PAGES_PER_RUN: usize = 4;

/// Background work; called once the server state exists. The purse rail's one job: the sweep
/// of expired SMS assemblies ([`PurseRail::sweep_sms_assemblies`]) every [`SMS_SWEEP_EVERY`];
/// everything else happens when a purse syncs or the operator asks.
pub fn spawn_background(state: &Arc<AppState>) {
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return;
    };
    handle.spawn(sweeping(Arc::downgrade(state)));
}

async fn sweeping(state: std::sync::Weak<AppState>) {
    let mut ticks = tokio::time::interval(SMS_SWEEP_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(state) = state.upgrade() else {
            return;
        };
        match state
            .rails
            .purse
            .sweep_sms_assemblies(&state.ledger, state.now())
            .await
        {
            Ok(swept) if swept.removed > 0 || swept.unreadable > 0 => tracing::info!(
                removed = swept.removed,
                kept = swept.kept,
                unreadable = swept.unreadable,
                "swept expired purse SMS assemblies"
            ),
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%error, "sweeping purse SMS assemblies failed; trying again at the next run")
            }
        }
    }
}

/// A purse's phone as the operator writes it (`0711000003`, `+254 711 000 003`), in E.164 with
/// the server's default country: the purse book keys shadows by the E.164 number, so every
/// spelling finds the same purse.
fn parse_phone(state: &AppState, text: &str) -> Result<Phone, ApiError> {
    let e164 =
        offpay_operator::phone::normalise(text, state.config.default_country).map_err(|error| {
            ApiError::bad_request("invalid_phone", format!("the phone {text:?} {error}"))
        })?;
    Phone::parse(e164.as_str()).map_err(|_| {
        ApiError::bad_request(
            "invalid_phone",
            format!("{text:?} is not an E.164 phone number such as +254700000001"),
        )
    })
}

async fn sync_endpoint(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let response = sync_response(&state, &body).await;
    state.metrics.sync("purse", response.status());
    response
}

async fn sync_response(state: &AppState, body: &[u8]) -> Response {
    match state
        .rails
        .purse
        .sync(&state.ledger, body, state.now())
        .await
    {
        Ok(reply) => (
            [
                (header::CONTENT_TYPE, SYNC_MEDIA_TYPE.to_owned()),
                (
                    header::HeaderName::from_static("x-purse-postings"),
                    reply.postings.to_string(),
                ),
                (
                    header::HeaderName::from_static("x-purse-flags"),
                    reply.flags.to_string(),
                ),
            ],
            reply.answer,
        )
            .into_response(),
        Err(error) => ApiError::from(error).into_response(),
    }
}

#[derive(Debug, Deserialize)]
struct SmsRequest {
    /// The upload's SMS parts, `OP1 <id> <k>/<n> <chunk>`, in any order.
    parts: Vec<String>,
    /// Message id for the answer's parts.
    #[serde(default)]
    answer_id: u16,
}

async fn sms_endpoint(
    State(state): State<Arc<AppState>>,
    body: crate::api::ApiJson<SmsRequest>,
) -> Result<Json<Value>, ApiError> {
    let request = body.0;
    let result = async {
        let upload = offpay_purse::sync::unpack_sms(&request.parts)
            .map_err(|error| purse_api_error(&error))?;
        let reply = state
            .rails
            .purse
            .sync(&state.ledger, &upload, state.now())
            .await?;
        let parts = offpay_purse::sync::pack_sms(&reply.answer, request.answer_id)
            .map_err(|error| purse_api_error(&error))?;
        Ok(Json(json!({ "parts": parts })))
    }
    .await;
    let status = result
        .as_ref()
        .map_or_else(|error: &ApiError| error.status, |_| StatusCode::OK);
    state.metrics.sync("purse", status);
    result
}

#[derive(Debug, Deserialize)]
struct ProvisionRequest {
    phone: String,
    #[serde(default)]
    kind: Option<String>,
    /// `software` (default: a purse file on a phone or PC) or `hardware` (a SIM applet's
    /// personalisation; higher limits).
    #[serde(default)]
    class: Option<String>,
}

async fn provision_endpoint(
    State(state): State<Arc<AppState>>,
    body: crate::api::ApiJson<ProvisionRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let request = body.0;
    let phone = parse_phone(&state, &request.phone)?;
    let kind = match request.kind.as_deref() {
        None | Some("customer") => PurseKind::Customer,
        Some("agent") => PurseKind::Agent,
        Some(other) => {
            return Err(ApiError::bad_request(
                "invalid_kind",
                format!("kind {other:?}: say customer or agent"),
            ));
        }
    };
    let class = match request.class.as_deref() {
        None => TrustClass::Software,
        Some(text) => TrustClass::parse(text).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_class",
                format!("class {text:?}: say software or hardware"),
            )
        })?,
    };
    let provisioned = state
        .rails
        .purse
        .provision_as(&state.ledger, phone, kind, class, state.now())
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "purse_id": provisioned.purse_id.0,
            "phone": provisioned.phone.to_string(),
            "kind": kind_name(kind),
            "trust_class": class.name(),
            "operator": state.rails.purse.operator().as_str(),
            "account": format!("purse:{phone}"),
            "provisioning": hex::encode(&provisioned.provisioning),
        })),
    ))
}

/// The most the operator may give a purse of this kind and class (limits above are refused).
fn class_ceiling(kind: PurseKind, class: TrustClass, currency: Currency) -> Value {
    let (balance, single, spent) = offpay_purse::trust::ceiling_major(kind, class);
    let major = |units: u64| {
        let minor = units.saturating_mul(currency.minor_per_major());
        decimal(i64::try_from(minor).unwrap_or(i64::MAX), currency)
    };
    json!({
        "max_balance": major(balance),
        "max_single_payment": major(single),
        "max_spent_since_sync": major(spent),
    })
}

fn kind_name(kind: PurseKind) -> &'static str {
    match kind {
        PurseKind::Agent => "agent",
        _ => "customer",
    }
}

fn decimal(minor: i64, currency: Currency) -> String {
    offpay_ledger::Decimal::new(i128::from(minor), currency).to_string()
}

fn limits_json(limits: &OfflineLimits) -> Value {
    json!({
        "max_balance": limits.max_balance.decimal().to_string(),
        "max_single_payment": limits.max_single_payment.decimal().to_string(),
        "max_spent_since_sync": limits.max_spent_since_sync.decimal().to_string(),
        "small_payment_limit": limits.small_payment_limit.decimal().to_string(),
        "valid_until": limits.valid_until.0,
    })
}

/// `GET /api/v1/purse/purses/{phone}/syncs`: the purse's last syncs, newest first (the rail
/// keeps [`book::SYNC_HISTORY_MAX`]): when, the entries it uploaded, the postings and matches
/// they made, the balance it reported against the server's shadow, and the flags raised.
async fn syncs_endpoint(
    State(state): State<Arc<AppState>>,
    UrlPath(phone): UrlPath<String>,
    query: Result<
        axum::extract::Query<std::collections::BTreeMap<String, String>>,
        axum::extract::rejection::QueryRejection,
    >,
) -> Result<Json<Value>, ApiError> {
    let params = crate::lists::Params::parse(query, &[])?;
    let phone = parse_phone(&state, &phone)?;
    let shadow = state.rails.purse.shadow(&state.ledger, phone).await?;
    let currency = shadow.limits.max_balance.currency();
    let purse_id = shadow.purse_id;
    let position = format!("{}/", book::sync_history_key(purse_id));
    let start = match params.after_under(&position)? {
        None => 0,
        Some(after) => after[position.len()..]
            .parse::<usize>()
            .map_err(|_| {
                ApiError::bad_request(
                    "invalid_cursor",
                    "the cursor is not one this list gave; start again without a cursor",
                )
            })?
            .saturating_add(1),
    };
    let history = state
        .ledger
        .read(move |store| {
            book::load_sync_history(store, purse_id).map_err(crate::lists::record_error)
        })
        .await?;
    let items: Vec<Value> = history
        .0
        .iter()
        .skip(start)
        .take(params.limit)
        .map(|sync| {
            json!({
                "sequence": sync.sequence,
                "synced_at": crate::lists::rfc3339(sync.at_ms),
                "entries": sync.entries,
                "postings": sync.postings,
                "matched": sync.matched,
                "currency": currency.code(),
                "reported_balance": decimal(sync.reported_balance_minor, currency),
                "shadow_balance": decimal(sync.shadow_balance_minor, currency),
                "balances_agree": sync.reported_balance_minor == sync.shadow_balance_minor,
                "flags": sync.flags,
                "flags_total": sync.flags_total,
            })
        })
        .collect();
    let last = start + items.len();
    let next = (last < history.0.len() && !items.is_empty())
        .then(|| crate::lists::encode_cursor(&format!("{position}{}", last - 1)));
    Ok(Json(json!({ "items": items, "next_cursor": next })))
}

async fn shadow_endpoint(
    State(state): State<Arc<AppState>>,
    UrlPath(phone): UrlPath<String>,
) -> Result<Json<Value>, ApiError> {
    let phone = parse_phone(&state, &phone)?;
    let shadow = state.rails.purse.shadow(&state.ledger, phone).await?;
    let currency = shadow.limits.max_balance.currency();
    let account = purse_account_id(phone).map_err(RailError::from)?;
    let ledger_balance = state
        .ledger
        .read(move |store| store.account(&account))
        .await?
        .map(|account| decimal(account.balance(), currency));
    let credits: Vec<Value> = shadow
        .queued_credits
        .iter()
        .map(|credit| {
            json!({
                "credit_id": credit.credit_id,
                "amount": decimal(i64::try_from(credit.amount_minor).unwrap_or(i64::MAX), currency),
                "memo": credit.memo,
            })
        })
        .collect();
    Ok(Json(json!({
        "purse_id": shadow.purse_id.0,
        "phone": shadow.phone.to_string(),
        "kind": kind_name(shadow.kind),
        "currency": currency.code(),
        "balance": decimal(shadow.balance_minor, currency),
        "balance_minor": shadow.balance_minor,
        "reported_balance": decimal(i64::try_from(shadow.reported_balance_minor).unwrap_or(i64::MAX), currency),
        "ledger_account": format!("purse:{phone}"),
        "ledger_balance": ledger_balance,
        "blocked": shadow.blocked,
        "pin_unblock_requested": shadow.pin_unblock_requested,
        "pin_resets_issued": shadow.pin_resets_issued,
        "trust_class": shadow.trust_class.name(),
        "language": shadow.language,
        "class_ceiling": class_ceiling(shadow.kind, shadow.trust_class, currency),
        "last_sync_sequence": shadow.last_sequence,
        "received_through": shadow.received_through,
        "confirmed_through": shadow.confirmed_through,
        // RFC 3339, as in the list of purses (the shadow keeps seconds); null before a sync.
        "last_sync_at": (shadow.last_sync_at.0 > 0)
            .then(|| crate::lists::rfc3339(shadow.last_sync_at.0.saturating_mul(1000))),
        "limits": limits_json(&shadow.limits),
        "validity_seconds": shadow.validity_seconds,
        "queued_credits": credits,
        "queued_settlements": shadow.queued_settlements.iter().map(|queued| json!({
            "settlement_id": queued.credit_id,
            "amount": decimal(i64::try_from(queued.amount_minor).unwrap_or(i64::MAX), currency),
        })).collect::<Vec<_>>(),
        "settlement_owed": decimal(shadow.settlement_owed_minor, currency),
        "moved_out": decimal(shadow.moved_out_minor, currency),
    })))
}

#[derive(Debug, Deserialize)]
struct FloatRequest {
    amount: String,
    #[serde(default)]
    memo: Option<String>,
}

fn parse_amount(text: &str, currency: Currency, field: &str) -> Result<Amount, ApiError> {
    Amount::parse(text, currency).map_err(|error| {
        ApiError::bad_request("invalid_amount", format!("{field} {text:?}: {error}"))
    })
}

/// The value a float creates: its amount (for four eyes).
fn float_value(state: &AppState, body: &Value) -> Result<Option<Amount>, String> {
    let text = body["amount"].as_str().ok_or("no amount")?;
    Amount::parse(text, state.rails.purse.currency)
        .map(Some)
        .map_err(|error| error.to_string())
}

async fn float_endpoint(
    State(state): State<Arc<AppState>>,
    UrlPath(phone): UrlPath<String>,
    body: crate::api::ApiJson<FloatRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let request = body.0;
    let phone = parse_phone(&state, &phone)?;
    let rail = &state.rails.purse;
    let amount = parse_amount(&request.amount, rail.currency, "amount")?;
    let memo = request.memo.unwrap_or_else(|| "float top-up".to_owned());
    let transfer = rail
        .change(
            &state.ledger,
            phone,
            PurseChange::Float { amount, memo },
            state.now(),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "phone": phone.to_string(),
            "amount": amount.decimal().to_string(),
            "currency": amount.currency().code(),
            "transfer": transfer,
            "status": "queued: the purse receives it at its next sync",
        })),
    ))
}

#[derive(Debug, Deserialize)]
struct LimitsRequest {
    max_balance: String,
    max_single_payment: String,
    max_spent_since_sync: String,
    small_payment_limit: String,
    validity_days: u64,
}

async fn limits_endpoint(
    State(state): State<Arc<AppState>>,
    UrlPath(phone): UrlPath<String>,
    body: crate::api::ApiJson<LimitsRequest>,
) -> Result<Json<Value>, ApiError> {
    let request = body.0;
    let phone = parse_phone(&state, &phone)?;
    let rail = &state.rails.purse;
    let currency = rail.currency;
    let limits = OfflineLimits {
        max_balance: parse_amount(&request.max_balance, currency, "max_balance")?,
        max_single_payment: parse_amount(
            &request.max_single_payment,
            currency,
            "max_single_payment",
        )?,
        max_spent_since_sync: parse_amount(
            &request.max_spent_since_sync,
            currency,
            "max_spent_since_sync",
        )?,
        small_payment_limit: parse_amount(
            &request.small_payment_limit,
            currency,
            "small_payment_limit",
        )?,
        valid_until: offpay_purse::Timestamp(0),
    };
    let validity_seconds = request
        .validity_days
        .saturating_mul(offpay_purse::params::SECONDS_PER_DAY);
    let change = PurseChange::Limits {
        limits,
        validity_seconds,
    };
    rail.change(&state.ledger, phone, change, state.now())
        .await?;
    Ok(Json(json!({
        "phone": phone.to_string(),
        "limits": limits_json(&limits),
        "validity_days": request.validity_days,
        "status": "delivered at the purse's next sync",
    })))
}

#[derive(Debug, Deserialize)]
struct BlockRequest {
    blocked: bool,
}

async fn block_endpoint(
    State(state): State<Arc<AppState>>,
    UrlPath(phone): UrlPath<String>,
    body: crate::api::ApiJson<BlockRequest>,
) -> Result<Json<Value>, ApiError> {
    let phone = parse_phone(&state, &phone)?;
    state
        .rails
        .purse
        .change(
            &state.ledger,
            phone,
            PurseChange::Blocked(body.0.blocked),
            state.now(),
        )
        .await?;
    Ok(Json(
        json!({ "phone": phone.to_string(), "blocked": body.0.blocked }),
    ))
}

/// Entries on a purse holder's statement.
const STATEMENT_LINES_MAX: usize = 50;

/// A purse holder's statement from the operator's records (what the ledger posted for the purse,
/// newest first): date, words, amount with its currency, and the balance. For the agent's counter
/// or an SMS reply; the shadow balance is what the purse has reported.
async fn statement_endpoint(
    State(state): State<Arc<AppState>>,
    UrlPath(phone): UrlPath<String>,
) -> Result<Json<Value>, ApiError> {
    let phone = parse_phone(&state, &phone)?;
    let shadow = state.rails.purse.shadow(&state.ledger, phone).await?;
    let currency = shadow.limits.max_balance.currency();
    let account = purse_account_id(phone).map_err(RailError::from)?;
    let lookup = account.clone();
    let records = state
        .ledger
        .read(move |store| store.history(&lookup, None, STATEMENT_LINES_MAX))
        .await?;
    let lines: Vec<Value> = records
        .iter()
        .map(|record| {
            let transfer = &record.transfer;
            let out = transfer.debit_account == account;
            let minor = i64::try_from(transfer.amount.minor()).unwrap_or(i64::MAX);
            json!({
                "at_ms": record.committed_at.0,
                "direction": if out { "out" } else { "in" },
                "amount": decimal(if out { -minor } else { minor }, currency),
                "currency": currency.code(),
                "what": transfer.memo,
            })
        })
        .collect();
    Ok(Json(json!({
        "phone": phone.to_string(),
        "currency": currency.code(),
        "balance": decimal(shadow.balance_minor, currency),
        "blocked": shadow.blocked,
        "lines": lines,
    })))
}

#[derive(Debug, Deserialize)]
struct SettleRequest {
    amount: String,
}

/// Agent settlement, step 1: `POST /purse/purses/{agent}/settle {"amount": "5000"}` — the agent
/// purse gives the value up at its next sync.
async fn settle_endpoint(
    State(state): State<Arc<AppState>>,
    UrlPath(phone): UrlPath<String>,
    body: crate::api::ApiJson<SettleRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let phone = parse_phone(&state, &phone)?;
    let rail = &state.rails.purse;
    let amount = parse_amount(&body.0.amount, rail.currency, "amount")?;
    let id = rail
        .change(
            &state.ledger,
            phone,
            PurseChange::Settle { amount },
            state.now(),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "phone": phone.to_string(),
            "settlement_id": id,
            "amount": amount.decimal().to_string(),
            "currency": amount.currency().code(),
            "status": "queued: the agent's purse hands the value back at its next sync; pay the agent when its next sync has reported it",
        })),
    ))
}

#[derive(Debug, Deserialize)]
struct SettlementPaidRequest {
    amount: String,
    reference: String,
}

/// Agent settlement, step 2: `POST /purse/purses/{agent}/settlement-paid {"amount", "reference"}`
/// — the operator paid the agent for value it handed back.
async fn settlement_paid_endpoint(
    State(state): State<Arc<AppState>>,
    UrlPath(phone): UrlPath<String>,
    body: crate::api::ApiJson<SettlementPaidRequest>,
) -> Result<Json<Value>, ApiError> {
    let request = body.0;
    let phone = parse_phone(&state, &phone)?;
    let rail = &state.rails.purse;
    let amount = parse_amount(&request.amount, rail.currency, "amount")?;
    let transfer = rail
        .change(
            &state.ledger,
            phone,
            PurseChange::SettlementPaid {
                amount,
                reference: request.reference,
            },
            state.now(),
        )
        .await?;
    Ok(Json(json!({
        "phone": phone.to_string(),
        "amount": amount.decimal().to_string(),
        "currency": amount.currency().code(),
        "transfer": transfer,
        "status": "recorded: the operator paid the agent",
    })))
}

#[derive(Debug, Deserialize)]
struct MoveRequest {
    to: String,
}

/// A lost phone: `POST /purse/purses/{lost}/move {"to": "+254..."}`.
async fn move_endpoint(
    State(state): State<Arc<AppState>>,
    UrlPath(phone): UrlPath<String>,
    body: crate::api::ApiJson<MoveRequest>,
) -> Result<Json<Value>, ApiError> {
    let lost = parse_phone(&state, &phone)?;
    let new = parse_phone(&state, &body.0.to)?;
    let rail = &state.rails.purse;
    let moved = rail
        .move_balance(&state.ledger, lost, new, state.now())
        .await?;
    Ok(Json(json!({
        "lost": lost.to_string(),
        "to": new.to_string(),
        "blocked": true,
        "moved": decimal(moved.moved_minor, rail.currency),
        "held_back": decimal(moved.held_minor, rail.currency),
        "currency": rail.currency.code(),
        "status": if moved.held_minor > 0 {
            "moved what is safe; the rest is held back until the lost purse's keys are retired (two scheme-key rotations): move again then"
        } else {
            "moved; it reaches the new purse at its next sync"
        },
    })))
}

async fn unblock_pin_endpoint(
    State(state): State<Arc<AppState>>,
    UrlPath(phone): UrlPath<String>,
) -> Result<Json<Value>, ApiError> {
    let phone = parse_phone(&state, &phone)?;
    state
        .rails
        .purse
        .change(&state.ledger, phone, PurseChange::UnblockPin, state.now())
        .await?;
    Ok(Json(json!({
        "phone": phone.to_string(),
        "status": "the PIN is unblocked at the purse's next sync",
    })))
}

#[derive(Debug, Deserialize)]
struct LanguageRequest {
    /// `en`, `sw`, `fr` (or the language's name); `null`: the operator's default.
    language: Option<String>,
}

/// Sets the purse holder's language (at the holder's request, at an agent): the statements the
/// operator sends by SMS speak it.
async fn language_endpoint(
    State(state): State<Arc<AppState>>,
    UrlPath(phone): UrlPath<String>,
    body: crate::api::ApiJson<LanguageRequest>,
) -> Result<Json<Value>, ApiError> {
    let phone = parse_phone(&state, &phone)?;
    let language = match body.0.language.as_deref() {
        None => None,
        Some(text) => Some(text.parse::<offpay_text::Language>().map_err(|_| {
            ApiError::bad_request(
                "invalid_language",
                format!("language {text:?}: say en, sw or fr"),
            )
        })?),
    };
    state
        .rails
        .purse
        .change(
            &state.ledger,
            phone,
            PurseChange::Language(language.map(|language| language.code().to_owned())),
            state.now(),
        )
        .await?;
    let shown = language.unwrap_or(state.config.default_language);
    Ok(Json(json!({
        "phone": phone.to_string(),
        "language": language.map(|language| language.code()),
        "speaks": shown.code(),
    })))
}

/// Issues the purse's next one-time PIN reset code, for a holder the agent or operator has
/// identified. The code is in this answer only: it is never stored (the book keeps a count) and
/// never logged. The holder types it with a new PIN on the phone.
async fn pin_reset_endpoint(
    State(state): State<Arc<AppState>>,
    UrlPath(phone): UrlPath<String>,
) -> Result<Json<Value>, ApiError> {
    let phone = parse_phone(&state, &phone)?;
    let code = state
        .rails
        .purse
        .change(&state.ledger, phone, PurseChange::PinReset, state.now())
        .await?
        .ok_or_else(|| {
            ApiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "no reset code was issued",
            )
        })?;
    Ok(Json(json!({
        "phone": phone.to_string(),
        "reset_code": code,
        "status": "give this code to the identified holder only: they type it with a new PIN on the phone (offpay purse pin-reset); it works once",
    })))
}

/// The body of a rotation: `{"force": true}` rotates before the guard allows (a compromised
/// key); an empty body or `{}` asks for a normal rotation.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateRequest {
    #[serde(default)]
    force: bool,
}

async fn rotate_endpoint(
    State(state): State<Arc<AppState>>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let request: RotateRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RotateRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|error| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("a rotation takes {{}} or {{\"force\": true}}: {error}"),
            )
        })?
    };
    let (generation, newest) = state
        .rails
        .purse
        .rotate_scheme_key(&state.ledger, state.now(), request.force)
        .await?;
    Ok(Json(json!({
        "generation_epoch": generation,
        "scheme_epoch": newest,
    })))
}

/// The body of a repair: the purse-book records to re-seal, each with the digest of the stored
/// bytes checked, and `force` (the operator checked them and trusts those bytes).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResealRequest {
    records: Vec<ResealRecord>,
    force: bool,
}

/// One checked record: its key and the `stored_digest` of its fraud case.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResealRecord {
    key: String,
    stored_digest: String,
}

async fn reseal_endpoint(
    State(state): State<Arc<AppState>>,
    crate::api::ApiJson(request): crate::api::ApiJson<ResealRequest>,
) -> Result<Json<Value>, ApiError> {
    if !request.force {
        return Err(ApiError::bad_request(
            "force_required",
            "re-sealing trusts the named records as they are stored now; check each against the \
             fraud case first, then send {\"force\": true}",
        ));
    }
    let checked = request
        .records
        .iter()
        .map(|record| seal::CheckedRecord::new(&record.key, &record.stored_digest))
        .collect::<Result<Vec<_>, _>>()
        .map_err(reseal_refused)?;
    let tally = state
        .rails
        .purse
        .reseal(&state.ledger, checked, state.now())
        .await?;
    Ok(Json(json!(tally)))
}

/// Where the rail keeps its key files under `data_dir`.
pub fn key_directory(data_dir: &Path) -> PathBuf {
    data_dir.join(KEY_DIRECTORY)
}

// ---------------------------------------------------------------------------------------------
// The SMS gateway: sync parts and statement requests that come in like any SMS (Kannel's
// get-url, the webhook, the aggregators), answered through the SMS outbox.

/// What became of one purse text from an SMS gateway.
#[derive(Debug)]
pub struct PurseSmsAnswer {
    /// Texts to answer inline (gateways that reply in their response); otherwise queued.
    pub inline: Vec<String>,
    /// Texts queued in the SMS outbox.
    pub queued: usize,
    /// The sync's postings (0 unless this text completed an upload).
    pub postings: usize,
    /// Accepted (kept, synced or answered), refused, or unreadable.
    pub verdict: offpay_sms_tan::operator::records::Answered,
    /// For logs: what happened, in a word.
    pub outcome: &'static str,
}

impl PurseSmsAnswer {
    /// The gateway's answer: the inline texts, nothing stored for the SMS-TAN rail.
    pub fn into_inbound_answer(self) -> offpay_sms_tan::operator::inbound::InboundAnswer {
        use offpay_sms_tan::operator::apply::{Summary, Written};
        tracing::debug!(outcome = self.outcome, "purse text handled");
        offpay_sms_tan::operator::inbound::InboundAnswer {
            replies: self.inline,
            duplicate: false,
            summary: Summary {
                verdict: self.verdict,
                queued: self.queued,
                postings: self.postings,
                written: Written::default(),
                operator_currencies: Vec::new(),
            },
            redacted: None,
        }
    }
}

/// The queue writes that send `texts` to `to` through the SMS outbox.
fn outbox_writes(
    to: Phone,
    texts: &[String],
    discriminator: &str,
    now_ms: u64,
) -> Result<Vec<offpay_ledger::Operation>, RailError> {
    use offpay_operator::record::StoredRecord;
    use offpay_sms_tan::operator::records::{self, OutboundRecord};
    let to = offpay_sms_tan::PhoneNumber::parse(&to.to_string())
        .map_err(|_| BookError::Internal("a purse phone is not an SMS number"))?;
    texts
        .iter()
        .enumerate()
        .map(|(index, text)| {
            let key = records::outbound_key(now_ms, &format!("purse/{discriminator}/{index}"));
            let record = OutboundRecord {
                to: to.clone(),
                text: text.clone(),
                attempts: 0,
                next_attempt_ms: now_ms,
                queued_at_ms: now_ms,
                last_error: None,
                text_hash: String::new(),
            };
            let value = record.encode(&key).map_err(BookError::Record)?;
            Ok(offpay_ledger::Operation::PutRecord(
                offpay_ledger::RecordWrite {
                    namespace: records::NAMESPACE.to_owned(),
                    key,
                    value: Some(value),
                    expected_version: Some(0),
                },
            ))
        })
        .collect()
}

impl PurseRail {
    /// Keeps one part of `sender`'s packed upload (durably, in the purse book's records), and
    /// when it completes the message, syncs it and queues the answer's parts to `sender`
    /// (or returns them to answer inline). The part's own outcome when it does not complete one.
    pub async fn sms_part(
        &self,
        ledger: &Ledger,
        sender: Phone,
        part: &offpay_purse::sync::SmsPart,
        inline: bool,
        now: offpay_ledger::Timestamp,
    ) -> Result<
        (
            offpay_purse::sms_book::PartOutcome,
            Vec<String>,
            usize,
            usize,
        ),
        RailError,
    > {
        use offpay_purse::sms_book::{self, PartOutcome};
        let guards = self.locks.lock([sender.number()]).await;
        let prefix = sms_book::sender_prefix(sender);
        let outcome = runner::run(
            ledger,
            now,
            || {
                let prefix = prefix.clone();
                async move {
                    let records = ledger
                        .read(move |store| {
                            store.records(
                                NAMESPACE,
                                &prefix,
                                None,
                                offpay_purse::params::SMS_ASSEMBLIES_PER_SENDER_MAX * 4,
                            )
                        })
                        .await?;
                    Ok::<_, RailError>(
                        sms_book::decode_assemblies(&records).map_err(BookError::from)?,
                    )
                }
            },
            |existing| {
                let step = sms_book::decide_part(sender, part, &existing, now.0)
                    .map_err(BookError::from)?;
                let mut effects = offpay_operator::Effects::new();
                effects.write_all(step.writes);
                Ok::<_, RailError>(offpay_operator::Decision::commit(effects, step.outcome))
            },
        )
        .await?;
        // The sync takes the stripes of every phone it touches (the sender's among them); the
        // message's record, written conditionally, keeps two deliveries from both syncing it.
        drop(guards);
        let PartOutcome::Complete(upload) = &outcome else {
            return Ok((outcome, Vec::new(), 0, 0));
        };
        let key = sms_book::assembly_key(sender, part.message_id);
        match self
            .sms_sync(ledger, sender, &key, upload, inline, now)
            .await
        {
            Ok((texts, queued, postings)) => Ok((outcome, texts, queued, postings)),
            Err(error) => {
                let replayed = matches!(
                    error,
                    RailError::Book(BookError::Purse(PurseError::SyncReplayed { .. }))
                );
                let refused = matches!(error, RailError::Book(_));
                if refused {
                    // Drop the parts (or mark a replay synced) so that nothing retries them.
                    let plan = LoadPlan {
                        extra: vec![key.clone()],
                        ..LoadPlan::default()
                    };
                    runner::run(
                        ledger,
                        now,
                        || self.load(ledger, plan.clone()),
                        |loaded| {
                            Ok::<_, RailError>(sms_book::settle_refused(
                                &loaded, &key, now.0, replayed,
                            )?)
                        },
                    )
                    .await?;
                }
                Err(error)
            }
        }
    }

    /// Syncs a completed SMS upload: the HTTP sync's decision, on condition that the purse is
    /// the sender's, with the message marked synced and the answer's parts queued to the sender
    /// in the same commit. Returns (inline texts, texts queued, postings).
    async fn sms_sync(
        &self,
        ledger: &Ledger,
        sender: Phone,
        key: &str,
        upload: &[u8],
        inline: bool,
        now: offpay_ledger::Timestamp,
    ) -> Result<(Vec<String>, usize, usize), RailError> {
        // Authenticate before reading anything else, as the HTTP sync does.
        let opened = self.operator.secrets().open_upload(upload)?;
        let purse_id = opened.purse_id;
        let phone_plan = LoadPlan {
            purse: Some(purse_id),
            ..LoadPlan::default()
        };
        let phone = self
            .load(ledger, phone_plan)
            .await?
            .shadow_phone(purse_id)
            .map_err(BookError::from)?
            .ok_or(PurseError::UnknownPurse(purse_id))?;
        let (mut plan, locked) = PurseOperator::sync_plan(&opened, phone);
        plan.extra.push(key.to_owned());
        let _guards = self
            .locks
            .lock(locked.iter().map(|phone| phone.number()))
            .await;
        let answer_id = offpay_purse::sync::sms_message_id(opened.sequence);
        let reply = run_book(
            ledger,
            now,
            || self.load(ledger, plan.clone()),
            |loaded| {
                let decision = self
                    .operator
                    .decide_sms_sync(&loaded, upload, sender, key, now)?;
                let offpay_operator::Decision::Commit { mut effects, reply } = decision else {
                    return Ok(offpay_operator::Decision::Reload);
                };
                let Some(reply) = reply else {
                    return Ok(offpay_operator::Decision::commit(effects, None));
                };
                let texts = offpay_purse::sync::pack_sms(&reply.answer, answer_id)?;
                if !inline {
                    effects.write_all(outbox_writes(
                        sender,
                        &texts,
                        &format!("{purse_id}/{}", reply.sequence),
                        now.0,
                    )?);
                }
                Ok::<_, RailError>(offpay_operator::Decision::commit(
                    effects,
                    Some((reply, texts)),
                ))
            },
        )
        .await?;
        let Some((reply, texts)) = reply else {
            return Ok((Vec::new(), 0, 0));
        };
        tracing::info!(purse = %purse_id, sequence = reply.sequence, postings = reply.postings, matched = reply.matched, flags = reply.flags, parts = texts.len(), "purse synced by SMS");
        if inline {
            Ok((texts, 0, reply.postings))
        } else {
            Ok((Vec::new(), texts.len(), reply.postings))
        }
    }

    /// Answers a statement request: checks its code and counter, then queues the purse
    /// holder's statement (from the ledger's records) to the purse's own phone, never to the
    /// sender. Returns the texts queued, or why it was refused.
    pub async fn sms_statement(
        &self,
        ledger: &Ledger,
        request: &offpay_purse::sync::StatementRequest,
        now: offpay_ledger::Timestamp,
        default_language: offpay_text::Language,
    ) -> Result<Result<usize, &'static str>, RailError> {
        let plan = PurseOperator::statement_plan(request);
        let granted = run_book(
            ledger,
            now,
            || self.load(ledger, plan.clone()),
            |loaded| Ok::<_, RailError>(self.operator.decide_statement(&loaded, request, now)?),
        )
        .await?;
        let phone = match granted {
            Ok(phone) => phone,
            Err(refusal) => {
                tracing::warn!(purse = %request.purse_id, refusal, "purse statement request refused");
                return Ok(Err(refusal));
            }
        };
        let texts = self
            .statement_texts(ledger, phone, default_language)
            .await?;
        let writes = outbox_writes(
            phone,
            &texts,
            &format!("statement/{}/{}", request.purse_id, request.counter),
            now.0,
        )?;
        let count = texts.len();
        runner::run(
            ledger,
            now,
            || async { Ok::<_, RailError>(()) },
            |()| {
                let mut effects = offpay_operator::Effects::new();
                effects.write_all(writes.clone());
                Ok::<_, RailError>(offpay_operator::Decision::commit(effects, ()))
            },
        )
        .await?;
        Ok(Ok(count))
    }

    /// The statement's texts: the balance, then the newest postings (date, amount with its
    /// currency, and the words that name the counterparty), packed into SMS.
    async fn statement_texts(
        &self,
        ledger: &Ledger,
        phone: Phone,
        default_language: offpay_text::Language,
    ) -> Result<Vec<String>, RailError> {
        let shadow = self.shadow(ledger, phone).await?;
        let currency = shadow.limits.max_balance.currency();
        let language = shadow
            .language
            .as_deref()
            .and_then(|code| code.parse().ok())
            .unwrap_or(default_language);
        let account = purse_account_id(phone)?;
        let lookup = account.clone();
        let records = ledger
            .read(move |store| {
                store.history(&lookup, None, offpay_purse::params::STATEMENT_SMS_LINES_MAX)
            })
            .await?;
        let postings: Vec<StatementLine> = records
            .iter()
            .map(|record| {
                let transfer = &record.transfer;
                let out = transfer.debit_account == account;
                let other = if out {
                    &transfer.credit_account
                } else {
                    &transfer.debit_account
                };
                let minor = i64::try_from(transfer.amount.minor()).unwrap_or(i64::MAX);
                let date = crate::lists::rfc3339(record.committed_at.0);
                StatementLine {
                    date: date.get(..10).unwrap_or(&date).to_owned(),
                    minor: if out { -minor } else { minor },
                    counterparty: purse_statement::counterparty(other.as_str(), &transfer.memo),
                }
            })
            .collect();
        let texts =
            purse_statement::statement_texts(language, currency, shadow.balance_minor, &postings);
        Ok(texts)
    }
}

/// Routes an inbound SMS that belongs to the purse rail (a sync part `OP1 <id> <k>/<n> …` or a
/// statement request `OP1 ST …`); `None` for every other text, which the SMS-TAN grammar reads.
pub async fn sms_inbound(
    state: &Arc<AppState>,
    sender: &offpay_sms_tan::PhoneNumber,
    text: &str,
    inline: bool,
) -> Result<Option<PurseSmsAnswer>, ApiError> {
    use offpay_purse::sms_book::PartOutcome;
    use offpay_sms_tan::operator::records::Answered;
    let rail = &state.rails.purse;
    let statement = offpay_purse::sync::StatementRequest::parse(text);
    if statement.is_none() && !offpay_purse::sync::is_sms_part(text) {
        return Ok(None);
    }
    let refused = |outcome: &'static str| PurseSmsAnswer {
        inline: Vec::new(),
        queued: 0,
        postings: 0,
        verdict: Answered::Refused,
        outcome,
    };
    if let Some(request) = statement {
        let Ok(request) = request else {
            return Ok(Some(PurseSmsAnswer {
                verdict: Answered::Malformed,
                ..refused("malformed")
            }));
        };
        let answer = match rail
            .sms_statement(
                &state.ledger,
                &request,
                state.now(),
                state.config.default_language,
            )
            .await
        {
            Ok(Ok(queued)) => PurseSmsAnswer {
                inline: Vec::new(),
                queued,
                postings: 0,
                verdict: Answered::Accepted,
                outcome: "statement",
            },
            Ok(Err(refusal)) => refused(refusal),
            Err(RailError::Book(error)) => {
                tracing::warn!(%error, "purse statement request refused");
                refused("statement_refused")
            }
            Err(error) => return Err(error.into()),
        };
        if answer.queued > 0 {
            state.rails.sms.wake_outbound();
        }
        return Ok(Some(answer));
    }
    let Ok(part) = offpay_purse::sync::parse_sms_part(text) else {
        return Ok(Some(PurseSmsAnswer {
            verdict: Answered::Malformed,
            ..refused("malformed")
        }));
    };
    let Ok(sender) = Phone::parse(sender.as_str()) else {
        return Ok(Some(refused("sender_not_a_purse_phone")));
    };
    let answer = match rail
        .sms_part(&state.ledger, sender, &part, inline, state.now())
        .await
    {
        Ok((outcome, texts, queued, postings)) => {
            let word = match outcome {
                PartOutcome::Stored { .. } => "part_kept",
                PartOutcome::Duplicate => "duplicate",
                PartOutcome::Conflicting => "conflicting",
                PartOutcome::AlreadySynced => "already_synced",
                PartOutcome::Complete(_) => "synced",
                _ => "unreadable",
            };
            let verdict = match outcome {
                PartOutcome::Conflicting | PartOutcome::AlreadySynced => Answered::Refused,
                PartOutcome::Stored { .. } | PartOutcome::Duplicate | PartOutcome::Complete(_) => {
                    Answered::Accepted
                }
                _ => Answered::Malformed,
            };
            PurseSmsAnswer {
                inline: texts,
                queued,
                postings,
                verdict,
                outcome: word,
            }
        }
        Err(RailError::Book(error)) => {
            tracing::warn!(%error, sender = %sender, "purse sync by SMS refused");
            refused("sync_refused")
        }
        Err(error) => return Err(error.into()),
    };
    // A sync is counted once, when its message completes (synced or refused), not per part.
    match answer.outcome {
        "synced" => state.metrics.sync("purse", StatusCode::OK),
        "sync_refused" => state
            .metrics
            .sync("purse", StatusCode::UNPROCESSABLE_ENTITY),
        _ => {}
    }
    if answer.queued > 0 {
        state.rails.sms.wake_outbound();
    }
    Ok(Some(answer))
}
