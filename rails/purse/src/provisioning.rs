//! What the operator hands to a new purse (its keys, limits and identity), and its encoding: the
//! operator writes it, the purse reads it. Shared by the device half and the operator half.

use alloc::vec::Vec;
use core::fmt;

use offpay_money::Currency;

use crate::crypto::SecretKey;
use crate::entries::OfflineLimits;
use crate::error::PurseError;
use crate::params::FORMAT_VERSION;
use crate::types::{OperatorId, Phone, PurseId, PurseKind};
use crate::wire::{Reader, Writer};

/// What the operator hands to a new purse. Contains keys: send it only over an authenticated,
/// encrypted channel (the admin API) and seal it into the purse file at once.
#[derive(Clone)]
pub struct Provisioning {
    /// The operator.
    pub operator: OperatorId,
    /// The new purse's id.
    pub purse_id: PurseId,
    /// Its phone number.
    pub phone: Phone,
    /// Customer or agent.
    pub kind: PurseKind,
    /// Its currency.
    pub currency: Currency,
    /// K_P.
    pub purse_key: SecretKey,
    /// The current scheme-key epoch.
    pub scheme_epoch: u32,
    /// Its key.
    pub scheme_key: SecretKey,
    /// Initial limits.
    pub limits: OfflineLimits,
}

impl fmt::Debug for Provisioning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Provisioning")
            .field("operator", &self.operator)
            .field("purse_id", &self.purse_id)
            .field("phone", &self.phone)
            .field("kind", &self.kind)
            .field("scheme_epoch", &self.scheme_epoch)
            .field("keys", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl Provisioning {
    /// Bytes for the admin API, format version first.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(FORMAT_VERSION);
        w.u8(b'P');
        w.short_bytes(self.operator.as_bytes());
        w.u64(self.purse_id.0);
        w.phone(self.phone);
        w.u8(self.kind.to_byte());
        w.currency(self.currency);
        w.bytes(self.purse_key.expose());
        w.u32(self.scheme_epoch);
        w.bytes(self.scheme_key.expose());
        self.limits.encode(&mut w);
        w.finish()
    }

    /// Reads [`Provisioning::encode`]'s output.
    pub fn decode(bytes: &[u8]) -> Result<Provisioning, PurseError> {
        let mut r = Reader::new(bytes);
        let version = r.u8()?;
        if version != FORMAT_VERSION {
            return Err(PurseError::UnsupportedVersion { found: version });
        }
        if r.u8()? != b'P' {
            return Err(PurseError::Malformed("provisioning kind"));
        }
        let operator = core::str::from_utf8(r.short_bytes()?)
            .map_err(|_| PurseError::Malformed("operator id"))
            .and_then(OperatorId::new)?;
        let purse_id = PurseId(r.u64()?);
        let phone = r.phone()?;
        let kind = PurseKind::from_byte(r.u8()?)?;
        let currency = r.currency()?;
        let purse_key = SecretKey::from_bytes(r.array()?);
        let scheme_epoch = r.u32()?;
        let scheme_key = SecretKey::from_bytes(r.array()?);
        let limits = OfflineLimits::decode(&mut r, currency)?;
        r.finish()?;
        Ok(Provisioning {
            operator,
            purse_id,
            phone,
            kind,
            currency,
            purse_key,
            scheme_epoch,
            scheme_key,
            limits,
        })
    }
}
