//! The PA's key file at start: an RSA key put in place of it is refused (the server signs
//! online only with Ed25519; RUSTSEC-2023-0071 is about the `rsa` crate's private key), and a
//! fresh data directory gets an Ed25519 key.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a failed unwrap is a failed test"
)]

use std::path::Path;
use std::sync::Arc;

use offpay_keynote::{Encoding, KeyAlgorithm, PrivateKey};
use offpay_operator::{ManualClock, SeededEntropy};
use offpay_server::config::{Overrides, ServerConfig};
use offpay_server::rails::microcheck::PA_KEY_FILE;
use offpay_server::{Inputs, Server};

fn config(directory: &Path) -> ServerConfig {
    ServerConfig::resolve(
        Overrides {
            data_dir: Some(directory.to_owned()),
            listen: Some("127.0.0.1:0".into()),
            ..Overrides::default()
        },
        &|_| None,
    )
    .unwrap()
}

fn inputs() -> Inputs {
    Inputs {
        clock: Arc::new(ManualClock::new(offpay_ledger::Timestamp(
            1_780_000_000_000,
        ))),
        entropy: Arc::new(SeededEntropy::from_seed(7)),
    }
}

#[tokio::test]
async fn a_pa_key_that_is_not_ed25519_is_refused_at_start() {
    let directory = tempfile::tempdir().unwrap();
    let rsa = PrivateKey::generate(
        KeyAlgorithm::Rsa,
        offpay_keynote::limits::RSA_MODULUS_BITS_MIN,
        &mut <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(7),
    )
    .unwrap();
    let text = rsa.to_identifier(Encoding::Base64).unwrap();
    let path = directory.path().join(PA_KEY_FILE);
    let mut file = offpay_server::keyfile::create_private_file(&path).unwrap();
    std::io::Write::write_all(&mut file, format!("{}\n", text.as_str()).as_bytes()).unwrap();
    drop(file);
    let error = Server::start_with(config(directory.path()), inputs())
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("an RSA key; the server signs only with Ed25519"),
        "{error}"
    );
}

#[tokio::test]
async fn a_fresh_data_directory_gets_an_ed25519_pa_key() {
    let directory = tempfile::tempdir().unwrap();
    let server = Server::start_with(config(directory.path()), inputs())
        .await
        .map_err(|error| error.to_string())
        .unwrap();
    let text = std::fs::read_to_string(directory.path().join(PA_KEY_FILE)).unwrap();
    let key = PrivateKey::parse(text.trim().as_bytes()).unwrap();
    assert_eq!(key.algorithm(), KeyAlgorithm::Ed25519);
    drop(server);
}
