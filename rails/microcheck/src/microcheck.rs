//! Microchecks (seed 004 §3.3): a KeyNote assertion the payer signs, licensee the merchant, whose
//! Conditions bind every field of one offer — above all amount, nonce and date. The offer's
//! fields are also written as Local-Constants (`MC_*`), and the Conditions compare the action
//! with them, so a checker can say which field differs when a microcheck is presented for
//! another offer.

use offpay_keynote::{Assertion, AssertionBuilder, Encoding, PrivateKey};

use crate::error::Error;
use crate::offer::{Offer, OfferTerms};

/// Local-Constant name of each offer field.
fn constant_name(field: &str) -> String {
    format!("MC_{}", field.to_ascii_uppercase())
}

/// Writes and signs the microcheck paying for `terms`.
pub fn write(payer: &PrivateKey, terms: &OfferTerms) -> Result<Assertion, Error> {
    let fields = terms.offer.fields();
    let mut builder = AssertionBuilder::for_key(payer, Encoding::Base64)
        .comment("offpay-microcheck microcheck v1");
    let mut tests = Vec::with_capacity(fields.len());
    for (name, value) in fields {
        let constant = constant_name(name);
        builder = builder.local_constant(&constant, value.as_bytes());
        tests.push(format!("{name} == {constant}"));
    }
    Ok(builder
        .licensees("MC_MERCHANT")
        .conditions(&format!("{} -> \"true\";", tests.join(" &&\n")))
        .sign(payer, Encoding::Base64)?)
}

/// Whether `name` is the Local-Constant of offer field `field` (`MC_` and the field in capitals),
/// without building the name.
fn is_constant_for(name: &str, field: &str) -> bool {
    name.len() == field.len() + 3
        && name.starts_with("MC_")
        && name
            .bytes()
            .skip(3)
            .eq(field.bytes().map(|b| b.to_ascii_uppercase()))
}

/// The first field in which the offer a microcheck states (its Local-Constants) differs from
/// `offer`: (field, offered, written). `None` when they agree, or when the microcheck is not in
/// this module's format. The same answer as comparing with [`stated_offer`], without copying.
pub fn stated_mismatch<'a>(
    assertion: &'a Assertion,
    offer: &'a Offer,
) -> Option<(&'static str, &'a str, &'a str)> {
    let fields = offer.fields();
    let mut written: [&str; 9] = [""; 9];
    for (slot, (field, _)) in written.iter_mut().zip(fields.iter()) {
        let (_, value) = assertion
            .local_constants()
            .iter()
            .find(|(name, _)| is_constant_for(name, field))?;
        *slot = core::str::from_utf8(value).ok()?;
    }
    fields
        .into_iter()
        .zip(written)
        .find(|((_, offered), written)| offered != written)
        .map(|((field, offered), written)| (field, offered, written))
}

/// The offer a microcheck states it pays for, read back from its Local-Constants; `None` when it
/// is not in this module's format. Diagnostics only: KeyNote decides.
pub fn stated_offer(assertion: &Assertion) -> Option<Offer> {
    let constant = |name: &str| {
        let wanted = constant_name(name);
        assertion
            .local_constants()
            .iter()
            .find(|(n, _)| *n == wanted)
            .and_then(|(_, v)| String::from_utf8(v.clone()).ok())
    };
    Some(Offer {
        merchant: constant("merchant")?,
        currency: constant("currency")?,
        product: constant("product")?,
        product_class: constant("product_class")?,
        date: constant("date")?,
        timestamp: constant("timestamp")?,
        amount: constant("amount")?,
        app_domain: constant("app_domain")?,
        nonce: constant("nonce")?,
    })
}
