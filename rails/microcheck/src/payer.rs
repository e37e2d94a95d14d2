//! The payer device (the paper's "Electronic Check Writer"), sans I/O: it checks the merchant,
//! chooses a credential that covers the offer, writes the microcheck, keeps its own log of every
//! microcheck written, and compares that log with the statement of posted charges.

use std::sync::Arc;

use offpay_keynote::{Assertion, ComplianceValues, PrivateKey, Session, SignatureCache, Trust};
use serde::{Deserialize, Serialize};

use crate::auth::verify_statement;
use crate::compliance::credential_reason;
use crate::credential::{CredentialClaims, CredentialKind};
use crate::error::{Error, Refusal};
use crate::limits::{ASSERTION_BYTES_MAX, PAYMENT_CREDENTIALS_MAX};
use crate::offer::{ADULT_CLASS, Offer, OfferTerms};
use crate::policy::PayerPolicy;
use crate::time::UnixSeconds;
use crate::wire::{Message, WIRE_VERSION};

/// Format version of a log entry.
pub const LOG_ENTRY_VERSION: u32 = 1;

/// One microcheck the device wrote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogEntry {
    /// [`LOG_ENTRY_VERSION`].
    pub v: u32,
    /// Merchant.
    pub merchant: String,
    /// Nonce.
    pub nonce: String,
    /// Product.
    pub product: String,
    /// Amount, decimal.
    pub amount: String,
    /// Currency.
    pub currency: String,
    /// When, `YYYYMMDDhhmmss`.
    pub timestamp: String,
}

/// A posted charge, as the clearing center's statement lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Charge {
    /// Merchant.
    pub merchant: String,
    /// Nonce.
    pub nonce: String,
    /// Product.
    pub product: String,
    /// Amount, decimal.
    pub amount: String,
    /// Currency.
    pub currency: String,
    /// When the offer was made, `YYYYMMDDhhmmss`.
    pub timestamp: String,
    /// The ledger transfer.
    pub transfer_id: String,
}

/// The payer's log set against the statement.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StatementComparison {
    /// Charges the device wrote.
    pub matched: Vec<Charge>,
    /// Charges the device did not write: dispute these.
    pub not_written_here: Vec<Charge>,
    /// Microchecks written but not (yet) posted.
    pub not_posted: Vec<LogEntry>,
}

/// Sets the log against the charges (matched on merchant and nonce; an amount that differs
/// counts as not written here).
pub fn compare_statement(log: &[LogEntry], charges: &[Charge]) -> StatementComparison {
    let mut out = StatementComparison::default();
    for charge in charges {
        let written = log.iter().any(|entry| {
            entry.merchant == charge.merchant
                && entry.nonce == charge.nonce
                && entry.amount == charge.amount
                && entry.currency == charge.currency
        });
        if written {
            out.matched.push(charge.clone());
        } else {
            out.not_written_here.push(charge.clone());
        }
    }
    for entry in log {
        if !charges
            .iter()
            .any(|c| c.merchant == entry.merchant && c.nonce == entry.nonce)
        {
            out.not_posted.push(entry.clone());
        }
    }
    out
}

/// A payment ready to send: append [`PreparedPayment::log_entry`] to the device log first.
#[derive(Clone, Debug)]
pub struct PreparedPayment {
    /// The `payment` message.
    pub message: Message,
    /// The log entry.
    pub log_entry: LogEntry,
}

/// The payer device.
#[derive(Debug)]
pub struct PayerDevice {
    key: PrivateKey,
    policy: PayerPolicy,
    credentials: Vec<(String, Arc<Assertion>, Option<CredentialClaims>)>,
    cache: SignatureCache,
}

impl PayerDevice {
    /// A device holding `key`, trusting `policy`, with the credentials the PA issued.
    pub fn new(
        key: PrivateKey,
        policy: PayerPolicy,
        credentials: &[String],
    ) -> Result<Self, Error> {
        let mut parsed = Vec::new();
        for text in credentials {
            if text.len() > ASSERTION_BYTES_MAX {
                return Err(Error::Usage("a stored credential is too long".into()));
            }
            let assertion = Arc::new(Assertion::parse(text.as_bytes())?);
            let claims = CredentialClaims::read(&assertion);
            parsed.push((text.clone(), assertion, claims));
        }
        Ok(PayerDevice {
            key,
            policy,
            credentials: parsed,
            cache: SignatureCache::new(),
        })
    }

    /// Checks an offer from a machine: its fields, the merchant key's signature over it, and
    /// that the PA vouches for that key as this merchant in this domain (at the payer's `now`).
    pub fn check_offer(
        &mut self,
        offer: &Offer,
        merchant_credential: &str,
        offer_signature: &str,
        now: UnixSeconds,
    ) -> Result<OfferTerms, Refusal> {
        let terms = offer.terms()?;
        let signer = verify_statement(offer_signature, "offer", &offer.signed_bytes())?;
        if merchant_credential.len() > ASSERTION_BYTES_MAX {
            return Err(Refusal::malformed("merchant credential", "too long"));
        }
        let credential = Assertion::parse(merchant_credential.as_bytes())
            .map_err(|e| Refusal::malformed("merchant credential", e.to_string()))?;
        if let Err(error) = self.cache.verify(&credential) {
            return Err(Refusal::CredentialSignature {
                detail: format!("merchant credential: {error}"),
            });
        }
        let mut session = Session::new();
        let internal =
            |e: offpay_keynote::Error| Refusal::malformed("merchant credential", e.to_string());
        session
            .add_assertion(self.policy.assertion.clone(), Trust::Trusted)
            .map_err(internal)?;
        session
            .add_assertion(Arc::new(credential), Trust::Untrusted)
            .map_err(internal)?;
        for (name, value) in [
            ("role", "merchant".to_owned()),
            ("merchant", offer.merchant.clone()),
            ("app_domain", offer.app_domain.clone()),
            ("timestamp", now.stamp()),
        ] {
            session
                .set_attribute(name.as_bytes(), value.as_bytes())
                .map_err(internal)?;
        }
        session
            .add_action_authorizer_principal(b"MERCHANT_KEY", signer)
            .map_err(internal)?;
        let values = ComplianceValues::new(["false", "true"]).map_err(internal)?;
        let result = session.query(&values, &mut self.cache).map_err(internal)?;
        if result.value != 1 {
            return Err(Refusal::UntrustedIssuer {
                detail: format!(
                    "the machine is not vouched for by the PA as merchant {:?} in {:?} now",
                    offer.merchant, offer.app_domain
                ),
            });
        }
        Ok(terms)
    }

    /// Writes the microcheck for `terms`, choosing a credential that covers it (by the offer and
    /// the payer's own clock and log). `extra` holds a transaction-specific credential fetched
    /// online, if any. The error is the reason no credential covers the offer.
    pub fn pay(
        &self,
        terms: &OfferTerms,
        purchases_today: u32,
        now: UnixSeconds,
        extra: &[String],
    ) -> Result<PreparedPayment, Refusal> {
        let mut own_view = terms.clone();
        own_view.time = now;
        let extra_parsed: Vec<(String, Arc<Assertion>, Option<CredentialClaims>)> = extra
            .iter()
            .filter_map(|text| {
                let assertion = Arc::new(Assertion::parse(text.as_bytes()).ok()?);
                let claims = CredentialClaims::read(&assertion);
                Some((text.clone(), assertion, claims))
            })
            .collect();
        let all: Vec<&(String, Arc<Assertion>, Option<CredentialClaims>)> =
            self.credentials.iter().chain(extra_parsed.iter()).collect();
        let me = self.key.principal();
        let mut first_reason = None;
        let mut chosen: Option<(&String, &CredentialClaims)> = None;
        for (text, _, claims) in &all {
            let Some(claims) = claims else { continue };
            if !matches!(
                claims.kind,
                CredentialKind::Payer | CredentialKind::Transaction
            ) || claims.licensee.as_ref() != Some(&me)
            {
                continue;
            }
            match credential_reason(claims, &own_view, purchases_today) {
                // A payer credential that restricts classes says what this payer may buy at
                // all: that is the answer, whatever else another credential says.
                Some(reason @ Refusal::ProductClassNotAllowed { .. })
                    if claims.kind == CredentialKind::Payer =>
                {
                    first_reason = Some(reason);
                }
                Some(reason) => {
                    first_reason.get_or_insert(reason);
                }
                None => {
                    let sooner = chosen.is_none_or(|(_, best)| claims.not_after < best.not_after);
                    if sooner {
                        chosen = Some((text, claims));
                    }
                }
            }
        }
        let Some((credential_text, credential)) = chosen else {
            return Err(first_reason.unwrap_or(Refusal::UntrustedIssuer {
                detail: "this device holds no payer credential; refresh it online".into(),
            }));
        };
        let mut credentials = vec![credential_text.clone()];
        // The delegation chain from the PA to the credential's issuer, if a sub-PA issued it.
        let mut issuer = credential.issuer.clone();
        while issuer != self.policy.pa_key && credentials.len() < PAYMENT_CREDENTIALS_MAX {
            let link = all.iter().find(|(_, _, c)| {
                c.as_ref().is_some_and(|c| {
                    c.kind == CredentialKind::Delegation && c.licensee.as_ref() == Some(&issuer)
                })
            });
            match link {
                Some((text, _, Some(claims))) => {
                    credentials.push(text.clone());
                    issuer = claims.issuer.clone();
                }
                _ => break,
            }
        }
        if terms.offer.product_class == ADULT_CLASS {
            let adult = all.iter().find(|(_, _, c)| {
                c.as_ref().is_some_and(|c| {
                    c.kind == CredentialKind::Adulthood
                        && c.licensee.as_ref() == Some(&me)
                        && c.not_after.is_none_or(|end| now < end)
                })
            });
            match adult {
                Some((text, _, _)) if credentials.len() < PAYMENT_CREDENTIALS_MAX => {
                    credentials.push(text.clone());
                }
                _ => return Err(Refusal::AdulthoodRequired),
            }
        }
        let microcheck = crate::microcheck::write(&self.key, terms)
            .map_err(|e| Refusal::malformed("microcheck", e.to_string()))?;
        let offer = &terms.offer;
        Ok(PreparedPayment {
            message: Message::Payment {
                v: WIRE_VERSION,
                microcheck: String::from_utf8_lossy(microcheck.text()).into_owned(),
                credentials,
            },
            log_entry: LogEntry {
                v: LOG_ENTRY_VERSION,
                merchant: offer.merchant.clone(),
                nonce: offer.nonce.clone(),
                product: offer.product.clone(),
                amount: offer.amount.clone(),
                currency: offer.currency.clone(),
                timestamp: offer.timestamp.clone(),
            },
        })
    }

    /// The device's public key.
    pub fn principal(&self) -> offpay_keynote::Principal {
        self.key.principal()
    }
}

/// This purchase's number today at `merchant`, from the device's own log.
pub fn purchases_today(log: &[LogEntry], merchant: &str, date: &str) -> u32 {
    let count = log
        .iter()
        .filter(|e| e.merchant == merchant && e.timestamp.starts_with(date))
        .count();
    u32::try_from(count).unwrap_or(u32::MAX).saturating_add(1)
}
