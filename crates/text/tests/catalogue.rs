//! The catalogue test: every message the code names exists in every language with the same
//! variables, no file defines a message the code does not name, and every SMS message in every
//! language, rendered with the longest realistic values, fits one GSM-7 SMS of 160 septets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::fmt::Display;

use offpay_text::{AREAS, Catalogue, Id, Language, gsm7, sms};

/// The longest realistic value of each SMS variable (what the server passes in).
fn longest(name: &str, id: Id) -> Option<String> {
    Some(String::from(match name {
        // Amounts as our code writes them: currency code, digits, decimal point.
        "amount" => "KES 1250000.00",
        "fee" if id == sms::PAID_LOW => "KES 1500.00",
        "fee" if id == sms::STATEMENT_FEE => "1500.00",
        // In a statement line the fee arrives as the rendered STATEMENT_FEE.
        "fee" => " fee 1500.00",
        "reference" => "12345678",
        "payee" | "counterparty" => "901020377865",
        "payer" if id == sms::CALLBACK => "26399912345",
        "payer" => "901020377865",
        "new" | "old" => "26399912345",
        "row" => "50",
        "tan" => "123",
        "sum" => "123456",
        "proof" => "BANK ROW 50 TAN 123",
        "due" => "2026-12-01 09:00",
        "date" => "2026-12-01",
        "sign" => "%",
        "minutes" => "10",
        "failures" => "5",
        "currency" => "KES",
        "decimals" => "2",
        "language" => "Kiswahili",
        // The seed's starred low-level form, and a grid instruction in a foreign currency.
        "instruction" if id == sms::PAID_LOW => "26399912345*901020377865*1250000.00*50*338421",
        "instruction" => {
            "PAYC 26399912345 50 12123456789012345678901234567890 1250037.45 USD 123 123456"
        }
        _ => return None,
    }))
}

fn render(
    catalogue: &Catalogue,
    language: Language,
    id: Id,
    values: &[(String, String)],
) -> String {
    let args: Vec<(&str, &dyn Display)> = values
        .iter()
        .map(|(name, value)| (name.as_str(), value as &dyn Display))
        .collect();
    catalogue
        .text_checked(language, id, &args)
        .unwrap_or_else(|error| panic!("{error}"))
}

#[test]
fn the_shipped_files_load_without_problems() {
    assert!(
        Catalogue::get().problems().is_empty(),
        "{:?}",
        Catalogue::get().problems()
    );
}

#[test]
fn every_message_exists_in_every_language_with_the_same_variables() {
    let catalogue = Catalogue::get();
    for area in AREAS {
        let english = offpay_text::variables(area, Language::En);
        let named: BTreeSet<&str> = area.ids.iter().map(|id| id.as_str()).collect();
        assert_eq!(
            named.len(),
            area.ids.len(),
            "{}: an id is listed twice",
            area.name
        );
        for language in Language::ALL {
            let variables = offpay_text::variables(area, language);
            let defined: BTreeSet<&str> = variables.keys().map(String::as_str).collect();
            assert_eq!(
                defined,
                named,
                "{}/{}.ftl defines other messages than the code names",
                language.code(),
                area.name
            );
            for id in area.ids {
                assert!(
                    catalogue.has(language, *id),
                    "{} lacks {}",
                    language.code(),
                    id.as_str()
                );
                assert_eq!(
                    variables.get(id.as_str()),
                    english.get(id.as_str()),
                    "{} {}: not the same variables as English",
                    language.code(),
                    id.as_str()
                );
            }
        }
    }
}

/// Every value a message refers to, at its longest; `what`, `field` and `example` are other
/// messages, taken at their longest rendering in the same language.
fn longest_values(catalogue: &Catalogue, language: Language, id: Id) -> Vec<(String, String)> {
    let area = AREAS
        .iter()
        .find(|area| area.name == "sms")
        .expect("sms area");
    let variables = offpay_text::variables(area, Language::En);
    let longest_of = |prefix: &str| -> String {
        sms::ALL
            .iter()
            .filter(|other| other.as_str().starts_with(prefix))
            .map(|other| {
                render(
                    catalogue,
                    language,
                    *other,
                    &longest_values(catalogue, language, *other),
                )
            })
            .max_by_key(|text| text.chars().count())
            .expect("some message")
    };
    variables[id.as_str()]
        .iter()
        .map(|name| {
            let value = match name.as_str() {
                "what" => longest_of("sms-done-"),
                "field" => longest_of("sms-field-"),
                "example" => longest_of("sms-example-"),
                other => longest(other, id)
                    .unwrap_or_else(|| panic!("no longest value for ${other} of {}", id.as_str())),
            };
            (name.clone(), value)
        })
        .collect()
}

#[test]
fn every_sms_in_every_language_fits_one_gsm7_sms() {
    let catalogue = Catalogue::get();
    let mut problems = Vec::new();
    for language in Language::ALL {
        for id in sms::ALL {
            let text = render(
                catalogue,
                language,
                *id,
                &longest_values(catalogue, language, *id),
            );
            match gsm7::septets(&text) {
                Ok(count) if count <= gsm7::SMS_SEPTETS_MAX => {}
                Ok(count) => problems.push(format!(
                    "{} {} takes {count} septets (two SMS): {text}",
                    language.code(),
                    id.as_str()
                )),
                Err(character) => problems.push(format!(
                    "{} {} has {character:?}, outside GSM-7 (would go as UCS-2, 70 a part): {text}",
                    language.code(),
                    id.as_str()
                )),
            }
        }
        // A statement part: the head, one line with a fee, and the closing balance.
        let values = longest_values(catalogue, language, sms::STATEMENT_PAID_TO);
        let part = format!(
            "{} {} {}",
            render(catalogue, language, sms::STATEMENT_HEAD, &[]),
            render(catalogue, language, sms::STATEMENT_RECEIVED_FROM, &values).max(render(
                catalogue,
                language,
                sms::STATEMENT_PAID_TO,
                &values
            )),
            render(
                catalogue,
                language,
                sms::STATEMENT_BALANCE,
                &[("amount".into(), "KES 1250000.00".into())]
            ),
        );
        if !gsm7::fits_one_sms(&part) {
            problems.push(format!(
                "{} statement part does not fit: {part}",
                language.code()
            ));
        }
        // The lock notice follows the refusal that caused it.
        let refusal = render(catalogue, language, sms::REFUSED_NOT_AUTHENTICATED, &[]);
        let locked = render(
            catalogue,
            language,
            sms::LOCKED_NOW,
            &[("failures".into(), "5".into())],
        );
        if !gsm7::fits_one_sms(&format!("{refusal} {locked}")) {
            problems.push(format!(
                "{} refusal and lock notice do not fit",
                language.code()
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn machine_read_parts_are_the_same_in_every_language() {
    let catalogue = Catalogue::get();
    for language in Language::ALL {
        for (id, must_hold) in [
            (
                sms::PAID_LOW,
                vec![
                    "26399912345*901020377865*1250000.00*50*338421 REF 12345678",
                    "KES 1500.00",
                ],
            ),
            (sms::PAID_GRID, vec!["BANK ROW 50 TAN 123 REF 12345678"]),
            (sms::RECEIVED_CODED, vec!["ROW 50 TAN 123 REF 12345678"]),
            (
                sms::CALLBACK,
                vec!["BANK ROW 50 TAN 123 SUM 123456", "OK 26399912345 50 123 "],
            ),
            (sms::BALANCE, vec!["KES 1250000.00"]),
        ] {
            let text = render(
                catalogue,
                language,
                id,
                &longest_values(catalogue, language, id),
            );
            for part in must_hold {
                assert!(
                    text.contains(part),
                    "{} {}: {text}",
                    language.code(),
                    id.as_str()
                );
            }
        }
    }
}
