//! Shared test harness: an operator with its book and a toy double-entry ledger, purses, and
//! helpers that run a payment or a sync end to end in memory.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use offpay_purse::crypto::MasterKey;
use offpay_purse::*;

pub const PIN: &str = "1234";
pub const START: Timestamp = Timestamp(1_800_000_000);

pub fn phone(text: &str) -> Phone {
    Phone::parse(text).unwrap()
}

pub fn kes(text: &str) -> Amount {
    Amount::parse(text, Currency::KES).unwrap()
}

pub fn pin() -> Pin {
    Pin::parse(PIN).unwrap()
}

/// A toy ledger: applies postings idempotently by transfer id and checks that a different body
/// under the same id is never posted.
#[derive(Default, Debug)]
pub struct TestLedger {
    pub balances: BTreeMap<LedgerAccount, i64>,
    pub transfers: BTreeMap<String, Posting>,
}

impl TestLedger {
    pub fn apply(&mut self, postings: &[Posting]) {
        for posting in postings {
            if let Some(existing) = self.transfers.get(&posting.transfer_id) {
                assert_eq!(existing, posting, "same transfer id, different body");
                continue;
            }
            let amount = posting.amount.minor_signed();
            *self.balances.entry(posting.from).or_default() -= amount;
            *self.balances.entry(posting.to).or_default() += amount;
            self.transfers
                .insert(posting.transfer_id.clone(), posting.clone());
        }
        assert_eq!(
            self.balances.values().sum::<i64>(),
            0,
            "ledger must sum to zero"
        );
    }

    pub fn balance(&self, account: LedgerAccount) -> i64 {
        self.balances.get(&account).copied().unwrap_or(0)
    }
}

pub struct World {
    pub secrets: OperatorSecrets,
    pub book: OperatorBook,
    pub ledger: TestLedger,
    pub now: Timestamp,
    pub random: SeededRandom,
    pub flags: Vec<Flag>,
}

impl World {
    pub fn new(seed: u64) -> World {
        let operator = OperatorId::new("test-op").unwrap();
        World {
            secrets: OperatorSecrets::new(operator, MasterKey::from_bytes([7u8; 32])),
            book: OperatorBook::new(operator, Currency::KES),
            ledger: TestLedger::default(),
            now: START,
            random: SeededRandom::new(seed),
            flags: Vec::new(),
        }
    }

    pub fn provision(&mut self, number: &str, kind: PurseKind) -> Purse {
        let provisioning = self
            .book
            .provision(&self.secrets, phone(number), kind, self.now)
            .unwrap();
        Purse::provision(&provisioning, pin())
    }

    /// The operator's provisioning record of a purse of `class` (to seal into a file or
    /// personalise into the applet).
    pub fn provisioning_as(
        &mut self,
        number: &str,
        kind: PurseKind,
        class: TrustClass,
    ) -> Provisioning {
        self.book
            .provision_as(&self.secrets, phone(number), kind, class, self.now)
            .unwrap()
    }

    pub fn float(&mut self, purse: &Purse, amount: &str) {
        let posting = self
            .book
            .queue_operator_credit(purse.identity().purse_id, kes(amount), "float")
            .unwrap();
        self.ledger.apply(&[posting]);
    }

    /// Upload, reconcile, post, answer, apply. Returns the report.
    pub fn sync(&mut self, purse: &mut Purse) -> SyncReport {
        let Outcome::SyncUpload { upload, .. } = purse.start_sync(self.now) else {
            panic!("start_sync must produce an upload");
        };
        let outcome = self
            .book
            .handle_upload(&self.secrets, &upload, self.now)
            .unwrap();
        self.ledger.apply(&outcome.postings);
        self.flags.extend(outcome.flags);
        match purse.apply_answer(&outcome.answer).unwrap() {
            Outcome::SyncApplied(report) => report,
            other => panic!("unexpected {other:?}"),
        }
    }

    pub fn shadow_minor(&self, purse: &Purse) -> i64 {
        self.book
            .shadow(purse.identity().purse_id)
            .unwrap()
            .balance_minor
    }

    pub fn ledger_minor(&self, purse: &Purse) -> i64 {
        self.ledger
            .balance(LedgerAccount::Purse(purse.identity().purse_id))
    }

    pub fn tick(&mut self, seconds: u64) {
        self.now = self.now.plus_seconds(seconds);
    }
}

/// The payee asks `payer` for `amount`: its Code 1.
pub fn request(world: &mut World, payee: &mut Purse, payer: &Purse, amount: Amount) -> Code {
    let request = Command::Request {
        payer: payer.identity().phone,
        amount,
    };
    let Outcome::Requested { code1, .. } =
        payee.handle(request, world.now, &mut world.random).unwrap()
    else {
        panic!("request");
    };
    code1
}

/// The payer pays `amount` against `code1` with the right PIN: its Code 2.
pub fn respond(
    world: &mut World,
    payer: &mut Purse,
    payee: &Purse,
    amount: Amount,
    code1: Code,
) -> Code {
    let pay = Command::Pay {
        payee: payee.identity().phone,
        amount,
        code1,
        pin: pin(),
    };
    let Outcome::Paid { code2, .. } = payer.handle(pay, world.now, &mut world.random).unwrap()
    else {
        panic!("pay");
    };
    code2
}

/// Payee asks, payer pays, payee accepts. Returns (Code 1, Code 2).
pub fn pay(world: &mut World, payer: &mut Purse, payee: &mut Purse, amount: &str) -> (Code, Code) {
    let amount = kes(amount);
    let code1 = request(world, payee, payer, amount);
    let code2 = respond(world, payer, payee, amount, code1);
    let Outcome::Received { entry } = payee
        .handle(
            Command::Accept {
                code2,
                request: Some(nonce_of(&code1)),
            },
            world.now,
            &mut world.random,
        )
        .map_err(|error| (error, code1))
        .unwrap()
    else {
        panic!("accept");
    };
    assert_eq!(entry.amount, amount);
    (code1, code2)
}

/// N_B of a Code 1: its first four digits.
pub fn nonce_of(code1: &Code) -> u16 {
    (code1.as_number() / 10_000) as u16
}
