//! A phone driving a provisioned purse through its APDU interface with any sequence of commands:
//! raw bytes, the fixture's real commands (pay Bob, enter Carol's Code 2, sync, replay an old
//! answer, wrong PINs, …) and real commands with a byte changed, with the clock moving on.
//! After every command:
//! - a refused command changes nothing (the purse state encodes to the same bytes), except the
//!   refusals that must count (a wrong PIN, a wrong Code 2, a spent failure budget, an expired
//!   validity), which still move no value;
//! - the balance rises only by an accepted Code 2 or an applied answer, and falls only by a
//!   payment;
//! - the balance stays within the purse's limits, and the log counter never goes back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use offpay_fuzz::purse::{START, apdu_step::*, world};
use offpay_purse::apdu::{decode_error, dispatch, ins, sw};
use offpay_purse::{PurseError, SeededRandom};

/// Steps per run: a session is short; the fuzzer explores by mutating it.
const STEPS_MAX: usize = 64;

fn counts(error: &PurseError) -> bool {
    matches!(
        error,
        PurseError::WrongPin { .. }
            | PurseError::WrongResetCode { .. }
            | PurseError::ResponseCodeMismatch { .. }
            | PurseError::FailureBudgetExhausted
            | PurseError::PayerFailureBudgetExhausted(_)
            | PurseError::ValidityExpired
    )
}

fuzz_target!(|data: &[u8]| {
    let world = world();
    let templates = world.templates();
    let mut purse = world.alice.clone();
    let mut random = SeededRandom::new(u64::from(data.len() as u32));
    let mut now = START.plus_seconds(60);
    let mut input = data.iter().copied();
    for _ in 0..STEPS_MAX {
        let Some(step) = input.next() else {
            break;
        };
        let command = match step % COUNT {
            RAW => {
                let length = usize::from(input.next().unwrap_or(0));
                input.by_ref().take(length).collect::<Vec<u8>>()
            }
            TICK => {
                let minutes = u64::from(input.next().unwrap_or(1));
                now = now.plus_seconds(minutes * 60);
                continue;
            }
            TEMPLATE => {
                let k = usize::from(input.next().unwrap_or(0)) % templates.len();
                templates[k].clone()
            }
            _ => {
                let k = usize::from(input.next().unwrap_or(0)) % templates.len();
                let mut command = templates[k].clone();
                let position = usize::from(input.next().unwrap_or(0)) % command.len();
                command[position] ^= input.next().unwrap_or(1);
                command
            }
        };
        let before = purse.encode_state();
        let balance_before = purse.balance().minor();
        let counter_before = purse.counter();
        let response = dispatch(&mut purse, &command, now, &mut random);
        let instruction = command.get(1).copied().unwrap_or(0);
        if response.status == sw::OK {
            if purse.balance().minor() > balance_before {
                assert!(
                    matches!(instruction, ins::ACCEPT | ins::APPLY_ANSWER),
                    "balance rose on instruction {instruction:#04x}"
                );
            }
            if purse.balance().minor() < balance_before {
                assert!(
                    matches!(instruction, ins::PAY | ins::APPLY_ANSWER),
                    "balance fell on instruction {instruction:#04x}"
                );
            }
        } else {
            let error = decode_error(&response.data, response.status);
            assert_eq!(
                purse.balance().minor(),
                balance_before,
                "refused ({error}) but value moved"
            );
            assert_eq!(
                purse.counter(),
                counter_before,
                "refused ({error}) but logged"
            );
            if !counts(&error) {
                assert!(
                    purse.encode_state() == before,
                    "refused ({error}) but the purse state changed"
                );
            }
        }
        assert!(purse.counter() >= counter_before);
        assert!(purse.balance().minor() <= purse.limits().max_balance.minor().max(balance_before));
    }
});
