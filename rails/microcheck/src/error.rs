//! Errors, split by who is at fault: a [`Refusal`] is what a peer (payer, merchant, depositor) is
//! told when its input does not pay; [`Error::Usage`] is a caller or configuration mistake.
//! Every refusal has a stable machine-readable [`Refusal::code`] and a sentence for people.

use serde::{Deserialize, Serialize};

/// Why an offer, a payment, a credential or a deposited microcheck was refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "code", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Refusal {
    /// Bytes or fields that do not parse as what they claim to be.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// What was malformed (offer, microcheck, credential, frame…).
        what: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The microcheck's signature does not verify: it was forged or altered after signing.
    #[error("forged or altered microcheck: {detail}")]
    MicrocheckSignature {
        /// The verifier's words.
        detail: String,
    },
    /// A credential's signature does not verify.
    #[error("forged or altered credential: {detail}")]
    CredentialSignature {
        /// The verifier's words.
        detail: String,
    },
    /// The microcheck pays for something other than this offer.
    #[error(
        "the microcheck does not match the offer: {field} is {microcheck:?}, the offer says {offer:?}"
    )]
    NotThisOffer {
        /// The field that differs.
        field: String,
        /// The offer's value.
        offer: String,
        /// The microcheck's value.
        microcheck: String,
    },
    /// The microcheck carries a nonce that was already paid: a replay.
    #[error("replayed nonce {nonce}: this microcheck was already paid")]
    ReplayedNonce {
        /// The nonce.
        nonce: String,
    },
    /// The credential's validity ended before the purchase time.
    #[error("credential expired at {not_after}; the purchase is at {time}")]
    CredentialExpired {
        /// End of validity.
        not_after: String,
        /// The purchase time.
        time: String,
    },
    /// The credential is not valid yet.
    #[error("credential not valid before {not_before}; the purchase is at {time}")]
    CredentialNotYetValid {
        /// Start of validity.
        not_before: String,
        /// The purchase time.
        time: String,
    },
    /// The credential is for another application domain.
    #[error(
        "wrong application domain: the credential is for {credential:?}, the offer is in {offer:?}"
    )]
    WrongDomain {
        /// The credential's domain.
        credential: String,
        /// The offer's domain.
        offer: String,
    },
    /// The credential is for another currency.
    #[error("wrong currency: the credential is for {credential}, the offer is in {offer}")]
    WrongCurrency {
        /// The credential's currency.
        credential: String,
        /// The offer's currency.
        offer: String,
    },
    /// The amount is above the credential's per-purchase limit.
    #[error(
        "over the offline limit: {amount} is more than {max} per purchase (fetch a transaction credential online)"
    )]
    OverLimit {
        /// The offer's amount.
        amount: String,
        /// The credential's limit.
        max: String,
    },
    /// Too many purchases from this merchant today under the credential.
    #[error("purchase {count} today at this merchant; the credential allows {max} per day")]
    TooManyPurchases {
        /// This purchase's number today.
        count: u32,
        /// The credential's daily limit.
        max: u32,
    },
    /// The credential does not cover this product class (a food-only voucher buying a drink).
    #[error("product class {class:?} is not covered by the credential (it allows {allowed})")]
    ProductClassNotAllowed {
        /// The offer's class.
        class: String,
        /// What the credential allows.
        allowed: String,
    },
    /// An age-restricted item needs an adulthood credential, and none was presented.
    #[error("age-restricted item: an adulthood credential is needed")]
    AdulthoodRequired,
    /// A transaction-specific credential names another purchase.
    #[error("the transaction credential is for another purchase ({field} differs)")]
    TransactionCredentialMismatch {
        /// The field that differs.
        field: String,
    },
    /// No credential presented links the merchant's trusted PA to the payer.
    #[error("no credential from a trusted provisioning agent covers this payer: {detail}")]
    UntrustedIssuer {
        /// What was found instead.
        detail: String,
    },
    /// The compliance checker said no and no more specific reason was found.
    #[error("not authorized by the merchant's policy and the payer's credentials")]
    NotAuthorized,
    /// The microcheck was already deposited.
    #[error("microcheck {nonce} was already deposited")]
    AlreadyDeposited {
        /// The nonce.
        nonce: String,
    },
    /// The clearing center does not know the payer's key.
    #[error("unknown payer key {payer_key}")]
    UnknownPayer {
        /// A short fingerprint of the key.
        payer_key: String,
    },
    /// The clearing center does not know the merchant, or the deposit is from another merchant.
    #[error("unknown merchant {merchant}")]
    UnknownMerchant {
        /// The merchant id.
        merchant: String,
    },
    /// The microcheck is dated later than it reached the clearing center, by more than a
    /// machine's clock may run fast.
    #[error(
        "the machine's clock may be wrong, or the microcheck is post-dated: it is dated {time}, more than {tolerance} after it reached the clearing center at {received}"
    )]
    DatedInFuture {
        /// How far ahead a machine's clock may be, in words (e.g. `2 hours`).
        tolerance: String,
        /// The microcheck's time.
        time: String,
        /// When the deposit arrived.
        received: String,
    },
    /// The microcheck was signed by a key its payer reported lost, and deposited after the
    /// window in which such microchecks are still paid.
    #[error(
        "the payer reported this device lost at {retired}; its microchecks had to be deposited by {deadline}"
    )]
    DepositedTooLate {
        /// When the payer reported the device lost.
        retired: String,
        /// The end of the deposit window.
        deadline: String,
    },
    /// The offer was declined by the payer or the item cannot be sold.
    #[error("{reason}")]
    NotForSale {
        /// Why (sold out, unknown item, declined).
        reason: String,
    },
}

impl Refusal {
    /// The stable code, e.g. `credential_expired`.
    pub fn code(&self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|value| {
                value
                    .get("code")
                    .and_then(|c| c.as_str().map(str::to_owned))
            })
            .unwrap_or_else(|| "refused".to_owned())
    }

    /// A malformed-input refusal.
    pub fn malformed(what: &str, reason: impl Into<String>) -> Refusal {
        Refusal::Malformed {
            what: what.to_owned(),
            reason: reason.into(),
        }
    }
}

/// Everything that can go wrong in this crate.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A peer's input was refused.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The caller or the configuration is wrong (a strategy with no tiers, a bad key…).
    #[error("usage: {0}")]
    Usage(String),
    /// The KeyNote engine failed on our own assertions (a bug, or a bad key given to us).
    #[error("keynote: {0}")]
    KeyNote(#[from] offpay_keynote::Error),
}

/// Results of this crate.
pub type Result<T, E = Error> = core::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_snake_case_and_messages_say_why() {
        let refusal = Refusal::CredentialExpired {
            not_after: "2026-01-01 00:00:00 UTC".into(),
            time: "2026-01-02 00:00:00 UTC".into(),
        };
        assert_eq!(refusal.code(), "credential_expired");
        assert!(refusal.to_string().contains("expired"));
        assert_eq!(Refusal::AdulthoodRequired.code(), "adulthood_required");
        let json = serde_json::to_string(&refusal).unwrap();
        assert_eq!(serde_json::from_str::<Refusal>(&json).unwrap(), refusal);
    }
}
