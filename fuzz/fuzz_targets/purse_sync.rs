//! The purse's binary formats: sync uploads and answers (behind their MAC: the target MACs the
//! input with a test key, so the decoder itself is what is fuzzed), provisioning records, the
//! purse state, command and response APDUs and error records. Each decoder accepts only the
//! canonical encoding: whatever it accepts, the encoder writes back byte for byte. A message
//! with its tag changed is refused.
#![no_main]

use libfuzzer_sys::fuzz_target;
use offpay_fuzz::purse::{SYNC_TEST_KEY, seal_with_test_key, sync_format::*};
use offpay_purse::apdu::{CommandApdu, ResponseApdu, decode_error, encode_error};
use offpay_purse::crypto::SecretKey;
use offpay_purse::sync::{SyncAnswer, SyncUpload, peek_upload};
use offpay_purse::{Currency, Provisioning, Purse, PurseError};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let key = SecretKey::from_bytes(SYNC_TEST_KEY);
    match selector % COUNT {
        UPLOAD => {
            let sealed = seal_with_test_key(body);
            if let Ok(upload) = SyncUpload::open(&sealed, &key) {
                assert_eq!(
                    upload.seal(&key),
                    sealed,
                    "upload encoding is not canonical"
                );
                assert_eq!(
                    peek_upload(&sealed).unwrap(),
                    (upload.operator, upload.purse_id)
                );
                let mut forged = sealed.clone();
                let last = forged.len() - 1;
                forged[last] ^= 1;
                assert_eq!(
                    SyncUpload::open(&forged, &key),
                    Err(PurseError::AuthenticationFailed)
                );
            }
        }
        ANSWER => {
            let sealed = seal_with_test_key(body);
            if let Ok(answer) = SyncAnswer::open(&sealed, &key, Currency::KES) {
                assert_eq!(
                    answer.seal(&key),
                    sealed,
                    "answer encoding is not canonical"
                );
                assert!(
                    SyncUpload::open(&sealed, &key).is_err(),
                    "an answer passed as an upload"
                );
            }
        }
        PROVISIONING => {
            if let Ok(provisioning) = Provisioning::decode(body) {
                assert_eq!(provisioning.encode(), body, "provisioning is not canonical");
            }
        }
        STATE => {
            if let Ok(purse) = Purse::decode_state(body) {
                let encoded = purse.encode_state();
                let again = Purse::decode_state(&encoded).expect("an encoded state decodes");
                assert_eq!(again.encode_state(), encoded);
            }
        }
        _ => {
            if let Ok(command) = CommandApdu::decode(body) {
                assert_eq!(command.encode(), body, "command APDU is not canonical");
            }
            if let Ok(response) = ResponseApdu::decode(body) {
                assert_eq!(response.encode(), body);
                let error = decode_error(&response.data, response.status);
                // An error record the purse would send reads back as the same error.
                let record = encode_error(&error);
                assert_eq!(decode_error(&record, response.status), error);
            }
        }
    }
});
