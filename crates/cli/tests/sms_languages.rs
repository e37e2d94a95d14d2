//! Issue 24, languages, end to end through the generic webhook of a real `offpay serve`: a
//! Swahili-speaking and a French-speaking account holder each set their language by SMS (`LUGHA`,
//! `LANGUE`), then pay, check their balance and read their statement in it; the payee's notice
//! speaks the payee's language; the operator sets a language over the API; an interceptor who
//! rewrites the language of a `LANG` message is refused and changes nothing; the web pages are
//! served in the account's language with `<html lang>` set.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod sms_common;

use serde_json::{Value, json};
use sms_common::*;

/// Every reply the server sent back for one SMS, joined.
fn replies(server: &TestServer, id: &str, from: &str, text: &str) -> String {
    let answer: Value = server.sms_with_id(id, from, text);
    answer["replies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|reply| reply.as_str().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join(" | ")
}

fn texts_to(server: &TestServer, phone: &str) -> Vec<String> {
    server
        .outbox()
        .into_iter()
        .filter(|(to, _)| to == phone)
        .map(|(_, text)| text)
        .collect()
}

fn a_swahili_and_a_french_speaker_pay_check_and_read_in_their_language(kind: BackendKind) {
    let server = TestServer::start(kind);
    let envelope = server.seed_world();

    // The Swahili speaker (PAYER, the seed envelope) sets Kiswahili by SMS.
    let reply = server.sms(
        PAYER_PHONE,
        &signed(&envelope, &format!("LUGHA {SEED_EUIN} SW 1 000000")),
    );
    assert!(
        reply.starts_with("IMEFANIKIWA: lugha Kiswahili. BANK ROW "),
        "{reply}"
    );
    // A payment: the confirmation in Kiswahili, the seed's starred form unchanged.
    let reply = server.sms(PAYER_PHONE, &low_pay(&envelope, PAYEE, &kes("150"), 2));
    assert!(
        reply.starts_with("UMELIPA 26399912345*901020377865*150.00*"),
        "{reply}"
    );
    assert!(
        reply.contains(" REF ") && reply.contains(" ADA KES 10.00"),
        "{reply}"
    );
    // The payee chose no language yet: its notice is in the operator's default, English.
    assert!(
        texts_to(&server, PAYEE_PHONE)
            .iter()
            .any(|text| text.starts_with("RECEIVED KES 150.00 FROM 111100002222")),
        "{:?}",
        server.outbox()
    );
    // Balance and statement.
    let reply = server.sms(
        PAYER_PHONE,
        &format!("BAL {SEED_EUIN} 3 {}", tan(&envelope, 3)),
    );
    assert!(reply.starts_with("Salio lako ni KES 999840.00"), "{reply}");
    let statement = replies(
        &server,
        "sw-stmt",
        PAYER_PHONE,
        &format!("STMT {SEED_EUIN} 4 {}", tan(&envelope, 4)),
    );
    let statement = if statement.contains("TAARIFA") {
        statement
    } else {
        texts_to(&server, PAYER_PHONE).join(" | ")
    };
    assert!(statement.contains("TAARIFA "), "{statement}");
    assert!(
        statement.contains(&format!("KWA {PAYEE} KES 150.00 ada 10.00 ref ")),
        "{statement}"
    );
    assert!(
        statement.contains("KUTOKA taslimu KES 1000000.00"),
        "{statement}"
    );
    assert!(statement.contains("SALIO KES 999840.00"), "{statement}");

    // An interceptor rewrites a LANG message's language: refused (in Kiswahili), nothing changes.
    let rewritten =
        signed(&envelope, &format!("LANG {SEED_EUIN} EN 5 000000")).replace(" EN ", " FR ");
    let reply = server.sms(PAYER_PHONE, &rewritten);
    assert!(
        reply.starts_with("Haikukubaliwa: SUM (tarakimu 6) hailingani"),
        "{reply}"
    );
    let reply = server.sms(
        PAYER_PHONE,
        &format!("BAL {SEED_EUIN} 6 {}", tan(&envelope, 6)),
    );
    assert!(reply.starts_with("Salio lako ni "), "{reply}");

    // The French speaker (PAYEE) gets an envelope at an agent and some money.
    let french = server.issue_envelope();
    let french_euin = french.euin.to_string();
    server.post(
        &format!("/api/v1/sms/envelopes/{french_euin}/bind"),
        json!({ "account": PAYEE }),
    );
    server.post(
        "/api/v1/transfers",
        json!({ "transfers": [{ "id": "cash-in-fr", "debit_account": "operator:float",
                 "credit_account": format!("sms:{PAYEE}"), "amount": "5000" }] }),
    );
    let reply = server.sms(
        PAYEE_PHONE,
        &signed(&french, &format!("LANGUE {french_euin} FRANCAIS 1 000000")),
    );
    assert!(
        reply.starts_with("FAIT : langue Francais. BANK ROW "),
        "{reply}"
    );
    let reply = server.sms(PAYEE_PHONE, &low_pay(&french, PAYER, &kes("75.50"), 2));
    assert!(
        reply.starts_with(&format!("PAYÉ {french_euin}*{PAYER}*75.50*")),
        "{reply}"
    );
    assert!(reply.contains(" FRAIS KES 10.00"), "{reply}");
    // The Swahili speaker's notice of it is in Kiswahili.
    assert!(
        texts_to(&server, PAYER_PHONE)
            .iter()
            .any(|text| text.starts_with("UMEPOKEA ")),
        "{:?}",
        texts_to(&server, PAYER_PHONE)
    );
    let reply = server.sms(
        PAYEE_PHONE,
        &format!("BAL {french_euin} 3 {}", tan(&french, 3)),
    );
    assert!(reply.starts_with("Votre solde est de KES "), "{reply}");
    let statement = replies(
        &server,
        "fr-stmt",
        PAYEE_PHONE,
        &format!("STMT {french_euin} 4 {}", tan(&french, 4)),
    );
    let statement = if statement.contains("RELEVÉ") {
        statement
    } else {
        texts_to(&server, PAYEE_PHONE).join(" | ")
    };
    assert!(statement.contains("RELEVÉ "), "{statement}");
    assert!(
        statement.contains(&format!("VERS {PAYER} KES 75.50 frais 10.00 ref ")),
        "{statement}"
    );
    assert!(
        statement.contains(&format!("DE {PAYER} KES 150.00 ref ")),
        "{statement}"
    );
    assert!(statement.contains("SOLDE KES "), "{statement}");

    // The operator sets a language (support or admin): the next reply speaks it; null goes back
    // to the operator's default.
    let answer = server.post(
        &format!("/api/v1/sms/accounts/{PAYER}/language"),
        json!({ "language": "fr" }),
    );
    assert_eq!(answer["language"], "fr", "{answer}");
    let reply = server.sms(
        PAYER_PHONE,
        &format!("BAL {SEED_EUIN} 7 {}", tan(&envelope, 7)),
    );
    assert!(reply.starts_with("Votre solde est de "), "{reply}");
    let (status, answer) = server.api(
        reqwest::Method::POST,
        &format!("/api/v1/sms/accounts/{PAYER}/language"),
        Some(json!({ "language": "de" })),
    );
    assert_eq!(status, 400, "{answer}");
    server.post(
        &format!("/api/v1/sms/accounts/{PAYER}/language"),
        json!({ "language": "Kiswahili" }),
    );

    // The web pages: the login page in the language asked for, the statement in the account's.
    let reply = server.sms(
        PAYER_PHONE,
        &signed(
            &envelope,
            &format!("PASSWORD {SEED_EUIN} 8 000000 Secret2026x"),
        ),
    );
    assert!(reply.starts_with("IMEFANIKIWA: nenosiri"), "{reply}");
    let http = http();
    let login = http
        .get(format!("{}/sms/web/login?lang=fr", server.base))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(login.contains("<html lang=\"fr\">"), "{login}");
    assert!(
        login.contains("Se connecter") && login.contains("Numéro de compte"),
        "{login}"
    );
    let session = web_login(&server, "Secret2026x", 9, &tan(&envelope, 9)).expect("logged in");
    let page = http
        .get(format!("{}/sms/web/statement", server.base))
        .header("cookie", session)
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(page.contains("<html lang=\"sw\">"), "{page}");
    assert!(page.contains("<title>Taarifa ya akaunti</title>"), "{page}");
    assert!(
        page.contains("Salio:") && page.contains(">Lipa</button>"),
        "{page}"
    );
    assert!(page.contains("taslimu"), "{page}");
}

offpay_test_support::on_every_backend!(
    a_swahili_and_a_french_speaker_pay_check_and_read_in_their_language,
);
