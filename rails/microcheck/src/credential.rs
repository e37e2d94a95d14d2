//! Credential templates: how the risk strategy becomes KeyNote (seed 004 §3.2). Every credential
//! carries its parameters as Local-Constants (`CR_*`), and its Conditions test the action against
//! those constants, so that the signed text is both the rule KeyNote enforces and the data a
//! checker reads back to say *why* a purchase was refused ([`CredentialClaims`]).
//!
//! Kinds: a **payer** credential (PA → payer key: domain, currency, amount per purchase,
//! validity window, purchases per merchant per day, product classes); a **transaction**
//! credential (PA → payer key for one offer, fetched online when the limits are exceeded); an
//! **adulthood** credential (age key → payer key, for `adult` goods); a **merchant** credential
//! (PA → merchant key, which a payer may check before paying); a **delegation** (PA → sub-PA
//! key, within bounds, so that a sub-PA can issue payer credentials).

use offpay_keynote::{Assertion, AssertionBuilder, Encoding, Principal, PrivateKey};
use offpay_money::{Amount, Currency};

use crate::error::Error;
use crate::limits::{AMOUNT_MINOR_MAX, CREDENTIAL_CLASSES_MAX, PER_MERCHANT_DAY_MAX};
use crate::offer::{ADULT_CLASS, valid_label, valid_merchant_id, valid_nonce};
use crate::time::UnixSeconds;

/// Which product classes a credential covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Classes {
    /// Every class (age-restricted goods still need an adulthood credential).
    Any,
    /// Only these (e.g. `food` for a food-only voucher).
    Only(Vec<String>),
}

impl Classes {
    /// Whether `class` is covered.
    pub fn covers(&self, class: &str) -> bool {
        match self {
            Classes::Any => true,
            Classes::Only(list) => list.iter().any(|c| c == class),
        }
    }

    fn constant(&self) -> String {
        match self {
            Classes::Any => "*".to_owned(),
            Classes::Only(list) => list.join(","),
        }
    }

    fn from_constant(text: &str) -> Classes {
        if text == "*" {
            Classes::Any
        } else {
            Classes::Only(text.split(',').map(str::to_owned).collect())
        }
    }
}

impl core::fmt::Display for Classes {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Classes::Any => f.write_str("every class"),
            Classes::Only(list) => f.write_str(&list.join(", ")),
        }
    }
}

/// What a payer credential allows: one tier of the risk strategy, made concrete for one payer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PayerTemplate {
    /// Serial number (unique per issue; shown in statements and flags).
    pub serial: String,
    /// Strategy tier name, e.g. `daily`.
    pub tier: String,
    /// Application domain.
    pub app_domain: String,
    /// Currency.
    pub currency: Currency,
    /// Largest amount per purchase.
    pub amount_max: Amount,
    /// Start of validity.
    pub not_before: UnixSeconds,
    /// End of validity (exclusive).
    pub not_after: UnixSeconds,
    /// Purchases per merchant per day.
    pub per_merchant_day_max: u32,
    /// Product classes.
    pub classes: Classes,
}

/// A transaction-specific credential: one offer, fetched online.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransactionTemplate {
    /// Serial number.
    pub serial: String,
    /// Application domain.
    pub app_domain: String,
    /// Currency.
    pub currency: Currency,
    /// The exact amount.
    pub amount: Amount,
    /// The merchant.
    pub merchant: String,
    /// The offer's nonce.
    pub nonce: String,
    /// The offer's product class (the PA checked it against the payer's classes).
    pub product_class: String,
    /// Start of validity.
    pub not_before: UnixSeconds,
    /// End of validity (exclusive).
    pub not_after: UnixSeconds,
}

/// Which kind of credential an assertion is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CredentialKind {
    /// PA → payer.
    Payer,
    /// PA → payer, one purchase.
    Transaction,
    /// Age key → payer.
    Adulthood,
    /// PA → merchant.
    Merchant,
    /// PA → sub-PA.
    Delegation,
}

impl CredentialKind {
    fn label(self) -> &'static str {
        match self {
            CredentialKind::Payer => "payer",
            CredentialKind::Transaction => "transaction",
            CredentialKind::Adulthood => "adulthood",
            CredentialKind::Merchant => "merchant",
            CredentialKind::Delegation => "delegation",
        }
    }

    fn parse(text: &str) -> Option<CredentialKind> {
        [
            CredentialKind::Payer,
            CredentialKind::Transaction,
            CredentialKind::Adulthood,
            CredentialKind::Merchant,
            CredentialKind::Delegation,
        ]
        .into_iter()
        .find(|kind| kind.label() == text)
    }
}

/// The parameters a credential states about itself, read back from its Local-Constants.
/// Diagnostics only: the decision is always KeyNote's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialClaims {
    /// Kind.
    pub kind: CredentialKind,
    /// Issuer.
    pub issuer: Principal,
    /// The key it delegates to.
    pub licensee: Option<Principal>,
    /// Serial.
    pub serial: Option<String>,
    /// Tier.
    pub tier: Option<String>,
    /// Application domain.
    pub app_domain: Option<String>,
    /// Currency code.
    pub currency: Option<String>,
    /// Largest amount per purchase, in minor units.
    pub amount_max_minor: Option<u64>,
    /// Start of validity.
    pub not_before: Option<UnixSeconds>,
    /// End of validity.
    pub not_after: Option<UnixSeconds>,
    /// Purchases per merchant per day.
    pub per_merchant_day_max: Option<u32>,
    /// Classes.
    pub classes: Option<Classes>,
    /// Merchant (transaction and merchant credentials).
    pub merchant: Option<String>,
    /// Nonce (transaction credentials).
    pub nonce: Option<String>,
}

impl CredentialClaims {
    /// Reads the claims of an assertion this module wrote; `None` for anything else.
    pub fn read(assertion: &Assertion) -> Option<CredentialClaims> {
        let constant = |name: &str| {
            assertion
                .local_constants()
                .iter()
                .find(|(n, _)| n == name)
                .and_then(|(_, v)| String::from_utf8(v.clone()).ok())
        };
        let kind = CredentialKind::parse(&constant("CR_KIND")?)?;
        let licensee = constant("CR_LICENSEE").and_then(|id| Principal::parse(id.as_bytes()).ok());
        let stamp = |name: &str| constant(name).and_then(|s| UnixSeconds::parse_stamp(&s));
        Some(CredentialClaims {
            kind,
            issuer: assertion.authorizer().clone(),
            licensee,
            serial: constant("CR_SERIAL"),
            tier: constant("CR_TIER"),
            app_domain: constant("CR_APP_DOMAIN"),
            currency: constant("CR_CURRENCY"),
            amount_max_minor: constant("CR_AMOUNT_MAX").and_then(|s| s.parse().ok()),
            not_before: stamp("CR_NOT_BEFORE"),
            not_after: stamp("CR_NOT_AFTER"),
            per_merchant_day_max: constant("CR_PER_DAY_MAX").and_then(|s| s.parse().ok()),
            classes: constant("CR_CLASSES").map(|s| Classes::from_constant(&s)),
            merchant: constant("CR_MERCHANT"),
            nonce: constant("CR_NONCE"),
        })
    }
}

fn check_window(not_before: UnixSeconds, not_after: UnixSeconds) -> Result<(), Error> {
    if not_before >= not_after {
        return Err(Error::Usage("validity ends before it starts".into()));
    }
    Ok(())
}

fn check_label(what: &str, text: &str) -> Result<(), Error> {
    if valid_label(text) {
        Ok(())
    } else {
        Err(Error::Usage(format!("{what} {text:?} is not a label")))
    }
}

fn check_amount(amount: &Amount) -> Result<(), Error> {
    if amount.is_zero() || amount.minor() > AMOUNT_MINOR_MAX {
        return Err(Error::Usage(format!(
            "amount {amount} is zero or above the rail's maximum"
        )));
    }
    Ok(())
}

fn identifier(principal: &Principal) -> Vec<u8> {
    principal.to_identifier(Encoding::Base64)
}

/// The lines every credential starts with, in this order: what it is, whom it licenses, its kind.
/// The signed text depends on the order, so every issuer goes through here.
fn credential_builder(
    issuer: &PrivateKey,
    comment: &str,
    licensee: &Principal,
    kind: CredentialKind,
) -> AssertionBuilder {
    AssertionBuilder::for_key(issuer, Encoding::Base64)
        .comment(comment)
        .local_constant("CR_LICENSEE", &identifier(licensee))
        .local_constant("CR_KIND", kind.label().as_bytes())
}

/// The Conditions that bound time: a 14-digit timestamp inside `[CR_NOT_BEFORE, CR_NOT_AFTER)`.
const TIME_WINDOW: &str =
    "timestamp ~= \"^[0-9]{14}$\" && timestamp >= CR_NOT_BEFORE && timestamp < CR_NOT_AFTER";

/// Issues a payer credential signed by `issuer` (the PA, or a sub-PA holding a delegation).
pub fn issue_payer(
    issuer: &PrivateKey,
    payer: &Principal,
    template: &PayerTemplate,
) -> Result<Assertion, Error> {
    check_window(template.not_before, template.not_after)?;
    check_label("application domain", &template.app_domain)?;
    check_label("tier", &template.tier)?;
    check_label("serial", &template.serial)?;
    check_amount(&template.amount_max)?;
    if template.amount_max.currency() != template.currency {
        return Err(Error::Usage("amount and currency differ".into()));
    }
    if template.per_merchant_day_max == 0 || template.per_merchant_day_max > PER_MERCHANT_DAY_MAX {
        return Err(Error::Usage(format!(
            "purchases per merchant per day must be 1 to {PER_MERCHANT_DAY_MAX}"
        )));
    }
    let class_condition = match &template.classes {
        Classes::Any => String::new(),
        Classes::Only(list) => {
            if list.is_empty()
                || list.len() > CREDENTIAL_CLASSES_MAX
                || !list.iter().all(|c| valid_label(c))
            {
                return Err(Error::Usage("bad product class list".into()));
            }
            format!(" && product_class ~= \"^({})$\"", list.join("|"))
        }
    };
    let conditions = format!(
        "app_domain == CR_APP_DOMAIN && currency == CR_CURRENCY && {TIME_WINDOW} &&\n\
         @amount_minor > 0 && @amount_minor <= @CR_AMOUNT_MAX &&\n\
         @purchases_today >= 1 && @purchases_today <= @CR_PER_DAY_MAX{class_condition} -> \"true\";"
    );
    Ok(credential_builder(
        issuer,
        "offpay-microcheck payer credential v1",
        payer,
        CredentialKind::Payer,
    )
    .local_constant("CR_SERIAL", template.serial.as_bytes())
    .local_constant("CR_TIER", template.tier.as_bytes())
    .local_constant("CR_APP_DOMAIN", template.app_domain.as_bytes())
    .local_constant("CR_CURRENCY", template.currency.code().as_bytes())
    .local_constant(
        "CR_AMOUNT_MAX",
        template.amount_max.minor().to_string().as_bytes(),
    )
    .local_constant("CR_NOT_BEFORE", template.not_before.stamp().as_bytes())
    .local_constant("CR_NOT_AFTER", template.not_after.stamp().as_bytes())
    .local_constant(
        "CR_PER_DAY_MAX",
        template.per_merchant_day_max.to_string().as_bytes(),
    )
    .local_constant("CR_CLASSES", template.classes.constant().as_bytes())
    .licensees("CR_LICENSEE")
    .conditions(&conditions)
    .sign(issuer, Encoding::Base64)?)
}

/// Issues a transaction-specific credential: this payer may pay this merchant this amount for
/// this nonce, until `not_after`.
pub fn issue_transaction(
    pa: &PrivateKey,
    payer: &Principal,
    template: &TransactionTemplate,
) -> Result<Assertion, Error> {
    check_window(template.not_before, template.not_after)?;
    check_label("application domain", &template.app_domain)?;
    check_label("serial", &template.serial)?;
    check_amount(&template.amount)?;
    if !valid_merchant_id(&template.merchant) || !valid_nonce(&template.nonce) {
        return Err(Error::Usage("bad merchant or nonce".into()));
    }
    check_label("product class", &template.product_class)?;
    let conditions = format!(
        "app_domain == CR_APP_DOMAIN && currency == CR_CURRENCY && {TIME_WINDOW} &&\n\
         merchant == CR_MERCHANT && nonce == CR_NONCE && product_class == CR_PRODUCT_CLASS &&\n\
         @amount_minor > 0 && @amount_minor <= @CR_AMOUNT_MAX -> \"true\";"
    );
    Ok(credential_builder(
        pa,
        "offpay-microcheck transaction credential v1",
        payer,
        CredentialKind::Transaction,
    )
    .local_constant("CR_SERIAL", template.serial.as_bytes())
    .local_constant("CR_APP_DOMAIN", template.app_domain.as_bytes())
    .local_constant("CR_CURRENCY", template.currency.code().as_bytes())
    .local_constant(
        "CR_AMOUNT_MAX",
        template.amount.minor().to_string().as_bytes(),
    )
    .local_constant("CR_MERCHANT", template.merchant.as_bytes())
    .local_constant("CR_NONCE", template.nonce.as_bytes())
    .local_constant("CR_PRODUCT_CLASS", template.product_class.as_bytes())
    .local_constant("CR_NOT_BEFORE", template.not_before.stamp().as_bytes())
    .local_constant("CR_NOT_AFTER", template.not_after.stamp().as_bytes())
    .licensees("CR_LICENSEE")
    .conditions(&conditions)
    .sign(pa, Encoding::Base64)?)
}

/// Issues an adulthood credential: the holder of `payer` may buy `adult` goods in `app_domain`
/// (the payment itself still needs a payer credential).
pub fn issue_adulthood(
    age_key: &PrivateKey,
    payer: &Principal,
    app_domain: &str,
    not_before: UnixSeconds,
    not_after: UnixSeconds,
) -> Result<Assertion, Error> {
    check_window(not_before, not_after)?;
    check_label("application domain", app_domain)?;
    let conditions = format!(
        "app_domain == CR_APP_DOMAIN && product_class == \"{ADULT_CLASS}\" && {TIME_WINDOW} -> \"true\";"
    );
    Ok(credential_builder(
        age_key,
        "offpay-microcheck adulthood credential v1",
        payer,
        CredentialKind::Adulthood,
    )
    .local_constant("CR_APP_DOMAIN", app_domain.as_bytes())
    .local_constant("CR_NOT_BEFORE", not_before.stamp().as_bytes())
    .local_constant("CR_NOT_AFTER", not_after.stamp().as_bytes())
    .licensees("CR_LICENSEE")
    .conditions(&conditions)
    .sign(age_key, Encoding::Base64)?)
}

/// Issues a merchant credential: the holder of `merchant_key` sells as `merchant` in
/// `app_domain`. Payers check it (with `role = "merchant"`) before paying.
pub fn issue_merchant(
    pa: &PrivateKey,
    merchant_key: &Principal,
    merchant: &str,
    app_domain: &str,
    not_before: UnixSeconds,
    not_after: UnixSeconds,
) -> Result<Assertion, Error> {
    check_window(not_before, not_after)?;
    check_label("application domain", app_domain)?;
    if !valid_merchant_id(merchant) {
        return Err(Error::Usage(format!("{merchant:?} is not a merchant id")));
    }
    let conditions = format!(
        "role == \"merchant\" && merchant == CR_MERCHANT && app_domain == CR_APP_DOMAIN && {TIME_WINDOW} -> \"true\";"
    );
    Ok(credential_builder(
        pa,
        "offpay-microcheck merchant credential v1",
        merchant_key,
        CredentialKind::Merchant,
    )
    .local_constant("CR_MERCHANT", merchant.as_bytes())
    .local_constant("CR_APP_DOMAIN", app_domain.as_bytes())
    .local_constant("CR_NOT_BEFORE", not_before.stamp().as_bytes())
    .local_constant("CR_NOT_AFTER", not_after.stamp().as_bytes())
    .licensees("CR_LICENSEE")
    .conditions(&conditions)
    .sign(pa, Encoding::Base64)?)
}

/// Bounds a PA places on a sub-PA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DelegationTemplate {
    /// Serial.
    pub serial: String,
    /// Application domain.
    pub app_domain: String,
    /// Currency.
    pub currency: Currency,
    /// Largest amount per purchase any credential it issues may allow.
    pub amount_max: Amount,
    /// Start of validity.
    pub not_before: UnixSeconds,
    /// End of validity.
    pub not_after: UnixSeconds,
}

/// Issues a delegation: `sub_pa` may issue payer credentials within these bounds. Payer
/// credentials (and merchant credentials, which carry no amount) under it need the whole chain.
pub fn issue_delegation(
    pa: &PrivateKey,
    sub_pa: &Principal,
    template: &DelegationTemplate,
) -> Result<Assertion, Error> {
    check_window(template.not_before, template.not_after)?;
    check_label("application domain", &template.app_domain)?;
    check_label("serial", &template.serial)?;
    check_amount(&template.amount_max)?;
    let conditions = format!(
        "app_domain == CR_APP_DOMAIN && currency == CR_CURRENCY && {TIME_WINDOW} &&\n\
         @amount_minor > 0 && @amount_minor <= @CR_AMOUNT_MAX -> \"true\";"
    );
    Ok(credential_builder(
        pa,
        "offpay-microcheck delegation v1",
        sub_pa,
        CredentialKind::Delegation,
    )
    .local_constant("CR_SERIAL", template.serial.as_bytes())
    .local_constant("CR_APP_DOMAIN", template.app_domain.as_bytes())
    .local_constant("CR_CURRENCY", template.currency.code().as_bytes())
    .local_constant(
        "CR_AMOUNT_MAX",
        template.amount_max.minor().to_string().as_bytes(),
    )
    .local_constant("CR_NOT_BEFORE", template.not_before.stamp().as_bytes())
    .local_constant("CR_NOT_AFTER", template.not_after.stamp().as_bytes())
    .licensees("CR_LICENSEE")
    .conditions(&conditions)
    .sign(pa, Encoding::Base64)?)
}
