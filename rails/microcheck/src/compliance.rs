//! The merchant's offline compliance check (seed 004 §3.3), which the clearing center re-runs
//! unchanged (§3.4): the merchant's policy is trusted, the payer's credentials and microcheck are
//! untrusted, the offer is the action attribute set, the merchant is the action authorizer.
//! KeyNote's answer decides; when it is "no", the credentials' stated parameters are read back to
//! tell the payer which rule the purchase broke.

use std::sync::Arc;

use offpay_keynote::{
    Assertion, ComplianceValues, ParseCache, Principal, Session, SignatureCache, Trust,
};

use crate::credential::{CredentialClaims, CredentialKind};
use crate::error::Refusal;
use crate::limits::{ASSERTION_BYTES_MAX, DELEGATION_DEPTH_MAX, PAYMENT_CREDENTIALS_MAX};
use crate::microcheck::stated_mismatch;
use crate::offer::{ADULT_CLASS, OfferTerms};
use crate::policy::MerchantPolicy;
use crate::time::UnixSeconds;

/// A microcheck and the credentials presented with it, parsed.
#[derive(Clone, Debug)]
pub struct Payment {
    /// The microcheck.
    pub microcheck: Arc<Assertion>,
    /// The credentials (payment credential, delegations, adulthood).
    pub credentials: Vec<Arc<Assertion>>,
    /// What each credential states about itself (`None` when it is not in this rail's
    /// format), read once when it was parsed.
    pub claims: Vec<Option<Arc<CredentialClaims>>>,
}

fn parse_assertion(
    what: &str,
    text: &str,
    cache: &mut ParseCache,
) -> Result<Arc<Assertion>, Refusal> {
    if text.len() > ASSERTION_BYTES_MAX {
        return Err(Refusal::malformed(
            what,
            format!("longer than {ASSERTION_BYTES_MAX} bytes"),
        ));
    }
    Assertion::parse_cached(text.as_bytes(), cache)
        .map(Arc::new)
        .map_err(|e| Refusal::malformed(what, e.to_string()))
}

impl Payment {
    /// Parses a microcheck and its credentials (bounded in number and size).
    pub fn parse(microcheck: &str, credentials: &[String]) -> Result<Payment, Refusal> {
        Payment::parse_with(microcheck, credentials, &mut ParseCache::new())
    }

    /// [`Payment::parse`] for one of many payments: Conditions programs already parsed for
    /// another (every microcheck has the same) come from `cache`.
    pub fn parse_with(
        microcheck: &str,
        credentials: &[String],
        cache: &mut ParseCache,
    ) -> Result<Payment, Refusal> {
        if credentials.len() > PAYMENT_CREDENTIALS_MAX {
            return Err(Refusal::malformed(
                "payment",
                format!("more than {PAYMENT_CREDENTIALS_MAX} credentials"),
            ));
        }
        let microcheck = parse_assertion("microcheck", microcheck, cache)?;
        if microcheck.signature().is_none() {
            return Err(Refusal::MicrocheckSignature {
                detail: "the microcheck is not signed".into(),
            });
        }
        let credentials = credentials
            .iter()
            .map(|text| parse_assertion("credential", text, cache))
            .collect::<Result<Vec<_>, _>>()?;
        let claims = credentials.iter().map(|c| read_claims(c)).collect();
        Ok(Payment {
            microcheck,
            credentials,
            claims,
        })
    }

    /// The payer: the microcheck's authorizer.
    pub fn payer(&self) -> &Principal {
        self.microcheck.authorizer()
    }

    /// Every untrusted assertion (credentials, then the microcheck), for batch verification.
    pub fn untrusted(&self) -> impl Iterator<Item = &Assertion> {
        self.credentials
            .iter()
            .chain(core::iter::once(&self.microcheck))
            .map(Arc::as_ref)
    }
}

/// What a credential states about itself, shared.
pub fn read_claims(credential: &Assertion) -> Option<Arc<CredentialClaims>> {
    CredentialClaims::read(credential).map(Arc::new)
}

/// What an approved payment is: who pays, under which credential.
#[derive(Clone, Debug)]
pub struct Approval {
    /// The payer's key.
    pub payer: Principal,
    /// The stated parameters of the payment credential that covers the purchase, if it is in
    /// this rail's format.
    pub credential: Option<Arc<CredentialClaims>>,
}

fn values() -> ComplianceValues {
    // Two fixed, distinct names: this cannot fail.
    ComplianceValues::new(["false", "true"]).unwrap_or_else(|_| unreachable!("two distinct values"))
}

/// Runs the check. `purchases_today` is this purchase's number today for this payer at this
/// merchant, counting itself.
pub fn check(
    policy: &MerchantPolicy,
    terms: &OfferTerms,
    payment: &Payment,
    purchases_today: u32,
    cache: &mut SignatureCache,
) -> Result<Approval, Refusal> {
    check_with(
        policy,
        terms,
        payment,
        purchases_today,
        Signatures::Check(cache),
    )
}

/// How the check learns whether signatures are good.
pub enum Signatures<'a> {
    /// Verify them (through the cache).
    Check(&'a mut SignatureCache),
    /// The caller verified every signature of the payment already (e.g. in a parallel batch,
    /// see [`verify_payment`]); the credentials then enter the query as trusted, which in
    /// KeyNote means exactly "signature already checked".
    Verified,
}

impl core::fmt::Debug for Signatures<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Signatures::Check(_) => "Check",
            Signatures::Verified => "Verified",
        })
    }
}

/// Verifies the payment's signatures through `cache`; the refusal says which one failed.
pub fn verify_payment(payment: &Payment, cache: &mut SignatureCache) -> Result<(), Refusal> {
    if let Err(error) = cache.verify(&payment.microcheck) {
        return Err(Refusal::MicrocheckSignature {
            detail: error.to_string(),
        });
    }
    for credential in &payment.credentials {
        if let Err(error) = cache.verify(credential) {
            return Err(Refusal::CredentialSignature {
                detail: error.to_string(),
            });
        }
    }
    Ok(())
}

/// [`check`], with the signatures either checked here or already verified by the caller.
pub fn check_with(
    policy: &MerchantPolicy,
    terms: &OfferTerms,
    payment: &Payment,
    purchases_today: u32,
    signatures: Signatures<'_>,
) -> Result<Approval, Refusal> {
    let offer = &terms.offer;
    if offer.merchant != policy.merchant {
        return Err(Refusal::NotThisOffer {
            field: "merchant".into(),
            offer: policy.merchant.clone(),
            microcheck: offer.merchant.clone(),
        });
    }
    if let Some((field, offered, written)) = stated_mismatch(&payment.microcheck, offer) {
        return Err(Refusal::NotThisOffer {
            field: field.to_owned(),
            offer: offered.to_owned(),
            microcheck: written.to_owned(),
        });
    }
    let mut scratch = SignatureCache::new();
    let (cache, trust) = match signatures {
        Signatures::Check(cache) => {
            verify_payment(payment, cache)?;
            (cache, Trust::Untrusted)
        }
        Signatures::Verified => (&mut scratch, Trust::Trusted),
    };
    let mut session = Session::new();
    let internal = |e: offpay_keynote::Error| Refusal::malformed("payment", e.to_string());
    for assertion in &policy.assertions {
        session
            .add_assertion(assertion.clone(), Trust::Trusted)
            .map_err(internal)?;
    }
    for credential in &payment.credentials {
        session
            .add_assertion(credential.clone(), trust)
            .map_err(internal)?;
    }
    session
        .add_assertion(payment.microcheck.clone(), trust)
        .map_err(internal)?;
    for (name, value) in terms.attributes(purchases_today) {
        session
            .set_attribute(name.as_bytes(), value.as_bytes())
            .map_err(internal)?;
    }
    session
        .add_action_authorizer_principal(
            policy.merchant.as_bytes(),
            policy.merchant_principal.clone(),
        )
        .map_err(internal)?;
    let result = session.query(&values(), cache).map_err(internal)?;
    let payer = payment.payer().clone();
    let claims: Vec<&Arc<CredentialClaims>> = payment.claims.iter().flatten().collect();
    let paying: Vec<&Arc<CredentialClaims>> = claims
        .iter()
        .copied()
        .filter(|c| {
            matches!(c.kind, CredentialKind::Payer | CredentialKind::Transaction)
                && c.licensee.as_ref() == Some(&payer)
        })
        .collect();
    if result.value == 1 {
        let credential = paying
            .iter()
            .find(|c| credential_reason(c, terms, purchases_today).is_none())
            .map(|c| Arc::clone(c));
        return Ok(Approval { payer, credential });
    }
    Err(diagnose(
        policy,
        terms,
        purchases_today,
        &payer,
        &claims,
        &paying,
    ))
}

fn diagnose(
    policy: &MerchantPolicy,
    terms: &OfferTerms,
    purchases_today: u32,
    payer: &Principal,
    claims: &[&Arc<CredentialClaims>],
    paying: &[&Arc<CredentialClaims>],
) -> Refusal {
    let offer = &terms.offer;
    if offer.app_domain != policy.app_domain {
        return Refusal::WrongDomain {
            credential: policy.app_domain.clone(),
            offer: offer.app_domain.clone(),
        };
    }
    if paying.is_empty() {
        return Refusal::UntrustedIssuer {
            detail: "no payer credential names the key that signed the microcheck".into(),
        };
    }
    if offer.product_class == ADULT_CLASS {
        let adult = claims.iter().any(|c| {
            c.kind == CredentialKind::Adulthood
                && c.licensee.as_ref() == Some(payer)
                && Some(&c.issuer) == policy.age_key.as_ref()
                && c.not_after.is_none_or(|end| terms.time < end)
        });
        if !adult {
            return Refusal::AdulthoodRequired;
        }
    }
    let mut first = None;
    for credential in paying {
        if !issuer_trusted(&credential.issuer, &policy.pa_key, claims, 0) {
            first.get_or_insert(Refusal::UntrustedIssuer {
                detail: "the payer credential is not from the PA this merchant trusts".into(),
            });
            continue;
        }
        if let Some(reason) = credential_reason(credential, terms, purchases_today) {
            first.get_or_insert(reason);
        }
    }
    first.unwrap_or(Refusal::NotAuthorized)
}

/// Whether `issuer` is the PA or holds a delegation chain from it (bounded depth).
fn issuer_trusted(
    issuer: &Principal,
    pa: &Principal,
    claims: &[&Arc<CredentialClaims>],
    depth: usize,
) -> bool {
    if issuer == pa {
        return true;
    }
    if depth >= DELEGATION_DEPTH_MAX {
        return false;
    }
    claims.iter().any(|c| {
        c.kind == CredentialKind::Delegation
            && c.licensee.as_ref() == Some(issuer)
            && issuer_trusted(&c.issuer, pa, claims, depth + 1)
    })
}

/// The first rule of a payment credential this purchase breaks, from its stated parameters.
pub fn credential_reason(
    credential: &CredentialClaims,
    terms: &OfferTerms,
    purchases_today: u32,
) -> Option<Refusal> {
    let offer = &terms.offer;
    if let Some(domain) = &credential.app_domain
        && *domain != offer.app_domain
    {
        return Some(Refusal::WrongDomain {
            credential: domain.clone(),
            offer: offer.app_domain.clone(),
        });
    }
    if let Some(currency) = &credential.currency
        && *currency != offer.currency
    {
        return Some(Refusal::WrongCurrency {
            credential: currency.clone(),
            offer: offer.currency.clone(),
        });
    }
    if let Some(not_after) = credential.not_after
        && terms.time >= not_after
    {
        return Some(Refusal::CredentialExpired {
            not_after: not_after.to_string(),
            time: terms.time.to_string(),
        });
    }
    if let Some(not_before) = credential.not_before
        && terms.time < not_before
    {
        return Some(Refusal::CredentialNotYetValid {
            not_before: not_before.to_string(),
            time: terms.time.to_string(),
        });
    }
    if credential.kind == CredentialKind::Transaction {
        if credential.merchant.as_deref() != Some(offer.merchant.as_str()) {
            return Some(Refusal::TransactionCredentialMismatch {
                field: "merchant".into(),
            });
        }
        if credential.nonce.as_deref() != Some(offer.nonce.as_str()) {
            return Some(Refusal::TransactionCredentialMismatch {
                field: "nonce".into(),
            });
        }
    }
    // The class before the limits: a class the payer may not buy is not a limit an online
    // credential could lift, so the device must not ask for one.
    if let Some(classes) = &credential.classes
        && !classes.covers(&offer.product_class)
    {
        return Some(Refusal::ProductClassNotAllowed {
            class: offer.product_class.clone(),
            allowed: classes.to_string(),
        });
    }
    if let Some(max) = credential.amount_max_minor
        && terms.amount.minor() > max
    {
        let max_amount = offpay_money::Amount::from_minor(max, terms.amount.currency())
            .map(|a| a.decimal().to_string())
            .unwrap_or_else(|_| max.to_string());
        return Some(Refusal::OverLimit {
            amount: format!("{} {}", offer.amount, offer.currency),
            max: format!("{max_amount} {}", offer.currency),
        });
    }
    if let Some(max) = credential.per_merchant_day_max
        && purchases_today > max
    {
        return Some(Refusal::TooManyPurchases {
            count: purchases_today,
            max,
        });
    }
    None
}

/// Whether a stated validity has ended at `time` (for clients choosing among credentials).
pub fn expired(credential: &CredentialClaims, time: UnixSeconds) -> bool {
    credential.not_after.is_some_and(|end| time >= end)
}
