//! Byte writer and reader for this crate's binary formats: big-endian integers, no padding,
//! counts before lists, and a reader that refuses truncated input and trailing bytes.

use alloc::vec::Vec;

use offpay_money::{Amount, Currency};

use crate::error::PurseError;
use crate::types::{PHONE_BYTES, Phone};

#[derive(Default, Debug)]
pub(crate) struct Writer {
    pub(crate) bytes: Vec<u8>,
}

impl Writer {
    pub(crate) fn new() -> Writer {
        Writer { bytes: Vec::new() }
    }

    pub(crate) fn u8(&mut self, value: u8) {
        self.bytes.push(value);
    }

    pub(crate) fn u16(&mut self, value: u16) {
        self.bytes.extend_from_slice(&value.to_be_bytes());
    }

    pub(crate) fn u32(&mut self, value: u32) {
        self.bytes.extend_from_slice(&value.to_be_bytes());
    }

    pub(crate) fn u64(&mut self, value: u64) {
        self.bytes.extend_from_slice(&value.to_be_bytes());
    }

    pub(crate) fn bytes(&mut self, value: &[u8]) {
        self.bytes.extend_from_slice(value);
    }

    pub(crate) fn bool(&mut self, value: bool) {
        self.u8(u8::from(value));
    }

    pub(crate) fn phone(&mut self, phone: Phone) {
        self.bytes(&phone.to_bytes());
    }

    pub(crate) fn currency(&mut self, currency: Currency) {
        self.bytes(currency.code().as_bytes());
        self.u8(currency.exponent());
    }

    /// Minor units only; the currency is written once per message.
    pub(crate) fn minor(&mut self, amount: Amount) {
        self.u64(amount.minor());
    }

    /// Length byte then bytes (at most 255).
    pub(crate) fn short_bytes(&mut self, value: &[u8]) {
        debug_assert!(value.len() <= usize::from(u8::MAX));
        self.u8(value.len().min(usize::from(u8::MAX)) as u8);
        self.bytes(&value[..value.len().min(usize::from(u8::MAX))]);
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        self.bytes
    }
}

#[derive(Debug)]
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, position: 0 }
    }

    pub(crate) fn take(&mut self, count: usize) -> Result<&'a [u8], PurseError> {
        let end = self
            .position
            .checked_add(count)
            .filter(|end| *end <= self.bytes.len())
            .ok_or(PurseError::Malformed("truncated"))?;
        let out = &self.bytes[self.position..end];
        self.position = end;
        Ok(out)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], PurseError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, PurseError> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, PurseError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, PurseError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, PurseError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    pub(crate) fn bool(&mut self) -> Result<bool, PurseError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(PurseError::Malformed("flag")),
        }
    }

    pub(crate) fn phone(&mut self) -> Result<Phone, PurseError> {
        let raw: [u8; PHONE_BYTES] = self.array()?;
        let mut wide = [0u8; 8];
        wide[8 - PHONE_BYTES..].copy_from_slice(&raw);
        Phone::from_number(u64::from_be_bytes(wide)).map_err(|_| PurseError::Malformed("phone"))
    }

    pub(crate) fn currency(&mut self) -> Result<Currency, PurseError> {
        let code: [u8; 3] = self.array()?;
        let exponent = self.u8()?;
        let code = core::str::from_utf8(&code).map_err(|_| PurseError::Malformed("currency"))?;
        Currency::new(code, exponent).map_err(|_| PurseError::Malformed("currency"))
    }

    pub(crate) fn amount(&mut self, currency: Currency) -> Result<Amount, PurseError> {
        Amount::from_minor(self.u64()?, currency).map_err(|_| PurseError::Malformed("amount"))
    }

    pub(crate) fn short_bytes(&mut self) -> Result<&'a [u8], PurseError> {
        let length = usize::from(self.u8()?);
        self.take(length)
    }

    /// A count, refused above `maximum`.
    pub(crate) fn count_u8(&mut self, maximum: usize) -> Result<usize, PurseError> {
        let count = usize::from(self.u8()?);
        if count > maximum {
            return Err(PurseError::Malformed("too many items"));
        }
        Ok(count)
    }

    pub(crate) fn count_u16(&mut self, maximum: usize) -> Result<usize, PurseError> {
        let count = usize::from(self.u16()?);
        if count > maximum {
            return Err(PurseError::Malformed("too many items"));
        }
        Ok(count)
    }

    /// Nothing left to read (an optional field appended by a later version is absent).
    pub(crate) fn at_end(&self) -> bool {
        self.position == self.bytes.len()
    }

    pub(crate) fn finish(self) -> Result<(), PurseError> {
        if self.position != self.bytes.len() {
            return Err(PurseError::Malformed("trailing bytes"));
        }
        Ok(())
    }
}
