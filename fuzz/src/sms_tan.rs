//! Rail 2, SMS-TAN: an envelope derived from a test master key, and the seeds of the grammar and
//! envelope-import targets, written by the payer's composer and the import formatter.

use offpay_money::{Amount, Currency};
use offpay_sms_tan::compose::{grid_text, low_text, register_text, setting_text};
use offpay_sms_tan::import::format_envelope;
use offpay_sms_tan::{AccountNumber, Envelope, Euin, MasterKey, RowCount, SecurityLevel};

use crate::Seed;

/// Envelope `263 999 12345` with 20 rows, from a fixed master key.
pub fn envelope() -> Envelope {
    let euin = Euin::parse("26399912345").expect("euin");
    Envelope::derive(
        &MasterKey::from_bytes([11u8; MasterKey::BYTES]),
        euin,
        RowCount::from_count(20).expect("20 rows"),
    )
}

/// Seeds of `sms_tan_grammar`: one instruction of every kind, as a holder writes it with a row
/// of the fixture envelope.
pub fn grammar_seeds() -> Vec<Seed> {
    let envelope = envelope();
    let payer = "26399912345";
    let payee = AccountNumber::parse("901020377865").expect("account");
    let amount = Amount::parse("200000.00", Currency::KES).expect("amount");
    let small = Amount::parse("12.50", Currency::KES).expect("amount");
    let next = Euin::parse("26399912346").expect("euin");
    let mut texts = vec![
        ("pay-low", low_text(&envelope, payer, &payee, &amount, 1)),
        (
            "pay-middle",
            grid_text(&envelope, SecurityLevel::Middle, payer, &payee, &small, 2),
        ),
        (
            "pay-high",
            grid_text(&envelope, SecurityLevel::High, payer, &payee, &amount, 3),
        ),
        ("register", register_text(&envelope, payer, &next, 4)),
        (
            "limit",
            setting_text(
                &envelope,
                Currency::KES,
                "LIMIT 26399912345 DAY 5000 5 000000",
            ),
        ),
        (
            "dialback",
            setting_text(
                &envelope,
                Currency::KES,
                "DIALBACK 26399912345 10000 6 000000",
            ),
        ),
        (
            "high",
            setting_text(&envelope, Currency::KES, "HIGH 26399912345 ON 7 000000"),
        ),
        (
            "password",
            setting_text(
                &envelope,
                Currency::KES,
                "PASSWORD 26399912345 8 000000 MyPass2026",
            ),
        ),
        (
            "dispute",
            setting_text(
                &envelope,
                Currency::KES,
                "DISPUTE 26399912345 12345678 9 000000",
            ),
        ),
    ];
    texts.push((
        "confirm",
        Some("OK 26399912345 20 857 2 927927".to_string()),
    ));
    texts.push(("balance", Some("BAL 26399912345 3 463".to_string())));
    texts.push(("statement", Some("STMT 26399912345 3 463".to_string())));
    texts.push(("help", Some("HELP".to_string())));
    if let Some(Some(pay)) = texts.first().map(|(_, text)| text.clone()) {
        texts.push(("later", Some(format!("LATER 2026-12-01 09:00 {pay}"))));
    }
    texts
        .into_iter()
        .map(|(name, text)| {
            let text = text.unwrap_or_else(|| panic!("the composer wrote no {name}"));
            (name.to_string(), text.into_bytes())
        })
        .collect()
}

/// Seeds of `sms_tan_envelope`: the fixture envelope in the import format, with 20 and 50 rows.
pub fn envelope_seeds() -> Vec<Seed> {
    let master = MasterKey::from_bytes([12u8; MasterKey::BYTES]);
    let fifty = Envelope::derive(
        &master,
        Euin::parse("26399954321").expect("euin"),
        RowCount::from_count(50).expect("50 rows"),
    );
    vec![
        (
            "twenty-rows".to_string(),
            format_envelope(&envelope()).into_bytes(),
        ),
        (
            "fifty-rows".to_string(),
            format_envelope(&fifty).into_bytes(),
        ),
    ]
}
