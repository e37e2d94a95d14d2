//! Property tests for the SMS grammar: every message survives format → parse, with any of the
//! separators people use; no text whatsoever makes the parser panic or the reply overflow.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use offpay_money::Currency;
use offpay_sms_tan::civil_time::CivilDateTime;
use offpay_sms_tan::grammar::{
    Checksum, EncryptedEuin, EncryptedPayee, LanguageChoice, LimitChange, Password, Payment,
    PaymentBody, RowChecksum, RowTan, TypedAmount,
};
use offpay_sms_tan::{
    AccountNumber, Euin, Message, PayerRef, Reference, SecurityLevel, Tan, parse,
};
use proptest::prelude::*;

fn digits(count: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(0u8..10, count)
        .prop_map(|digits| digits.iter().map(|d| char::from(b'0' + d)).collect())
}

fn euin() -> impl Strategy<Value = Euin> {
    digits(11).prop_map(|text| Euin::parse(&text).unwrap())
}

fn account() -> impl Strategy<Value = AccountNumber> {
    digits(12).prop_map(|text| AccountNumber::parse(&text).unwrap())
}

fn payer() -> impl Strategy<Value = PayerRef> {
    prop_oneof![
        euin().prop_map(PayerRef::Envelope),
        account().prop_map(PayerRef::PayNumber)
    ]
}

fn row() -> impl Strategy<Value = u8> {
    1u8..=50
}

fn tan() -> impl Strategy<Value = Tan> {
    (0u16..1000).prop_map(|value| Tan::from_value(value).unwrap())
}

fn row_tan() -> impl Strategy<Value = RowTan> {
    (row(), tan()).prop_map(|(row, tan)| RowTan { row, tan })
}

fn row_sum() -> impl Strategy<Value = RowChecksum> {
    (row(), proptest::array::uniform6(0u8..10)).prop_map(|(row, digits)| RowChecksum {
        row,
        checksum: Checksum::new(digits).unwrap(),
    })
}

fn coded_euin() -> impl Strategy<Value = EncryptedEuin> {
    (0u8..10, proptest::array::uniform10(0u16..1000))
        .prop_map(|(plain, codes)| EncryptedEuin { plain, codes })
}

fn amount() -> impl Strategy<Value = TypedAmount> {
    (0u64..1_000_000_000, 0u8..=2).prop_flat_map(|(whole, decimals)| {
        (
            Just(whole),
            0u32..10u32.pow(u32::from(decimals)),
            Just(decimals),
        )
            .prop_map(|(whole, fraction, decimals)| {
                TypedAmount::new(whole, fraction, decimals).unwrap()
            })
    })
}

fn currency() -> impl Strategy<Value = Option<Currency>> {
    prop_oneof![
        Just(None),
        Just(Some(Currency::KES)),
        Just(Some(Currency::USD))
    ]
}

fn payment() -> impl Strategy<Value = Payment> {
    let plain = (
        account(),
        amount(),
        row(),
        proptest::array::uniform6(0u8..10),
    )
        .prop_map(|(payee, amount, row, checksum)| PaymentBody::Plain {
            payee,
            amount,
            row,
            checksum: Checksum::new(checksum).unwrap(),
        });
    let grid = (
        row(),
        proptest::array::uniform2(0u8..10),
        proptest::array::uniform10(0u16..1000),
        0u64..100_000_000_000_000,
        0u16..1000,
        proptest::array::uniform6(0u8..10),
    )
        .prop_map(
            |(row, plain, codes, amount_plus_offset, magnitude_code, checksum)| PaymentBody::Grid {
                row,
                payee: EncryptedPayee { plain, codes },
                amount_plus_offset,
                magnitude_code,
                checksum: Checksum::new(checksum).unwrap(),
            },
        );
    prop_oneof![
        (payer(), currency(), plain).prop_map(|(payer, currency, body)| Payment {
            payer,
            level: SecurityLevel::Low,
            currency,
            body
        }),
        (
            payer(),
            currency(),
            grid,
            prop_oneof![Just(SecurityLevel::Middle), Just(SecurityLevel::High)]
        )
            .prop_map(|(payer, currency, body, level)| Payment {
                payer,
                level,
                currency,
                body
            }),
    ]
}

fn limit_change() -> impl Strategy<Value = LimitChange> {
    let limit = || proptest::option::of(amount());
    prop_oneof![
        limit().prop_map(LimitChange::Daily),
        limit().prop_map(LimitChange::Weekly),
        limit().prop_map(LimitChange::PerPayment),
        (account(), limit()).prop_map(|(payee, limit)| LimitChange::Payee(payee, limit)),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        payment().prop_map(Message::Payment),
        (
            payer(),
            row_tan(),
            row(),
            proptest::array::uniform6(0u8..10)
        )
            .prop_map(|(payer, bank, row, digits)| Message::Confirm {
                payer,
                bank,
                payer_row: RowChecksum {
                    row,
                    checksum: Checksum::new(digits).unwrap(),
                },
            }),
        (coded_euin(), payer(), row_sum()).prop_map(|(new_envelope, payer, auth)| {
            Message::Register {
                new_envelope,
                payer,
                auth,
            }
        }),
        (payer(), proptest::option::of(row_tan()))
            .prop_map(|(payer, auth)| Message::Balance { payer, auth }),
        (payer(), proptest::option::of(row_tan()))
            .prop_map(|(payer, auth)| Message::Statement { payer, auth }),
        (payer(), limit_change(), row_sum()).prop_map(|(payer, change, auth)| Message::Limit {
            payer,
            change,
            auth
        }),
        (payer(), amount(), row_sum()).prop_map(|(payer, threshold, auth)| Message::Dialback {
            payer,
            threshold,
            auth
        }),
        (payer(), any::<bool>(), row_sum()).prop_map(|(payer, on, auth)| Message::ForceHigh {
            payer,
            on,
            auth
        }),
        (
            2000u16..2200,
            1u8..=12,
            1u8..=28,
            0u8..24,
            0u8..60,
            payment()
        )
            .prop_map(
                |(year, month, day, hour, minute, payment)| Message::Scheduled {
                    due: CivilDateTime::new(year, month, day, hour, minute).unwrap(),
                    payment
                }
            ),
        (payer(), row_sum(), "[A-Za-z0-9]{8,32}").prop_map(|(payer, auth, password)| {
            Message::SetPassword {
                payer,
                auth,
                password: Password::new(&password).unwrap(),
            }
        }),
        (payer(), 0u32..100_000_000, row_sum()).prop_map(|(payer, reference, auth)| {
            Message::Dispute {
                payer,
                reference: Reference::parse(&format!("{reference:08}")).unwrap(),
                auth,
            }
        }),
        (payer(), 0usize..3, row_sum()).prop_map(|(payer, language, auth)| {
            Message::SetLanguage {
                payer,
                language: [
                    LanguageChoice::English,
                    LanguageChoice::Swahili,
                    LanguageChoice::French,
                ][language],
                auth,
            }
        }),
        Just(Message::Help),
    ]
}

/// Rewrites the spaces of a canonical message the way people type: several spaces, `*`, `#`
/// or `;` between parts, and any case for the keyword.
fn retyped(canonical: &str, separators: &[u8], lower: bool) -> String {
    let mut out = String::new();
    for (index, part) in canonical.split(' ').enumerate() {
        if index > 0 {
            out.push_str(match separators[index % separators.len()] % 4 {
                0 => " ",
                1 => "   ",
                2 => " * ",
                _ => ";",
            });
        }
        if index == 0 && lower {
            out.push_str(&part.to_ascii_lowercase());
        } else {
            out.push_str(part);
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(600))]

    #[test]
    fn format_then_parse_gives_the_same_message(message in message()) {
        let text = message.format();
        prop_assert_eq!(parse(&text), Ok(message), "{}", text);
    }

    #[test]
    fn separators_and_case_do_not_matter(
        message in message(),
        separators in proptest::collection::vec(any::<u8>(), 1..8),
        lower in any::<bool>(),
    ) {
        let text = retyped(&message.format(), &separators, lower);
        // LATER's date and time must stay single tokens, which `retyped` keeps.
        prop_assert_eq!(parse(&text), Ok(message), "{}", text);
    }

    #[test]
    fn arbitrary_text_never_panics_and_replies_fit(text in "\\PC{0,600}") {
        if let Err(error) = parse(&text) {
            for language in offpay_text::Language::ALL {
                let reply = offpay_sms_tan::reply::malformed(language, &error, &text);
                prop_assert!(offpay_text::gsm7::fits_one_sms(&reply) && !reply.is_empty(), "{}", reply);
            }
        }
        let _ = offpay_sms_tan::redact_sms(&text);
    }

    #[test]
    fn sms_like_text_never_panics(text in "(PAY|PAYG|PAYC|OK|REG|BAL|LIMIT|LATER|pay)?[0-9 *.,:/#A-Z-]{0,160}") {
        if let Err(error) = parse(&text) {
            for language in offpay_text::Language::ALL {
                let reply = offpay_sms_tan::reply::malformed(language, &error, &text);
                prop_assert!(offpay_text::gsm7::fits_one_sms(&reply) && !reply.is_empty(), "{}", reply);
            }
        }
    }
}
