//! Offers: the action attribute set a merchant proposes (seed 004 §3.3) — merchant, currency,
//! product, date, amount, application domain and nonce — plus the product class and a
//! fixed-width timestamp this rail adds. The checker derives `amount_minor` itself and adds the
//! merchant's count `purchases_today`; nothing a peer sends becomes an attribute unvalidated.

use offpay_money::{Amount, Currency};
use serde::{Deserialize, Serialize};

use crate::error::Refusal;
use crate::limits::{
    AMOUNT_MINOR_MAX, LABEL_BYTES_MAX, MERCHANT_ID_BYTES_MAX, NONCE_BYTES, NONCE_TIME_BYTES,
    PRODUCT_BYTES_MAX,
};
use crate::time::UnixSeconds;

/// The product class of age-restricted goods.
pub const ADULT_CLASS: &str = "adult";

/// An offer as it travels and as it is deposited (all text, as KeyNote sees it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Offer {
    /// The merchant's id; also the microcheck's licensee.
    pub merchant: String,
    /// ISO 4217 code.
    pub currency: String,
    /// What is sold, shown to the payer.
    pub product: String,
    /// The product's class (`drink`, `food`, `adult`…), which credentials may restrict.
    pub product_class: String,
    /// `YYYYMMDD`, UTC.
    pub date: String,
    /// `YYYYMMDDhhmmss`, UTC, the merchant's clock.
    pub timestamp: String,
    /// Decimal amount in the currency, e.g. `0.55`.
    pub amount: String,
    /// Application domain, e.g. `vend`.
    pub app_domain: String,
    /// 32 lower-case hex digits, fresh per offer.
    pub nonce: String,
}

/// An offer whose fields all check out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OfferTerms {
    /// The offer itself.
    pub offer: Offer,
    /// The amount as money.
    pub amount: Amount,
    /// The timestamp as seconds.
    pub time: UnixSeconds,
}

/// Whether `text` is a merchant id: 1 to [`MERCHANT_ID_BYTES_MAX`] of `A-Z a-z 0-9 _ . -` (never
/// a key identifier, which has a `:`, and always usable in ledger ids and record keys).
pub fn valid_merchant_id(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= MERCHANT_ID_BYTES_MAX
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// Whether `text` is a label (domain, class, tier): 1 to [`LABEL_BYTES_MAX`] of `a-z 0-9 _ -`.
pub fn valid_label(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= LABEL_BYTES_MAX
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-".contains(&b))
}

/// Whether `text` is a product name: 1 to [`PRODUCT_BYTES_MAX`] printable ASCII characters,
/// without quotes or backslashes (it is shown on screens and written into KeyNote strings).
pub fn valid_product(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= PRODUCT_BYTES_MAX
        && text
            .bytes()
            .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
}

/// Whether `text` is a nonce: exactly `2 * NONCE_BYTES` lower-case hex digits.
pub fn valid_nonce(text: &str) -> bool {
    text.len() == 2 * NONCE_BYTES
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A nonce from random bytes (the caller supplies randomness).
pub fn nonce_from_bytes(bytes: &[u8; NONCE_BYTES]) -> String {
    hex::encode(bytes)
}

/// The nonce a machine puts in an offer at `now`: the time in the first [`NONCE_TIME_BYTES`]
/// (big-endian seconds), then the rest of `random`. Nonces a machine draws later sort after
/// earlier ones, and so do the transfer ids the CSC derives from them ([`crate::csc::transfer_id`]),
/// which the ledger then appends to its id index instead of scattering them over it. Uniqueness
/// rests on the 88 random bits within each second (and the machine's own check for reuse).
pub fn machine_nonce(now: UnixSeconds, random: &[u8; NONCE_BYTES]) -> String {
    let mut bytes = *random;
    let seconds = now.0.to_be_bytes();
    bytes[..NONCE_TIME_BYTES].copy_from_slice(&seconds[seconds.len() - NONCE_TIME_BYTES..]);
    nonce_from_bytes(&bytes)
}

impl Offer {
    /// Check every field; the error names the first bad one.
    pub fn terms(&self) -> Result<OfferTerms, Refusal> {
        let bad = |field: &str, why: &str| Refusal::malformed("offer", format!("{field}: {why}"));
        if !valid_merchant_id(&self.merchant) {
            return Err(bad("merchant", "not a merchant id"));
        }
        let currency =
            Currency::from_code(&self.currency).map_err(|e| bad("currency", &e.to_string()))?;
        if currency.code() != self.currency {
            return Err(bad("currency", "write the code in capitals"));
        }
        if !valid_product(&self.product) {
            return Err(bad("product", "not a product name"));
        }
        if !valid_label(&self.product_class) {
            return Err(bad("product_class", "not a class label"));
        }
        if !valid_label(&self.app_domain) {
            return Err(bad("app_domain", "not a domain label"));
        }
        if !valid_nonce(&self.nonce) {
            return Err(bad("nonce", "not 32 lower-case hex digits"));
        }
        let time = UnixSeconds::parse_stamp(&self.timestamp)
            .ok_or_else(|| bad("timestamp", "not YYYYMMDDhhmmss"))?;
        if time.date() != self.date {
            return Err(bad("date", "does not match the timestamp"));
        }
        let amount =
            Amount::parse(&self.amount, currency).map_err(|e| bad("amount", &e.to_string()))?;
        if amount.is_zero() || amount.minor() > AMOUNT_MINOR_MAX {
            return Err(bad("amount", "zero or above the rail's maximum"));
        }
        if amount.decimal().to_string() != self.amount {
            return Err(bad(
                "amount",
                "write it with every decimal of the currency (e.g. 0.50)",
            ));
        }
        Ok(OfferTerms {
            offer: self.clone(),
            amount,
            time,
        })
    }

    /// The fields in a fixed order, as (attribute name, value).
    pub fn fields(&self) -> [(&'static str, &str); 9] {
        [
            ("merchant", &self.merchant),
            ("currency", &self.currency),
            ("product", &self.product),
            ("product_class", &self.product_class),
            ("date", &self.date),
            ("timestamp", &self.timestamp),
            ("amount", &self.amount),
            ("app_domain", &self.app_domain),
            ("nonce", &self.nonce),
        ]
    }

    /// The bytes a merchant signs: a label and `name=value` lines in [`Offer::fields`] order.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut out = b"offpay-microcheck offer v1\n".to_vec();
        for (name, value) in self.fields() {
            out.extend_from_slice(name.as_bytes());
            out.push(b'=');
            out.extend_from_slice(value.as_bytes());
            out.push(b'\n');
        }
        out
    }
}

impl OfferTerms {
    /// The action attribute set for a query: the offer's fields, `amount_minor` and
    /// `purchases_today` (this purchase's number today at this merchant, counting itself).
    pub fn attributes(&self, purchases_today: u32) -> Vec<(&'static str, String)> {
        let mut out: Vec<(&'static str, String)> = self
            .offer
            .fields()
            .iter()
            .map(|(name, value)| (*name, (*value).to_owned()))
            .collect();
        out.push(("amount_minor", self.amount.minor().to_string()));
        out.push(("purchases_today", purchases_today.to_string()));
        out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample() -> Offer {
        Offer {
            merchant: "vm-1".into(),
            currency: "KES".into(),
            product: "CelRay Soda".into(),
            product_class: "drink".into(),
            date: "20001023".into(),
            timestamp: "20001023120000".into(),
            amount: "0.55".into(),
            app_domain: "vend".into(),
            nonce: "eb2c3dfc860dde9aeb2c3dfc860dde9a".into(),
        }
    }

    #[test]
    fn a_machine_nonce_starts_with_the_time_of_the_sale() {
        let random = [0xab; NONCE_BYTES];
        let now = UnixSeconds(1_767_225_600);
        let nonce = machine_nonce(now, &random);
        assert!(valid_nonce(&nonce));
        assert_eq!(&nonce[..10], format!("{:010x}", now.0));
        assert_eq!(&nonce[10..], "ab".repeat(NONCE_BYTES - NONCE_TIME_BYTES));
        // Later sales sort later whatever their random bits; the random bits tell apart sales
        // in the same second.
        let later = machine_nonce(now.plus(1), &[0; NONCE_BYTES]);
        assert!(later > nonce);
        assert_ne!(machine_nonce(now, &[1; NONCE_BYTES]), nonce);
    }

    #[test]
    fn a_good_offer_has_terms() {
        let terms = sample().terms().unwrap();
        assert_eq!(terms.amount.minor(), 55);
        assert!(terms.attributes(1).contains(&("amount_minor", "55".into())));
    }

    #[test]
    fn each_bad_field_is_named() {
        type Mutation = fn(&mut Offer);
        let cases: [(&str, Mutation); 9] = [
            ("merchant", |o| o.merchant = "a:b".into()),
            ("currency", |o| o.currency = "kes".into()),
            ("product", |o| o.product = "say \"hi\"".into()),
            ("product_class", |o| o.product_class = "Adult".into()),
            ("app_domain", |o| o.app_domain = String::new()),
            ("nonce", |o| o.nonce = "xyz".into()),
            ("timestamp", |o| o.timestamp = "2000102312000".into()),
            ("date", |o| o.date = "20001024".into()),
            ("amount", |o| o.amount = "0.5".into()),
        ];
        for (field, mutate) in cases {
            let mut offer = sample();
            mutate(&mut offer);
            let error = offer.terms().unwrap_err();
            assert!(error.to_string().contains(field), "{field}: {error}");
        }
        let mut offer = sample();
        offer.amount = "0.00".into();
        assert!(offer.terms().is_err());
    }
}
