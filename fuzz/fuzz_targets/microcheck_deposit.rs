//! A merchant's deposit as the clearing center receives it (JSON): reading never panics; what
//! unpacks packs again (each distinct credential once) into a deposit that unpacks to the same
//! items; preparing the items (parsing every microcheck and credential, verifying signatures)
//! never panics and gives one result per item.
#![no_main]

use libfuzzer_sys::fuzz_target;
use offpay_microcheck::csc::{DepositBody, prepare};

/// Items prepared per run (parsing and verifying is the slow part).
const PREPARED_ITEMS_MAX: usize = 8;

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<DepositBody>(data) else {
        return;
    };
    let Ok(items) = body.unpack() else {
        return;
    };
    let packed = DepositBody::pack(&items);
    assert!(packed.credentials.len() <= items.iter().map(|item| item.credentials.len()).sum());
    let again = packed.unpack().expect("a packed deposit unpacks");
    assert_eq!(again, items, "pack and unpack changed the items");
    let some = &items[..items.len().min(PREPARED_ITEMS_MAX)];
    if let Ok(prepared) = prepare(some, 1) {
        assert_eq!(prepared.len(), some.len());
    }
});
