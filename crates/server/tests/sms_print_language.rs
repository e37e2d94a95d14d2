//! The operator prints envelopes in the holder's language: `POST /api/v1/sms/envelopes/print`
//! with `"language"` prints the instructions in English, Swahili or French (the operator's
//! default without it), and an unknown language is a clear 400 that prints nothing. Both
//! backends.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a failed unwrap is a failed test"
)]

use axum::http::StatusCode;
use offpay_test_support::{Backend, InProcess};
use serde_json::json;

/// The PDF's text is not compressed: each language's heading is in its bytes as written (the
/// `(` of a PDF string escaped, `é` in the font's WinAnsi encoding).
const HEADINGS: [(Option<&str>, &[u8]); 4] = [
    (None, b"Envelope number \\(EUIN\\)"),
    (Some("en"), b"Envelope number \\(EUIN\\)"),
    (Some("sw"), b"Namba ya bahasha \\(EUIN\\)"),
    (Some("fr"), b"Num\\351ro d'enveloppe \\(EUIN\\)"),
];

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

#[tokio::test]
async fn envelopes_print_in_the_language_asked_for() {
    for backend in Backend::all("sms_print_language") {
        let server = InProcess::start(backend).await;
        let (status, issued) = server
            .post(
                "/api/v1/sms/envelopes/issue",
                json!({ "count": 1, "rows": 20 }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{issued}");
        let euins = issued["euins"].clone();
        for (language, heading) in HEADINGS {
            let mut body = json!({ "euins": euins, "encoding": "hex" });
            if let Some(language) = language {
                body["language"] = json!(language);
            }
            let (status, answer) = server.post("/api/v1/sms/envelopes/print", body).await;
            assert_eq!(status, StatusCode::OK, "{language:?}: {answer}");
            let pdf = hex::decode(answer["pdf_hex"].as_str().unwrap()).unwrap();
            assert!(
                contains(&pdf, heading),
                "{language:?}: {} not in the PDF",
                String::from_utf8_lossy(heading)
            );
        }
        let (status, answer) = server
            .post(
                "/api/v1/sms/envelopes/print",
                json!({ "euins": euins, "encoding": "hex", "language": "klingon" }),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert_eq!(answer["error"]["code"], "invalid_language", "{answer}");
    }
}
