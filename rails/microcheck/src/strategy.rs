//! The Provisioning Agent's risk strategy (seed 004 §1.2, §2.3): what offline credentials a payer
//! gets, made from the operator's configuration and the payer's history.
//!
//! A strategy is a set of **tiers** that trade value against validity: a high-value credential
//! that expires first and lower-value ones that last longer, so that a payer who misses a refresh
//! can still buy a little. A validated strategy never lets a higher limit last longer than a
//! lower one. The payer's **standing** lowers every tier: each disputed or bounced microcheck
//! halves the amount, the validity and the daily count, and at [`STRIKES_MAX`] strikes the payer
//! gets no offline credential at all (online transaction credentials only, if any).

use offpay_money::{Amount, Currency};
use serde::{Deserialize, Serialize};

use crate::credential::{Classes, PayerTemplate};
use crate::error::Error;
use crate::limits::{
    AMOUNT_MINOR_MAX, CREDENTIAL_CLASSES_MAX, MERCHANT_VALIDITY_SECONDS_MAX,
    PAYER_VALIDITY_SECONDS_MAX, PER_MERCHANT_DAY_MAX, STRATEGY_TIERS_MAX, STRIKES_MAX,
    TRANSACTION_DAY_MAX,
};
use crate::offer::valid_label;
use crate::time::UnixSeconds;

/// Format version of a stored strategy.
pub const STRATEGY_VERSION: u32 = 1;
/// Shortest validity a strike can shrink a credential to, in seconds.
pub const VALIDITY_SECONDS_MIN: u64 = 60;
/// Transaction-specific credentials a payer gets in a day when the strategy does not say.
pub const TRANSACTION_DAY_DEFAULT: u32 = 10;

fn transaction_day_default() -> u32 {
    TRANSACTION_DAY_DEFAULT
}

/// One credential tier.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    /// Name, e.g. `daily`.
    pub name: String,
    /// Largest amount per purchase, decimal.
    pub amount_max: String,
    /// How long the credential lasts.
    pub validity_seconds: u64,
    /// Purchases per merchant per day.
    pub per_merchant_day_max: u32,
}

/// The operator's configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Strategy {
    /// [`STRATEGY_VERSION`].
    pub version: u32,
    /// Application domain of every credential.
    pub app_domain: String,
    /// Currency.
    pub currency: String,
    /// Tiers, at most [`STRATEGY_TIERS_MAX`].
    pub tiers: Vec<Tier>,
    /// Validity of merchant credentials.
    pub merchant_validity_seconds: u64,
    /// Validity of adulthood credentials.
    pub adulthood_validity_seconds: u64,
    /// Largest amount a transaction-specific (online) credential may cover; `"0"` for none.
    pub transaction_amount_max: String,
    /// How long a transaction-specific credential lasts.
    pub transaction_validity_seconds: u64,
    /// Transaction-specific credentials one payer may get in a day (UTC); at most
    /// [`TRANSACTION_DAY_MAX`]. Strategies stored before it existed read as
    /// [`TRANSACTION_DAY_DEFAULT`].
    #[serde(default = "transaction_day_default")]
    pub transaction_day_max: u32,
    /// Fraud rule: purchases one machine may take in a day before it is flagged.
    pub machine_day_purchases_max: u32,
    /// Fraud rule: the fastest a payer can travel between machines, km/h.
    pub travel_speed_kmh_max: u32,
}

/// What the PA knows about a payer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Standing {
    /// Microchecks the payer disputed.
    pub disputes: u32,
    /// Microchecks that bounced (the payer's account could not cover them).
    pub bounces: u32,
    /// Product classes the payer may buy (`None`: all; `Some(["food"])`: a food-only voucher).
    pub classes: Option<Vec<String>>,
}

impl Standing {
    /// Disputes plus bounces.
    pub fn strikes(&self) -> u32 {
        self.disputes.saturating_add(self.bounces)
    }
}

impl Strategy {
    /// A reasonable default: 5.00 per purchase for a day, 1.00 for a week.
    pub fn default_for(currency: Currency) -> Strategy {
        let unit = currency.minor_per_major();
        let decimal = |minor: u64| {
            Amount::from_minor(minor, currency)
                .map(|a| a.decimal().to_string())
                .unwrap_or_else(|_| "1".into())
        };
        Strategy {
            version: STRATEGY_VERSION,
            app_domain: "vend".into(),
            currency: currency.code().to_owned(),
            tiers: vec![
                Tier {
                    name: "daily".into(),
                    amount_max: decimal(5 * unit),
                    validity_seconds: 24 * 3600,
                    per_merchant_day_max: 5,
                },
                Tier {
                    name: "weekly".into(),
                    amount_max: decimal(unit),
                    validity_seconds: 7 * 24 * 3600,
                    per_merchant_day_max: 2,
                },
            ],
            merchant_validity_seconds: 90 * 24 * 3600,
            adulthood_validity_seconds: 30 * 24 * 3600,
            transaction_amount_max: decimal(50 * unit),
            transaction_validity_seconds: 15 * 60,
            transaction_day_max: TRANSACTION_DAY_DEFAULT,
            machine_day_purchases_max: 500,
            travel_speed_kmh_max: 300,
        }
    }

    /// The currency.
    pub fn currency(&self) -> Result<Currency, Error> {
        Currency::from_code(&self.currency)
            .map_err(|e| Error::Usage(format!("currency {:?}: {e}", self.currency)))
    }

    fn amount(&self, text: &str, what: &str) -> Result<Amount, Error> {
        let amount = Amount::parse(text, self.currency()?)
            .map_err(|e| Error::Usage(format!("{what} {text:?}: {e}")))?;
        if amount.minor() > AMOUNT_MINOR_MAX {
            return Err(Error::Usage(format!("{what} is above the rail's maximum")));
        }
        Ok(amount)
    }

    /// The transaction credential limit.
    pub fn transaction_amount_max(&self) -> Result<Amount, Error> {
        self.amount(&self.transaction_amount_max, "transaction_amount_max")
    }

    /// Checks every bound; the error says which setting is wrong.
    pub fn validate(&self) -> Result<(), Error> {
        let usage = |m: String| Err(Error::Usage(m));
        if self.version != STRATEGY_VERSION {
            return usage(format!("version must be {STRATEGY_VERSION}"));
        }
        if !valid_label(&self.app_domain) {
            return usage("app_domain must be a lower-case label".into());
        }
        self.currency()?;
        if self.tiers.is_empty() || self.tiers.len() > STRATEGY_TIERS_MAX {
            return usage(format!("1 to {STRATEGY_TIERS_MAX} tiers"));
        }
        let mut seen = Vec::new();
        for tier in &self.tiers {
            if !valid_label(&tier.name) || seen.contains(&tier.name) {
                return usage(format!("tier name {:?} is not a unique label", tier.name));
            }
            seen.push(tier.name.clone());
            if self.amount(&tier.amount_max, "amount_max")?.is_zero() {
                return usage(format!("tier {} allows nothing", tier.name));
            }
            if !(VALIDITY_SECONDS_MIN..=PAYER_VALIDITY_SECONDS_MAX).contains(&tier.validity_seconds)
            {
                return usage(format!(
                    "tier {}: validity_seconds must be {VALIDITY_SECONDS_MIN} to {PAYER_VALIDITY_SECONDS_MAX}",
                    tier.name
                ));
            }
            if !(1..=PER_MERCHANT_DAY_MAX).contains(&tier.per_merchant_day_max) {
                return usage(format!(
                    "tier {}: per_merchant_day_max must be 1 to {PER_MERCHANT_DAY_MAX}",
                    tier.name
                ));
            }
        }
        for a in &self.tiers {
            for b in &self.tiers {
                let (amount_a, amount_b) = (
                    self.amount(&a.amount_max, "amount_max")?,
                    self.amount(&b.amount_max, "amount_max")?,
                );
                if amount_a.minor() > amount_b.minor() && a.validity_seconds > b.validity_seconds {
                    return usage(format!(
                        "tier {} allows more than tier {} and lasts longer: value must be traded against validity",
                        a.name, b.name
                    ));
                }
            }
        }
        for (what, value, max) in [
            (
                "merchant_validity_seconds",
                self.merchant_validity_seconds,
                MERCHANT_VALIDITY_SECONDS_MAX,
            ),
            (
                "adulthood_validity_seconds",
                self.adulthood_validity_seconds,
                MERCHANT_VALIDITY_SECONDS_MAX,
            ),
            (
                "transaction_validity_seconds",
                self.transaction_validity_seconds,
                PAYER_VALIDITY_SECONDS_MAX,
            ),
        ] {
            if !(VALIDITY_SECONDS_MIN..=max).contains(&value) {
                return usage(format!("{what} must be {VALIDITY_SECONDS_MIN} to {max}"));
            }
        }
        self.transaction_amount_max()?;
        if !(1..=TRANSACTION_DAY_MAX).contains(&self.transaction_day_max) {
            return usage(format!(
                "transaction_day_max must be 1 to {TRANSACTION_DAY_MAX}"
            ));
        }
        if self.machine_day_purchases_max == 0 || self.travel_speed_kmh_max == 0 {
            return usage("fraud thresholds must be positive".into());
        }
        Ok(())
    }

    /// The payer credentials to issue at `now` to a payer with this standing: one per tier,
    /// lowered by the payer's strikes; none at [`STRIKES_MAX`] strikes. `serial` prefixes the
    /// credential serials (the caller makes it unique per issue).
    pub fn payer_templates(
        &self,
        standing: &Standing,
        now: UnixSeconds,
        serial: &str,
    ) -> Result<Vec<PayerTemplate>, Error> {
        self.validate()?;
        let strikes = standing.strikes();
        if strikes >= STRIKES_MAX {
            return Ok(Vec::new());
        }
        let classes = match &standing.classes {
            None => Classes::Any,
            Some(list) => {
                if list.is_empty()
                    || list.len() > CREDENTIAL_CLASSES_MAX
                    || !list.iter().all(|c| valid_label(c))
                {
                    return Err(Error::Usage("bad product class list".into()));
                }
                Classes::Only(list.clone())
            }
        };
        let currency = self.currency()?;
        let mut out = Vec::new();
        for tier in &self.tiers {
            let amount = self.amount(&tier.amount_max, "amount_max")?;
            let lowered = (amount.minor() >> strikes).max(1);
            let validity = (tier.validity_seconds >> strikes).max(VALIDITY_SECONDS_MIN);
            let per_day = (tier.per_merchant_day_max >> strikes).max(1);
            out.push(PayerTemplate {
                serial: format!("{serial}-{}", tier.name),
                tier: tier.name.clone(),
                app_domain: self.app_domain.clone(),
                currency,
                amount_max: Amount::from_minor(lowered, currency)
                    .map_err(|e| Error::Usage(e.to_string()))?,
                not_before: now.minus(crate::limits::CLOCK_SKEW_SECONDS_MAX),
                not_after: now.plus(validity),
                per_merchant_day_max: per_day,
                classes: classes.clone(),
            });
        }
        Ok(out)
    }

    /// Whether a transaction-specific credential may be issued for `amount` to a payer with this
    /// standing; the error says why not.
    pub fn transaction_allowed(&self, standing: &Standing, amount: Amount) -> Result<(), String> {
        let max = self.transaction_amount_max().map_err(|e| e.to_string())?;
        if standing.strikes() >= STRIKES_MAX {
            return Err(format!(
                "the payer has {} disputed or bounced microchecks",
                standing.strikes()
            ));
        }
        if amount.currency() != max.currency() || amount.minor() > max.minor() {
            return Err(format!(
                "{} {} is more than the online limit {} {}",
                amount.decimal(),
                amount.currency(),
                max.decimal(),
                max.currency()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_strategy_is_valid_and_trades_value_for_validity() {
        let strategy = Strategy::default_for(Currency::KES);
        strategy.validate().unwrap();
        let templates = strategy
            .payer_templates(&Standing::default(), UnixSeconds(1_000_000), "s1")
            .unwrap();
        assert_eq!(templates.len(), 2);
        assert!(templates[0].amount_max.minor() > templates[1].amount_max.minor());
        assert!(templates[0].not_after < templates[1].not_after);
    }

    #[test]
    fn strikes_lower_limits_and_end_offline_credit() {
        let strategy = Strategy::default_for(Currency::KES);
        let now = UnixSeconds(1_000_000);
        let clean = strategy
            .payer_templates(&Standing::default(), now, "s")
            .unwrap();
        let one = Standing {
            disputes: 1,
            ..Standing::default()
        };
        let lowered = strategy.payer_templates(&one, now, "s").unwrap();
        assert_eq!(
            lowered[0].amount_max.minor() * 2,
            clean[0].amount_max.minor()
        );
        assert!(lowered[0].not_after < clean[0].not_after);
        assert!(lowered[0].per_merchant_day_max < clean[0].per_merchant_day_max);
        let out = Standing {
            disputes: 1,
            bounces: 2,
            ..Standing::default()
        };
        assert!(strategy.payer_templates(&out, now, "s").unwrap().is_empty());
        assert!(
            strategy
                .transaction_allowed(&out, Amount::from_minor(1, Currency::KES).unwrap())
                .is_err()
        );
    }

    #[test]
    fn a_high_value_tier_may_not_outlast_a_low_value_one() {
        let mut strategy = Strategy::default_for(Currency::KES);
        strategy.tiers[0].validity_seconds = 30 * 24 * 3600;
        assert!(strategy.validate().is_err());
        let mut strategy = Strategy::default_for(Currency::KES);
        strategy.tiers.clear();
        assert!(strategy.validate().is_err());
    }
}
