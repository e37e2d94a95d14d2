//! Issue 18, the seed's fifth path: a PC payment on the web page after the secure login
//! (password and a row), authenticated with another unused row and its TAN, under the SMS rules:
//! fee, limits, one-time rows, the last row kept for `REG`; a resubmitted form pays once.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(clippy::inconsistent_digit_grouping)]

mod sms_common;

use sms_common::*;

fn pay(server: &TestServer, session: &str, form: &[(&str, &str)]) -> String {
    let http = http();
    let statement = http
        .get(format!("{}/sms/web/statement", server.base))
        .header("cookie", session)
        .send()
        .unwrap()
        .text()
        .unwrap();
    let csrf = hidden(&statement, "csrf");
    let request = form
        .iter()
        .find(|(name, _)| *name == "request")
        .map_or_else(
            || hidden(&statement, "request"),
            |(_, value)| (*value).to_owned(),
        );
    let mut body = format!("csrf={csrf}&request={request}");
    for (name, value) in form.iter().filter(|(name, _)| *name != "request") {
        body.push_str(&format!("&{name}={value}"));
    }
    let answer = http
        .post(format!("{}/sms/web/pay", server.base))
        .header("cookie", session)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .unwrap();
    assert!(answer.status().is_success(), "{}", answer.status());
    let text = answer.text().unwrap();
    text.split("id=\"result\">")
        .nth(1)
        .map(|rest| rest[..rest.find("</p>").unwrap()].to_owned())
        .unwrap_or(text)
}

fn a_pc_payment_after_the_secure_login_follows_the_sms_rules(kind: BackendKind) {
    let server = TestServer::start(kind);
    let envelope = server.seed_world();
    let reply = server.sms(
        PAYER_PHONE,
        &signed(
            &envelope,
            &format!("PASSWORD {SEED_EUIN} 1 000000 MyPass2026"),
        ),
    );
    assert!(reply.starts_with("DONE"), "{reply}");
    let session = web_login(&server, "MyPass2026", 2, &tan(&envelope, 2)).expect("logged in");
    // Pay with row 3 and its TAN: the middle level's fee (KES 15).
    let tan3 = tan(&envelope, 3);
    let result = pay(
        &server,
        &session,
        &[
            ("payee", PAYEE),
            ("amount", "250"),
            ("row", "3"),
            ("tan", &tan3),
        ],
    );
    assert!(result.to_ascii_lowercase().contains("paid"), "{result}");
    assert_eq!(server.balance(PAYEE), 250_00);
    assert_eq!(server.balance(PAYER), 1_000_000_00 - 250_00 - 15_00);
    // The seed's PC path confirms to the payer: the holder's phone gets a plain SMS through the
    // outbox, with no row and no TAN in it.
    let confirmations: Vec<String> = server
        .outbox()
        .into_iter()
        .filter(|(to, text)| to == PAYER_PHONE && text.contains("on the web page"))
        .map(|(_, text)| text)
        .collect();
    assert_eq!(confirmations.len(), 1, "{confirmations:?}");
    assert!(
        confirmations[0].contains(PAYEE) && !confirmations[0].contains("TAN"),
        "{confirmations:?}"
    );
    // The same row again: used; a wrong TAN: refused; nothing more paid.
    let again = pay(
        &server,
        &session,
        &[
            ("payee", PAYEE),
            ("amount", "250"),
            ("row", "3"),
            ("tan", &tan3),
        ],
    );
    assert!(
        again.contains("used before") || again.contains("Row 3"),
        "{again}"
    );
    let wrong = format!(
        "{:03}",
        (tan(&envelope, 4).parse::<u16>().unwrap() + 1) % 1000
    );
    let refused = pay(
        &server,
        &session,
        &[
            ("payee", PAYEE),
            ("amount", "250"),
            ("row", "4"),
            ("tan", &wrong),
        ],
    );
    assert!(!refused.to_ascii_lowercase().contains("paid "), "{refused}");
    // A resubmitted form (same request id) pays once.
    let tan5 = tan(&envelope, 5);
    let form = [
        ("request", "00c0ffee"),
        ("payee", PAYEE),
        ("amount", "10"),
        ("row", "5"),
        ("tan", tan5.as_str()),
    ];
    let first = pay(&server, &session, &form);
    let second = pay(&server, &session, &form);
    assert_eq!(first, second);
    assert_eq!(server.balance(PAYEE), 260_00);
    // Without a session there is no form to post.
    let answer = http()
        .post(format!("{}/sms/web/pay", server.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("csrf=x&request=00&payee=901020377865&amount=1&row=6&tan=000")
        .send()
        .unwrap();
    assert!(answer.status().is_redirection(), "{}", answer.status());
    assert_eq!(server.balance(PAYEE), 260_00);
}

offpay_test_support::on_every_backend!(a_pc_payment_after_the_secure_login_follows_the_sms_rules);
