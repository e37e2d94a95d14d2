//! The software secure element: a purse sealed in one file, driven through the APDU interface.
//!
//! File format (version first):
//! ```text
//! version(1) = 3 ‖ operator id(1+n) ‖ purse id(8) ‖ kdf memory KiB(4) ‖ kdf passes(4) ‖
//! kdf lanes(1) ‖ PIN slot ‖ reset slots(1 + k × (number(4) ‖ slot)) ‖
//! nonce(24) ‖ XChaCha20-Poly1305_DK(state) ‖ tag(16)
//! slot = salt(16) ‖ nonce(24) ‖ XChaCha20-Poly1305_slot key(DK) ‖ tag(16)
//! ```
//! The state is sealed under a random data key DK; everything before its nonce is the AEAD's
//! associated data, so no header byte or slot can be altered. DK is wrapped twice over:
//! - in the **PIN slot**, under `HMAC-SHA256(device secret, "offpay purse file v3 pin" ‖
//!   operator ‖ purse id ‖ Argon2id(PIN, salt))`: the file opens only on the device holding the
//!   secret *and* with the holder's PIN, and each PIN guess costs one memory-hard derivation;
//! - in one **reset slot** for each of the next [`PIN_RESET_WINDOW`] reset code numbers, under
//!   `HMAC-SHA256(device secret, "offpay purse file v3 reset" ‖ operator ‖ purse id ‖ number ‖
//!   Argon2id(reset code, salt))`: a holder who forgot the PIN opens the purse with the one-time
//!   reset code the operator gives them after checking who they are, and sets a new PIN
//!   ([`SoftwareSecureElement::reset_pin`]). The purse itself checks the code again and
//!   takes each number once.
//!
//! Each write draws a fresh nonce; a new PIN draws a new PIN-slot salt, a reset new reset slots.
//! Files of format 2 (sealed straight under the PIN's key, without slots) still open with the
//! PIN and are rewritten in format 3 at once; they cannot be reset before that.
//!
//! **PIN tries live on the device, not in the file.** A wrong PIN (the file does not open) is
//! counted in the device's try store (`<device secret>.tries`, beside the device secret, never
//! beside the purse); after [`DEVICE_PIN_TRIES_MAX`] the device refuses to try again, even the
//! right PIN. Restoring an old purse file therefore does not give a thief more guesses. The same
//! store counts wrong reset codes (at most [`PIN_RESET_FAILURES_MAX`]) and keeps the number of the
//! last reset code used on this device: a restored file does not take a used code again, and a
//! file older than a reset made on this device is refused (its old PIN does not come back).
//! Residual risk (software class): whoever can also roll back the device store, or copies the
//! device secret and the file off the phone, guesses offline at one Argon2id derivation per PIN
//! (10^4 for four digits) or per reset code (10^12 per slot).
//!
//! Durability: a write goes to `<file>.tmp`, is fsynced, renamed over the file, and the directory
//! is fsynced. A crash at any point leaves the old file or the new one, never a mixture; a broken
//! `.tmp` left by a crash is ignored and overwritten. A command's response is released only after
//! the new state is durable; if the write fails the purse keeps its previous state and answers
//! 6581.

use std::borrow::ToOwned;
use std::format;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::string::String;
use std::vec::Vec;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::apdu::{ResponseApdu, Transport, dispatch, sw};
use crate::crypto::hmac_sha256;
use crate::error::{PurseError, StorageProblem};
use crate::pin_reset::{PIN_RESET_FAILURES_MAX, PIN_RESET_WINDOW, ResetCode};
use crate::purse::Purse;
use crate::types::{OperatorId, Pin, PurseId, RandomSource, SystemRandom, Timestamp};
use crate::wire::{Reader, Writer};

/// Bytes of a device secret.
pub const DEVICE_SECRET_BYTES: usize = 32;
const NONCE_BYTES: usize = 24;
const SALT_BYTES: usize = 16;
const TAG_BYTES: usize = 16;
const DATA_KEY_BYTES: usize = 32;
const WRAPPED_BYTES: usize = DATA_KEY_BYTES + TAG_BYTES;
const SLOT_BYTES: usize = SALT_BYTES + NONCE_BYTES + WRAPPED_BYTES;
const LABEL_FILE_KEY_V2: &[u8] = b"offpay purse file v2";
const LABEL_PIN_SLOT: &[u8] = b"offpay purse file v3 pin";
const LABEL_RESET_SLOT: &[u8] = b"offpay purse file v3 reset";
/// Format version of a sealed purse file (3: a data key wrapped under the PIN and under the next
/// reset codes).
pub const FILE_FORMAT_VERSION: u8 = 3;
/// The format before PIN resets (sealed straight under the PIN's key); opened and rewritten.
const FILE_FORMAT_VERSION_V2: u8 = 2;
/// Wrong PINs (files that would not open) a device allows per purse before it refuses to try
/// again; the holder then asks the operator for a reset code (or, lost, a new purse).
pub const DEVICE_PIN_TRIES_MAX: u8 = 5;

/// Argon2id parameters of a purse file's key derivation, stored in its header.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SealParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes.
    pub passes: u32,
    /// Lanes.
    pub lanes: u8,
}

impl SealParams {
    /// For phones and PCs: 19 MiB, 2 passes, 1 lane (OWASP's Argon2id minimum).
    pub const DEVICE: SealParams = SealParams {
        memory_kib: 19 * 1024,
        passes: 2,
        lanes: 1,
    };
    /// For tests only (fast, no memory hardness to speak of): 64 KiB, 1 pass.
    pub const TEST: SealParams = SealParams {
        memory_kib: 64,
        passes: 1,
        lanes: 1,
    };
    /// Largest memory accepted from a file header (a forged header cannot make us allocate more).
    pub const MEMORY_KIB_MAX: u32 = 1024 * 1024;

    fn check(&self) -> Result<(), PurseError> {
        let ok = (1..=16).contains(&self.lanes)
            && (1..=16).contains(&self.passes)
            && self.memory_kib >= 8 * u32::from(self.lanes)
            && self.memory_kib <= SealParams::MEMORY_KIB_MAX;
        if ok {
            Ok(())
        } else {
            Err(PurseError::Storage(StorageProblem::Tampered))
        }
    }
}

/// The secret of the device that holds purse files (a phone, a PC), and where the device counts
/// wrong PINs and reset codes. Kept in its own file, readable only by its owner, never next to
/// the purse files it seals when that can be avoided (on a phone: the platform keystore).
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct DeviceSecret {
    bytes: [u8; DEVICE_SECRET_BYTES],
    /// The try store; `None`: counted in memory only (tests).
    #[zeroize(skip)]
    tries: Option<PathBuf>,
}

/// What the device's try store counts for one purse.
#[derive(Clone, Copy)]
enum Counted {
    WrongPins,
    WrongResetCodes,
    ResetCodeUsed,
}

impl DeviceSecret {
    /// From raw bytes (wrong PINs are then counted in memory only).
    pub fn from_bytes(bytes: [u8; DEVICE_SECRET_BYTES]) -> DeviceSecret {
        DeviceSecret { bytes, tries: None }
    }

    /// A fresh random secret.
    pub fn generate(random: &mut dyn RandomSource) -> DeviceSecret {
        let mut bytes = [0u8; DEVICE_SECRET_BYTES];
        random.fill_bytes(&mut bytes);
        DeviceSecret::from_bytes(bytes)
    }

    /// Reads the secret from `path`, creating it (mode 0600) with fresh randomness if absent.
    /// Wrong PINs are counted in `<path>.tries`.
    pub fn load_or_create(path: &Path) -> Result<DeviceSecret, PurseError> {
        let mut tries = path.as_os_str().to_os_string();
        tries.push(".tries");
        let tries = Some(PathBuf::from(tries));
        match fs::read(path) {
            Ok(bytes) => {
                let bytes: [u8; DEVICE_SECRET_BYTES] = bytes
                    .try_into()
                    .map_err(|_| PurseError::Storage(StorageProblem::Tampered))?;
                Ok(DeviceSecret { bytes, tries })
            }
            Err(error) if error.kind() == ErrorKind::NotFound => {
                let mut secret = DeviceSecret::generate(&mut SystemRandom);
                write_atomically(path, &secret.bytes)?;
                secret.tries = tries;
                Ok(secret)
            }
            Err(_) => Err(PurseError::Storage(StorageProblem::Io)),
        }
    }

    /// A slot key: HMAC(device secret, label ‖ operator ‖ purse id ‖ [number] ‖ Argon2id(secret
    /// digits, salt)).
    #[allow(clippy::too_many_arguments)]
    fn slot_key(
        &self,
        label: &[u8],
        operator: OperatorId,
        purse_id: PurseId,
        number: Option<u32>,
        digits: &[u8],
        salt: &[u8; SALT_BYTES],
        params: SealParams,
    ) -> Result<[u8; 32], PurseError> {
        params.check()?;
        let argon_params = argon2::Params::new(
            params.memory_kib,
            params.passes,
            u32::from(params.lanes),
            Some(32),
        )
        .map_err(|_| PurseError::Storage(StorageProblem::Tampered))?;
        let argon = argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            argon_params,
        );
        let mut stretched = [0u8; 32];
        argon
            .hash_password_into(digits, salt, &mut stretched)
            .map_err(|_| PurseError::Storage(StorageProblem::Tampered))?;
        let number = number.map(u32::to_be_bytes);
        let id_bytes = purse_id.0.to_be_bytes();
        let mut context: Vec<&[u8]> = std::vec![operator.as_bytes(), &id_bytes];
        if let Some(number) = &number {
            context.push(number);
        }
        context.push(&stretched);
        let key = hmac_sha256(&self.bytes, label, &context);
        drop(context);
        stretched.zeroize();
        Ok(key)
    }

    /// The PIN slot's key.
    fn pin_key(
        &self,
        operator: OperatorId,
        purse_id: PurseId,
        pin: &Pin,
        salt: &[u8; SALT_BYTES],
        params: SealParams,
    ) -> Result<[u8; 32], PurseError> {
        let mut digits = pin.to_bytes();
        let key = self.slot_key(
            LABEL_PIN_SLOT,
            operator,
            purse_id,
            None,
            &digits,
            salt,
            params,
        );
        digits.zeroize();
        key
    }

    /// Reset slot `number`'s key.
    fn reset_key(
        &self,
        operator: OperatorId,
        purse_id: PurseId,
        number: u32,
        code: &ResetCode,
        salt: &[u8; SALT_BYTES],
        params: SealParams,
    ) -> Result<[u8; 32], PurseError> {
        let mut digits = format!("{:012}", code.as_number()).into_bytes();
        let key = self.slot_key(
            LABEL_RESET_SLOT,
            operator,
            purse_id,
            Some(number),
            &digits,
            salt,
            params,
        );
        digits.zeroize();
        key
    }

    /// The sealing key of a format 2 file (opened once, then rewritten in format 3).
    fn legacy_file_key(
        &self,
        operator: OperatorId,
        purse_id: PurseId,
        pin: &Pin,
        salt: &[u8; SALT_BYTES],
        params: SealParams,
    ) -> Result<[u8; 32], PurseError> {
        let mut digits = pin.to_bytes();
        let key = self.slot_key(
            LABEL_FILE_KEY_V2,
            operator,
            purse_id,
            None,
            &digits,
            salt,
            params,
        );
        digits.zeroize();
        key
    }

    fn tries_entry(operator: OperatorId, purse_id: PurseId, counted: Counted) -> String {
        match counted {
            Counted::WrongPins => format!("{} {}", operator.as_str(), purse_id.0),
            Counted::WrongResetCodes => format!("{} {} reset-wrong", operator.as_str(), purse_id.0),
            Counted::ResetCodeUsed => format!("{} {} reset-used", operator.as_str(), purse_id.0),
        }
    }

    /// Wrong PINs counted for this purse on this device.
    pub fn wrong_pins(&self, operator: OperatorId, purse_id: PurseId) -> u8 {
        u8::try_from(self.count(operator, purse_id, Counted::WrongPins)).unwrap_or(u8::MAX)
    }

    /// Wrong reset codes counted for this purse on this device.
    pub fn wrong_reset_codes(&self, operator: OperatorId, purse_id: PurseId) -> u8 {
        u8::try_from(self.count(operator, purse_id, Counted::WrongResetCodes)).unwrap_or(u8::MAX)
    }

    /// The number of the last reset code this device used for this purse (0: none).
    pub fn reset_code_used(&self, operator: OperatorId, purse_id: PurseId) -> u32 {
        self.count(operator, purse_id, Counted::ResetCodeUsed)
    }

    fn count(&self, operator: OperatorId, purse_id: PurseId, counted: Counted) -> u32 {
        let entry = DeviceSecret::tries_entry(operator, purse_id, counted);
        match &self.tries {
            Some(path) => fs::read_to_string(path)
                .ok()
                .and_then(|text| {
                    text.lines().find_map(|line| {
                        let (name, count) = line.rsplit_once(' ')?;
                        (name == entry).then(|| count.parse().ok()).flatten()
                    })
                })
                .unwrap_or(0),
            None => MEMORY_TRIES.with(|tries| {
                tries
                    .borrow()
                    .iter()
                    .find(|(name, _)| *name == entry)
                    .map_or(0, |(_, count)| *count)
            }),
        }
    }

    fn set_wrong_pins(
        &self,
        operator: OperatorId,
        purse_id: PurseId,
        count: u8,
    ) -> Result<(), PurseError> {
        self.set_count(operator, purse_id, Counted::WrongPins, u32::from(count))
    }

    fn set_count(
        &self,
        operator: OperatorId,
        purse_id: PurseId,
        counted: Counted,
        count: u32,
    ) -> Result<(), PurseError> {
        let entry = DeviceSecret::tries_entry(operator, purse_id, counted);
        match &self.tries {
            Some(path) => {
                let text = match fs::read_to_string(path) {
                    Ok(text) => text,
                    Err(error) if error.kind() == ErrorKind::NotFound => String::new(),
                    Err(error) => return Err(io_error(error)),
                };
                let mut lines: Vec<String> = text
                    .lines()
                    .filter(|line| line.rsplit_once(' ').is_none_or(|(name, _)| name != entry))
                    .map(str::to_owned)
                    .collect();
                if count > 0 {
                    lines.push(format!("{entry} {count}"));
                }
                let mut out = lines.join("\n");
                out.push('\n');
                write_atomically(path, out.as_bytes())
            }
            None => {
                MEMORY_TRIES.with(|tries| {
                    let mut tries = tries.borrow_mut();
                    tries.retain(|(name, _)| *name != entry);
                    if count > 0 {
                        tries.push((entry, count));
                    }
                });
                Ok(())
            }
        }
    }
}

std::thread_local! {
    /// Counts of secrets without a try store (tests), per thread.
    static MEMORY_TRIES: core::cell::RefCell<Vec<(String, u32)>> =
        const { core::cell::RefCell::new(Vec::new()) };
}

impl core::fmt::Debug for DeviceSecret {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("DeviceSecret(<redacted>)")
    }
}

/// One wrapped copy of the data key.
#[derive(Clone)]
struct Slot {
    salt: [u8; SALT_BYTES],
    nonce: [u8; NONCE_BYTES],
    wrapped: [u8; WRAPPED_BYTES],
}

impl Slot {
    /// Wraps `data_key` under `key`; the slot's associated data is the identity header, its
    /// kind and number.
    fn wrap(
        key: &[u8; 32],
        salt: [u8; SALT_BYTES],
        data_key: &[u8; DATA_KEY_BYTES],
        aad: &[u8],
        random: &mut dyn RandomSource,
    ) -> Slot {
        let mut nonce = [0u8; NONCE_BYTES];
        random.fill_bytes(&mut nonce);
        let cipher = XChaCha20Poly1305::new(&Key::from(*key));
        // Encryption of an in-memory buffer with a valid key and nonce cannot fail.
        #[allow(clippy::expect_used)]
        let sealed = cipher
            .encrypt(&XNonce::from(nonce), Payload { msg: data_key, aad })
            .expect("XChaCha20-Poly1305 encryption");
        let mut wrapped = [0u8; WRAPPED_BYTES];
        wrapped.copy_from_slice(&sealed);
        Slot {
            salt,
            nonce,
            wrapped,
        }
    }

    fn unwrap_with(&self, key: &[u8; 32], aad: &[u8]) -> Option<[u8; DATA_KEY_BYTES]> {
        let cipher = XChaCha20Poly1305::new(&Key::from(*key));
        let mut opened = cipher
            .decrypt(
                &XNonce::from(self.nonce),
                Payload {
                    msg: &self.wrapped,
                    aad,
                },
            )
            .ok()?;
        let mut data_key = [0u8; DATA_KEY_BYTES];
        if opened.len() == DATA_KEY_BYTES {
            data_key.copy_from_slice(&opened);
        }
        opened.zeroize();
        Some(data_key)
    }

    fn write(&self, w: &mut Writer) {
        w.bytes(&self.salt);
        w.bytes(&self.nonce);
        w.bytes(&self.wrapped);
    }

    fn read(r: &mut Reader<'_>) -> Result<Slot, PurseError> {
        Ok(Slot {
            salt: r.array()?,
            nonce: r.array()?,
            wrapped: r.array()?,
        })
    }
}

/// The associated data of a slot: the identity header, the slot's kind and its number.
fn slot_aad(identity: &[u8], reset_number: Option<u32>) -> Vec<u8> {
    let mut aad = identity.to_vec();
    match reset_number {
        None => aad.push(b'P'),
        Some(number) => {
            aad.push(b'R');
            aad.extend_from_slice(&number.to_be_bytes());
        }
    }
    aad
}

/// How a purse file is sealed: its data key and the slots that wrap it.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
struct Sealing {
    data_key: [u8; DATA_KEY_BYTES],
    #[zeroize(skip)]
    params: SealParams,
    #[zeroize(skip)]
    pin_slot: Slot,
    /// (number, slot) for the next reset codes.
    #[zeroize(skip)]
    reset_slots: Vec<(u32, Slot)>,
}

impl Sealing {
    /// A new data key with its PIN slot and reset slots for the purse's next reset codes.
    fn new(
        secret: &DeviceSecret,
        purse: &Purse,
        params: SealParams,
        random: &mut dyn RandomSource,
    ) -> Result<Sealing, PurseError> {
        let mut data_key = [0u8; DATA_KEY_BYTES];
        random.fill_bytes(&mut data_key);
        let mut sealing = Sealing {
            data_key,
            params,
            pin_slot: Slot {
                salt: [0; SALT_BYTES],
                nonce: [0; NONCE_BYTES],
                wrapped: [0; WRAPPED_BYTES],
            },
            reset_slots: Vec::new(),
        };
        sealing.rewrap_pin(secret, purse, random)?;
        sealing.rewrap_resets(secret, purse, random)?;
        Ok(sealing)
    }

    /// A new PIN slot (fresh salt) for the purse's current PIN.
    fn rewrap_pin(
        &mut self,
        secret: &DeviceSecret,
        purse: &Purse,
        random: &mut dyn RandomSource,
    ) -> Result<(), PurseError> {
        let identity = purse.identity();
        let mut salt = [0u8; SALT_BYTES];
        random.fill_bytes(&mut salt);
        let mut key = secret.pin_key(
            identity.operator,
            identity.purse_id,
            purse.pin(),
            &salt,
            self.params,
        )?;
        let header = identity_header(identity.operator, identity.purse_id);
        self.pin_slot = Slot::wrap(&key, salt, &self.data_key, &slot_aad(&header, None), random);
        key.zeroize();
        Ok(())
    }

    /// Reset slots for the purse's next [`PIN_RESET_WINDOW`] reset codes.
    fn rewrap_resets(
        &mut self,
        secret: &DeviceSecret,
        purse: &Purse,
        random: &mut dyn RandomSource,
    ) -> Result<(), PurseError> {
        let identity = purse.identity();
        let header = identity_header(identity.operator, identity.purse_id);
        let mut slots = Vec::new();
        for number in
            (1..=PIN_RESET_WINDOW).filter_map(|ahead| purse.pin_resets_used().checked_add(ahead))
        {
            let code = purse.reset_code(number);
            let mut salt = [0u8; SALT_BYTES];
            random.fill_bytes(&mut salt);
            let mut key = secret.reset_key(
                identity.operator,
                identity.purse_id,
                number,
                &code,
                &salt,
                self.params,
            )?;
            slots.push((
                number,
                Slot::wrap(
                    &key,
                    salt,
                    &self.data_key,
                    &slot_aad(&header, Some(number)),
                    random,
                ),
            ));
            key.zeroize();
        }
        self.reset_slots = slots;
        Ok(())
    }
}

fn io_error(error: std::io::Error) -> PurseError {
    match error.kind() {
        ErrorKind::NotFound => PurseError::Storage(StorageProblem::NotFound),
        ErrorKind::AlreadyExists => PurseError::Storage(StorageProblem::AlreadyExists),
        _ => PurseError::Storage(StorageProblem::Io),
    }
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|name| name.to_os_string())
        .unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Write to `<path>.tmp`, fsync, rename over `path`, fsync the directory.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), PurseError> {
    let temp = temp_path(path);
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&temp).map_err(io_error)?;
    file.write_all(bytes).map_err(io_error)?;
    file.sync_all().map_err(io_error)?;
    drop(file);
    fs::rename(&temp, path).map_err(io_error)?;
    let directory = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    File::open(directory)
        .and_then(|directory| directory.sync_all())
        .map_err(io_error)?;
    Ok(())
}

/// version ‖ operator ‖ purse id: the start of every file, and the slots' associated data.
fn identity_header(operator: OperatorId, purse_id: PurseId) -> Vec<u8> {
    let mut w = Writer::new();
    w.u8(FILE_FORMAT_VERSION);
    w.short_bytes(operator.as_bytes());
    w.u64(purse_id.0);
    w.finish()
}

/// Reads the clear header of a purse file: which operator and purse it belongs to.
pub fn peek_file(path: &Path) -> Result<(OperatorId, PurseId), PurseError> {
    let bytes = fs::read(path).map_err(io_error)?;
    let (_, operator, purse_id, _) = read_header(&bytes)?;
    Ok((operator, purse_id))
}

/// version, operator, purse id and the identity header's length.
fn read_header(bytes: &[u8]) -> Result<(u8, OperatorId, PurseId, usize), PurseError> {
    let tampered = PurseError::Storage(StorageProblem::Tampered);
    let mut r = Reader::new(bytes);
    let version = r.u8().map_err(|_| tampered.clone())?;
    if version != FILE_FORMAT_VERSION && version != FILE_FORMAT_VERSION_V2 {
        return Err(PurseError::UnsupportedVersion { found: version });
    }
    let operator = core::str::from_utf8(r.short_bytes().map_err(|_| tampered.clone())?)
        .ok()
        .and_then(|text| OperatorId::new(text).ok())
        .ok_or(tampered.clone())?;
    let purse_id = PurseId(r.u64().map_err(|_| tampered.clone())?);
    let header_length = 1 + 1 + operator.as_bytes().len() + 8;
    Ok((version, operator, purse_id, header_length))
}

/// The parts of a format 3 file.
struct ParsedFile<'a> {
    operator: OperatorId,
    purse_id: PurseId,
    identity: &'a [u8],
    params: SealParams,
    pin_slot: Slot,
    reset_slots: Vec<(u32, Slot)>,
    /// Everything before the body's nonce (the body's associated data).
    header: &'a [u8],
    nonce: [u8; NONCE_BYTES],
    body: &'a [u8],
}

fn read_params(r: &mut Reader<'_>) -> Result<SealParams, PurseError> {
    Ok(SealParams {
        memory_kib: r.u32()?,
        passes: r.u32()?,
        lanes: r.u8()?,
    })
}

fn parse_file(bytes: &[u8]) -> Result<ParsedFile<'_>, PurseError> {
    let tampered = |_| PurseError::Storage(StorageProblem::Tampered);
    let (version, operator, purse_id, identity_length) = read_header(bytes)?;
    if version != FILE_FORMAT_VERSION {
        return Err(PurseError::UnsupportedVersion { found: version });
    }
    let rest = &bytes[identity_length..];
    let mut r = Reader::new(rest);
    let params = read_params(&mut r).map_err(tampered)?;
    params.check()?;
    let pin_slot = Slot::read(&mut r).map_err(tampered)?;
    let count = r.count_u8(PIN_RESET_WINDOW as usize).map_err(tampered)?;
    let mut reset_slots = Vec::with_capacity(count);
    for _ in 0..count {
        let number = r.u32().map_err(tampered)?;
        reset_slots.push((number, Slot::read(&mut r).map_err(tampered)?));
    }
    let header_length = identity_length + 4 + 4 + 1 + SLOT_BYTES + 1 + count * (4 + SLOT_BYTES);
    let nonce: [u8; NONCE_BYTES] = r.array().map_err(tampered)?;
    let body = &bytes[header_length + NONCE_BYTES..];
    if body.len() < TAG_BYTES {
        return Err(PurseError::Storage(StorageProblem::Tampered));
    }
    Ok(ParsedFile {
        operator,
        purse_id,
        identity: &bytes[..identity_length],
        params,
        pin_slot,
        reset_slots,
        header: &bytes[..header_length],
        nonce,
        body,
    })
}

fn seal(sealing: &Sealing, purse: &Purse, random: &mut dyn RandomSource) -> Vec<u8> {
    let identity = purse.identity();
    let mut w = Writer::new();
    w.bytes(&identity_header(identity.operator, identity.purse_id));
    w.u32(sealing.params.memory_kib);
    w.u32(sealing.params.passes);
    w.u8(sealing.params.lanes);
    sealing.pin_slot.write(&mut w);
    w.u8(sealing.reset_slots.len() as u8);
    for (number, slot) in &sealing.reset_slots {
        w.u32(*number);
        slot.write(&mut w);
    }
    let header = w.finish();
    let mut nonce = [0u8; NONCE_BYTES];
    random.fill_bytes(&mut nonce);
    let cipher = XChaCha20Poly1305::new(&Key::from(sealing.data_key));
    let mut state = purse.encode_state();
    // Encryption of an in-memory buffer with a valid key and nonce cannot fail.
    #[allow(clippy::expect_used)]
    let sealed = cipher
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: &state,
                aad: &header,
            },
        )
        .expect("XChaCha20-Poly1305 encryption");
    state.zeroize();
    let mut out = header;
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    out
}

/// Opens the body of a parsed file with its data key.
fn open_body(file: &ParsedFile<'_>, data_key: &[u8; DATA_KEY_BYTES]) -> Result<Purse, PurseError> {
    let tampered = PurseError::Storage(StorageProblem::Tampered);
    let cipher = XChaCha20Poly1305::new(&Key::from(*data_key));
    let mut state = cipher
        .decrypt(
            &XNonce::from(file.nonce),
            Payload {
                msg: file.body,
                aad: file.header,
            },
        )
        .map_err(|_| tampered.clone())?;
    let purse = Purse::decode_state(&state);
    state.zeroize();
    let purse = purse.map_err(|_| tampered.clone())?;
    if purse.identity().operator != file.operator || purse.identity().purse_id != file.purse_id {
        return Err(tampered);
    }
    Ok(purse)
}

/// A wrong PIN counted on the device: the error to answer.
fn count_wrong_pin(
    secret: &DeviceSecret,
    operator: OperatorId,
    purse_id: PurseId,
    wrong: u8,
) -> PurseError {
    let wrong = wrong.saturating_add(1);
    if let Err(error) = secret.set_wrong_pins(operator, purse_id, wrong) {
        return error;
    }
    if wrong >= DEVICE_PIN_TRIES_MAX {
        PurseError::PinBlocked
    } else {
        PurseError::WrongPin {
            tries_left: DEVICE_PIN_TRIES_MAX - wrong,
        }
    }
}

/// Opens a sealed file with the PIN. A file that does not open counts as a wrong PIN on this
/// device (a wrong PIN and a damaged file cannot be told apart without a PIN oracle). Returns the
/// purse and, for a format 2 file, `None` (it must be rewritten in format 3).
fn unseal(
    secret: &DeviceSecret,
    bytes: &[u8],
    expected_operator: OperatorId,
    pin: &Pin,
) -> Result<(Purse, Option<Sealing>), PurseError> {
    let (version, operator, purse_id, identity_length) = read_header(bytes)?;
    if operator != expected_operator {
        return Err(PurseError::WrongOperator {
            expected: expected_operator,
            found: operator,
        });
    }
    let wrong = secret.wrong_pins(operator, purse_id);
    if wrong >= DEVICE_PIN_TRIES_MAX {
        return Err(PurseError::PinBlocked);
    }
    if version == FILE_FORMAT_VERSION_V2 {
        return unseal_v2(secret, bytes, identity_length, pin, wrong).map(|purse| (purse, None));
    }
    let file = parse_file(bytes)?;
    let aad = slot_aad(file.identity, None);
    let mut key = secret.pin_key(operator, purse_id, pin, &file.pin_slot.salt, file.params)?;
    let opened = file.pin_slot.unwrap_with(&key, &aad);
    key.zeroize();
    let Some(mut data_key) = opened else {
        return Err(count_wrong_pin(secret, operator, purse_id, wrong));
    };
    let purse = open_body(&file, &data_key);
    let sealing = Sealing {
        data_key,
        params: file.params,
        pin_slot: file.pin_slot.clone(),
        reset_slots: file.reset_slots.clone(),
    };
    data_key.zeroize();
    let purse = purse?;
    if wrong > 0 {
        secret.set_wrong_pins(operator, purse_id, 0)?;
    }
    // A copy from before a PIN reset made on this device: its old PIN does not come back.
    if purse.pin_resets_used() < secret.reset_code_used(operator, purse_id) {
        return Err(PurseError::Storage(StorageProblem::Tampered));
    }
    Ok((purse, Some(sealing)))
}

/// Opens a format 2 file (sealed straight under the PIN's key).
fn unseal_v2(
    secret: &DeviceSecret,
    bytes: &[u8],
    identity_length: usize,
    pin: &Pin,
    wrong: u8,
) -> Result<Purse, PurseError> {
    let tampered = PurseError::Storage(StorageProblem::Tampered);
    let (_, operator, purse_id, _) = read_header(bytes)?;
    let mut r = Reader::new(&bytes[identity_length..]);
    let params = read_params(&mut r).map_err(|_| tampered.clone())?;
    let salt: [u8; SALT_BYTES] = r.array().map_err(|_| tampered.clone())?;
    let header_length = identity_length + 4 + 4 + 1 + SALT_BYTES;
    if bytes.len() < header_length + NONCE_BYTES + TAG_BYTES {
        return Err(tampered);
    }
    let (header, rest) = bytes.split_at(header_length);
    let (nonce, sealed) = rest.split_at(NONCE_BYTES);
    let mut nonce_bytes = [0u8; NONCE_BYTES];
    nonce_bytes.copy_from_slice(nonce);
    let mut key = secret.legacy_file_key(operator, purse_id, pin, &salt, params)?;
    let cipher = XChaCha20Poly1305::new(&Key::from(key));
    key.zeroize();
    let Ok(mut state) = cipher.decrypt(
        &XNonce::from(nonce_bytes),
        Payload {
            msg: sealed,
            aad: header,
        },
    ) else {
        return Err(count_wrong_pin(secret, operator, purse_id, wrong));
    };
    if wrong > 0 {
        secret.set_wrong_pins(operator, purse_id, 0)?;
    }
    let purse = Purse::decode_state(&state);
    state.zeroize();
    let purse = purse.map_err(|_| tampered.clone())?;
    if purse.identity().operator != operator || purse.identity().purse_id != purse_id {
        return Err(tampered);
    }
    Ok(purse)
}

/// A purse in a sealed file, answering APDUs.
pub struct SoftwareSecureElement<R: RandomSource = SystemRandom> {
    path: PathBuf,
    secret: DeviceSecret,
    sealing: Sealing,
    purse: Purse,
    random: R,
}

impl<R: RandomSource> core::fmt::Debug for SoftwareSecureElement<R> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SoftwareSecureElement")
            .field("path", &self.path)
            .field("purse", &self.purse)
            .finish_non_exhaustive()
    }
}

impl SoftwareSecureElement<SystemRandom> {
    /// Seals a freshly provisioned purse into a new file (refuses to overwrite one), with its PIN
    /// and the device's KDF parameters.
    pub fn create(
        path: &Path,
        secret: DeviceSecret,
        purse: Purse,
    ) -> Result<SoftwareSecureElement<SystemRandom>, PurseError> {
        SoftwareSecureElement::create_with(path, secret, purse, SealParams::DEVICE, SystemRandom)
    }

    /// Opens a purse file of `operator` with the holder's PIN. A file of another operator is
    /// refused with [`PurseError::WrongOperator`]; a file that does not open with
    /// [`PurseError::WrongPin`] (counted on the device) and, after [`DEVICE_PIN_TRIES_MAX`],
    /// [`PurseError::PinBlocked`].
    pub fn open(
        path: &Path,
        secret: DeviceSecret,
        operator: OperatorId,
        pin: &Pin,
    ) -> Result<SoftwareSecureElement<SystemRandom>, PurseError> {
        SoftwareSecureElement::open_with(path, secret, operator, pin, SystemRandom)
    }

    /// Resets the PIN of a purse file in place with the operator's one-time reset code (for a
    /// holder who forgot the PIN or blocked it): see [`SoftwareSecureElement::reset_pin_with`].
    pub fn reset_pin(
        path: &Path,
        secret: DeviceSecret,
        operator: OperatorId,
        code: &ResetCode,
        new: &Pin,
        now: Timestamp,
    ) -> Result<SoftwareSecureElement<SystemRandom>, PurseError> {
        SoftwareSecureElement::reset_pin_with(path, secret, operator, code, new, now, SystemRandom)
    }
}

impl<R: RandomSource> SoftwareSecureElement<R> {
    /// [`SoftwareSecureElement::create`] with a given source of randomness.
    pub fn create_with(
        path: &Path,
        secret: DeviceSecret,
        purse: Purse,
        params: SealParams,
        mut random: R,
    ) -> Result<SoftwareSecureElement<R>, PurseError> {
        if path.exists() {
            return Err(PurseError::Storage(StorageProblem::AlreadyExists));
        }
        let sealing = Sealing::new(&secret, &purse, params, &mut random)?;
        write_atomically(path, &seal(&sealing, &purse, &mut random))?;
        Ok(SoftwareSecureElement {
            path: path.to_path_buf(),
            secret,
            sealing,
            purse,
            random,
        })
    }

    /// [`SoftwareSecureElement::open`] with a given source of randomness. A format 2 file is
    /// rewritten in format 3 before this returns.
    pub fn open_with(
        path: &Path,
        secret: DeviceSecret,
        operator: OperatorId,
        pin: &Pin,
        mut random: R,
    ) -> Result<SoftwareSecureElement<R>, PurseError> {
        let bytes = fs::read(path).map_err(io_error)?;
        let (purse, sealing) = unseal(&secret, &bytes, operator, pin)?;
        let sealing = match sealing {
            Some(sealing) => sealing,
            None => {
                let params = {
                    let (_, _, _, identity_length) = read_header(&bytes)?;
                    read_params(&mut Reader::new(&bytes[identity_length..]))?
                };
                let sealing = Sealing::new(&secret, &purse, params, &mut random)?;
                write_atomically(path, &seal(&sealing, &purse, &mut random))?;
                sealing
            }
        };
        Ok(SoftwareSecureElement {
            path: path.to_path_buf(),
            secret,
            sealing,
            purse,
            random,
        })
    }

    /// Resets the PIN in place: the reset code opens the file through its reset slot (only a
    /// slot whose number this device has not used yet), the purse checks the code itself and
    /// takes the new PIN with every try back, and the file is resealed under the new PIN with
    /// slots for the next codes. A wrong code (or a used one, one for another purse, one a
    /// restored file still holds) is counted on the device; after [`PIN_RESET_FAILURES_MAX`] the
    /// device takes none. The device's PIN tries start again.
    pub fn reset_pin_with(
        path: &Path,
        secret: DeviceSecret,
        operator: OperatorId,
        code: &ResetCode,
        new: &Pin,
        now: Timestamp,
        random: R,
    ) -> Result<SoftwareSecureElement<R>, PurseError> {
        let bytes = fs::read(path).map_err(io_error)?;
        let (_, found, purse_id, _) = read_header(&bytes)?;
        if found != operator {
            return Err(PurseError::WrongOperator {
                expected: operator,
                found,
            });
        }
        let file = parse_file(&bytes)?;
        let wrong = secret.wrong_reset_codes(operator, purse_id);
        if wrong >= PIN_RESET_FAILURES_MAX {
            return Err(PurseError::PinResetBlocked);
        }
        let used = secret.reset_code_used(operator, purse_id);
        let mut data_key = None;
        for (number, slot) in file.reset_slots.iter().filter(|(number, _)| *number > used) {
            let mut key =
                secret.reset_key(operator, purse_id, *number, code, &slot.salt, file.params)?;
            let opened = slot.unwrap_with(&key, &slot_aad(file.identity, Some(*number)));
            key.zeroize();
            if opened.is_some() {
                data_key = opened;
                break;
            }
        }
        let Some(mut data_key) = data_key else {
            let wrong = wrong.saturating_add(1);
            secret.set_count(
                operator,
                purse_id,
                Counted::WrongResetCodes,
                u32::from(wrong),
            )?;
            return Err(if wrong >= PIN_RESET_FAILURES_MAX {
                PurseError::PinResetBlocked
            } else {
                PurseError::WrongResetCode {
                    tries_left: PIN_RESET_FAILURES_MAX - wrong,
                }
            });
        };
        let purse = open_body(&file, &data_key);
        let sealing = Sealing {
            data_key,
            params: file.params,
            pin_slot: file.pin_slot.clone(),
            reset_slots: file.reset_slots.clone(),
        };
        data_key.zeroize();
        let mut element = SoftwareSecureElement {
            path: path.to_path_buf(),
            secret,
            sealing,
            purse: purse?,
            random,
        };
        // The purse checks the code against its own key and counter, sets the PIN and gives
        // back its tries; the write below reseals the file (new PIN slot, next reset slots).
        crate::apdu::PurseCard::new(&mut element, now)?.reset_pin(code, new, now)?;
        let number = element.purse.pin_resets_used();
        if number <= used {
            return Err(PurseError::WrongResetCode {
                tries_left: PIN_RESET_FAILURES_MAX - wrong,
            });
        }
        element
            .secret
            .set_count(operator, purse_id, Counted::WrongResetCodes, 0)?;
        element.secret.set_wrong_pins(operator, purse_id, 0)?;
        Ok(element)
    }

    /// The purse (read-only; commands go through [`SoftwareSecureElement::transmit_at`]).
    pub fn purse(&self) -> &Purse {
        &self.purse
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs one command APDU: the command runs on a copy of the state; if the state changed, the
    /// copy is sealed and written durably before the response is released.
    pub fn transmit_at(&mut self, command: &[u8], now: Timestamp) -> Vec<u8> {
        let mut working = self.purse.clone();
        let response = dispatch(&mut working, command, now, &mut self.random);
        if working.revision() != self.purse.revision() {
            match self.persist(&working) {
                Ok(sealing) => {
                    self.purse = working;
                    self.sealing = sealing;
                }
                Err(error) => {
                    return ResponseApdu {
                        data: crate::apdu::encode_error(&error),
                        status: sw::MEMORY_FAILURE,
                    }
                    .encode();
                }
            }
        }
        response.encode()
    }

    /// Seals and writes `working`: a new PIN gets a new PIN slot (the old PIN no longer opens
    /// the file); a used reset code gets slots for the next ones, and is first recorded on the
    /// device, so that a restored file does not take it again.
    fn persist(&mut self, working: &Purse) -> Result<Sealing, PurseError> {
        let mut sealing = self.sealing.clone();
        if !working.pin().matches(self.purse.pin()) {
            sealing.rewrap_pin(&self.secret, working, &mut self.random)?;
        }
        if working.pin_resets_used() != self.purse.pin_resets_used() {
            let identity = working.identity();
            let used = self
                .secret
                .reset_code_used(identity.operator, identity.purse_id);
            if working.pin_resets_used() > used {
                self.secret.set_count(
                    identity.operator,
                    identity.purse_id,
                    Counted::ResetCodeUsed,
                    working.pin_resets_used(),
                )?;
            }
            sealing.rewrap_resets(&self.secret, working, &mut self.random)?;
        }
        write_atomically(&self.path, &seal(&sealing, working, &mut self.random))?;
        Ok(sealing)
    }
}

impl<R: RandomSource> Transport for SoftwareSecureElement<R> {
    fn transmit(&mut self, command: &[u8], now: Timestamp) -> Result<Vec<u8>, PurseError> {
        Ok(self.transmit_at(command, now))
    }
}

impl<R: RandomSource> Transport for &mut SoftwareSecureElement<R> {
    fn transmit(&mut self, command: &[u8], now: Timestamp) -> Result<Vec<u8>, PurseError> {
        Ok(self.transmit_at(command, now))
    }
}
