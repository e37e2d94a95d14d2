//! Rail 1, the short-code purse: a small operator with three purses, and the seeds of the purse
//! targets (codes and SMS packing, sync messages and the other binary formats, APDU sessions).

use std::sync::OnceLock;

use offpay_purse::apdu::{CLA_PURSE, CommandApdu, ins};
use offpay_purse::crypto::{MasterKey, SecretKey, cmac};
use offpay_purse::sync::{AnswerCredit, AnswerTicket, SyncAnswer, pack_sms};
use offpay_purse::{
    Amount, Code, Command, Currency, OfflineLimits, OperatorBook, OperatorId, OperatorSecrets,
    Outcome, PeerTicket, Phone, Pin, Purse, PurseKind, SeededRandom, TicketCode, Timestamp,
};

use crate::{Seed, selected};

/// The fixture's clock at the start of every run.
pub const START: Timestamp = Timestamp(1_800_000_000);
/// The PIN of every fixture purse.
pub const PIN: &str = "1234";
/// The key the sync target MACs its inputs with (any key: the target checks the decoder behind
/// the MAC, not the MAC).
pub const SYNC_TEST_KEY: [u8; 16] = [0x5A; 16];

/// A well-formed ticket code (its tag does not verify for anyone).
pub const TICKET_EXAMPLE: &str = "1234 5678 9012 3456 7890 1234 5678 9012 3456 7890 0010 1234";

/// The sync target's formats, chosen by its first byte.
pub mod sync_format {
    /// An upload body (the target appends its MAC).
    pub const UPLOAD: u8 = 0;
    /// An answer body (the target appends its MAC).
    pub const ANSWER: u8 = 1;
    /// A provisioning record.
    pub const PROVISIONING: u8 = 2;
    /// A purse's state (the plaintext of the sealed purse file).
    pub const STATE: u8 = 3;
    /// A command APDU, a response APDU or an error record.
    pub const APDU: u8 = 4;
    /// How many formats there are.
    pub const COUNT: u8 = 5;
}

/// The codes target's formats, chosen by its first byte.
pub mod codes_format {
    /// A Code 1 or Code 2 as typed.
    pub const CODE: u8 = 0;
    /// A 48-digit ticket code as typed.
    pub const TICKET: u8 = 1;
    /// A phone number as typed.
    pub const PHONE: u8 = 2;
    /// SMS parts of a packed message, one per line.
    pub const SMS_PARTS: u8 = 3;
    /// Bytes to pack into SMS and read back.
    pub const SMS_MESSAGE: u8 = 4;
    /// One SMS as a gateway hands it over, read as a purse sync part.
    pub const SMS_PART: u8 = 5;
    /// One SMS read as a purse holder's statement request.
    pub const STATEMENT: u8 = 6;
    /// How many formats there are.
    pub const COUNT: u8 = 7;
}

/// The APDU session's steps, chosen by a step's first byte.
pub mod apdu_step {
    /// `RAW len bytes`: a command APDU as the phone sent it.
    pub const RAW: u8 = 0;
    /// `TICK minutes`: the handset's clock moves on.
    pub const TICK: u8 = 1;
    /// `TEMPLATE k`: one of the fixture's real commands ([`super::PurseWorld::templates`]).
    pub const TEMPLATE: u8 = 2;
    /// `MUTATED k position xor`: a real command with one byte changed.
    pub const MUTATED: u8 = 3;
    /// How many step kinds there are.
    pub const COUNT: u8 = 4;
}

/// A small operator: the agent floated Alice; Bob asked Alice for 450 (Code 1 in
/// [`PurseWorld::bob_code1`]); Alice asked Carol for 120 and Carol paid (Code 2 in
/// [`PurseWorld::carol_code2`]), which Alice has not entered yet.
pub struct PurseWorld {
    /// Alice's purse: the one the APDU target drives.
    pub alice: Purse,
    /// Bob's phone.
    pub bob: Phone,
    /// Carol's phone.
    pub carol: Phone,
    /// Bob's request to Alice.
    pub bob_code1: Code,
    /// What Bob asked for.
    pub bob_amount: Amount,
    /// Carol's Code 2 for Alice's request.
    pub carol_code2: Code,
    /// N_B of Alice's request to Carol.
    pub carol_nonce_b: u16,
    /// What Alice asked Carol for.
    pub carol_amount: Amount,
    /// The answer Alice applied at her last sync (a replay of it must be refused).
    pub alice_last_answer: Vec<u8>,
    /// Alice's real upload and an answer with every kind of item, sealed under
    /// [`SYNC_TEST_KEY`] (bodies only: the sync target appends the MAC).
    pub upload_body: Vec<u8>,
    /// See [`PurseWorld::upload_body`].
    pub answer_body: Vec<u8>,
    /// A provisioning record.
    pub provisioning: Vec<u8>,
}

fn phone(text: &str) -> Phone {
    Phone::parse(text).expect("fixture phone")
}

fn kes(text: &str) -> Amount {
    Amount::parse(text, Currency::KES).expect("fixture amount")
}

fn pin() -> Pin {
    Pin::parse(PIN).expect("fixture PIN")
}

struct Operator {
    secrets: OperatorSecrets,
    book: OperatorBook,
    random: SeededRandom,
    now: Timestamp,
}

impl Operator {
    fn provision(&mut self, number: &str, kind: PurseKind) -> (Purse, Vec<u8>) {
        let provisioning = self
            .book
            .provision(&self.secrets, phone(number), kind, self.now)
            .expect("provision");
        (
            Purse::provision(&provisioning, pin()),
            provisioning.encode(),
        )
    }

    /// Upload, reconcile, answer, apply; returns the upload and the answer.
    fn sync(&mut self, purse: &mut Purse) -> (Vec<u8>, Vec<u8>) {
        let Outcome::SyncUpload { upload, .. } = purse.start_sync(self.now) else {
            panic!("start_sync gives an upload");
        };
        let outcome = self
            .book
            .handle_upload(&self.secrets, &upload, self.now)
            .expect("upload accepted");
        purse.apply_answer(&outcome.answer).expect("answer applies");
        (upload, outcome.answer)
    }

    fn run(&mut self, purse: &mut Purse, command: Command) -> Outcome {
        purse
            .handle(command, self.now, &mut self.random)
            .expect("fixture command")
    }
}

fn build() -> PurseWorld {
    let operator_id = OperatorId::new("fuzz-op").expect("operator id");
    let mut op = Operator {
        secrets: OperatorSecrets::new(operator_id, MasterKey::from_bytes([7u8; 32])),
        book: OperatorBook::new(operator_id, Currency::KES),
        random: SeededRandom::new(21),
        now: START,
    };
    let (mut agent, _) = op.provision("+254700000009", PurseKind::Agent);
    let (mut alice, provisioning) = op.provision("+254700000001", PurseKind::Customer);
    let (mut bob, _) = op.provision("+254700000002", PurseKind::Customer);
    let (mut carol, _) = op.provision("+254700000003", PurseKind::Customer);
    op.book
        .queue_operator_credit(agent.identity().purse_id, kes("10000"), "float")
        .expect("float");
    op.sync(&mut agent);
    // The agent pays Alice and Carol 1,000 each.
    for payee in [&mut alice, &mut carol] {
        let amount = kes("1000");
        let payer_phone = agent.identity().phone;
        let Outcome::Requested { code1, request } = op.run(
            payee,
            Command::Request {
                payer: payer_phone,
                amount,
            },
        ) else {
            panic!("request");
        };
        let payee_phone = payee.identity().phone;
        let Outcome::Paid { code2, .. } = op.run(
            &mut agent,
            Command::Pay {
                payee: payee_phone,
                amount,
                code1,
                pin: pin(),
            },
        ) else {
            panic!("pay");
        };
        op.run(
            payee,
            Command::Accept {
                code2,
                request: Some(request.nonce_b),
            },
        );
    }
    let (upload, answer) = op.sync(&mut alice);
    op.sync(&mut carol);
    op.sync(&mut bob);
    // Bob asks Alice for 450.
    let bob_amount = kes("450");
    let Outcome::Requested {
        code1: bob_code1, ..
    } = op.run(
        &mut bob,
        Command::Request {
            payer: alice.identity().phone,
            amount: bob_amount,
        },
    )
    else {
        panic!("request");
    };
    // Alice asks Carol for 120; Carol pays.
    let carol_amount = kes("120");
    let Outcome::Requested {
        code1: carol_code1,
        request,
    } = op.run(
        &mut alice,
        Command::Request {
            payer: carol.identity().phone,
            amount: carol_amount,
        },
    )
    else {
        panic!("request");
    };
    let Outcome::Paid {
        code2: carol_code2, ..
    } = op.run(
        &mut carol,
        Command::Pay {
            payee: alice.identity().phone,
            amount: carol_amount,
            code1: carol_code1,
            pin: pin(),
        },
    )
    else {
        panic!("pay");
    };
    // The same upload, and an answer with one item of every kind, sealed under the test key
    // (what the sync target MACs with).
    let key = SecretKey::from_bytes(SYNC_TEST_KEY);
    let opened = op
        .secrets
        .open_upload(&upload)
        .expect("the fixture's upload");
    let upload_body = body_of(opened.seal(&key));
    let answer_body = body_of(
        SyncAnswer {
            operator: operator_id,
            purse_id: alice.identity().purse_id,
            sequence: opened.sequence,
            server_time: op.now,
            acknowledged_through: opened.counter,
            limits: OfflineLimits::defaults(PurseKind::Customer, Currency::KES, op.now),
            blocked: false,
            pin_unblock: true,
            scheme_keys: vec![(1, [3u8; 16]), (2, [4u8; 16])],
            generation_epoch: 2,
            credits: vec![
                AnswerCredit::Operator {
                    credit_id: 7,
                    amount: kes("50"),
                    memo: "top-up".into(),
                },
                AnswerCredit::Payment {
                    payer: bob.identity().phone,
                    payer_counter: 3,
                    nonce_b: 1234,
                    nonce_a: 4321,
                    amount: kes("20"),
                },
                AnswerCredit::Settlement {
                    debit_id: 8,
                    amount: kes("5"),
                },
            ],
            tickets: vec![AnswerTicket {
                peer: bob.identity().phone,
                version: 1,
                wrapped: [9u8; 16],
            }],
            peer_tickets: vec![PeerTicket {
                peer: carol.identity().phone,
                code: TicketCode::parse(TICKET_EXAMPLE).expect("ticket"),
            }],
            pairwise_unknown: vec![phone("+254700000077")],
            blocked_purses: vec![phone("+254700000066")],
        }
        .seal(&key),
    );
    PurseWorld {
        bob: bob.identity().phone,
        carol: carol.identity().phone,
        bob_code1,
        bob_amount,
        carol_code2,
        carol_nonce_b: request.nonce_b,
        carol_amount,
        alice_last_answer: answer,
        upload_body,
        answer_body,
        provisioning,
        alice,
    }
}

fn body_of(mut sealed: Vec<u8>) -> Vec<u8> {
    sealed.truncate(sealed.len() - 16);
    sealed
}

/// The fixture, built once per process.
pub fn world() -> &'static PurseWorld {
    static WORLD: OnceLock<PurseWorld> = OnceLock::new();
    WORLD.get_or_init(build)
}

/// `body ‖ CMAC(SYNC_TEST_KEY, body)`.
pub fn seal_with_test_key(body: &[u8]) -> Vec<u8> {
    let tag = cmac(&SecretKey::from_bytes(SYNC_TEST_KEY), body);
    let mut sealed = body.to_vec();
    sealed.extend_from_slice(&tag);
    sealed
}

fn pin_field(text: &str) -> Vec<u8> {
    let mut field = vec![text.len() as u8];
    field.extend_from_slice(text.as_bytes());
    field.resize(1 + 6, 0);
    field
}

fn amount_field(amount: Amount) -> [u8; 8] {
    amount.minor().to_be_bytes()
}

impl PurseWorld {
    /// Real commands for Alice's purse, encoded as the phone UI encodes them.
    pub fn templates(&self) -> Vec<Vec<u8>> {
        let command = |ins: u8, p1: u8, data: Vec<u8>| CommandApdu::new(ins, p1, data).encode();
        let mut pay = self.bob.to_bytes().to_vec();
        pay.extend_from_slice(&amount_field(self.bob_amount));
        pay.extend_from_slice(&self.bob_code1.as_number().to_be_bytes());
        let check = pay.clone();
        pay.extend_from_slice(&pin_field(PIN));
        let mut wrong_pin = check.clone();
        wrong_pin.extend_from_slice(&pin_field("9999"));
        let mut accept = self.carol_code2.as_number().to_be_bytes().to_vec();
        accept.extend_from_slice(&self.carol_nonce_b.to_be_bytes());
        let mut request = self.carol.to_bytes().to_vec();
        request.extend_from_slice(&amount_field(self.carol_amount));
        let mut change_pin = pin_field(PIN);
        change_pin.extend_from_slice(&pin_field("4321"));
        vec![
            command(ins::PAY, 0, pay),
            command(ins::CHECK_REQUEST, 0, check),
            command(ins::PAY, 0, wrong_pin),
            command(ins::ACCEPT, 1, accept),
            command(ins::REQUEST, 0, request),
            command(
                ins::CANCEL_REQUEST,
                0,
                self.carol_nonce_b.to_be_bytes().to_vec(),
            ),
            command(ins::SHOW_CODE, 0, Vec::new()),
            command(ins::CHANGE_PIN, 0, change_pin),
            command(ins::ASK_PAIRWISE_KEY, 0, self.bob.to_bytes().to_vec()),
            command(ins::START_SYNC, 0, Vec::new()),
            command(ins::APPLY_ANSWER, 0, self.alice_last_answer.clone()),
            command(ins::STATUS, 0, Vec::new()),
            command(ins::READ_LOG, 1, Vec::new()),
            command(ins::READ_PENDING, 0, Vec::new()),
            command(ins::READ_TICKETS, 0, Vec::new()),
        ]
    }
}

/// Seeds of `purse_codes`: codes, tickets and phones as people type them, and a real upload
/// packed into SMS.
pub fn codes_seeds() -> Vec<Seed> {
    use codes_format::*;
    let world = world();
    let parts = pack_sms(&seal_with_test_key(&world.upload_body), 42).expect("packs");
    vec![
        selected("code", CODE, world.bob_code1.to_string().as_bytes()),
        selected("code-digits", CODE, &world.carol_code2.digits()),
        selected("ticket", TICKET, TICKET_EXAMPLE.as_bytes()),
        selected("phone", PHONE, world.bob.to_string().as_bytes()),
        selected("sms-parts", SMS_PARTS, parts.join("\n").as_bytes()),
        selected("sms-message", SMS_MESSAGE, &world.answer_body),
    ]
}

/// Seeds of `purse_sync`: a real upload and answer (bodies; the target adds the MAC), a
/// provisioning record, Alice's state, and her real commands.
pub fn sync_seeds() -> Vec<Seed> {
    use sync_format::*;
    let world = world();
    let mut seeds = vec![
        selected("upload", UPLOAD, &world.upload_body),
        selected("answer", ANSWER, &world.answer_body),
        selected("provisioning", PROVISIONING, &world.provisioning),
        selected("state", STATE, &world.alice.encode_state()),
    ];
    for (index, template) in world.templates().into_iter().enumerate() {
        seeds.push(selected(&format!("apdu-{index:02}"), APDU, &template));
    }
    seeds
}

/// Seeds of `purse_apdu`: sessions of real commands (pay Bob, enter Carol's Code 2, sync, a
/// replayed answer, wrong PINs) in the target's step format.
pub fn apdu_seeds() -> Vec<Seed> {
    use apdu_step::*;
    let world = world();
    let count = world.templates().len() as u8;
    let mut seeds = Vec::new();
    let mut every = Vec::new();
    for k in 0..count {
        every.extend_from_slice(&[TEMPLATE, k]);
    }
    seeds.push(("every-command".to_string(), every));
    seeds.push((
        "pay-accept-sync".to_string(),
        vec![
            TEMPLATE, 1, TEMPLATE, 0, TICK, 5, TEMPLATE, 3, TEMPLATE, 9, TEMPLATE, 10,
        ],
    ));
    seeds.push((
        "wrong-pins".to_string(),
        vec![
            TEMPLATE, 2, TEMPLATE, 2, TEMPLATE, 2, TEMPLATE, 0, TEMPLATE, 11,
        ],
    ));
    seeds.push((
        "mutated".to_string(),
        vec![MUTATED, 3, 5, 0x01, MUTATED, 0, 6, 0x10, TEMPLATE, 12],
    ));
    let status = CommandApdu {
        cla: CLA_PURSE,
        ins: ins::STATUS,
        p1: 0,
        p2: 0,
        data: Vec::new(),
    }
    .encode();
    let mut raw = vec![RAW, status.len() as u8];
    raw.extend_from_slice(&status);
    seeds.push(("raw-status".to_string(), raw));
    seeds
}
