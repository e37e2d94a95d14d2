//! Trust classes: what a purse's secure element claims, and the limits that go with it.
//!
//! - [`TrustClass::Software`]: the purse sits in a file on a phone or PC
//!   ([`crate::se`], the default). It claims **no tamper resistance against its own holder**:
//!   whoever knows the PIN can read its keys and restore old copies. Its limits are the
//!   protocol's defaults, and every loss bound of the protocol document holds for it whatever
//!   the device does.
//! - [`TrustClass::Hardware`]: the purse is a SIM applet behind the APDU interface
//!   ([`crate::apdu`]), its keys, counters and nonce memory where the holder cannot read or roll
//!   them back. It may have higher limits.
//!
//! The class is the operator's record (the shadow account), set when the operator provisions the
//! purse; a purse never states its own class, so no purse can raise itself into the hardware
//! class. The operator provisions the hardware class only into a SIM applet (its personalisation
//! goes to the applet as APDUs); here the applet's card emulation is the stand-in. **No
//! attestation exists yet**: nothing proves to the server that a hardware purse's keys are in a
//! SIM, so the hardware limits rest on the operator's provisioning process alone, and a hardware
//! purse whose keys leaked can lose up to its (higher) limits under the same bounds as a
//! software one.

use core::fmt;

use offpay_money::{Amount, Currency};

use crate::entries::OfflineLimits;
use crate::error::{Limit, PurseError};
use crate::params::{SECONDS_PER_DAY, VALIDITY_DAYS_DEFAULT};
use crate::types::{PurseKind, Timestamp};

/// What a purse's secure element claims (see the module documentation).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "lowercase")
)]
pub enum TrustClass {
    /// A file on a phone or PC: no tamper resistance against its holder.
    #[default]
    Software,
    /// A SIM applet.
    Hardware,
}

impl TrustClass {
    /// `software` or `hardware`.
    pub fn name(self) -> &'static str {
        match self {
            TrustClass::Software => "software",
            TrustClass::Hardware => "hardware",
        }
    }

    /// Reads [`TrustClass::name`].
    pub fn parse(text: &str) -> Option<TrustClass> {
        match text {
            "software" => Some(TrustClass::Software),
            "hardware" => Some(TrustClass::Hardware),
            _ => None,
        }
    }
}

impl fmt::Display for TrustClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The most a purse of one kind and class may be given, in major units: (maximum balance,
/// maximum single payment, maximum spent between two syncs). The software class's are the
/// defaults every software purse is provisioned with.
pub fn ceiling_major(kind: PurseKind, class: TrustClass) -> (u64, u64, u64) {
    match (kind, class) {
        (PurseKind::Customer, TrustClass::Software) => (70_000, 20_000, 50_000),
        (PurseKind::Agent, TrustClass::Software) => (10_000_000, 1_000_000, 5_000_000),
        (PurseKind::Customer, TrustClass::Hardware) => (200_000, 50_000, 150_000),
        (PurseKind::Agent, TrustClass::Hardware) => (30_000_000, 3_000_000, 15_000_000),
    }
}

fn major(units: u64, currency: Currency) -> Amount {
    Amount::from_minor(units.saturating_mul(currency.minor_per_major()), currency)
        .unwrap_or(Amount::zero(currency))
}

/// The limits a new purse of `kind` and `class` is provisioned with: its class's ceiling.
pub fn class_limits(
    kind: PurseKind,
    class: TrustClass,
    currency: Currency,
    now: Timestamp,
) -> OfflineLimits {
    let (max_balance, max_single_payment, max_spent_since_sync) = ceiling_major(kind, class);
    OfflineLimits {
        max_balance: major(max_balance, currency),
        max_single_payment: major(max_single_payment, currency),
        max_spent_since_sync: major(max_spent_since_sync, currency),
        ..OfflineLimits::defaults(kind, currency, now)
    }
}

/// Refuses limits above the ceiling of the purse's kind and class.
pub fn check_limits(
    kind: PurseKind,
    class: TrustClass,
    limits: &OfflineLimits,
) -> Result<(), PurseError> {
    let currency = limits.max_balance.currency();
    let (max_balance, max_single_payment, max_spent_since_sync) = ceiling_major(kind, class);
    for (limit, given, most) in [
        (Limit::MaxBalance, limits.max_balance, max_balance),
        (
            Limit::MaxSinglePayment,
            limits.max_single_payment,
            max_single_payment,
        ),
        (
            Limit::MaxSpentSinceSync,
            limits.max_spent_since_sync,
            max_spent_since_sync,
        ),
    ] {
        let maximum = major(most, currency);
        if given.minor() > maximum.minor() {
            return Err(PurseError::AboveClassLimit {
                class,
                limit,
                maximum,
            });
        }
    }
    Ok(())
}

const _: () = assert!(VALIDITY_DAYS_DEFAULT * SECONDS_PER_DAY > 0);
