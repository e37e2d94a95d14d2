//! The wallet file at rest, backups, and the file-backed log.

#![allow(clippy::expect_used)] // Tests stop at the first surprise.

mod common;

use common::{NetConfig, Sim, amount};
use offpay_wallet::file::{
    KdfParams, WalletSecrets, create_backup, open_wallet_file, restore_backup, seal_wallet_file,
};
use offpay_wallet::{
    Error, FileStorage, LogKey, LogStorage, Misuse, SealedFileStorage, SeededEntropy, Wallet,
    apply_actions,
};

fn secrets(sim: &Sim, index: usize) -> WalletSecrets {
    WalletSecrets {
        keys: sim.devices[index].keys.clone(),
        credential: sim.wallet(index).credential().clone(),
        office_public: sim.office.public(),
    }
}

#[test]
fn the_wallet_file_opens_with_the_passphrase_only() {
    let sim = Sim::new(1, 41, NetConfig::default());
    let mut entropy = SeededEntropy::from_seed(41);
    let sealed = seal_wallet_file(
        &secrets(&sim, 0),
        b"correct horse",
        KdfParams::INSECURE_FOR_TESTS,
        &mut entropy,
    )
    .expect("seal");
    let opened = open_wallet_file(&sealed, b"correct horse").expect("opens");
    assert_eq!(
        opened.keys.signing_public(),
        sim.devices[0].keys.signing_public()
    );
    assert_eq!(opened.credential, *sim.wallet(0).credential());
    assert_eq!(
        open_wallet_file(&sealed, b"wrong horse").map(|_| ()),
        Err(Error::Misuse(Misuse::WrongPassphraseOrCorrupt))
    );
    // Any changed byte — header parameters included — is refused.
    for position in [0, 5, 8, 20, 40, sealed.len() - 1] {
        let mut altered = sealed.clone();
        altered[position] ^= 1;
        assert!(
            open_wallet_file(&altered, b"correct horse").is_err(),
            "byte {position}"
        );
    }
    // Secrets never show in Debug output.
    let shown = format!("{opened:?}");
    assert!(shown.contains("redacted"));
}

#[test]
fn a_forged_kdf_cost_is_refused_before_any_work() {
    let sim = Sim::new(1, 42, NetConfig::default());
    let mut entropy = SeededEntropy::from_seed(42);
    let mut sealed = seal_wallet_file(
        &secrets(&sim, 0),
        b"pw",
        KdfParams::INSECURE_FOR_TESTS,
        &mut entropy,
    )
    .expect("seal");
    // memory_kib lives at bytes 6..10.
    sealed[6..10].copy_from_slice(&u32::MAX.to_be_bytes());
    assert_eq!(
        open_wallet_file(&sealed, b"pw").map(|_| ()),
        Err(Error::Misuse(Misuse::KdfParametersOutOfRange))
    );
}

#[test]
fn a_restored_backup_must_sync_before_it_pays() {
    let mut sim = Sim::new(2, 43, NetConfig::default());
    let mut entropy = SeededEntropy::from_seed(43);
    let params = KdfParams::INSECURE_FOR_TESTS;
    let wallet_file =
        seal_wallet_file(&secrets(&sim, 1), b"pw", params, &mut entropy).expect("seal");
    let backup = create_backup(
        &wallet_file,
        sim.devices[1].storage.bytes(),
        b"pw",
        params,
        &mut entropy,
    )
    .expect("backup");
    assert!(restore_backup(&backup, b"nope").is_err());
    let (file, log) = restore_backup(&backup, b"pw").expect("restore");
    assert_eq!(log, sim.devices[1].storage.bytes());
    let secrets = open_wallet_file(&file, b"pw").expect("opens");
    let (restored, actions, _) = Wallet::open(secrets.keys, &log, sim.now, true).expect("opens");
    assert_eq!(restored.balance(), amount(common::CHARGE_MINOR));
    // Put the restored wallet in the device and try to pay: it votes no until it syncs.
    let mut storage = offpay_wallet::MemoryStorage::new();
    {
        let byte_chunk = log.as_slice();
        storage.append(byte_chunk).expect("append");
    }
    sim.devices[1].storage = storage;
    sim.devices[1].wallet = Some(restored);
    sim.execute(1, actions);
    sim.wallet_mut(1).set_buyer_mode(true);
    let refused = sim.start_sale(0, 1, 1_000).expect("sale starts");
    sim.quiesce();
    assert_eq!(
        sim.wallet(0).outcome(&refused),
        Some(offpay_wallet::Outcome::Voided)
    );
    sim.sync(1);
    let paid = sim.start_sale(0, 1, 1_000).expect("sale starts");
    sim.quiesce();
    assert_eq!(
        sim.wallet(0).outcome(&paid),
        Some(offpay_wallet::Outcome::Posted)
    );
}

#[test]
fn the_file_log_survives_reopening_and_cuts_a_torn_tail() {
    let sim = Sim::new(1, 44, NetConfig::default());
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("wallet.log");
    let keys = sim.devices[0].keys.clone();
    {
        let mut storage = FileStorage::open(&path).expect("open");
        storage
            .append(sim.devices[0].storage.bytes())
            .expect("append");
    }
    // A torn append: half a frame at the end.
    {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open");
        file.write_all(&[0, 0, 1, 0, 7, 7, 7]).expect("write");
    }
    let mut storage = FileStorage::open(&path).expect("open");
    let (wallet, actions, report) =
        Wallet::recover(keys.clone(), &mut storage, sim.now).expect("recover");
    assert_eq!(report.torn_bytes, 7);
    assert_eq!(wallet.balance(), amount(common::CHARGE_MINOR));
    apply_actions(actions, &mut storage, &mut |_, _| {}, &mut |_| {}).expect("persist");
    drop(storage);
    let mut storage = FileStorage::open(&path).expect("open");
    let (again, _, report) = Wallet::recover(keys, &mut storage, sim.now).expect("recover");
    assert_eq!(report.torn_bytes, 0);
    // Reopening logs one more run.
    assert_eq!(again.log_head(), wallet.log_head() + 1);
}

/// Every byte sequence that would tell a thief who paid whom how much.
fn revealing(sim: &Sim) -> Vec<Vec<u8>> {
    let mut needles = Vec::new();
    for index in 0..sim.devices.len() {
        needles.push(sim.ids[index].0.to_vec());
    }
    for minor in [1_234u64, common::CHARGE_MINOR, common::CHARGE_MINOR - 1_234] {
        needles.push(minor.to_be_bytes().to_vec());
    }
    needles
}

fn reveals(bytes: &[u8], needles: &[Vec<u8>]) -> bool {
    needles.iter().any(|needle| {
        bytes
            .windows(needle.len())
            .any(|window| window == needle.as_slice())
    })
}

/// A stolen phone's files (wallet file, sealed log, sealed blocked list) name no counterparty
/// and no amount, are 0600, and open again with the wallet's keys; a torn sealed append is cut
/// off; an earlier release's plain log is sealed on open.
#[test]
fn a_stolen_devices_files_reveal_no_counterparty_or_amount() {
    let mut sim = Sim::new(2, 45, NetConfig::default());
    sim.start_sale(0, 1, 1_234).expect("sale starts");
    sim.quiesce();
    sim.sync(0);
    let needles = revealing(&sim);
    let plain = sim.devices[1].storage.bytes().to_vec();
    // The check is meaningful: the plain log shows them all.
    assert!(
        needles
            .iter()
            .all(|needle| reveals(&plain, std::slice::from_ref(needle)))
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let keys = sim.devices[1].keys.clone();
    let key = LogKey::derive(&keys);
    let path = dir.path().join("buyer.log");
    {
        let mut storage = SealedFileStorage::open(&path, key.clone()).expect("open");
        let parsed = offpay_wallet::record::parse_log(&plain).expect("parses");
        for record in &parsed.records {
            storage
                .append(&offpay_wallet::record::frame(record))
                .expect("append");
        }
    }
    let blocked_path = dir.path().join("buyer.blocked");
    std::fs::write(&blocked_path, key.seal_blocked(&[sim.ids[0]])).expect("write");
    let wallet_file = seal_wallet_file(
        &secrets(&sim, 1),
        b"correct horse",
        KdfParams::INSECURE_FOR_TESTS,
        &mut SeededEntropy::from_seed(45),
    )
    .expect("seal");
    for bytes in [
        std::fs::read(&path).expect("read"),
        std::fs::read(&blocked_path).expect("read"),
        wallet_file.clone(),
    ] {
        assert!(!reveals(&bytes, &needles));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert_eq!(
        key.open_blocked(&std::fs::read(&blocked_path).expect("read"))
            .expect("opens"),
        vec![sim.ids[0]]
    );
    // Another wallet's key opens neither: not one frame of the log, not the list.
    let other = LogKey::derive(&sim.devices[0].keys);
    if let Ok(opened) = other.open_log(&std::fs::read(&path).expect("read")) {
        assert!(opened.frame_ends.is_empty() && opened.plain.is_empty());
    }
    assert!(
        other
            .open_blocked(&std::fs::read(&blocked_path).expect("read"))
            .is_err()
    );

    // A torn sealed append is cut off, and the wallet reopens with its balance.
    {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open");
        file.write_all(&[0, 0, 0, 40, 1, 2, 3]).expect("write");
    }
    let mut storage = SealedFileStorage::open(&path, key.clone()).expect("open");
    let (wallet, _actions, _report) =
        Wallet::recover(keys.clone(), &mut storage, sim.now).expect("recover");
    assert_eq!(storage.torn_bytes_cut(), 7);
    assert_eq!(wallet.balance(), sim.wallet(1).balance());

    // A plain log from an earlier release is sealed on first open.
    let old = dir.path().join("old.log");
    std::fs::write(&old, &plain).expect("write");
    let mut storage = SealedFileStorage::open(&old, key).expect("open");
    assert!(!reveals(&std::fs::read(&old).expect("read"), &needles));
    let (wallet, _, _) = Wallet::recover(keys, &mut storage, sim.now).expect("recover");
    assert_eq!(wallet.balance(), sim.wallet(1).balance());
}
