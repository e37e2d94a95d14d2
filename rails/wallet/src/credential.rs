//! The wallet credential: the money office's signed statement of a wallet's id, keys, currency,
//! offline limits and expiry. Every wallet holds its own and shows it in every message.

use alloc::vec::Vec;
use offpay_money::{Amount, Currency};

use crate::codec::{Reader, Writer};
use crate::error::{Error, Malformed, PeerError};
use crate::ids::{Millis, WalletId};
use crate::keys::{Entropy, Hex, OfficeKeys, random_array, verify};

/// Format version of an encoded credential.
pub const CREDENTIAL_VERSION: u8 = 1;
/// Size of an encoded credential in bytes.
pub const CREDENTIAL_BYTES: usize = 1 + 16 + 32 + 32 + 4 + 3 * 8 + 8 + 8 + 64;
const DOMAIN_CREDENTIAL: &[u8] = b"offpay-wallet v1 credential";

/// Offline risk limits, enforced by the wallet and by its peers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Limits {
    /// The wallet refuses incoming value that would take its balance above this.
    pub balance_max: Amount,
    /// Largest single payment.
    pub payment_max: Amount,
    /// Most the wallet may pay out between two syncs with the money office.
    pub offline_spend_max: Amount,
}

/// A wallet credential signed by the money office.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Credential {
    /// The wallet's unique id.
    pub wallet_id: WalletId,
    /// Ed25519 key that signs the wallet's messages, agreements and log.
    pub signing_key: [u8; 32],
    /// X25519 key that messages to the wallet are sealed to.
    pub encryption_key: [u8; 32],
    /// The one currency the wallet holds.
    pub currency: Currency,
    /// Offline risk limits.
    pub limits: Limits,
    /// When the office issued it.
    pub issued_at_ms: Millis,
    /// After this, peers refuse the wallet until it syncs and gets a renewed credential.
    pub expires_at_ms: Millis,
    /// The office's signature over everything above.
    pub signature: [u8; 64],
}

impl core::fmt::Debug for Credential {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Credential")
            .field("wallet_id", &self.wallet_id)
            .field("signing_key", &Hex(&self.signing_key))
            .field("currency", &self.currency)
            .field("limits", &self.limits)
            .field("expires_at_ms", &self.expires_at_ms)
            .finish_non_exhaustive()
    }
}

impl Credential {
    /// Issues a credential for a new wallet, with a fresh random id.
    #[allow(clippy::too_many_arguments)]
    pub fn issue(
        office: &OfficeKeys,
        signing_key: [u8; 32],
        encryption_key: [u8; 32],
        limits: Limits,
        now: Millis,
        validity_ms: u64,
        entropy: &mut dyn Entropy,
    ) -> Result<Credential, Error> {
        let wallet_id = WalletId(random_array(entropy));
        Credential::issue_for(
            office,
            wallet_id,
            signing_key,
            encryption_key,
            limits,
            now,
            validity_ms,
        )
    }

    /// Issues (or renews) a credential for a known wallet id.
    pub fn issue_for(
        office: &OfficeKeys,
        wallet_id: WalletId,
        signing_key: [u8; 32],
        encryption_key: [u8; 32],
        limits: Limits,
        now: Millis,
        validity_ms: u64,
    ) -> Result<Credential, Error> {
        let currency = limits.balance_max.currency();
        if limits.payment_max.currency() != currency
            || limits.offline_spend_max.currency() != currency
        {
            return Err(Malformed::InvalidField.into());
        }
        let mut credential = Credential {
            wallet_id,
            signing_key,
            encryption_key,
            currency,
            limits,
            issued_at_ms: now,
            expires_at_ms: now.saturating_add(validity_ms),
            signature: [0; 64],
        };
        let body = credential.signed_part();
        credential.signature = office.sign(&[DOMAIN_CREDENTIAL, &body]);
        Ok(credential)
    }

    fn signed_part(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(CREDENTIAL_VERSION)
            .raw(&self.wallet_id.0)
            .raw(&self.signing_key)
            .raw(&self.encryption_key)
            .currency(self.currency)
            .u64(self.limits.balance_max.minor())
            .u64(self.limits.payment_max.minor())
            .u64(self.limits.offline_spend_max.minor())
            .u64(self.issued_at_ms)
            .u64(self.expires_at_ms);
        w.finish()
    }

    /// The fixed-size encoding ([`CREDENTIAL_BYTES`]).
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = self.signed_part();
        bytes.extend_from_slice(&self.signature);
        debug_assert_eq!(bytes.len(), CREDENTIAL_BYTES);
        bytes
    }

    /// Parses an encoding; does not check the office signature (see [`Credential::verify`]).
    pub fn decode(bytes: &[u8]) -> Result<Credential, Malformed> {
        let mut r = Reader::new(bytes);
        let credential = Credential::read(&mut r)?;
        r.finish()?;
        Ok(credential)
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Credential, Malformed> {
        let version = r.u8()?;
        if version != CREDENTIAL_VERSION {
            return Err(Malformed::UnknownVersion(version));
        }
        let wallet_id = WalletId(r.array()?);
        let signing_key = r.array()?;
        let encryption_key = r.array()?;
        let currency = r.currency()?;
        let amount =
            |minor| Amount::from_minor(minor, currency).map_err(|_| Malformed::InvalidField);
        let balance_max = amount(r.u64()?)?;
        let payment_max = amount(r.u64()?)?;
        let offline_spend_max = amount(r.u64()?)?;
        let issued_at_ms = r.u64()?;
        let expires_at_ms = r.u64()?;
        let signature = r.array()?;
        Ok(Credential {
            wallet_id,
            signing_key,
            encryption_key,
            currency,
            limits: Limits {
                balance_max,
                payment_max,
                offline_spend_max,
            },
            issued_at_ms,
            expires_at_ms,
            signature,
        })
    }

    /// Checks the office's signature.
    pub fn verify(&self, office_public: &[u8; 32]) -> Result<(), PeerError> {
        verify(
            office_public,
            &[DOMAIN_CREDENTIAL, &self.signed_part()],
            &self.signature,
        )
        .map_err(|_| PeerError::CredentialNotIssuedByOffice)
    }

    /// Checks the office's signature and that the credential is still valid at `now`.
    pub fn verify_at(&self, office_public: &[u8; 32], now: Millis) -> Result<(), PeerError> {
        self.verify(office_public)?;
        if now > self.expires_at_ms {
            return Err(PeerError::CredentialExpired);
        }
        Ok(())
    }

    /// SHA-256 of the encoding, used to refer to a credential compactly.
    pub fn digest(&self) -> [u8; 32] {
        crate::codec::sha256(&[&self.encode()])
    }
}

/// Most peer credentials a wallet remembers as checked.
pub const VERIFIED_CREDENTIALS_MAX: usize = 64;

/// Peer credentials whose office signature this wallet has already checked. Every datagram
/// carries the sender's credential; without this, checking it again would cost an Ed25519
/// verification per datagram on top of the message's own. A credential is remembered by the
/// SHA-256 of its whole encoding (signature included), so only a byte-identical credential skips
/// the check; expiry is still checked every time. Bounded: the oldest entry is forgotten first.
#[derive(Clone, Debug, Default)]
pub(crate) struct VerifiedCredentials {
    digests: alloc::collections::VecDeque<[u8; 32]>,
}

impl VerifiedCredentials {
    /// Checks `credential` as [`Credential::verify_at`] does, skipping the signature check for a
    /// credential checked before.
    pub(crate) fn verify_at(
        &mut self,
        credential: &Credential,
        office_public: &[u8; 32],
        now: Millis,
    ) -> Result<(), PeerError> {
        let digest = credential.digest();
        if !self.digests.contains(&digest) {
            credential.verify(office_public)?;
            if self.digests.len() >= VERIFIED_CREDENTIALS_MAX {
                self.digests.pop_front();
            }
            self.digests.push_back(digest);
        }
        if now > credential.expires_at_ms {
            return Err(PeerError::CredentialExpired);
        }
        Ok(())
    }
}
