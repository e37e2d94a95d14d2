//! Code construction: CMAC against the reference, block counts on the SIM budget, the digit
//! split, parsing of what people type, and the test vectors of the protocol document.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use cmac::{Cmac, KeyInit, Mac};
use common::*;
use offpay_purse::codes::*;
use offpay_purse::crypto::{SecretKey, aes_block_count, cmac, decimal_truncate};
use offpay_purse::params::*;
use offpay_purse::*;

fn hex(text: &str) -> Vec<u8> {
    let clean: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    (0..clean.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&clean[i..i + 2], 16).unwrap())
        .collect()
}

fn key(text: &str) -> SecretKey {
    SecretKey::from_bytes(hex(text).try_into().unwrap())
}

#[test]
fn cmac_matches_rfc_4493_vectors() {
    let k = key("2b7e1516 28aed2a6 abf71588 09cf4f3c");
    let message = hex(
        "6bc1bee22e409f96e93d7e117393172a ae2d8a571e03ac9c9eb76fac45af8e51
         30c81c46a35ce411e5fbc1191a0a52ef f69f2445df4f9b17ad2b417be66c3710",
    );
    let cases = [
        (0, "bb1d6929e95937287fa37d129b756746"),
        (16, "070a16b46b4d4144f79bdd9dd04a287c"),
        (40, "dfa66747de9ae63030ca32611497c827"),
        (64, "51f0bebf7e3b9d92fc49741779363cfe"),
    ];
    for (length, expected) in cases {
        assert_eq!(
            cmac(&k, &message[..length]).to_vec(),
            hex(expected),
            "length {length}"
        );
    }
}

#[test]
fn cmac_matches_the_cmac_crate_for_every_length_up_to_80() {
    let k = key("000102030405060708090a0b0c0d0e0f");
    let message: Vec<u8> = (0..80u8).map(|byte| byte.wrapping_mul(37)).collect();
    for length in 0..=80 {
        let mut reference = <Cmac<aes::Aes128> as KeyInit>::new_from_slice(k.expose()).unwrap();
        reference.update(&message[..length]);
        let expected = reference.finalize().into_bytes();
        assert_eq!(
            cmac(&k, &message[..length])[..],
            expected[..],
            "length {length}"
        );
    }
}

fn blocks_of(action: impl FnOnce()) -> u64 {
    let before = aes_block_count();
    action();
    aes_block_count() - before
}

#[test]
fn each_code_generation_and_check_costs_three_aes_blocks() {
    let k = key("000102030405060708090a0b0c0d0e0f");
    let request = RequestFields {
        payee: phone("+254700000002"),
        payer: phone("+254700000001"),
        amount: kes("450"),
        nonce_b: 3651,
    };
    let mut code1 = None;
    let generation = blocks_of(|| code1 = Some(request_code(&k, &request)));
    let code1 = code1.unwrap();
    let check = blocks_of(|| {
        check_request_code(&k, request.payee, request.payer, request.amount, &code1).unwrap();
    });
    let response = ResponseFields {
        payer: request.payer,
        nonce_a: 93,
        amount: request.amount,
        nonce_b: request.nonce_b,
        payee: request.payee,
    };
    let mut code2 = None;
    let response_generation = blocks_of(|| code2 = Some(response_code(&k, &response)));
    let response_check = blocks_of(|| {
        assert_eq!(check_response_code(&k, &request, &code2.unwrap()), Some(93));
    });
    for count in [generation, check, response_generation, response_check] {
        assert_eq!(count, AES_BLOCKS_PER_CODE);
        assert!(count <= AES_BLOCKS_PER_CODE_MAX);
    }
    println!(
        "AES blocks: Code 1 generation {generation}, check {check}; Code 2 generation {response_generation}, check {response_check}"
    );
}

#[test]
fn purse_commands_stay_within_the_block_budget() {
    let mut world = World::new(3);
    let mut alice = world.provision("+254700000001", PurseKind::Customer);
    let mut bob = world.provision("+254700000002", PurseKind::Customer);
    let mut agent = world.provision("+254700000009", PurseKind::Agent);
    world.float(&agent, "5000");
    world.sync(&mut agent);
    pay(&mut world, &mut agent, &mut alice, "1000");

    let amount = kes("450");
    let mut code1 = None;
    let request = blocks_of(|| {
        let Outcome::Requested { code1: code, .. } = bob
            .handle(
                Command::Request {
                    payer: alice.identity().phone,
                    amount,
                },
                world.now,
                &mut world.random,
            )
            .unwrap()
        else {
            panic!()
        };
        code1 = Some(code);
    });
    let code1 = code1.unwrap();
    let check = blocks_of(|| {
        alice
            .check_request(bob.identity().phone, amount, &code1)
            .unwrap();
    });
    let mut code2 = None;
    let paying = blocks_of(|| {
        let Outcome::Paid { code2: code, .. } = alice
            .handle(
                Command::Pay {
                    payee: bob.identity().phone,
                    amount,
                    code1,
                    pin: pin(),
                },
                world.now,
                &mut world.random,
            )
            .unwrap()
        else {
            panic!()
        };
        code2 = Some(code);
    });
    let accepting = blocks_of(|| {
        bob.handle(
            Command::Accept {
                code2: code2.unwrap(),
                request: None,
            },
            world.now,
            &mut world.random,
        )
        .unwrap();
    });
    assert_eq!(request, 3, "Code 1 generation");
    assert_eq!(check, 3, "Code 1 check");
    assert_eq!(paying, 6, "Pay = Code 1 check (3) + Code 2 generation (3)");
    assert_eq!(accepting, 3, "Code 2 check");
    println!(
        "purse: request {request}, check {check}, pay {paying}, accept {accepting} AES blocks"
    );
}

#[test]
fn decimal_truncation_uses_64_bits_and_is_nearly_uniform() {
    // The bias bound: 10^k / 2^64 for k <= 7 is below 2^-40.
    for digits in 1..=TRUNCATION_DIGITS_MAX {
        let bias = 10f64.powi(digits as i32) / 2f64.powi(64);
        assert!(bias <= 2f64.powi(-40), "digits {digits}");
    }
    // The first 8 bytes are the value; the rest is ignored.
    let mut mac = [0u8; 16];
    mac[..8].copy_from_slice(&123_456_789_012u64.to_be_bytes());
    mac[8..].fill(0xFF);
    assert_eq!(decimal_truncate(&mac, 6), 789_012);
    assert_eq!(decimal_truncate(&mac, 4), 9_012);
    // Empirically uniform over 100,000 MACs: each of 10 buckets within 5% of 10,000.
    let k = key("00112233445566778899aabbccddeeff");
    let mut buckets = [0u32; 10];
    for counter in 0u32..100_000 {
        buckets[decimal_truncate(&cmac(&k, &counter.to_be_bytes()), 1) as usize] += 1;
    }
    for count in buckets {
        assert!((9_500..=10_500).contains(&count), "{buckets:?}");
    }
}

#[test]
fn codes_read_as_people_type_them() {
    let code = Code::parse("3651 7623").unwrap();
    assert_eq!(code.to_string(), "3651 7623");
    assert_eq!(Code::parse("36517623").unwrap(), code);
    assert_eq!(Code::parse(" 3651  7623 ").unwrap(), code);
    assert_eq!(split_request_code(&code), (3651, 7623));
    assert_eq!(split_response_code(&code), (36, 517_623));
    assert_eq!(
        Code::parse("3651 762"),
        Err(PurseError::CodeLength {
            expected: 8,
            found: 7
        })
    );
    assert_eq!(
        Code::parse("3651 76234"),
        Err(PurseError::CodeLength {
            expected: 8,
            found: 9
        })
    );
    assert_eq!(
        Code::parse("3651 7b23"),
        Err(PurseError::CodeCharacter {
            position: 7,
            character: 'b'
        })
    );
    assert_eq!(
        Code::parse("3651-7623"),
        Err(PurseError::CodeCharacter {
            position: 5,
            character: '-'
        })
    );
    assert_eq!(
        Code::parse("３６５１７６２３").unwrap_err().cause(),
        Cause::Input,
        "full-width digits are not ASCII digits"
    );
    assert!(Code::parse("").is_err());
}

/// The protocol document's test vectors, computed here. The test fails if the document and the
/// code disagree; run with `PRINT_VECTORS=1` and `--nocapture` to print the table.
#[test]
fn protocol_document_vectors_match_the_code() {
    let k = key("000102030405060708090a0b0c0d0e0f");
    let alice = phone("+254700000001");
    let bob = phone("+254700000002");
    let cases = [
        ("450", 3650u16, 93u16),
        ("450", 3651, 93),
        ("451", 3650, 93),
        ("450.50", 1, 0),
        ("2500", 9998, 99),
    ];
    let mut lines = Vec::new();
    lines.push(format!(
        "| K = {} | | | | | |",
        "000102030405060708090a0b0c0d0e0f"
    ));
    for (amount, nonce_b, nonce_a) in cases {
        let amount = kes(amount);
        let request = RequestFields {
            payee: bob,
            payer: alice,
            amount,
            nonce_b,
        };
        let response = ResponseFields {
            payer: alice,
            nonce_a,
            amount,
            nonce_b,
            payee: bob,
        };
        let request_input: String = request_mac_input(&request)
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        let response_input: String = response_mac_input(&response)
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        lines.push(format!(
            "| {amount} | {nonce_b:04} | {nonce_a:02} | `{request_input}` | `{response_input}` | {} / {} |",
            request_code(&k, &request),
            response_code(&k, &response)
        ));
    }
    if std::env::var_os("PRINT_VECTORS").is_some() {
        println!("{}", lines.join("\n"));
    }
    let document = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/protocols/short-code-purse.md"
    ))
    .expect("the protocol document exists");
    for line in &lines[1..] {
        assert!(
            document.contains(line.as_str()),
            "docs/protocols/short-code-purse.md lacks the vector line\n{line}"
        );
    }
}
