//! The operator book taken apart and put together again (how the server stores it, record by
//! record) is the same book, and a book rebuilt from the pieces one sync needs answers that sync
//! exactly as the whole book does.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use offpay_purse::crypto::MasterKey;
use offpay_purse::*;

fn setup() -> (OperatorSecrets, OperatorBook, Vec<Purse>, Timestamp) {
    let operator = OperatorId::new("acme-ke").unwrap();
    let secrets = OperatorSecrets::new(operator, MasterKey::from_bytes([9; 32]));
    let mut book = OperatorBook::new(operator, Currency::KES);
    let now = Timestamp(1_800_000_000);
    let purses: Vec<Purse> = (1..=3)
        .map(|index| {
            let phone = Phone::from_number(254_700_000_000 + index).unwrap();
            Purse::provision(
                &book
                    .provision(&secrets, phone, PurseKind::Customer, now)
                    .unwrap(),
                Pin::parse("1234").unwrap(),
            )
        })
        .collect();
    (secrets, book, purses, now)
}

fn sync(
    book: &mut OperatorBook,
    secrets: &OperatorSecrets,
    purse: &mut Purse,
    now: Timestamp,
) -> SyncOutcome {
    let Outcome::SyncUpload { upload, .. } = purse.start_sync(now) else {
        panic!("no upload")
    };
    let outcome = book.handle_upload(secrets, &upload, now).unwrap();
    purse.apply_answer(&outcome.answer).unwrap();
    outcome
}

#[test]
fn a_book_survives_being_taken_apart() {
    let (secrets, mut book, mut purses, now) = setup();
    let alice = purses[0].identity().purse_id;
    book.queue_operator_credit(alice, Amount::parse("500", Currency::KES).unwrap(), "float")
        .unwrap();
    sync(&mut book, &secrets, &mut purses[0], now);
    book.set_blocked(purses[2].identity().purse_id, true)
        .unwrap();
    let rebuilt = OperatorBook::from_parts(book.clone().into_parts()).unwrap();
    assert_eq!(rebuilt, book);
    assert!(book.header().blocked.contains(&purses[2].identity().phone));

    let mut parts = book.clone().into_parts();
    parts.header.version += 1;
    assert!(matches!(
        OperatorBook::from_parts(parts),
        Err(PurseError::UnsupportedVersion { .. })
    ));
    let mut parts = book.into_parts();
    let duplicate = parts.shadows[0].clone();
    parts.shadows.push(ShadowAccount {
        purse_id: PurseId(99),
        ..duplicate
    });
    assert!(OperatorBook::from_parts(parts).is_err());
}

#[test]
fn a_partial_book_answers_a_sync_as_the_whole_book_does() {
    let (secrets, mut book, mut purses, now) = setup();
    let (alice_id, bob_id) = (purses[0].identity().purse_id, purses[1].identity().purse_id);
    let (alice_phone, bob_phone) = (purses[0].identity().phone, purses[1].identity().phone);
    book.queue_operator_credit(
        alice_id,
        Amount::parse("500", Currency::KES).unwrap(),
        "float",
    )
    .unwrap();
    sync(&mut book, &secrets, &mut purses[0], now);
    let amount = Amount::parse("120", Currency::KES).unwrap();
    let mut random = SeededRandom::new(5);
    let (alice, rest) = purses.split_at_mut(1);
    let bob = &mut rest[0];
    let Outcome::Requested { code1, .. } = bob
        .handle(
            Command::Request {
                payer: alice_phone,
                amount,
            },
            now,
            &mut random,
        )
        .unwrap()
    else {
        panic!()
    };
    let Outcome::Paid { code2, .. } = alice[0]
        .handle(
            Command::Pay {
                payee: bob_phone,
                amount,
                code1,
                pin: Pin::parse("1234").unwrap(),
            },
            now,
            &mut random,
        )
        .unwrap()
    else {
        panic!()
    };
    bob.handle(
        Command::Accept {
            code2,
            request: None,
        },
        now,
        &mut random,
    )
    .unwrap();
    sync(&mut book, &secrets, &mut alice[0], now);

    // Bob's sync, against the whole book and against the pieces a server would load for it:
    // the header, Bob's and Alice's shadows, and the open payments naming Bob.
    let Outcome::SyncUpload { upload, .. } = bob.start_sync(now) else {
        panic!()
    };
    let mut whole = book.clone();
    let expected = whole.handle_upload(&secrets, &upload, now).unwrap();
    let parts = book.clone().into_parts();
    let bob_number = bob_phone.number();
    let partial_parts = BookParts {
        header: parts.header.clone(),
        shadows: parts
            .shadows
            .iter()
            .filter(|shadow| shadow.purse_id == bob_id || shadow.purse_id == alice_id)
            .cloned()
            .collect(),
        open_debits: parts
            .open_debits
            .iter()
            .filter(|(key, _)| key.0 == bob_number)
            .cloned()
            .collect(),
        open_credits: parts
            .open_credits
            .iter()
            .filter(|(key, _)| key.0 == bob_number)
            .cloned()
            .collect(),
        pairwise_versions: Vec::new(),
    };
    let mut partial = OperatorBook::from_parts(partial_parts).unwrap();
    let outcome = partial.handle_upload(&secrets, &upload, now).unwrap();
    assert_eq!(outcome.postings, expected.postings);
    assert_eq!(outcome.matched, expected.matched);
    assert_eq!(outcome.matched.len(), 1);
    assert_eq!(outcome.flags, expected.flags);
    assert_eq!(
        partial.shadow(bob_id).unwrap(),
        whole.shadow(bob_id).unwrap()
    );
    assert_eq!(partial.open_debit_count(), 0);
}
