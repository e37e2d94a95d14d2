//! The local link between a payer device and a vending machine: any byte stream, split
//! anywhere, into the frame reader. Reading never panics and never holds more than a frame;
//! every message read encodes to a frame that reads back to the same message; the stream split
//! elsewhere reads to the same messages. Every payment read is offered to a machine waiting on
//! the fixture's offer: refused, it changes nothing (the stock is as before); accepted, it sells
//! exactly one item.
#![no_main]

use libfuzzer_sys::fuzz_target;
use offpay_fuzz::microcheck::{machine, offer, world};
use offpay_microcheck::limits::{FRAME_BYTES_MAX, FRAME_PREFIX_BYTES};
use offpay_microcheck::wire::{FrameReader, Message};

/// Frames read per run.
const MESSAGES_MAX: usize = 16;

fn read_all(parts: &[&[u8]]) -> (Vec<Message>, bool) {
    let mut reader = FrameReader::new();
    let mut messages = Vec::new();
    for part in parts {
        reader.push(part);
        loop {
            match reader.next_message() {
                Ok(Some(message)) => {
                    messages.push(message);
                    if messages.len() == MESSAGES_MAX {
                        return (messages, false);
                    }
                }
                Ok(None) => break,
                Err(_) => return (messages, true),
            }
        }
    }
    (messages, false)
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, stream)) = data.split_first() else {
        return;
    };
    let split = usize::from(split).min(stream.len());
    let (messages, failed) = read_all(&[&stream[..split], &stream[split..]]);
    let (whole, whole_failed) = read_all(&[stream]);
    assert_eq!(messages, whole, "the split changed what was read");
    assert_eq!(failed, whole_failed);
    for message in &messages {
        let frame = message.encode();
        assert!(frame.len() <= FRAME_PREFIX_BYTES + FRAME_BYTES_MAX);
        let decoded =
            Message::decode(&frame[FRAME_PREFIX_BYTES..]).expect("an encoded frame reads");
        assert_eq!(&decoded, message);
    }
    let world = world();
    for message in &messages {
        let Message::Payment {
            microcheck,
            credentials,
            ..
        } = message
        else {
            continue;
        };
        let mut machine = machine(world);
        let awaiting = offer(&mut machine);
        let stock_before = machine.stock().to_vec();
        match machine.pay(awaiting, microcheck, credentials) {
            Ok(_) => {
                let sold: u32 = stock_before
                    .iter()
                    .zip(machine.stock())
                    .map(|(before, after)| before.count - after.count)
                    .sum();
                assert!(sold <= 1, "one payment sold {sold} items");
            }
            Err(_) => assert_eq!(
                machine.stock(),
                stock_before,
                "a refused payment changed stock"
            ),
        }
    }
});
