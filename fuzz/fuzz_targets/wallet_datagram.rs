//! Two charged wallets, a seller and a buyer, on a local link the fuzzer controls: it sends any
//! bytes, messages it seals and signs with the seller's, the buyer's or another office's wallet
//! keys (a peer with full control of its device), look-ups, and the wallets' own datagrams
//! delivered late, twice or with a byte flipped, while sales start, users answer and timeouts
//! fire. After every step:
//! - a refused datagram changes nothing: balance, held value, log, transfers and buyer mode are
//!   as before, and nothing was written;
//! - no value appears: the two wallets' available balances never exceed what the office charged,
//!   and a wallet's available plus held value never exceeds it either.
//!
//! At the end each wallet reopens from its log with the same balance and held value.
#![no_main]

use std::collections::VecDeque;

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use offpay_fuzz::wallet::{
    CHARGE_MINOR, ForgedBody, START_MS, Signer, TransferPick, datagram_step::*, perform, world,
};
use offpay_money::Amount;
use offpay_wallet::{LogStorage, MemoryStorage, SeededEntropy, TransferId, Wallet};

/// Steps per run.
const STEPS_MAX: usize = 48;
/// Datagrams the link holds at most (older ones are lost).
const QUEUE_MAX: usize = 32;

#[derive(Arbitrary, Debug)]
struct Forge {
    signer: Signer,
    to_buyer: bool,
    transfer: TransferPick,
    seq: u64,
    body: ForgedBody,
}

#[derive(Arbitrary, Debug)]
struct Lookup {
    signer: Signer,
    transfer: TransferPick,
    seq: u64,
}

#[derive(PartialEq, Eq, Debug)]
struct Snapshot {
    balance: Amount,
    held: Amount,
    spent: Amount,
    log_head: u64,
    transfers: Vec<offpay_wallet::TransferStatus>,
    buyer_mode: bool,
    log_bytes: usize,
}

fn snapshot(wallet: &Wallet, storage: &MemoryStorage) -> Snapshot {
    Snapshot {
        balance: wallet.balance(),
        held: wallet.held(),
        spent: wallet.spent_since_sync(),
        log_head: wallet.log_head(),
        transfers: wallet.transfers(),
        buyer_mode: wallet.buyer_mode(),
        log_bytes: storage.bytes().len(),
    }
}

fn chunk<'a>(input: &mut &'a [u8]) -> &'a [u8] {
    let Some((&length, rest)) = input.split_first() else {
        return &[];
    };
    let length = usize::from(length).min(rest.len());
    let (taken, rest) = rest.split_at(length);
    *input = rest;
    taken
}

fn byte(input: &mut &[u8]) -> u8 {
    let Some((&first, rest)) = input.split_first() else {
        return 0;
    };
    *input = rest;
    first
}

fuzz_target!(|data: &[u8]| {
    let world = world();
    let mut entropy = SeededEntropy::from_seed(u64::from(data.len() as u32));
    let mut now = START_MS + 1_000;
    let mut wallets = Vec::new();
    let mut storages = Vec::new();
    for party in &world.parties {
        let (wallet, actions, _) =
            Wallet::open(party.keys.clone(), &party.log, now, false).expect("fixture log opens");
        let mut storage = MemoryStorage::new();
        storage.append(&party.log).expect("memory");
        perform(&mut storage, actions, &mut VecDeque::new(), 0);
        wallets.push(wallet);
        storages.push(storage);
    }
    wallets[1].set_buyer_mode(true);
    let charged = Amount::from_minor(2 * CHARGE_MINOR, wallets[0].balance().currency()).unwrap();
    let mut queue: VecDeque<(usize, Vec<u8>)> = VecDeque::new();
    let mut current = TransferId([0; 16]);
    let mut input = data;
    for _ in 0..STEPS_MAX {
        if input.is_empty() {
            break;
        }
        let step = byte(&mut input) % COUNT;
        let delivery: Option<(usize, Vec<u8>)> = match step {
            RAW => {
                let to = usize::from(byte(&mut input) & 1);
                let length = usize::from(u16::from_le_bytes([byte(&mut input), byte(&mut input)]));
                let length = length.min(input.len());
                let (bytes, rest) = input.split_at(length);
                input = rest;
                Some((to, bytes.to_vec()))
            }
            FORGE => {
                let Ok(forge) = Forge::arbitrary(&mut Unstructured::new(chunk(&mut input))) else {
                    continue;
                };
                let transfer = match forge.transfer {
                    TransferPick::Current => current,
                    TransferPick::Other(id) => TransferId(id),
                };
                let to = usize::from(forge.to_buyer);
                let body = forge.body.body();
                Some((
                    to,
                    world.forge(forge.signer, to, transfer, forge.seq, &body, &mut entropy),
                ))
            }
            LOOKUP => {
                let Ok(lookup) = Lookup::arbitrary(&mut Unstructured::new(chunk(&mut input)))
                else {
                    continue;
                };
                let transfer = match lookup.transfer {
                    TransferPick::Current => current,
                    TransferPick::Other(id) => TransferId(id),
                };
                Some((1, world.lookup(lookup.signer, transfer, lookup.seq)))
            }
            DELIVER => {
                let index = usize::from(byte(&mut input));
                let flags = byte(&mut input);
                let position = usize::from(byte(&mut input));
                let flip = byte(&mut input);
                if queue.is_empty() {
                    continue;
                }
                let index = index % queue.len();
                let (to, mut datagram) = if flags & 1 == 1 {
                    queue[index].clone()
                } else {
                    queue.remove(index).expect("index in range")
                };
                if flags & 2 == 2 && !datagram.is_empty() {
                    let position = position % datagram.len();
                    datagram[position] ^= flip.max(1);
                }
                Some((to, datagram))
            }
            SALE => {
                let minor = u64::from(u16::from_le_bytes([byte(&mut input), byte(&mut input)]));
                let currency = wallets[0].balance().currency();
                if let Ok(amount) = Amount::from_minor(minor, currency)
                    && let Ok((id, actions)) = wallets[0].start_sale(amount, now, &mut entropy)
                {
                    current = id;
                    perform(&mut storages[0], actions, &mut queue, 0);
                }
                None
            }
            USER => {
                let choice = byte(&mut input) % 3;
                let buyer_id = wallets[1].id();
                let (index, result) = match choice {
                    0 => (
                        0,
                        wallets[0].choose_buyer(current, buyer_id, now, &mut entropy),
                    ),
                    1 => (1, wallets[1].approve(current, now, &mut entropy)),
                    _ => (1, wallets[1].decline(current, &mut entropy)),
                };
                if let Ok(actions) = result {
                    perform(&mut storages[index], actions, &mut queue, index);
                }
                None
            }
            TICK => {
                now += u64::from(byte(&mut input)) * 1_000;
                None
            }
            _ => {
                for index in 0..2 {
                    if let Ok(actions) = wallets[index].handle_timeout(now, &mut entropy) {
                        perform(&mut storages[index], actions, &mut queue, index);
                    }
                }
                None
            }
        };
        if let Some((to, datagram)) = delivery {
            let before = snapshot(&wallets[to], &storages[to]);
            match wallets[to].handle_datagram(&datagram, now, &mut entropy) {
                Ok(received) => perform(&mut storages[to], received.actions, &mut queue, to),
                Err(error) => assert_eq!(
                    snapshot(&wallets[to], &storages[to]),
                    before,
                    "a refused datagram ({error}) changed the wallet"
                ),
            }
        }
        while queue.len() > QUEUE_MAX {
            queue.pop_front();
        }
        let available = wallets[0].balance().minor() + wallets[1].balance().minor();
        assert!(
            available <= charged.minor(),
            "value appeared: {available} > {charged}"
        );
        for wallet in &wallets {
            assert!(wallet.balance().minor() + wallet.held().minor() <= charged.minor());
        }
    }
    for (index, party) in world.parties.iter().enumerate() {
        let (reopened, _, _) =
            Wallet::open(party.keys.clone(), storages[index].bytes(), now, false)
                .expect("a wallet's own log reopens");
        assert_eq!(
            reopened.balance(),
            wallets[index].balance(),
            "balance lost in the log"
        );
        assert_eq!(
            reopened.held(),
            wallets[index].held(),
            "held value lost in the log"
        );
    }
});
