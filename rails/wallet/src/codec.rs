//! Byte-level helpers shared by every encoding in the crate: big-endian integers, fixed arrays,
//! length-prefixed fields, and a reader that refuses truncation and trailing bytes.

use alloc::vec::Vec;
use offpay_money::{Amount, Currency};

use crate::error::Malformed;

/// Largest encoded log record (here rather than in `record`, so that the sync messages, which
/// carry records, and the records themselves share it without importing each other).
pub const RECORD_BYTES_MAX: usize = 1024;

/// Appends fields to a byte buffer.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    pub(crate) bytes: Vec<u8>,
}

impl Writer {
    pub(crate) fn new() -> Self {
        Writer { bytes: Vec::new() }
    }
    pub(crate) fn u8(&mut self, value: u8) -> &mut Self {
        self.bytes.push(value);
        self
    }
    pub(crate) fn u16(&mut self, value: u16) -> &mut Self {
        self.bytes.extend_from_slice(&value.to_be_bytes());
        self
    }
    pub(crate) fn u32(&mut self, value: u32) -> &mut Self {
        self.bytes.extend_from_slice(&value.to_be_bytes());
        self
    }
    pub(crate) fn u64(&mut self, value: u64) -> &mut Self {
        self.bytes.extend_from_slice(&value.to_be_bytes());
        self
    }
    pub(crate) fn raw(&mut self, value: &[u8]) -> &mut Self {
        self.bytes.extend_from_slice(value);
        self
    }
    /// A field of at most `u16::MAX` bytes, prefixed with its length.
    pub(crate) fn short_bytes(&mut self, value: &[u8]) -> &mut Self {
        assert!(value.len() <= usize::from(u16::MAX), "field too long");
        self.u16(value.len() as u16);
        self.raw(value)
    }
    /// A field prefixed with a u32 length.
    pub(crate) fn long_bytes(&mut self, value: &[u8]) -> &mut Self {
        assert!(u32::try_from(value.len()).is_ok(), "field too long");
        self.u32(value.len() as u32);
        self.raw(value)
    }
    pub(crate) fn currency(&mut self, currency: Currency) -> &mut Self {
        self.raw(currency.code().as_bytes());
        self.u8(currency.exponent())
    }
    pub(crate) fn amount(&mut self, amount: Amount) -> &mut Self {
        self.currency(amount.currency());
        self.u64(amount.minor())
    }
    pub(crate) fn finish(self) -> Vec<u8> {
        self.bytes
    }
}

/// Reads fields from a byte slice; every read fails with [`Malformed::Truncated`] past the end.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, position: 0 }
    }
    pub(crate) fn position(&self) -> usize {
        self.position
    }
    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len() - self.position
    }
    pub(crate) fn take(&mut self, count: usize) -> Result<&'a [u8], Malformed> {
        let end = self
            .position
            .checked_add(count)
            .ok_or(Malformed::Truncated)?;
        let slice = self
            .bytes
            .get(self.position..end)
            .ok_or(Malformed::Truncated)?;
        self.position = end;
        Ok(slice)
    }
    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], Malformed> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
    pub(crate) fn u8(&mut self) -> Result<u8, Malformed> {
        Ok(self.array::<1>()?[0])
    }
    pub(crate) fn u16(&mut self) -> Result<u16, Malformed> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    pub(crate) fn u32(&mut self) -> Result<u32, Malformed> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    pub(crate) fn u64(&mut self) -> Result<u64, Malformed> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    pub(crate) fn short_bytes(&mut self) -> Result<&'a [u8], Malformed> {
        let length = usize::from(self.u16()?);
        self.take(length)
    }
    pub(crate) fn long_bytes(&mut self, length_max: usize) -> Result<&'a [u8], Malformed> {
        let length = self.u32()? as usize;
        if length > length_max {
            return Err(Malformed::TooLong);
        }
        self.take(length)
    }
    pub(crate) fn currency(&mut self) -> Result<Currency, Malformed> {
        let code = self.array::<3>()?;
        let exponent = self.u8()?;
        let text = core::str::from_utf8(&code).map_err(|_| Malformed::InvalidField)?;
        Currency::new(text, exponent).map_err(|_| Malformed::InvalidField)
    }
    pub(crate) fn amount(&mut self) -> Result<Amount, Malformed> {
        let currency = self.currency()?;
        let minor = self.u64()?;
        Amount::from_minor(minor, currency).map_err(|_| Malformed::InvalidField)
    }
    /// A count of items that each take at least `item_bytes_min` bytes, bounded by `count_max`
    /// and by what is left, so that a forged count cannot make the caller allocate.
    pub(crate) fn count(
        &mut self,
        count_max: usize,
        item_bytes_min: usize,
    ) -> Result<usize, Malformed> {
        let count = usize::from(self.u16()?);
        if count > count_max {
            return Err(Malformed::TooLong);
        }
        if count.saturating_mul(item_bytes_min) > self.remaining() {
            return Err(Malformed::Truncated);
        }
        Ok(count)
    }
    pub(crate) fn finish(self) -> Result<(), Malformed> {
        if self.position == self.bytes.len() {
            Ok(())
        } else {
            Err(Malformed::TrailingBytes)
        }
    }
}

/// SHA-256 of the concatenation of `parts`.
pub(crate) fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}
