//! The account holder's statement page in headless Chromium, driven through chromedriver with a
//! small WebDriver client: the password is set by SMS, the login needs it plus an unused row and
//! its TAN, the session cookie is invisible to scripts, a used row or a wrong TAN is refused, and
//! logging out ends the session. Loopback only; every wait is bounded.
//!
//! Chromium and chromedriver come from Debian (`chromium`, `chromium-driver`); `scripts/test.sh`
//! installs them. Without them this test fails, unless `OFFPAY_ALLOW_SKIP_CHROMIUM=1` is set.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod sms_common;

use serde_json::json;
use sms_common::*;

use offpay_test_support::webdriver::Browser;

/// The account holder's login form, filled and sent.
fn login(browser: &Browser, server: &TestServer, password: &str, row: u8, tan_text: &str) {
    browser.open(&format!("{}/sms/web/login", server.base));
    browser.type_into("#account", PAYER);
    browser.type_into("#password", password);
    browser.type_into("#row", &row.to_string());
    browser.type_into("#tan", tan_text);
    browser.click_and_wait_for_page("#login");
}

fn the_statement_page_logs_in_with_password_and_a_tan_row_in_headless_chromium(kind: BackendKind) {
    let Some(browser) = Browser::start() else {
        return;
    };
    let server = TestServer::start(kind);
    let envelope = server.seed_world();
    let reply = server.sms(
        PAYER_PHONE,
        &signed(
            &envelope,
            &format!("PASSWORD {SEED_EUIN} 1 000000 MyPass2026"),
        ),
    );
    assert!(reply.starts_with("DONE: web password set"), "{reply}");
    let paid = server.sms(PAYER_PHONE, &low_pay(&envelope, PAYEE, &kes("1234.50"), 2));
    let reference = paid.split("REF ").nth(1).unwrap()[..8].to_owned();

    // A wrong TAN: refused, still on the login page, the row is used up.
    let wrong = (tan(&envelope, 3).parse::<u16>().unwrap() + 1) % 1000;
    login(&browser, &server, "MyPass2026", 3, &format!("{wrong:03}"));
    assert!(
        browser.url().ends_with("/sms/web/login"),
        "{}",
        browser.url()
    );
    assert!(browser.text("#error").contains("Login failed"));
    // A wrong password: refused without touching the envelope.
    login(&browser, &server, "NotMyPass1", 4, &tan(&envelope, 4));
    assert!(browser.text("#error").contains("Login failed"));
    assert!(
        !server.envelope(SEED_EUIN)["used_rows"]
            .as_array()
            .unwrap()
            .contains(&json!(4))
    );
    // Password and an unused row with its TAN: the statement.
    login(&browser, &server, "MyPass2026", 4, &tan(&envelope, 4));
    assert!(
        browser.url().ends_with("/sms/web/statement"),
        "{}",
        browser.url()
    );
    let balance = browser.text("#balance");
    assert_eq!(balance, "KES 998755.50", "1000000 - 1234.50 - fee 10");
    let statement = browser.text("#statement");
    assert!(statement.contains(&reference), "{statement}");
    assert!(statement.contains("-1234.50"), "{statement}");
    // The session cookie is HttpOnly: scripts cannot read it.
    let cookies = browser.script("return document.cookie;");
    assert!(
        !cookies
            .as_str()
            .unwrap_or("")
            .contains("offpay_sms_session"),
        "{cookies}"
    );
    // The same row cannot log in again.
    browser.click_and_wait_for_page("#logout");
    assert!(
        browser.url().ends_with("/sms/web/login"),
        "{}",
        browser.url()
    );
    browser.open(&format!("{}/sms/web/statement", server.base));
    assert!(
        browser.url().ends_with("/sms/web/login"),
        "logged out: {}",
        browser.url()
    );
    login(&browser, &server, "MyPass2026", 4, &tan(&envelope, 4));
    assert!(browser.text("#error").contains("used before"));
    drop(browser);
    // A cross-site POST without the form token is refused.
    let response = sms_common::http()
        .post(format!("{}/sms/web/login", server.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "csrf=x&account={PAYER}&password=MyPass2026&row=5&tan=000"
        ))
        .send()
        .unwrap();
    assert!(response.text().unwrap().contains("form expired"));
}

offpay_test_support::on_every_backend!(
    the_statement_page_logs_in_with_password_and_a_tan_row_in_headless_chromium,
);
