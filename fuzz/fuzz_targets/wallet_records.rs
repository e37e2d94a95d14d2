//! What a wallet reads back from its disk and what the money office reads from a wallet: log
//! records and whole logs, credentials, sync uploads and replies, charge vouchers, and the outer
//! frame of a datagram. Each decoder accepts only the canonical encoding (what it accepts encodes
//! back byte for byte); a stored log parses into a chain whose frames rebuild exactly the bytes
//! it called valid, with at most one frame's worth of torn tail.
#![no_main]

use libfuzzer_sys::fuzz_target;
use offpay_fuzz::wallet::records_format::*;
use offpay_wallet::record::{
    FRAME_OVERHEAD_BYTES, RECORD_BYTES_MAX, decode_record, encode_record, frame, parse_log,
};
use offpay_wallet::wire::{Frame, inspect};
use offpay_wallet::{ChargeVoucher, Credential, LogUpload, SyncReply};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    match selector % COUNT {
        RECORD => {
            if let Ok(logged) = decode_record(body) {
                let again = encode_record(logged.seq, &logged.prev_hash, &logged.record);
                assert_eq!(again.bytes, body, "record encoding is not canonical");
                assert_eq!(again, logged);
            }
        }
        LOG => {
            if let Ok(parsed) = parse_log(body) {
                let valid = usize::try_from(parsed.valid_bytes).unwrap();
                let torn = usize::try_from(parsed.torn_bytes).unwrap();
                assert_eq!(valid + torn, body.len());
                assert!(torn <= RECORD_BYTES_MAX + FRAME_OVERHEAD_BYTES);
                let rebuilt: Vec<u8> = parsed.records.iter().flat_map(frame).collect();
                assert_eq!(rebuilt, body[..valid], "frames do not rebuild the log");
                for (index, record) in parsed.records.iter().enumerate() {
                    assert_eq!(record.seq, index as u64);
                    if index > 0 {
                        assert_eq!(record.prev_hash, parsed.records[index - 1].hash);
                    }
                }
            }
        }
        CREDENTIAL => {
            if let Ok(credential) = Credential::decode(body) {
                assert_eq!(credential.encode(), body, "credential is not canonical");
            }
        }
        UPLOAD => {
            if let Ok(upload) = LogUpload::decode(body) {
                assert_eq!(upload.encode(), body, "upload is not canonical");
                let _ = upload.verify();
            }
        }
        REPLY => {
            if let Ok(reply) = SyncReply::decode(body) {
                assert_eq!(reply.encode(), body, "reply is not canonical");
            }
        }
        VOUCHER => {
            if let Ok(voucher) = ChargeVoucher::decode(body) {
                assert_eq!(voucher.encode(), body, "voucher is not canonical");
            }
        }
        _ => {
            if let Ok(Frame::Sealed {
                ciphertext_bytes, ..
            }) = inspect(body)
            {
                assert!(ciphertext_bytes < body.len());
            }
        }
    }
});
