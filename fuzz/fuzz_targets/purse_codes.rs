//! What people and SMS type into a purse: Code 1 / Code 2, ticket codes, phone numbers, and the
//! SMS a sync is packed into. Whatever parses prints to text that parses to the same value;
//! whatever is unpacked packs again into SMS of at most 160 characters that unpack to the same
//! bytes; any message packs and unpacks to itself; an SMS read as a sync part or a statement
//! request reads the same from what it prints, and the two are never confused.
#![no_main]

use libfuzzer_sys::fuzz_target;
use offpay_fuzz::purse::codes_format::*;
use offpay_purse::sync::{StatementRequest, is_sms_part, pack_sms, parse_sms_part, unpack_sms};
use offpay_purse::{Code, Phone, TicketCode};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(body);
    match selector % COUNT {
        CODE => {
            if let Ok(code) = Code::parse(&text) {
                let shown = code.to_string();
                assert_eq!(shown.len(), 9, "two groups of four: {shown}");
                assert_eq!(Code::parse(&shown).unwrap(), code);
                assert_eq!(Code::from_number(code.as_number()).unwrap(), code);
                let digits = code.digits();
                assert_eq!(
                    Code::parse(std::str::from_utf8(&digits).unwrap()).unwrap(),
                    code
                );
            }
        }
        TICKET => {
            if let Ok(ticket) = TicketCode::parse(&text) {
                assert_eq!(TicketCode::parse(&ticket.to_string()).unwrap(), ticket);
                assert!(ticket.as_digits().iter().all(u8::is_ascii_digit));
            }
        }
        PHONE => {
            if let Ok(phone) = Phone::parse(&text) {
                assert_eq!(Phone::parse(&phone.to_string()).unwrap(), phone);
                assert_eq!(Phone::from_number(phone.number()).unwrap(), phone);
            }
        }
        SMS_PARTS => {
            let parts: Vec<&str> = text.split('\n').collect();
            if let Ok(message) = unpack_sms(&parts) {
                // Parts in any order give the same message.
                let mut reversed = parts.clone();
                reversed.reverse();
                assert_eq!(unpack_sms(&reversed).unwrap(), message);
                let again = pack_sms(&message, 7).expect("what was unpacked packs again");
                assert!(again.iter().all(|part| part.len() <= 160));
                assert_eq!(unpack_sms(&again).unwrap(), message);
            }
        }
        SMS_PART => {
            // What the gateway routes to the purse rail, and what the rail reads of it.
            if let Ok(part) = parse_sms_part(&text) {
                assert!(
                    is_sms_part(&text),
                    "a part the router would not send: {text:?}"
                );
                assert!(part.index >= 1 && part.index <= part.total);
                assert!(part.message_id <= 999);
                let again = format!(
                    "OP1 {} {}/{} {}",
                    part.message_id, part.index, part.total, part.chunk
                );
                assert_eq!(parse_sms_part(&again).unwrap(), part);
            }
        }
        STATEMENT => {
            if let Some(Ok(request)) = StatementRequest::parse(&text) {
                let shown = request.text();
                assert!(shown.len() <= 160);
                assert_eq!(StatementRequest::parse(&shown), Some(Ok(request)));
                // A statement request is never taken for a sync part.
                assert!(!is_sms_part(&shown));
            }
        }
        _ => {
            let id = u16::from(body.first().copied().unwrap_or(0)) * 3;
            match pack_sms(body, id) {
                Ok(parts) => {
                    assert!(
                        parts
                            .iter()
                            .all(|part| part.len() <= 160 && part.is_ascii())
                    );
                    assert_eq!(unpack_sms(&parts).unwrap(), body);
                    // A part missing or repeated is refused.
                    if parts.len() > 1 {
                        assert!(unpack_sms(&parts[1..]).is_err());
                        let mut doubled = parts.clone();
                        doubled[0] = doubled[1].clone();
                        assert!(unpack_sms(&doubled).is_err());
                    }
                }
                Err(_) => assert!(
                    body.is_empty() || body.len() > 1000,
                    "a short message must pack"
                ),
            }
        }
    }
});
