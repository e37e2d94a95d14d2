//! Signatures made by `sign` are verified by `sigver` for every algorithm; tampered assertions
//! are refused; untrusted credentials count only with a valid signature.
// A panic is how a test reports failure, helpers included.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use offpay_keynote::{
    Assertion, AssertionBuilder, ComplianceValues, Encoding, Failure, KeyAlgorithm, PrivateKey,
    Session, SignatureAlgorithm, SignatureCache, Trust, cli,
};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn run(args: &[&str]) -> (i32, String, String) {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = cli::run(&args, &mut out, &mut err);
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

fn key_pair(algorithm: SignatureAlgorithm) -> (&'static str, &'static str) {
    match algorithm.key_algorithm() {
        KeyAlgorithm::Rsa => ("rsa1024.pub", "rsa1024.key"),
        KeyAlgorithm::Dsa => ("dsa1024.pub", "dsa1024.key"),
        _ => ("ed25519.pub", "ed25519.key"),
    }
}

fn public_key(name: &str) -> Vec<u8> {
    cli::parse_key_file(&std::fs::read(fixture(name)).unwrap()).unwrap()
}

fn private_key(name: &str) -> PrivateKey {
    let text = cli::parse_key_file(&std::fs::read(fixture(name)).unwrap()).unwrap();
    PrivateKey::parse(&text).unwrap()
}

fn unsigned_text(authorizer: &[u8]) -> String {
    let authorizer = String::from_utf8(authorizer.to_vec()).unwrap();
    format!(
        "KeyNote-Version: 2\n\
         Comment: a credential # with a comment\n\
         Authorizer: \"{authorizer}\"\n\
         Licensees: \"bob\"\n\
         Conditions: app_domain == \"deli\" && @amount < 100 -> \"true\";\n\
         Signature:"
    )
}

/// Sign with the command line and return the signed assertion text.
fn sign_with_cli(dir: &Path, algorithm: SignatureAlgorithm, verify_flag: bool) -> String {
    let (public, private) = key_pair(algorithm);
    let text = unsigned_text(&public_key(public));
    let path = dir.join("assertion");
    std::fs::write(&path, format!("{text}\n")).unwrap();
    let key_path = fixture(private);
    let mut args = vec!["sign"];
    if verify_flag {
        args.push("-v");
    }
    let path_text = path.to_string_lossy().into_owned();
    let key_text = key_path.to_string_lossy().into_owned();
    args.extend([algorithm.name(), &path_text, &key_text]);
    let (code, out, err) = run(&args);
    assert_eq!(code, 0, "{}: {err}", algorithm.name());
    assert!(out.starts_with("            \""), "{out}");
    format!("{text}\n{out}")
}

#[test]
fn sign_then_sigver_for_every_algorithm() {
    let dir = tempfile::tempdir().unwrap();
    for (index, algorithm) in SignatureAlgorithm::ALL.into_iter().enumerate() {
        let signed = sign_with_cli(dir.path(), algorithm, index % 2 == 0);
        let path = dir.path().join("signed");
        std::fs::write(&path, &signed).unwrap();
        let (code, out, err) = run(&["sigver", &path.to_string_lossy()]);
        assert_eq!(code, 0, "{err}");
        assert_eq!(
            out,
            "Signature on assertion 0 verified.\n",
            "{}",
            algorithm.name()
        );

        let assertion = Assertion::parse(signed.as_bytes()).unwrap();
        assert!(assertion.verify_signature().is_ok());
        let signature = String::from_utf8(assertion.signature().unwrap().to_vec()).unwrap();
        assert!(signature.starts_with(algorithm.name()));

        // Tampering with any signed byte breaks the signature.
        let tampered = signed.replacen("@amount < 100", "@amount < 900", 1);
        std::fs::write(&path, &tampered).unwrap();
        let (code, out, _) = run(&["sigver", &path.to_string_lossy()]);
        assert_eq!(code, 0);
        assert!(
            out.starts_with("Signature on assertion 0 did not verify!"),
            "{}: {out}",
            algorithm.name()
        );
        // Tampering with a comment breaks it too: comments are signed (RFC 2704 §4.2).
        let tampered = signed.replacen("with a comment", "with a c0mment", 1);
        assert!(
            Assertion::parse(tampered.as_bytes())
                .unwrap()
                .verify_signature()
                .is_err()
        );
    }
}

#[test]
fn wrong_key_or_algorithm_is_refused_by_sign() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("assertion");
    std::fs::write(
        &path,
        format!("{}\n", unsigned_text(&public_key("rsa1024.pub"))),
    )
    .unwrap();
    let path = path.to_string_lossy().into_owned();
    // A DSA key cannot sign for an RSA authorizer.
    let dsa = fixture("dsa1024.key").to_string_lossy().into_owned();
    let (code, _, err) = run(&["sign", "sig-dsa-sha1-hex:", &path, &dsa]);
    assert_eq!(code, 1);
    assert!(
        err.starts_with("Bad assertion or algorithm format"),
        "{err}"
    );
    // The algorithm name gets its colon added, with the reference's warning.
    let rsa = fixture("rsa1024.key").to_string_lossy().into_owned();
    let (code, out, err) = run(&["sign", "sig-rsa-sha1-base64", &path, &rsa, "0", "80"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("should be terminated with a colon, fixing."));
    assert!(out.starts_with("\"sig-rsa-sha1-base64:"));
    // Without a Signature field there is nothing to sign.
    std::fs::write(dir.path().join("bare"), "Authorizer: \"x\"\n").unwrap();
    let bare = dir.path().join("bare").to_string_lossy().into_owned();
    let (code, _, _) = run(&["sign", "sig-rsa-sha1-hex:", &bare, &rsa]);
    assert_eq!(code, 1);
}

#[test]
fn rsa_signature_is_pkcs1_over_an_octet_string() {
    // Decrypt the signature with the public exponent and check the padded payload is
    // 00 01 ff.. 00 04 14 || SHA-1(signed text || algorithm name), not a DigestInfo.
    use sha1::{Digest, Sha1};
    let key = private_key("rsa1024.key");
    let text = b"Authorizer: \"whoever\"\n";
    let signature = key
        .sign(text, SignatureAlgorithm::RsaSha1(Encoding::Hex))
        .unwrap();
    let bits = hex::decode(&signature["sig-rsa-sha1-hex:".len()..]).unwrap();
    let principal = key.principal();
    let offpay_keynote::Principal::Key { material, .. } = principal else {
        panic!("an RSA key")
    };
    // material is DER SEQUENCE { n, e }.
    let (n, e) = parse_rsa(&material);
    let s = num_from(&bits);
    let m = modpow(&s, &e, &n);
    let mut padded = m;
    while padded.len() < bits.len() {
        padded.insert(0, 0);
    }
    let digest = Sha1::new()
        .chain_update(text)
        .chain_update(b"sig-rsa-sha1-hex:")
        .finalize();
    let tail = [&[0x00, 0x04, 0x14][..], &digest[..]].concat();
    assert_eq!(&padded[..2], &[0x00, 0x01]);
    assert!(padded.ends_with(&tail));
    assert!(
        padded[2..padded.len() - tail.len()]
            .iter()
            .all(|&b| b == 0xff)
    );
}

/// The integers of a DER `SEQUENCE { INTEGER, ... }`.
fn der_ints(der: &[u8]) -> Vec<Vec<u8>> {
    let mut at = 2 + usize::from(der[1] & 0x80 != 0) * usize::from(der[1] & 0x7f);
    let mut out = Vec::new();
    while at < der.len() {
        assert_eq!(der[at], 0x02);
        at += 1;
        let mut length = usize::from(der[at]);
        at += 1;
        if length & 0x80 != 0 {
            let count = length & 0x7f;
            length = 0;
            for _ in 0..count {
                length = (length << 8) | usize::from(der[at]);
                at += 1;
            }
        }
        out.push(num_from(&der[at..at + length]));
        at += length;
    }
    out
}

fn der_sequence(integers: &[&[u8]]) -> Vec<u8> {
    let mut body = Vec::new();
    for integer in integers {
        let mut value = integer.to_vec();
        if value.is_empty() || value[0] & 0x80 != 0 {
            value.insert(0, 0);
        }
        body.push(0x02);
        assert!(value.len() < 0x80);
        body.push(u8::try_from(value.len()).unwrap());
        body.extend_from_slice(&value);
    }
    let mut der = vec![0x30, 0x81, u8::try_from(body.len()).unwrap()];
    der.extend_from_slice(&body);
    der
}

#[test]
fn sign_refuses_the_keys_sigver_refuses() {
    // The reference's regression key is 512-bit DSA: verification refuses signatures by it
    // (primes under DSA_PRIME_BITS_MIN), so `sign` must not make one either.
    let regress = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/keynote/openbsd-regress/test-assertion1"),
    )
    .unwrap();
    let hex_start = regress.find("dsa-hex:").expect("the regression key") + "dsa-hex:".len();
    let hex: String = regress[hex_start..]
        .chars()
        .take_while(|c| *c != '"')
        .filter(char::is_ascii_hexdigit)
        .collect();
    let public = hex::decode(&hex).unwrap();
    let ints = der_ints(&public);
    let [_, p, q, g] = ints.as_slice() else {
        panic!("y, p, q, g")
    };
    let x = vec![2u8];
    let y = modpow(g, &x, p);
    let private = der_sequence(&[&[], p, q, g, &y, &x]);
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("small.key");
    std::fs::write(
        &key_path,
        format!("\"private-dsa-hex:{}\"\n", hex::encode(&private)),
    )
    .unwrap();
    let authorizer = format!("dsa-hex:{}", hex::encode(der_sequence(&[&y, p, q, g])));
    let assertion_path = dir.path().join("assertion");
    std::fs::write(
        &assertion_path,
        format!("{}\n", unsigned_text(authorizer.as_bytes())),
    )
    .unwrap();
    let (code, out, err) = run(&[
        "sign",
        "sig-dsa-sha1-hex:",
        &assertion_path.to_string_lossy(),
        &key_path.to_string_lossy(),
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(err.contains("DSA prime of 512 bits"), "{err}");
}

// Tiny big-number helpers for the check above (schoolbook; 1024-bit keys only).
fn parse_rsa(der: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut at = 2 + usize::from(der[1] & 0x80 != 0) * usize::from(der[1] & 0x7f);
    let mut read = || {
        assert_eq!(der[at], 0x02);
        at += 1;
        let mut length = usize::from(der[at]);
        at += 1;
        if length & 0x80 != 0 {
            let count = length & 0x7f;
            length = 0;
            for _ in 0..count {
                length = (length << 8) | usize::from(der[at]);
                at += 1;
            }
        }
        let value = der[at..at + length].to_vec();
        at += length;
        value
    };
    let n = read();
    let e = read();
    (num_from(&n), num_from(&e))
}

fn num_from(bytes: &[u8]) -> Vec<u8> {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    bytes[start..].to_vec()
}

fn modpow(base: &[u8], exponent: &[u8], modulus: &[u8]) -> Vec<u8> {
    use num_like::*;
    let m = from_be(modulus);
    let mut result = vec![1u32];
    let b = rem(&from_be(base), &m);
    for byte in exponent {
        for bit in (0..8).rev() {
            result = rem(&mul(&result, &result), &m);
            if byte >> bit & 1 == 1 {
                result = rem(&mul(&result, &b), &m);
            }
        }
    }
    to_be(&result)
}

mod num_like {
    //! Little-endian u32 limbs, just enough arithmetic for one RSA public operation.
    pub fn from_be(bytes: &[u8]) -> Vec<u32> {
        let mut limbs = Vec::new();
        for chunk in bytes.rchunks(4) {
            let mut limb = 0u32;
            for &b in chunk {
                limb = (limb << 8) | u32::from(b);
            }
            limbs.push(limb);
        }
        trim(limbs)
    }
    pub fn to_be(limbs: &[u32]) -> Vec<u8> {
        let mut out: Vec<u8> = limbs.iter().rev().flat_map(|l| l.to_be_bytes()).collect();
        let start = out.iter().position(|&b| b != 0).unwrap_or(out.len());
        out.drain(..start);
        out
    }
    fn trim(mut v: Vec<u32>) -> Vec<u32> {
        while v.len() > 1 && v.last() == Some(&0) {
            v.pop();
        }
        if v.is_empty() {
            v.push(0);
        }
        v
    }
    pub fn mul(a: &[u32], b: &[u32]) -> Vec<u32> {
        let mut out = vec![0u64; a.len() + b.len() + 1];
        for (i, &x) in a.iter().enumerate() {
            let mut carry = 0u64;
            for (j, &y) in b.iter().enumerate() {
                let t = out[i + j] + u64::from(x) * u64::from(y) + carry;
                out[i + j] = t & 0xffff_ffff;
                carry = t >> 32;
            }
            out[i + b.len()] += carry;
        }
        trim(out.into_iter().map(|v| v as u32).collect())
    }
    fn cmp(a: &[u32], b: &[u32]) -> core::cmp::Ordering {
        let (a, b) = (trim(a.to_vec()), trim(b.to_vec()));
        a.len()
            .cmp(&b.len())
            .then_with(|| a.iter().rev().cmp(b.iter().rev()))
    }
    fn sub(a: &[u32], b: &[u32]) -> Vec<u32> {
        let mut out = Vec::with_capacity(a.len());
        let mut borrow = 0i64;
        for (i, &limb) in a.iter().enumerate() {
            let mut t = i64::from(limb) - i64::from(*b.get(i).unwrap_or(&0)) - borrow;
            borrow = i64::from(t < 0);
            if t < 0 {
                t += 1 << 32;
            }
            out.push(t as u32);
        }
        trim(out)
    }
    fn shl1(a: &[u32]) -> Vec<u32> {
        let mut out = Vec::with_capacity(a.len() + 1);
        let mut carry = 0u32;
        for &x in a {
            out.push((x << 1) | carry);
            carry = x >> 31;
        }
        out.push(carry);
        trim(out)
    }
    pub fn rem(a: &[u32], m: &[u32]) -> Vec<u32> {
        let mut r = vec![0u32];
        for i in (0..a.len() * 32).rev() {
            r = shl1(&r);
            if a[i / 32] >> (i % 32) & 1 == 1 {
                r[0] |= 1;
            }
            if cmp(&r, m) != core::cmp::Ordering::Less {
                r = sub(&r, m);
            }
        }
        r
    }
}

#[test]
fn untrusted_credentials_need_a_valid_signature() {
    let values = ComplianceValues::new(["false", "true"]).unwrap();
    for algorithm in [
        SignatureAlgorithm::RsaSha1(Encoding::Base64),
        SignatureAlgorithm::DsaSha1(Encoding::Hex),
        SignatureAlgorithm::Ed25519(Encoding::Hex),
    ] {
        let (public, private) = key_pair(algorithm);
        let issuer = public_key(public);
        let policy = AssertionBuilder::new(b"POLICY")
            .licensee(&issuer)
            .conditions("app_domain == \"deli\";")
            .build()
            .unwrap();
        let key = private_key(private);
        let credential = AssertionBuilder::new(&issuer)
            .licensee(b"bob")
            .conditions("@amount < 100;")
            .sign(&key, Encoding::Hex)
            .unwrap();
        let tampered_text = String::from_utf8(credential.text().to_vec())
            .unwrap()
            .replacen("< 100", "< 999", 1);
        let tampered = Assertion::parse(tampered_text.as_bytes()).unwrap();

        let query = |credential: &Assertion, trust: Trust| {
            let mut session = Session::new();
            session
                .add_assertion(Arc::new(policy.clone()), Trust::Trusted)
                .unwrap();
            session
                .add_assertion(Arc::new(credential.clone()), trust)
                .unwrap();
            session.add_action_authorizer(b"bob").unwrap();
            session.set_attribute(b"app_domain", b"deli").unwrap();
            session.set_attribute(b"amount", b"500").unwrap();
            session.query(&values, &mut SignatureCache::new()).unwrap()
        };
        let mut cache = SignatureCache::new();
        assert!(cache.verify(&credential).is_ok());
        // 500 < 100 is false: no trust even with a valid signature.
        assert_eq!(query(&credential, Trust::Untrusted).value, 0);
        // The tampered credential would allow 500, but its signature fails.
        let result = query(&tampered, Trust::Untrusted);
        assert_eq!(result.value, 0, "{}", algorithm.name());
        assert!(matches!(
            result.assertions[1].failure,
            Some(Failure::Signature(_))
        ));
        // Trusted, the same text counts: trust bypasses signatures (RFC 2704 §5.4).
        assert_eq!(query(&tampered, Trust::Trusted).value, 1);
    }
}

#[test]
fn signature_cache_and_batch_verification() {
    let keys: Vec<PrivateKey> = (0..8u8)
        .map(|i| PrivateKey::ed25519_from_seed(&[i + 1; 32]))
        .collect();
    let mut assertions: Vec<Assertion> = keys
        .iter()
        .map(|key| {
            AssertionBuilder::for_key(key, Encoding::Base64)
                .licensee(b"bob")
                .conditions("true;")
                .sign(key, Encoding::Base64)
                .unwrap()
        })
        .collect();
    // One bad apple: the batch fails, the fallback finds exactly which one.
    let bad = String::from_utf8(assertions[3].text().to_vec())
        .unwrap()
        .replacen("true;", "false;", 1);
    assertions[3] = Assertion::parse(bad.as_bytes()).unwrap();
    let refs: Vec<&Assertion> = assertions.iter().collect();
    let mut cache = SignatureCache::new();
    let results = cache.verify_batch(&refs);
    for (index, result) in results.iter().enumerate() {
        assert_eq!(result.is_ok(), index != 3, "assertion {index}");
    }
    assert_eq!(cache.len(), 8);
    // Cached: the same answers again, keyed by the assertion hash.
    let again = cache.verify_batch(&refs);
    assert_eq!(results, again);
    // All good: one batch.
    let good: Vec<&Assertion> = refs
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3)
        .map(|(_, a)| *a)
        .collect();
    let mut fresh = SignatureCache::new();
    assert!(fresh.verify_batch(&good).iter().all(Result::is_ok));
}

#[test]
fn batch_verification_splits_failed_batches_and_verifies_repeats_once() {
    let key = PrivateKey::ed25519_from_seed(&[9; 32]);
    let mut assertions: Vec<Assertion> = (0..100)
        .map(|n| {
            AssertionBuilder::for_key(&key, Encoding::Base64)
                .licensee(format!("payee-{n}").as_bytes())
                .conditions("true;")
                .sign(&key, Encoding::Base64)
                .unwrap()
        })
        .collect();
    // Two forgeries far apart: each half of the batch holds one, so the split goes deep.
    for bad in [17, 80] {
        let text = String::from_utf8(assertions[bad].text().to_vec())
            .unwrap()
            .replacen("true;", "false;", 1);
        assertions[bad] = Assertion::parse(text.as_bytes()).unwrap();
    }
    // Every assertion three times, as a credential shared by many payments is listed.
    let refs: Vec<&Assertion> = (0..3).flat_map(|_| assertions.iter()).collect();
    let mut cache = SignatureCache::new();
    let results = cache.verify_batch(&refs);
    assert_eq!(results.len(), 300);
    for (index, result) in results.iter().enumerate() {
        let bad = matches!(index % 100, 17 | 80);
        assert_eq!(result.is_err(), bad, "position {index}");
    }
    assert_eq!(
        cache.len(),
        100,
        "each distinct assertion verified and kept once"
    );
}

#[test]
fn keygen_writes_keys_that_sign_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    for (algorithm, bits) in [("ed25519-base64:", "256"), ("rsa-hex:", "1024")] {
        let public = dir.path().join("pub").to_string_lossy().into_owned();
        let private = dir.path().join("priv").to_string_lossy().into_owned();
        let (code, _, err) = run(&["keygen", algorithm, bits, &public, &private]);
        assert_eq!(code, 0, "{err}");
        let public_text = std::fs::read_to_string(&public).unwrap();
        assert!(public_text.starts_with(&format!("            \"{algorithm}")));
        let private_text = std::fs::read_to_string(&private).unwrap();
        assert!(private_text.starts_with(&format!("            \"private-{algorithm}")));
        let key =
            PrivateKey::parse(&cli::parse_key_file(private_text.as_bytes()).unwrap()).unwrap();
        let principal =
            offpay_keynote::Principal::parse(&cli::parse_key_file(public_text.as_bytes()).unwrap())
                .unwrap();
        assert_eq!(key.principal(), principal);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&private).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "private key file readable by others");
        }
    }
    // Both to stdout: the reference's separator line.
    let (code, out, _) = run(&["keygen", "ed25519-hex:", "256", "-", "-"]);
    assert_eq!(code, 0);
    assert!(out.contains("\n===========================\n"));
    // Errors and usage.
    assert_eq!(run(&["keygen", "rsa-hex:", "0", "-", "-"]).0, 1);
    assert_eq!(run(&["keygen", "elgamal-hex:", "1024", "-", "-"]).0, 1);
    assert_eq!(run(&["keygen", "dsa-hex:", "1000", "-", "-"]).0, 1);
    assert_eq!(
        run(&["keygen", "rsa-hex:"]).0,
        0,
        "usage exits 0 as in the reference"
    );
}

#[test]
fn private_keys_are_redacted_in_debug() {
    for name in ["rsa1024.key", "dsa1024.key", "ed25519.key"] {
        let key = private_key(name);
        let shown = format!("{key:?}");
        assert!(shown.contains("redacted"), "{shown}");
        let secret = key.to_identifier(Encoding::Hex).unwrap();
        assert!(!shown.contains(&secret[30..60]));
        // Round trip through the private-key text.
        assert_eq!(
            PrivateKey::parse(secret.as_bytes()).unwrap().principal(),
            key.principal()
        );
    }
}
