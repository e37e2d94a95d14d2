//! The account holder's web login: account number and the password set by SMS (`PASSWORD`), then
//! an unused envelope row and its TAN as the second factor (the password travelled by SMS, so a
//! gateway insider may know it; the row is used up like in an SMS). Wrong passwords are counted
//! and block web login at [`WEB_FAILURES_MAX`] until a new `PASSWORD` SMS; wrong rows count
//! toward the envelope's lockout like in an SMS. A session is a random token the server keeps
//! only the hash of, for [`SESSION_SECONDS`].

use offpay_ledger::{Currency, Record, Timestamp};
use offpay_operator::{Decision, Effects, Entropy, EntropyError, Loaded, RecordError};
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

use crate::engine::{PayerContext, Verdict};
use crate::error::Refusal;
use crate::numbers::{AccountNumber, Tan};
use crate::operator::apply::{ApplyInput, Written, apply, create};
use crate::operator::load::{PayerLookup, Reader, RecordSet, load_payer};
use crate::operator::records::{self, SessionRecord, decode_record, sha256_hex, short_hash};
use crate::operator::{Operator, OperatorError, seconds};

/// How long a web session lasts.
pub const SESSION_SECONDS: u64 = 15 * 60;
/// Wrong web passwords in a row before web login is blocked (until a new `PASSWORD` SMS).
pub const WEB_FAILURES_MAX: u8 = 5;
/// Longest login form field read.
pub const FIELD_BYTES_MAX: usize = 64;
/// Random bytes in a session token or form token.
pub const TOKEN_BYTES: usize = 32;
/// Argon2 salt length.
const SALT_BYTES: usize = 16;
/// Argon2 output length.
const HASH_BYTES: usize = 32;
/// Milliseconds per second.
const MS_PER_SECOND: u64 = 1000;

/// Argon2id (default parameters: 19 MiB, 2 passes) with a random salt, as
/// `argon2id$<salt hex>$<hash hex>`.
pub fn hash_password(entropy: &dyn Entropy, password: &str) -> Result<String, OperatorError> {
    let mut salt = [0u8; SALT_BYTES];
    entropy.fill(&mut salt)?;
    let mut out = [0u8; HASH_BYTES];
    argon2::Argon2::default()
        .hash_password_into(password.as_bytes(), &salt, &mut out)
        .map_err(|error| OperatorError::Internal(format!("argon2: {error}")))?;
    Ok(format!(
        "argon2id${}${}",
        hex::encode(salt),
        hex::encode(out)
    ))
}

/// Checks a password against [`hash_password`]'s output, in constant time.
pub fn verify_password(password: &str, stored: &str) -> bool {
    let mut parts = stored.split('$');
    let (Some("argon2id"), Some(salt), Some(hash), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (hex::decode(salt), hex::decode(hash)) else {
        return false;
    };
    let mut out = [0u8; HASH_BYTES];
    if argon2::Argon2::default()
        .hash_password_into(password.as_bytes(), &salt, &mut out)
        .is_err()
    {
        return false;
    }
    out.ct_eq(hash.as_slice()).into()
}

/// A fresh random token ([`TOKEN_BYTES`] bytes, hex): sessions and form tokens.
pub fn random_token(entropy: &dyn Entropy) -> Result<String, EntropyError> {
    let mut random = [0u8; TOKEN_BYTES];
    entropy.fill(&mut random)?;
    let token = hex::encode(random);
    random.zeroize();
    Ok(token)
}

/// True when `presented` is a token of the right length equal to `expected` (constant time).
pub fn token_matches(expected: &str, presented: &str) -> bool {
    expected.len() == TOKEN_BYTES * 2 && bool::from(expected.as_bytes().ct_eq(presented.as_bytes()))
}

/// The key of the session whose cookie is `token`, if it has the shape of one.
pub fn session_key_of(token: &str) -> Option<String> {
    (token.len() == TOKEN_BYTES * 2).then(|| records::session_key(&sha256_hex(token)))
}

/// True while `session` lasts.
pub fn session_current(session: &SessionRecord, now: Timestamp) -> bool {
    session.expires_at_ms > now.0
}

/// The deletes of the sessions in `page` that have expired. A session record that does not
/// decode can never be used, so it is deleted too; its error is returned for the log.
pub fn expired_sessions(
    page: &[Record],
    now: Timestamp,
) -> (Vec<Loaded<SessionRecord>>, Vec<RecordError>) {
    let mut expired = Vec::new();
    let mut errors = Vec::new();
    for record in page {
        let keep = match decode_record::<SessionRecord>(record) {
            Ok(session) => session_current(&session, now),
            Err(error) => {
                errors.push(error);
                false
            }
        };
        if !keep {
            expired.push(Loaded {
                key: record.key.clone(),
                version: record.version,
                value: None,
            });
        }
    }
    (expired, errors)
}

/// A login form, read. The password is zeroized on drop and never shown by `Debug`.
pub struct LoginAttempt {
    account: AccountNumber,
    password: String,
    row: u8,
    tan: Tan,
}

impl std::fmt::Debug for LoginAttempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LoginAttempt({}, ***)", self.account)
    }
}

impl Drop for LoginAttempt {
    fn drop(&mut self) {
        self.password.zeroize();
    }
}

impl LoginAttempt {
    /// The form's fields, or `None` when one is too long or does not read (the holder is told
    /// only that the login failed).
    pub fn parse(account: &str, password: &str, row: &str, tan: &str) -> Option<LoginAttempt> {
        if [account, password, row, tan]
            .iter()
            .any(|field| field.len() > FIELD_BYTES_MAX)
        {
            return None;
        }
        Some(LoginAttempt {
            account: AccountNumber::parse(account.trim()).ok()?,
            password: password.to_owned(),
            row: row.trim().parse().ok()?,
            tan: Tan::parse(tan.trim()).ok()?,
        })
    }

    /// The account logging in.
    pub fn account(&self) -> AccountNumber {
        self.account
    }
}

/// What a login reads: the account and its current envelope, and whether the password matched.
pub struct LoginLoad {
    payer: Option<PayerContext>,
    records: RecordSet,
    password_ok: bool,
}

impl std::fmt::Debug for LoginLoad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginLoad")
            .field("found", &self.payer.is_some())
            .finish()
    }
}

impl LoginLoad {
    /// Reads the account of `attempt` and its current envelope (from the store, not a cache).
    pub fn read(
        store: &mut dyn offpay_ledger::LedgerStore,
        attempt: &LoginAttempt,
        operator: &Operator,
        now: Timestamp,
    ) -> Result<LoginLoad, RecordError> {
        let mut records = RecordSet::default();
        let mut reader = Reader::new(store, None, &mut records);
        let payer = load_payer(
            &mut reader,
            &PayerLookup::Account(attempt.account),
            operator,
            seconds(now),
        )?;
        Ok(LoginLoad {
            payer,
            records,
            password_ok: false,
        })
    }

    /// Checks the password (Argon2id: slow on purpose, run it off the request threads). Hashes
    /// even when the account or its password does not exist, so timing does not tell them apart.
    pub fn check_password(
        &mut self,
        attempt: &LoginAttempt,
        entropy: &dyn Entropy,
    ) -> Result<(), OperatorError> {
        let stored = self
            .records
            .account(&attempt.account)
            .and_then(|loaded| loaded.value.as_ref())
            .and_then(|record| record.web_password.clone());
        self.password_ok = match stored {
            Some(stored) => verify_password(&attempt.password, &stored),
            None => {
                hash_password(entropy, &attempt.password)?;
                false
            }
        };
        Ok(())
    }
}

/// How a login ended.
#[derive(Clone, PartialEq, Eq)]
pub enum LoginResult {
    /// Wrong account, password, row or TAN (the holder is not told which).
    Failed,
    /// Too many wrong passwords: set a new one by SMS.
    Blocked,
    /// The envelope is locked after too many wrong codes.
    EnvelopeLocked,
    /// The row was used before.
    RowUsed,
    /// Logged in: the session cookie's token (secret).
    LoggedIn {
        /// The token to set as the session cookie.
        token: String,
    },
}

impl std::fmt::Debug for LoginResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoginResult::Failed => f.write_str("Failed"),
            LoginResult::Blocked => f.write_str("Blocked"),
            LoginResult::EnvelopeLocked => f.write_str("EnvelopeLocked"),
            LoginResult::RowUsed => f.write_str("RowUsed"),
            LoginResult::LoggedIn { .. } => f.write_str("LoggedIn(***)"),
        }
    }
}

/// A login's answer.
#[derive(Debug)]
pub struct LoginAnswer {
    /// How it ended.
    pub result: LoginResult,
    /// Envelopes and accounts written (for a read cache).
    pub written: Written,
}

/// Decides a login: the password's failure count and block, the row and TAN checked exactly as in
/// an SMS (row used on success, failure counted otherwise), and on success a new session.
pub fn decide_login(
    load: LoginLoad,
    attempt: &LoginAttempt,
    now: Timestamp,
    operator: &Operator,
    entropy: &dyn Entropy,
    operator_ready: &[Currency],
) -> Result<Decision<LoginAnswer>, OperatorError> {
    let answer = |result| LoginAnswer {
        result,
        written: Written::default(),
    };
    let LoginLoad {
        payer,
        mut records,
        password_ok,
    } = load;
    let loaded = records.account(&attempt.account).cloned();
    let (Some(loaded), Some(payer)) = (loaded, payer) else {
        return Ok(Decision::commit(
            Effects::new(),
            answer(LoginResult::Failed),
        ));
    };
    let Some(mut record) = loaded.value.clone() else {
        return Ok(Decision::commit(
            Effects::new(),
            answer(LoginResult::Failed),
        ));
    };
    if record.web_failures >= WEB_FAILURES_MAX {
        return Ok(Decision::commit(
            Effects::new(),
            answer(LoginResult::Blocked),
        ));
    }
    if !password_ok {
        record.web_failures = record.web_failures.saturating_add(1);
        let mut effects = Effects::new();
        effects.write(loaded.write(&record)?);
        let written = Written {
            envelopes: Vec::new(),
            accounts: vec![Loaded {
                key: loaded.key.clone(),
                version: loaded.version + 1,
                value: Some(record),
            }],
        };
        return Ok(Decision::commit(
            effects,
            LoginAnswer {
                result: LoginResult::Failed,
                written,
            },
        ));
    }
    let outcome = operator
        .engine()
        .check_row_tan(payer, attempt.row, &attempt.tan, seconds(now));
    let token = random_token(entropy)?;
    let mut extra = Vec::new();
    let accepted = outcome.is_accepted();
    if accepted {
        record.web_failures = 0;
        // The account is written once, by `apply` (which also keeps the rows the login used in
        // it), with the failure count reset: it starts from this record.
        records.accounts.insert(
            loaded.key.clone(),
            Loaded {
                key: loaded.key.clone(),
                version: loaded.version,
                value: Some(record.clone()),
            },
        );
        extra.push(create(
            records::session_key(&sha256_hex(&token)),
            &SessionRecord {
                account: attempt.account,
                csrf: random_token(entropy)?,
                expires_at_ms: now.0.saturating_add(SESSION_SECONDS * MS_PER_SECOND),
            },
        )?);
    }
    let applied = apply(ApplyInput {
        outcome: &outcome,
        records: &records,
        inline_to: None,
        dedupe_key: None,
        message_id: &format!("web-login:{}", short_hash(&token)),
        extra,
        password_hashes: &[],
        statements: &[],
        now,
        operator,
        operator_ready,
    })?;
    let Some(mut applied) = applied else {
        return Ok(Decision::Reload);
    };
    let written_by_apply = applied
        .summary
        .written
        .accounts
        .iter()
        .any(|written| written.key == loaded.key);
    if accepted && !written_by_apply {
        applied.effects.write(loaded.write(&record)?);
        applied.summary.written.accounts.push(Loaded {
            key: loaded.key.clone(),
            version: loaded.version + 1,
            value: Some(record),
        });
    }
    let result = match &outcome.verdict {
        Verdict::Accepted => LoginResult::LoggedIn { token },
        Verdict::Refused(Refusal::EnvelopeLocked) => LoginResult::EnvelopeLocked,
        Verdict::Refused(Refusal::RowUsed { .. }) => LoginResult::RowUsed,
        _ => LoginResult::Failed,
    };
    Ok(Decision::commit(
        applied.effects,
        LoginAnswer {
            result,
            written: applied.summary.written,
        },
    ))
}

#[cfg(test)]
mod tests {
    use offpay_operator::SeededEntropy;

    use super::*;
    use crate::operator::records::Answered;
    use crate::operator::testing::*;

    #[test]
    fn passwords_verify_only_themselves() {
        let entropy = SeededEntropy::from_seed(1);
        let stored = hash_password(&entropy, "MyPass2026").unwrap();
        assert!(stored.starts_with("argon2id$"));
        assert!(!stored.contains("MyPass2026"));
        assert!(verify_password("MyPass2026", &stored));
        assert!(!verify_password("MyPass2027", &stored));
        assert!(!verify_password("MyPass2026", "argon2id$00$00"));
        assert_ne!(
            stored,
            hash_password(&entropy, "MyPass2026").unwrap(),
            "salted"
        );
    }

    fn login(world: &mut World, password: &str, row: u8, tan: &str) -> LoginResult {
        let attempt = LoginAttempt::parse(PAYER, password, &row.to_string(), tan).unwrap();
        let (operator, entropy, now) = (world.operator.clone(), &world.entropy, world.now);
        run(
            &mut world.store,
            now,
            |store| {
                let mut load = LoginLoad::read(store, &attempt, &operator, now).unwrap();
                load.check_password(&attempt, entropy).unwrap();
                load
            },
            |load| decide_login(load, &attempt, now, &operator, entropy, &[]),
        )
        .unwrap()
        .result
    }

    #[test]
    fn wrong_passwords_block_web_login_and_a_row_logs_in_once() {
        let mut world = World::new();
        let set = signed(
            &world,
            &format!("PASSWORD {PAYER_EUIN} 1 000000 Secret2026x"),
        );
        assert_eq!(
            world.sms(PAYER_PHONE, &set).summary.verdict,
            Answered::Accepted
        );
        let row_tan = tan(&world, 2);
        for _ in 0..WEB_FAILURES_MAX {
            assert_eq!(
                login(&mut world, "Wrong2026x", 2, &row_tan),
                LoginResult::Failed
            );
        }
        assert_eq!(world.account(PAYER).web_failures, WEB_FAILURES_MAX);
        assert_eq!(
            login(&mut world, "Secret2026x", 2, &row_tan),
            LoginResult::Blocked
        );
        // A new password by SMS lifts the block.
        let set = signed(
            &world,
            &format!("PASSWORD {PAYER_EUIN} 3 000000 Secret2027x"),
        );
        world.sms(PAYER_PHONE, &set);
        let LoginResult::LoggedIn { token } = login(&mut world, "Secret2027x", 2, &row_tan) else {
            panic!("the right password and an unused row log in")
        };
        let key = session_key_of(&token).unwrap();
        let session = Loaded::<SessionRecord>::read(&mut world.store, &key)
            .unwrap()
            .value
            .unwrap();
        assert_eq!(session.account, number(PAYER));
        assert!(session_current(&session, world.now));
        assert!(!session_current(
            &session,
            Timestamp(world.now.0 + SESSION_SECONDS * 1000)
        ));
        assert_eq!(
            login(&mut world, "Secret2027x", 2, &row_tan),
            LoginResult::RowUsed
        );
        assert!(LoginAttempt::parse(PAYER, &"x".repeat(FIELD_BYTES_MAX + 1), "4", "123").is_none());
        assert!(LoginAttempt::parse("12", "Secret2027x", "4", "123").is_none());
    }

    #[test]
    fn tokens_match_only_themselves_at_full_length() {
        let entropy = SeededEntropy::from_seed(2);
        let token = random_token(&entropy).unwrap();
        assert_eq!(token.len(), TOKEN_BYTES * 2);
        assert!(token_matches(&token, &token));
        assert!(!token_matches(&token, &token[1..]));
        assert!(!token_matches("abc", "abc"));
        assert!(session_key_of("short").is_none());
    }
}
