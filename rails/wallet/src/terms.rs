//! What both parties sign about one transfer: the terms, the buyer's agreement (its promise to
//! pay, bound to its payment number) and the seller's commit. These signatures travel in the
//! messages, are written into both logs, and are what the money office reconciles: every posted
//! transfer is co-signed by both wallets.

use alloc::vec::Vec;
use offpay_money::Amount;

use crate::codec::{Reader, Writer, sha256};
use crate::error::{Malformed, PeerError};
use crate::ids::{TransferId, WalletId};
use crate::keys::{Hex, WalletKeys, verify};

const DOMAIN_TERMS: &[u8] = b"offpay-wallet v1 terms";
const DOMAIN_AGREED: &[u8] = b"offpay-wallet v1 agreed";
const DOMAIN_COMMIT: &[u8] = b"offpay-wallet v1 commit";

/// Who pays whom how much, in which transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Terms {
    /// The transfer (session) id, chosen by the seller.
    pub transfer_id: TransferId,
    /// The coordinator, who receives the value.
    pub seller: WalletId,
    /// The participant, who pays.
    pub buyer: WalletId,
    /// The price.
    pub amount: Amount,
}

impl Terms {
    pub(crate) fn write(&self, w: &mut Writer) {
        w.raw(&self.transfer_id.0)
            .raw(&self.seller.0)
            .raw(&self.buyer.0)
            .amount(self.amount);
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Terms, Malformed> {
        Ok(Terms {
            transfer_id: TransferId(r.array()?),
            seller: WalletId(r.array()?),
            buyer: WalletId(r.array()?),
            amount: r.amount()?,
        })
    }

    /// SHA-256 of the domain-separated encoding; what the agreement and commit sign.
    pub fn digest(&self) -> [u8; 32] {
        let mut w = Writer::new();
        self.write(&mut w);
        sha256(&[DOMAIN_TERMS, &w.finish()])
    }
}

/// The buyer's signed promise: "I hold `amount` for this transfer; it is my payment number
/// `buyer_spend_seq`, after which my available balance is `buyer_balance_after_minor`". The
/// payment number counts every payment the wallet ever prepared; a wallet rolled back to an older
/// state counts from an older number, so paying again makes it sign two different agreements for
/// one number: non-repudiable evidence of the rollback.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Agreement {
    /// The buyer's payment number: 1 for its first prepared payment, and so on.
    pub buyer_spend_seq: u64,
    /// The buyer's available balance after the hold, in minor units.
    pub buyer_balance_after_minor: u64,
    /// The buyer's Ed25519 signature.
    pub signature: [u8; 64],
}

pub(crate) const AGREEMENT_BYTES: usize = 8 + 8 + 64;

impl core::fmt::Debug for Agreement {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Agreement")
            .field("buyer_spend_seq", &self.buyer_spend_seq)
            .field("buyer_balance_after_minor", &self.buyer_balance_after_minor)
            .field("signature", &Hex(&self.signature[..8]))
            .finish()
    }
}

impl Agreement {
    pub(crate) fn sign(
        keys: &WalletKeys,
        terms: &Terms,
        buyer_spend_seq: u64,
        buyer_balance_after_minor: u64,
    ) -> Agreement {
        let signature = keys.sign(&[
            DOMAIN_AGREED,
            &terms.digest(),
            &buyer_spend_seq.to_be_bytes(),
            &buyer_balance_after_minor.to_be_bytes(),
        ]);
        Agreement {
            buyer_spend_seq,
            buyer_balance_after_minor,
            signature,
        }
    }

    /// Checks the buyer's signature.
    pub fn verify(&self, buyer_signing_key: &[u8; 32], terms: &Terms) -> Result<(), PeerError> {
        verify(
            buyer_signing_key,
            &[
                DOMAIN_AGREED,
                &terms.digest(),
                &self.buyer_spend_seq.to_be_bytes(),
                &self.buyer_balance_after_minor.to_be_bytes(),
            ],
            &self.signature,
        )
    }

    pub(crate) fn write(&self, w: &mut Writer) {
        w.u64(self.buyer_spend_seq)
            .u64(self.buyer_balance_after_minor)
            .raw(&self.signature);
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Agreement, Malformed> {
        Ok(Agreement {
            buyer_spend_seq: r.u64()?,
            buyer_balance_after_minor: r.u64()?,
            signature: r.array()?,
        })
    }
}

/// The seller's signature that commits a transfer, over the terms and the buyer's agreement.
pub(crate) fn sign_commit(keys: &WalletKeys, terms: &Terms, agreement: &Agreement) -> [u8; 64] {
    keys.sign(&[
        DOMAIN_COMMIT,
        &terms.digest(),
        &sha256(&[&agreement.signature]),
    ])
}

/// Checks a seller's commit signature.
pub fn verify_commit(
    seller_signing_key: &[u8; 32],
    terms: &Terms,
    agreement: &Agreement,
    signature: &[u8; 64],
) -> Result<(), PeerError> {
    verify(
        seller_signing_key,
        &[
            DOMAIN_COMMIT,
            &terms.digest(),
            &sha256(&[&agreement.signature]),
        ],
        signature,
    )
}

/// Encodes terms on their own (for tests and evidence export).
pub fn encode_terms(terms: &Terms) -> Vec<u8> {
    let mut w = Writer::new();
    terms.write(&mut w);
    w.finish()
}
