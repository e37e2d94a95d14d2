//! What passes between a wallet and the money office at sync: charge vouchers, the log upload,
//! resolutions of prepared transfers, and the office's signed reply. Each encoding starts with a
//! format version.

use alloc::vec::Vec;
use offpay_money::Amount;

use crate::codec::RECORD_BYTES_MAX;
use crate::codec::{Reader, Writer};
use crate::credential::{CREDENTIAL_BYTES, Credential};
use crate::error::{Malformed, PeerError};
use crate::ids::{TransferId, WalletId};
#[cfg(feature = "office")]
use crate::keys::OfficeKeys;
use crate::keys::{WalletKeys, verify};
use crate::wire::Outcome;

/// Format version of uploads and replies.
pub const SYNC_VERSION: u8 = 1;
/// Most records one upload may carry.
pub const UPLOAD_RECORDS_MAX: usize = crate::LOG_UNSYNCED_RECORDS_MAX + 64;
/// Most resolutions one reply carries.
pub const REPLY_RESOLUTIONS_MAX: usize = 1024;
/// Most vouchers one reply carries.
pub const REPLY_VOUCHERS_MAX: usize = 64;
/// Most blocked wallet ids one reply carries (the most recent ones).
pub const REPLY_BLOCKED_MAX: usize = 4096;
const DOMAIN_VOUCHER: &[u8] = b"offpay-wallet v1 voucher";
const DOMAIN_RESOLUTION: &[u8] = b"offpay-wallet v1 resolution";
const DOMAIN_UPLOAD: &[u8] = b"offpay-wallet v1 upload";
const DOMAIN_REPLY: &[u8] = b"offpay-wallet v1 reply";

/// The money office's signed order to load value into a wallet. Vouchers are numbered per wallet
/// from 1 and applied strictly in order, so none is applied twice or skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ChargeVoucher {
    /// The wallet to charge.
    pub wallet_id: WalletId,
    /// 1, 2, 3… per wallet.
    pub charge_seq: u64,
    /// The value loaded.
    pub amount: Amount,
    /// The office's signature.
    pub signature: [u8; 64],
}

const VOUCHER_BYTES: usize = 16 + 8 + 12 + 64;

impl ChargeVoucher {
    #[cfg(feature = "office")]
    pub(crate) fn issue(
        office: &OfficeKeys,
        wallet_id: WalletId,
        charge_seq: u64,
        amount: Amount,
    ) -> Self {
        let mut voucher = ChargeVoucher {
            wallet_id,
            charge_seq,
            amount,
            signature: [0; 64],
        };
        voucher.signature = office.sign(&[DOMAIN_VOUCHER, &voucher.signed_part()]);
        voucher
    }
    fn signed_part(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.raw(&self.wallet_id.0)
            .u64(self.charge_seq)
            .amount(self.amount);
        w.finish()
    }
    /// Checks the office's signature.
    pub fn verify(&self, office_public: &[u8; 32]) -> Result<(), PeerError> {
        verify(
            office_public,
            &[DOMAIN_VOUCHER, &self.signed_part()],
            &self.signature,
        )
    }
    pub(crate) fn write(&self, w: &mut Writer) {
        w.raw(&self.signed_part()).raw(&self.signature);
    }
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, Malformed> {
        Ok(ChargeVoucher {
            wallet_id: WalletId(r.array()?),
            charge_seq: r.u64()?,
            amount: r.amount()?,
            signature: r.array()?,
        })
    }
    /// Versioned encoding, as the server hands it to the wallet.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(SYNC_VERSION);
        self.write(&mut w);
        w.finish()
    }
    /// Parses [`ChargeVoucher::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Self, Malformed> {
        let mut r = Reader::new(bytes);
        let version = r.u8()?;
        if version != SYNC_VERSION {
            return Err(Malformed::UnknownVersion(version));
        }
        let voucher = ChargeVoucher::read(&mut r)?;
        r.finish()?;
        Ok(voucher)
    }
}

/// The money office's decision for a transfer a wallet left unfinished (a prepared buyer, or a
/// seller still waiting for the acknowledgement).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Resolution {
    /// The wallet the decision is for.
    pub wallet_id: WalletId,
    /// The transfer.
    pub transfer_id: TransferId,
    /// Posted if the seller's log holds a commit record, voided if it holds a void record.
    pub outcome: Outcome,
    /// The office's signature.
    pub signature: [u8; 64],
}

const RESOLUTION_BYTES: usize = 16 + 16 + 1 + 64;

impl Resolution {
    #[cfg(feature = "office")]
    pub(crate) fn issue(
        office: &OfficeKeys,
        wallet_id: WalletId,
        transfer_id: TransferId,
        outcome: Outcome,
    ) -> Self {
        let signature = office.sign(&[
            DOMAIN_RESOLUTION,
            &wallet_id.0,
            &transfer_id.0,
            &[outcome.code()],
        ]);
        Resolution {
            wallet_id,
            transfer_id,
            outcome,
            signature,
        }
    }
    /// Checks the office's signature.
    pub fn verify(&self, office_public: &[u8; 32]) -> Result<(), PeerError> {
        verify(
            office_public,
            &[
                DOMAIN_RESOLUTION,
                &self.wallet_id.0,
                &self.transfer_id.0,
                &[self.outcome.code()],
            ],
            &self.signature,
        )
    }
    pub(crate) fn write(&self, w: &mut Writer) {
        w.raw(&self.wallet_id.0)
            .raw(&self.transfer_id.0)
            .u8(self.outcome.code())
            .raw(&self.signature);
    }
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, Malformed> {
        Ok(Resolution {
            wallet_id: WalletId(r.array()?),
            transfer_id: TransferId(r.array()?),
            outcome: Outcome::from_code(r.u8()?)?,
            signature: r.array()?,
        })
    }
}

/// A wallet's log since its last acknowledged sync, signed at its head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogUpload {
    /// The wallet's current credential.
    pub credential: Credential,
    /// Seq of the last record (the head).
    pub head_seq: u64,
    /// Hash of the head record.
    pub head_hash: [u8; 32],
    /// Encoded records in order, ending at the head (may be empty if nothing happened).
    pub records: Vec<Vec<u8>>,
    /// The wallet's signature over its id and head.
    pub signature: [u8; 64],
}

impl LogUpload {
    pub(crate) fn sign(
        keys: &WalletKeys,
        credential: Credential,
        head_seq: u64,
        head_hash: [u8; 32],
        records: Vec<Vec<u8>>,
    ) -> Self {
        let signature = keys.sign(&[
            DOMAIN_UPLOAD,
            &credential.wallet_id.0,
            &head_seq.to_be_bytes(),
            &head_hash,
        ]);
        LogUpload {
            credential,
            head_seq,
            head_hash,
            records,
            signature,
        }
    }
    /// Checks the wallet's signature over the head.
    pub fn verify(&self) -> Result<(), PeerError> {
        verify(
            &self.credential.signing_key,
            &[
                DOMAIN_UPLOAD,
                &self.credential.wallet_id.0,
                &self.head_seq.to_be_bytes(),
                &self.head_hash,
            ],
            &self.signature,
        )
    }
    /// Versioned encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(SYNC_VERSION)
            .raw(&self.credential.encode())
            .u64(self.head_seq)
            .raw(&self.head_hash);
        assert!(self.records.len() <= UPLOAD_RECORDS_MAX);
        w.u16(self.records.len() as u16);
        for record in &self.records {
            w.short_bytes(record);
        }
        w.raw(&self.signature);
        w.finish()
    }
    /// Parses [`LogUpload::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Self, Malformed> {
        let mut r = Reader::new(bytes);
        let version = r.u8()?;
        if version != SYNC_VERSION {
            return Err(Malformed::UnknownVersion(version));
        }
        let credential = Credential::read(&mut r)?;
        let head_seq = r.u64()?;
        let head_hash = r.array()?;
        let count = r.count(UPLOAD_RECORDS_MAX, 2)?;
        let mut records = Vec::with_capacity(count);
        for _ in 0..count {
            let record = r.short_bytes()?;
            if record.len() > RECORD_BYTES_MAX {
                return Err(Malformed::TooLong);
            }
            records.push(record.to_vec());
        }
        let signature = r.array()?;
        r.finish()?;
        Ok(LogUpload {
            credential,
            head_seq,
            head_hash,
            records,
            signature,
        })
    }
}

/// The money office's answer to an upload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncReply {
    /// The wallet.
    pub wallet_id: WalletId,
    /// The office holds the log up to this record…
    pub through_seq: u64,
    /// …whose hash is this.
    pub through_hash: [u8; 32],
    /// Decisions for the wallet's unfinished transfers.
    pub resolutions: Vec<Resolution>,
    /// Charges not yet seen in the wallet's log, in order.
    pub vouchers: Vec<ChargeVoucher>,
    /// Wallets the office has blocked (peers refuse them).
    pub blocked: Vec<WalletId>,
    /// A renewed credential, if the office renews.
    pub credential: Option<Credential>,
    /// The office's signature.
    pub signature: [u8; 64],
}

impl SyncReply {
    fn signed_part(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(SYNC_VERSION)
            .raw(&self.wallet_id.0)
            .u64(self.through_seq)
            .raw(&self.through_hash);
        w.u16(self.resolutions.len() as u16);
        for resolution in &self.resolutions {
            resolution.write(&mut w);
        }
        w.u16(self.vouchers.len() as u16);
        for voucher in &self.vouchers {
            voucher.write(&mut w);
        }
        w.u16(self.blocked.len() as u16);
        for wallet in &self.blocked {
            w.raw(&wallet.0);
        }
        match &self.credential {
            Some(credential) => {
                w.u8(1).raw(&credential.encode());
            }
            None => {
                w.u8(0);
            }
        }
        w.finish()
    }

    #[cfg(feature = "office")]
    pub(crate) fn sign(mut self, office: &OfficeKeys) -> Self {
        assert!(self.resolutions.len() <= REPLY_RESOLUTIONS_MAX);
        assert!(self.vouchers.len() <= REPLY_VOUCHERS_MAX);
        assert!(self.blocked.len() <= REPLY_BLOCKED_MAX);
        self.signature = office.sign(&[DOMAIN_REPLY, &self.signed_part()]);
        self
    }

    /// Checks the office's signature.
    pub fn verify(&self, office_public: &[u8; 32]) -> Result<(), PeerError> {
        verify(
            office_public,
            &[DOMAIN_REPLY, &self.signed_part()],
            &self.signature,
        )
    }

    /// Versioned encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = self.signed_part();
        bytes.extend_from_slice(&self.signature);
        bytes
    }

    /// Parses [`SyncReply::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Self, Malformed> {
        let mut r = Reader::new(bytes);
        let version = r.u8()?;
        if version != SYNC_VERSION {
            return Err(Malformed::UnknownVersion(version));
        }
        let wallet_id = WalletId(r.array()?);
        let through_seq = r.u64()?;
        let through_hash = r.array()?;
        let count = r.count(REPLY_RESOLUTIONS_MAX, RESOLUTION_BYTES)?;
        let mut resolutions = Vec::with_capacity(count);
        for _ in 0..count {
            resolutions.push(Resolution::read(&mut r)?);
        }
        let count = r.count(REPLY_VOUCHERS_MAX, VOUCHER_BYTES)?;
        let mut vouchers = Vec::with_capacity(count);
        for _ in 0..count {
            vouchers.push(ChargeVoucher::read(&mut r)?);
        }
        let count = r.count(REPLY_BLOCKED_MAX, 16)?;
        let mut blocked = Vec::with_capacity(count);
        for _ in 0..count {
            blocked.push(WalletId(r.array()?));
        }
        let credential = match r.u8()? {
            0 => None,
            1 => {
                if r.remaining() < CREDENTIAL_BYTES {
                    return Err(Malformed::Truncated);
                }
                Some(Credential::read(&mut r)?)
            }
            _ => return Err(Malformed::InvalidField),
        };
        let signature = r.array()?;
        r.finish()?;
        Ok(SyncReply {
            wallet_id,
            through_seq,
            through_hash,
            resolutions,
            vouchers,
            blocked,
            credential,
            signature,
        })
    }
}
