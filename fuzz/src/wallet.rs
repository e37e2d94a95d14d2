//! Rail 3, the device wallet: a money office, a seller and a buyer wallet charged by it, a wallet
//! of another office, the loop that carries their datagrams, and the seeds of the wallet targets.

use std::collections::VecDeque;
use std::sync::OnceLock;

use arbitrary::Arbitrary;
use offpay_money::{Amount, Currency};
use offpay_wallet::record::parse_log;
use offpay_wallet::wire::{AbortReason, Body, lookup_for_fuzzing, seal_for_fuzzing};
use offpay_wallet::{
    Action, Credential, Limits, LogStorage, MemoryStorage, Millis, MoneyOffice, OfficeKeys,
    Outcome, SeededEntropy, TransferId, Wallet, WalletKeys,
};

use crate::Seed;

/// The office's clock when the wallets are made.
pub const START_MS: Millis = 1_700_000_000_000;
/// What the office charges each wallet with, in minor units.
pub const CHARGE_MINOR: u64 = 100_000;
const VALIDITY_MS: u64 = 30 * 24 * 3600 * 1000;

fn amount(minor: u64) -> Amount {
    Amount::from_minor(minor, Currency::KES).expect("fixture amount")
}

/// What the fixture keeps of one wallet: its keys, credential and log after it was charged.
pub struct Party {
    /// Its keys.
    pub keys: WalletKeys,
    /// Its credential, as issued.
    pub credential: Credential,
    /// Its log after issue and charge.
    pub log: Vec<u8>,
}

/// The seller (index 0) and the buyer (index 1), charged [`CHARGE_MINOR`] each, and a wallet
/// issued by another office.
pub struct WalletWorld {
    /// The office every fixture wallet trusts.
    pub office_public: [u8; 32],
    /// Seller, buyer.
    pub parties: [Party; 2],
    /// Keys and credential of a wallet that another office issued.
    pub outsider: Party,
    /// A whole transfer's datagrams (look-up first) and both logs after it, then a sync's
    /// upload and reply: real encodings for the seeds.
    pub transcript: Transcript,
}

/// See [`WalletWorld::transcript`].
#[derive(Default)]
pub struct Transcript {
    /// Datagrams in the order they were sent.
    pub datagrams: Vec<Vec<u8>>,
    /// Both logs after the transfer.
    pub logs: Vec<Vec<u8>>,
    /// The seller's sync upload.
    pub upload: Vec<u8>,
    /// The office's reply.
    pub reply: Vec<u8>,
    /// A charge voucher.
    pub voucher: Vec<u8>,
}

fn limits() -> Limits {
    Limits {
        balance_max: amount(10_000_000),
        payment_max: amount(50_000),
        offline_spend_max: amount(5_000_000),
    }
}

fn issue(
    office: &mut MoneyOffice,
    entropy: &mut SeededEntropy,
) -> (WalletKeys, Credential, Wallet, MemoryStorage) {
    let keys = WalletKeys::generate(entropy);
    let credential = office
        .issue_wallet(
            keys.signing_public(),
            keys.encryption_public(),
            limits(),
            START_MS,
            entropy,
        )
        .expect("issue");
    let (mut wallet, actions) =
        Wallet::create(keys.clone(), credential.clone(), office.public(), START_MS)
            .expect("create");
    let mut storage = MemoryStorage::new();
    perform(&mut storage, actions, &mut VecDeque::new(), 0);
    let (voucher, _) = office
        .charge(wallet.id(), amount(CHARGE_MINOR))
        .expect("charge");
    let actions = wallet.apply_charge(&voucher).expect("apply charge");
    perform(&mut storage, actions, &mut VecDeque::new(), 0);
    (keys, credential, wallet, storage)
}

/// Carries out a wallet's actions: appends to its log and queues its datagrams for the other
/// wallet (`from` is the sender's index).
pub fn perform(
    storage: &mut MemoryStorage,
    actions: Vec<Action>,
    queue: &mut VecDeque<(usize, Vec<u8>)>,
    from: usize,
) {
    for action in actions {
        match action {
            Action::Persist(frame) => storage.append(&frame).expect("memory append"),
            Action::Send { datagram, .. } | Action::Broadcast(datagram) => {
                queue.push_back((1 - from, datagram));
            }
            Action::Notify(_) => {}
        }
    }
}

fn build() -> WalletWorld {
    let mut entropy = SeededEntropy::from_seed(21);
    let mut office = MoneyOffice::new(OfficeKeys::generate(&mut entropy), VALIDITY_MS);
    let (seller_keys, seller_credential, mut seller, mut seller_log) =
        issue(&mut office, &mut entropy);
    let (buyer_keys, buyer_credential, mut buyer, mut buyer_log) = issue(&mut office, &mut entropy);
    let parties = [
        Party {
            keys: seller_keys,
            credential: seller_credential,
            log: seller_log.bytes().to_vec(),
        },
        Party {
            keys: buyer_keys,
            credential: buyer_credential,
            log: buyer_log.bytes().to_vec(),
        },
    ];
    let mut rogue = MoneyOffice::new(OfficeKeys::generate(&mut entropy), VALIDITY_MS);
    let (outsider_keys, outsider_credential, _, outsider_log) = issue(&mut rogue, &mut entropy);
    let outsider = Party {
        keys: outsider_keys,
        credential: outsider_credential,
        log: outsider_log.bytes().to_vec(),
    };

    // One whole transfer of 700 from the buyer to the seller, recorded.
    let mut transcript = Transcript::default();
    buyer.set_buyer_mode(true);
    let now = START_MS + 1_000;
    let mut queue = VecDeque::new();
    let (transfer_id, actions) = seller
        .start_sale(amount(700), now, &mut entropy)
        .expect("sale");
    perform(&mut seller_log, actions, &mut queue, 0);
    let mut chosen = false;
    let mut rounds = 0;
    while let Some((to, datagram)) = queue.pop_front() {
        rounds += 1;
        assert!(rounds < 64, "the fixture transfer does not end");
        transcript.datagrams.push(datagram.clone());
        let (wallet, log) = if to == 0 {
            (&mut seller, &mut seller_log)
        } else {
            (&mut buyer, &mut buyer_log)
        };
        let received = wallet
            .handle_datagram(&datagram, now, &mut entropy)
            .expect("the fixture's datagrams are accepted");
        perform(log, received.actions, &mut queue, to);
        if to == 0 && !chosen {
            chosen = true;
            let actions = seller
                .choose_buyer(transfer_id, buyer.id(), now, &mut entropy)
                .expect("choose buyer");
            perform(&mut seller_log, actions, &mut queue, 0);
        }
        if to == 1
            && buyer.transfers().iter().any(|status| {
                status.transfer_id == transfer_id && status.state == "awaiting-approval"
            })
        {
            let actions = buyer
                .approve(transfer_id, now, &mut entropy)
                .expect("approve");
            perform(&mut buyer_log, actions, &mut queue, 1);
        }
    }
    assert_eq!(
        seller.outcome(&transfer_id),
        Some(Outcome::Posted),
        "the fixture transfer posts"
    );
    transcript.logs = vec![seller_log.bytes().to_vec(), buyer_log.bytes().to_vec()];
    let (actions, upload) = seller.begin_sync(now, &mut entropy).expect("sync");
    perform(&mut seller_log, actions, &mut queue, 0);
    transcript.upload = upload.encode();
    let reconciliation = office
        .reconcile(&transcript.upload, now)
        .expect("reconcile");
    transcript.reply = reconciliation.reply.encode();
    let (voucher, _) = office.charge(seller.id(), amount(5)).expect("charge");
    transcript.voucher = voucher.encode();

    WalletWorld {
        office_public: office.public(),
        parties,
        outsider,
        transcript,
    }
}

/// The fixture, built once per process.
pub fn world() -> &'static WalletWorld {
    static WORLD: OnceLock<WalletWorld> = OnceLock::new();
    WORLD.get_or_init(build)
}

/// Who signs a forged message.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Signer {
    /// The seller's keys and credential.
    Seller,
    /// The buyer's keys and credential.
    Buyer,
    /// A wallet of another office.
    Outsider,
}

/// Which transfer a forged message names.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum TransferPick {
    /// The newest sale the seller started in this run (or zeros before one).
    Current,
    /// Any id.
    Other([u8; 16]),
}

/// A message body, as the fuzzer chooses it.
#[derive(Arbitrary, Debug, Clone)]
pub enum ForgedBody {
    /// `Present`.
    Present,
    /// `CommitRequest`.
    CommitRequest(u64),
    /// `Agreed` with a made-up agreement.
    Agreed {
        /// Spend sequence.
        spend: u64,
        /// Balance after.
        balance: u64,
        /// Signature bytes.
        signature: [u8; 64],
    },
    /// `Abort` with a reason.
    Abort(u8),
    /// `Commit` with a made-up signature.
    Commit([u8; 64]),
    /// `Acknowledged`.
    Acknowledged(bool),
}

impl ForgedBody {
    /// The wallet's message body.
    pub fn body(&self) -> Body {
        match self {
            ForgedBody::Present => Body::Present,
            ForgedBody::CommitRequest(minor) => Body::CommitRequest {
                amount: Amount::from_minor(minor % (Amount::MAX_MINOR + 1), Currency::KES)
                    .expect("in range"),
            },
            ForgedBody::Agreed {
                spend,
                balance,
                signature,
            } => Body::Agreed {
                agreement: offpay_wallet::terms::Agreement {
                    buyer_spend_seq: *spend,
                    buyer_balance_after_minor: *balance,
                    signature: *signature,
                },
            },
            ForgedBody::Abort(code) => Body::Abort {
                reason: match code % 5 {
                    0 => AbortReason::Declined,
                    1 => AbortReason::InsufficientFunds,
                    2 => AbortReason::LimitExceeded,
                    3 => AbortReason::UnknownTransfer,
                    _ => AbortReason::SellerVoided,
                },
            },
            ForgedBody::Commit(signature) => Body::Commit {
                signature: *signature,
            },
            ForgedBody::Acknowledged(posted) => Body::Acknowledged {
                outcome: if *posted {
                    Outcome::Posted
                } else {
                    Outcome::Voided
                },
            },
        }
    }
}

impl WalletWorld {
    /// The keys and credential of a signer.
    pub fn signer(&self, signer: Signer) -> &Party {
        match signer {
            Signer::Seller => &self.parties[0],
            Signer::Buyer => &self.parties[1],
            Signer::Outsider => &self.outsider,
        }
    }

    /// A sealed message from `signer` to party `to`.
    pub fn forge(
        &self,
        signer: Signer,
        to: usize,
        transfer_id: TransferId,
        seq: u64,
        body: &Body,
        entropy: &mut SeededEntropy,
    ) -> Vec<u8> {
        let party = self.signer(signer);
        seal_for_fuzzing(
            &party.keys,
            &party.credential.encode(),
            &self.parties[to].credential,
            transfer_id,
            seq,
            body,
            entropy,
        )
    }

    /// A look-up broadcast signed by `signer`.
    pub fn lookup(&self, signer: Signer, transfer_id: TransferId, seq: u64) -> Vec<u8> {
        let party = self.signer(signer);
        lookup_for_fuzzing(&party.keys, &party.credential.encode(), transfer_id, seq)
    }
}

/// The steps of a `wallet_datagram` session, chosen by a step's first byte.
pub mod datagram_step {
    /// `RAW to len(u16 LE) bytes`: any datagram, to the seller (0) or the buyer (1).
    pub const RAW: u8 = 0;
    /// `FORGE len bytes`: a sealed message chosen with `arbitrary` from the bytes (signer,
    /// recipient, transfer, sequence number, body), signed and sealed with the signer's keys.
    pub const FORGE: u8 = 1;
    /// `LOOKUP len bytes`: a signed look-up broadcast, chosen the same way.
    pub const LOOKUP: u8 = 2;
    /// `DELIVER index flags position xor`: deliver a queued datagram (flags bit 0: keep it queued,
    /// a duplicate; bit 1: flip a byte).
    pub const DELIVER: u8 = 3;
    /// `SALE amount(u16 LE)`: the seller starts a sale.
    pub const SALE: u8 = 4;
    /// `USER choice`: the seller picks the buyer, or the buyer approves or declines.
    pub const USER: u8 = 5;
    /// `TICK seconds`: time passes.
    pub const TICK: u8 = 6;
    /// `TIMEOUTS`: both wallets handle their timeouts.
    pub const TIMEOUTS: u8 = 7;
    /// How many step kinds there are.
    pub const COUNT: u8 = 8;
}

/// Seeds of `wallet_datagram`: the real transfer's datagrams sent raw, and a session that
/// runs a sale through the target's own steps.
pub fn datagram_seeds() -> Vec<Seed> {
    use datagram_step::*;
    let world = world();
    let mut seeds = Vec::new();
    let mut raw = Vec::new();
    for (index, datagram) in world.transcript.datagrams.iter().enumerate() {
        raw.extend_from_slice(&[RAW, ((index + 1) % 2) as u8]);
        raw.extend_from_slice(&(datagram.len() as u16).to_le_bytes());
        raw.extend_from_slice(datagram);
    }
    seeds.push(("transcript-raw".to_string(), raw));
    let deliver = [DELIVER, 0, 0, 0, 0];
    let mut session = vec![SALE, 0xBC, 0x02];
    session.extend_from_slice(&deliver);
    session.extend_from_slice(&deliver);
    session.extend_from_slice(&[USER, 0]);
    session.extend_from_slice(&deliver);
    session.extend_from_slice(&[USER, 1]);
    for _ in 0..4 {
        session.extend_from_slice(&deliver);
    }
    seeds.push(("sale".to_string(), session.clone()));
    let mut duplicated = session.clone();
    duplicated.extend_from_slice(&[TICK, 30, TIMEOUTS, DELIVER, 0, 1, 0, 0, DELIVER, 0, 2, 9, 1]);
    seeds.push(("sale-duplicates".to_string(), duplicated));
    let mut forged = vec![SALE, 0x10, 0x00, FORGE, 8];
    forged.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0]);
    forged.extend_from_slice(&[LOOKUP, 4, 2, 0, 0, 0]);
    seeds.push(("forged".to_string(), forged));
    seeds
}

/// The record formats of `wallet_records`, chosen by the first byte.
pub mod records_format {
    /// One encoded log record.
    pub const RECORD: u8 = 0;
    /// A whole stored log (frames).
    pub const LOG: u8 = 1;
    /// A credential.
    pub const CREDENTIAL: u8 = 2;
    /// A sync upload.
    pub const UPLOAD: u8 = 3;
    /// A sync reply.
    pub const REPLY: u8 = 4;
    /// A charge voucher.
    pub const VOUCHER: u8 = 5;
    /// A datagram's outer frame.
    pub const DATAGRAM: u8 = 6;
    /// How many formats there are.
    pub const COUNT: u8 = 7;
}

/// Seeds of `wallet_records`: the records of two real logs, the logs, a credential, a sync
/// upload and reply, a voucher and the datagrams of a real transfer.
pub fn records_seeds() -> Vec<Seed> {
    use records_format::*;
    let world = world();
    let transcript = &world.transcript;
    let mut seeds = Vec::new();
    for (index, log) in transcript.logs.iter().enumerate() {
        seeds.push(crate::selected(&format!("log-{index}"), LOG, log));
        let parsed = parse_log(log).expect("the fixture log parses");
        for record in parsed.records {
            seeds.push(crate::selected(
                &format!("record-{index}-{:02}", record.seq),
                RECORD,
                &record.bytes,
            ));
        }
    }
    seeds.push(crate::selected(
        "credential",
        CREDENTIAL,
        &world.parties[0].credential.encode(),
    ));
    seeds.push(crate::selected("upload", UPLOAD, &transcript.upload));
    seeds.push(crate::selected("reply", REPLY, &transcript.reply));
    seeds.push(crate::selected("voucher", VOUCHER, &transcript.voucher));
    for (index, datagram) in transcript.datagrams.iter().enumerate() {
        seeds.push(crate::selected(
            &format!("datagram-{index:02}"),
            DATAGRAM,
            datagram,
        ));
    }
    seeds
}
