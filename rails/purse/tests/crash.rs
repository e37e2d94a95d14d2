//! Crashes and interrupted payments. A crash drops the in-memory purse and reloads the last
//! persisted state; a purse persists after every state change *before* its output is shown, so a
//! crash either loses the change and the output, or keeps the change and loses only the output.
//! After every single-crash interleaving, once everyone syncs, no money is lost or created and no
//! purse is wrongly flagged.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use offpay_purse::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Crash {
    /// The command ran but its state was never written: it and its output are lost.
    BeforePersist,
    /// The state was written, then the device died before showing the output.
    AfterPersist,
}

struct Device {
    live: Purse,
    persisted: Vec<u8>,
}

impl Device {
    fn new(purse: Purse) -> Device {
        let persisted = purse.encode_state();
        Device {
            live: purse,
            persisted,
        }
    }

    fn restart(&mut self) {
        self.live = Purse::decode_state(&self.persisted).unwrap();
    }
}

struct Run {
    world: World,
    step: usize,
    crash_at: Option<(usize, Crash)>,
    crashed: bool,
}

impl Run {
    /// Runs one command; `None` when a crash ate the output.
    fn run(
        &mut self,
        device: &mut Device,
        command: Command,
    ) -> Option<Result<Outcome, PurseError>> {
        let step = self.step;
        self.step += 1;
        let revision = device.live.revision();
        let result = device
            .live
            .handle(command, self.world.now, &mut self.world.random);
        let crash = self
            .crash_at
            .filter(|(at, _)| *at == step)
            .map(|(_, crash)| crash);
        if device.live.revision() != revision {
            if crash == Some(Crash::BeforePersist) {
                self.crashed = true;
                device.restart();
                return None;
            }
            device.persisted = device.live.encode_state();
        }
        if crash.is_some() {
            self.crashed = true;
            device.restart();
            return None;
        }
        Some(result)
    }

    fn sync(&mut self, device: &mut Device) {
        let Some(Ok(Outcome::SyncUpload { upload, .. })) = self.run(device, Command::StartSync)
        else {
            return; // the upload never left
        };
        let outcome = self
            .world
            .book
            .handle_upload(&self.world.secrets, &upload, self.world.now)
            .unwrap();
        self.world.ledger.apply(&outcome.postings);
        self.world.flags.extend(outcome.flags);
        if let Some(result) = self.run(
            device,
            Command::ApplyAnswer {
                answer: outcome.answer,
            },
        ) {
            result.unwrap();
        }
    }
}

const PAYEE_PHONE: &str = "+254700000002";

/// One payment of 450 from Alice (who holds 1000) to Bob, then syncs; returns the number of
/// steps it took and checks the books.
fn scenario(crash_at: Option<(usize, Crash)>, payee_abandons: bool) -> usize {
    let mut world = World::new(99);
    let mut agent = world.provision("+254700000009", PurseKind::Agent);
    let mut alice = world.provision("+254700000001", PurseKind::Customer);
    let bob = world.provision(PAYEE_PHONE, PurseKind::Customer);
    world.float(&agent, "10000");
    world.sync(&mut agent);
    pay(&mut world, &mut agent, &mut alice, "1000");
    world.sync(&mut agent);
    world.sync(&mut alice);
    let (mut agent, mut alice, mut bob) =
        (Device::new(agent), Device::new(alice), Device::new(bob));
    let mut run = Run {
        world,
        step: 0,
        crash_at,
        crashed: false,
    };
    let amount = kes("450");
    let alice_phone = alice.live.identity().phone;
    let bob_phone = bob.live.identity().phone;

    // Bob asks; after a crash he shows the persisted request again, or asks anew.
    let code1 = loop {
        match run.run(
            &mut bob,
            Command::Request {
                payer: alice_phone,
                amount,
            },
        ) {
            Some(result) => match result.unwrap() {
                Outcome::Requested { code1, .. } => break code1,
                other => panic!("{other:?}"),
            },
            None => {
                if let Some(pending) = bob.live.pending_requests().last() {
                    break pending.code1;
                }
            }
        }
    };
    // Alice pays; after a crash she shows Code 2 again if the debit was kept, or pays anew.
    let code2 = loop {
        let paid_before = alice.live.counter();
        match run.run(
            &mut alice,
            Command::Pay {
                payee: bob_phone,
                amount,
                code1,
                pin: pin(),
            },
        ) {
            Some(result) => match result.unwrap() {
                Outcome::Paid { code2, .. } => break code2,
                other => panic!("{other:?}"),
            },
            None if alice.live.counter() > paid_before => {
                match run.run(&mut alice, Command::ShowCode).unwrap().unwrap() {
                    Outcome::ShowCode(last) => break last.code2,
                    other => panic!("{other:?}"),
                }
            }
            None => {}
        }
    };
    if !payee_abandons {
        loop {
            match run.run(
                &mut bob,
                Command::Accept {
                    code2,
                    request: None,
                },
            ) {
                Some(Ok(Outcome::Received { .. })) | Some(Err(PurseError::AlreadyAccepted)) => {
                    break;
                }
                Some(other) => panic!("{other:?}"),
                None => {}
            }
        }
    }
    for _ in 0..2 {
        run.world.tick(600);
        run.sync(&mut bob);
        run.sync(&mut alice);
        run.sync(&mut agent);
    }
    let steps = run.step;
    // Everyone syncs without crashes until quiet.
    run.crash_at = None;
    for _ in 0..2 {
        for device in [&mut bob, &mut alice, &mut agent] {
            run.sync(device);
        }
    }

    let world = &run.world;
    let label = format!("crash {crash_at:?}, payee abandons: {payee_abandons}");
    assert!(crash_at.is_none() || run.crashed, "{label}: crash injected");
    assert!(
        world.flags.is_empty(),
        "{label}: false flags {:?}",
        world.flags
    );
    assert_eq!(alice.live.balance(), kes("550"), "{label}");
    assert_eq!(bob.live.balance(), kes("450"), "{label}");
    assert_eq!(agent.live.balance(), kes("9000"), "{label}");
    for device in [&alice, &bob, &agent] {
        let expected = device.live.balance().minor_signed();
        assert_eq!(
            world.shadow_minor(&device.live),
            expected,
            "{label}: shadow"
        );
        assert_eq!(
            world.ledger_minor(&device.live),
            expected,
            "{label}: ledger"
        );
        assert!(
            device.live.unacknowledged_log().is_empty(),
            "{label}: log drained"
        );
        assert!(
            device.live.pending_requests().is_empty(),
            "{label}: no request left"
        );
    }
    assert_eq!(world.ledger.balance(LedgerAccount::Suspense), 0, "{label}");
    assert_eq!(world.book.suspense_minor(), 0, "{label}");
    assert_eq!(
        world.ledger.balance(LedgerAccount::OperatorFloat),
        -1_000_000
    );
    steps
}

#[test]
fn a_crash_at_any_step_of_a_payment_loses_and_creates_nothing() {
    for payee_abandons in [false, true] {
        let steps = scenario(None, payee_abandons);
        let mut runs = 0;
        for step in 0..steps {
            for crash in [Crash::BeforePersist, Crash::AfterPersist] {
                scenario(Some((step, crash)), payee_abandons);
                runs += 1;
            }
        }
        assert_eq!(runs, 2 * steps);
        println!("payee abandons {payee_abandons}: {runs} crash interleavings over {steps} steps");
    }
}

#[test]
fn payer_shows_code_2_again_after_a_restart() {
    let mut world = World::new(7);
    let mut agent = world.provision("+254700000009", PurseKind::Agent);
    let mut alice = world.provision("+254700000001", PurseKind::Customer);
    let mut bob = world.provision(PAYEE_PHONE, PurseKind::Customer);
    world.float(&agent, "10000");
    world.sync(&mut agent);
    pay(&mut world, &mut agent, &mut alice, "1000");
    let code1 = request(&mut world, &mut bob, &alice, kes("300"));
    let code2 = respond(&mut world, &mut alice, &bob, kes("300"), code1);
    let mut alice = Purse::decode_state(&alice.encode_state()).unwrap();
    let Outcome::ShowCode(last) = alice
        .handle(Command::ShowCode, world.now, &mut world.random)
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(last.code2, code2);
    assert_eq!(last.amount, kes("300"));
    assert_eq!(last.payee, bob.identity().phone);
    assert!(matches!(
        bob.handle(
            Command::Accept {
                code2: last.code2,
                request: None
            },
            world.now,
            &mut world.random
        ),
        Ok(Outcome::Received { .. })
    ));
    // Entering it twice is recognised.
    assert_eq!(
        bob.handle(
            Command::Accept {
                code2,
                request: None
            },
            world.now,
            &mut world.random
        ),
        Err(PurseError::AlreadyAccepted)
    );
}

#[test]
fn a_debit_whose_payee_never_entered_code_2_credits_the_payee_at_the_server() {
    let mut world = World::new(8);
    let mut agent = world.provision("+254700000009", PurseKind::Agent);
    let mut alice = world.provision("+254700000001", PurseKind::Customer);
    let mut bob = world.provision(PAYEE_PHONE, PurseKind::Customer);
    world.float(&agent, "10000");
    world.sync(&mut agent);
    pay(&mut world, &mut agent, &mut alice, "1000");
    let code1 = request(&mut world, &mut bob, &alice, kes("450"));
    // The pending request survives Bob's restart.
    let mut bob_restarted = Purse::decode_state(&bob.encode_state()).unwrap();
    assert_eq!(bob_restarted.pending_requests().len(), 1);
    assert_eq!(bob_restarted.pending_requests()[0].code1, code1);
    let code2 = respond(&mut world, &mut alice, &bob, kes("450"), code1);
    // Bob never types Code 2. Alice syncs: the payment is posted (her leg) and held in suspense.
    world.sync(&mut alice);
    world.sync(&mut agent);
    assert_eq!(world.ledger.balance(LedgerAccount::Suspense), 45_000);
    // Bob syncs: the operator credits him; his pending request is voided.
    let report = world.sync(&mut bob_restarted);
    assert_eq!(report.credits.len(), 1);
    assert!(matches!(
        report.credits[0].kind,
        EntryKind::PaymentCredit { payer, .. } if payer == alice.identity().phone
    ));
    assert_eq!(bob_restarted.balance(), kes("450"));
    assert!(bob_restarted.pending_requests().is_empty());
    // Typing Code 2 now cannot credit him twice.
    assert_eq!(
        bob_restarted.handle(
            Command::Accept {
                code2,
                request: None
            },
            world.now,
            &mut world.random
        ),
        Err(PurseError::NoPendingRequest)
    );
    world.sync(&mut bob_restarted);
    world.sync(&mut alice);
    assert!(world.flags.is_empty(), "{:?}", world.flags);
    assert_eq!(world.ledger.balance(LedgerAccount::Suspense), 0);
    assert_eq!(world.shadow_minor(&bob_restarted), 45_000);
    assert_eq!(world.shadow_minor(&alice), 55_000);
}

#[test]
fn code_2_entered_between_upload_and_answer_is_not_credited_twice() {
    let mut world = World::new(9);
    let mut agent = world.provision("+254700000009", PurseKind::Agent);
    let mut alice = world.provision("+254700000001", PurseKind::Customer);
    let mut bob = world.provision(PAYEE_PHONE, PurseKind::Customer);
    world.float(&agent, "10000");
    world.sync(&mut agent);
    pay(&mut world, &mut agent, &mut alice, "1000");
    let code1 = request(&mut world, &mut bob, &alice, kes("450"));
    let code2 = respond(&mut world, &mut alice, &bob, kes("450"), code1);
    world.sync(&mut alice);
    // Bob's upload leaves without the credit; he types Code 2 before the answer arrives.
    let Outcome::SyncUpload { upload, .. } = bob.start_sync(world.now) else {
        panic!()
    };
    let outcome = world
        .book
        .handle_upload(&world.secrets, &upload, world.now)
        .unwrap();
    world.ledger.apply(&outcome.postings);
    bob.handle(
        Command::Accept {
            code2,
            request: None,
        },
        world.now,
        &mut world.random,
    )
    .unwrap();
    let Outcome::SyncApplied(report) = bob.apply_answer(&outcome.answer).unwrap() else {
        panic!()
    };
    assert!(
        report.credits.is_empty(),
        "the offered credit is recognised as received"
    );
    assert_eq!(bob.balance(), kes("450"));
    for purse in [&mut bob, &mut alice, &mut agent] {
        world.sync(purse);
    }
    world.sync(&mut bob);
    assert!(world.flags.is_empty(), "{:?}", world.flags);
    assert_eq!(world.ledger.balance(LedgerAccount::Suspense), 0);
    assert_eq!(world.shadow_minor(&bob), 45_000);
}
