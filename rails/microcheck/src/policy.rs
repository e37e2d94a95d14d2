//! Local policies (seed 004 §3.1): the trusted assertions a merchant (or the clearing center
//! checking on its behalf) and a payer start their queries from.

use std::sync::Arc;

use offpay_keynote::{Assertion, AssertionBuilder, Principal};

use crate::error::Error;
use crate::offer::{ADULT_CLASS, valid_label, valid_merchant_id};

/// A merchant's policy: in its application domain, anything the PA authorizes may be sold, except
/// `adult` goods, which need the PA *and* the age key.
#[derive(Clone, Debug)]
pub struct MerchantPolicy {
    /// The merchant's id (the microcheck licensee and the query's action authorizer).
    pub merchant: String,
    /// The merchant's application domain.
    pub app_domain: String,
    /// The PA key identifier trusted for the domain.
    pub pa_key: Principal,
    /// The age key identifier trusted for adulthood, if the merchant sells `adult` goods.
    pub age_key: Option<Principal>,
    pub(crate) merchant_principal: Principal,
    pub(crate) assertions: Vec<Arc<Assertion>>,
}

impl MerchantPolicy {
    /// Builds the policy assertions.
    pub fn new(
        merchant: &str,
        app_domain: &str,
        pa_key: &Principal,
        age_key: Option<&Principal>,
    ) -> Result<MerchantPolicy, Error> {
        if !valid_merchant_id(merchant) || !valid_label(app_domain) {
            return Err(Error::Usage("bad merchant id or application domain".into()));
        }
        let encoding = offpay_keynote::Encoding::Base64;
        let pa = pa_key.to_identifier(encoding);
        let mut assertions = vec![Arc::new(
            AssertionBuilder::new(b"POLICY")
                .comment("offpay-microcheck merchant policy v1")
                .local_constant("PA_KEY", &pa)
                .local_constant("MERCHANT", merchant.as_bytes())
                .local_constant("APP_DOMAIN", app_domain.as_bytes())
                .licensees("PA_KEY")
                .conditions(&format!(
                    "app_domain == APP_DOMAIN && merchant == MERCHANT && product_class != \"{ADULT_CLASS}\" -> \"true\";"
                ))
                .build()?,
        )];
        if let Some(age) = age_key {
            assertions.push(Arc::new(
                AssertionBuilder::new(b"POLICY")
                    .comment("offpay-microcheck merchant policy v1 (age-restricted goods)")
                    .local_constant("PA_KEY", &pa)
                    .local_constant("AGE_KEY", &age.to_identifier(encoding))
                    .local_constant("MERCHANT", merchant.as_bytes())
                    .local_constant("APP_DOMAIN", app_domain.as_bytes())
                    .licensees("PA_KEY && AGE_KEY")
                    .conditions(&format!(
                        "app_domain == APP_DOMAIN && merchant == MERCHANT && product_class == \"{ADULT_CLASS}\" -> \"true\";"
                    ))
                    .build()?,
            ));
        }
        Ok(MerchantPolicy {
            merchant: merchant.to_owned(),
            app_domain: app_domain.to_owned(),
            pa_key: pa_key.clone(),
            age_key: age_key.cloned(),
            merchant_principal: Principal::parse(merchant.as_bytes())?,
            assertions,
        })
    }

    /// The trusted assertions.
    pub fn assertions(&self) -> &[Arc<Assertion>] {
        &self.assertions
    }
}

/// A payer's policy for checking merchants: the PA vouches for merchant keys.
#[derive(Clone, Debug)]
pub struct PayerPolicy {
    /// The PA key.
    pub pa_key: Principal,
    pub(crate) assertion: Arc<Assertion>,
}

impl PayerPolicy {
    /// Trust `pa_key` to say who is a merchant.
    pub fn new(pa_key: &Principal) -> Result<PayerPolicy, Error> {
        let assertion = AssertionBuilder::new(b"POLICY")
            .comment("offpay-microcheck payer policy v1")
            .local_constant(
                "PA_KEY",
                &pa_key.to_identifier(offpay_keynote::Encoding::Base64),
            )
            .licensees("PA_KEY")
            .conditions("role == \"merchant\" -> \"true\";")
            .build()?;
        Ok(PayerPolicy {
            pa_key: pa_key.clone(),
            assertion: Arc::new(assertion),
        })
    }
}
