//! The software secure element: a purse sealed in one file, driven through the APDU interface.
//!
//! File format (version first):
//! ```text
//! version(1) = 2 ‖ operator id(1+n) ‖ purse id(8) ‖ kdf memory KiB(4) ‖ kdf passes(4) ‖
//! kdf lanes(1) ‖ salt(16) ‖ nonce(24) ‖ XChaCha20-Poly1305(state) ‖ tag(16)
//! ```
//! The header is the AEAD's associated data, so it cannot be altered either. The sealing key is
//! `HMAC-SHA256(device secret, "offpay purse file v2" ‖ operator ‖ purse id ‖ Argon2id(PIN, salt))`:
//! the file opens only on the device holding the secret *and* with the holder's PIN, and each
//! PIN guess costs one memory-hard derivation. Each write draws a fresh random nonce; the salt
//! changes with the PIN.
//!
//! **PIN tries live on the device, not in the file.** A wrong PIN (the file does not open) is
//! counted in the device's try store (`<device secret>.tries`, beside the device secret, never
//! beside the purse); after [`DEVICE_PIN_TRIES_MAX`] the device refuses to try again, even the
//! right PIN. Restoring an old purse file therefore does not give a thief more guesses. Residual
//! risk (software class): whoever can also roll back the device store, or copies the device
//! secret and the file off the phone, guesses offline at one Argon2id derivation per PIN.
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
use crate::purse::Purse;
use crate::types::{OperatorId, Pin, PurseId, RandomSource, SystemRandom, Timestamp};
use crate::wire::{Reader, Writer};

/// Bytes of a device secret.
pub const DEVICE_SECRET_BYTES: usize = 32;
const NONCE_BYTES: usize = 24;
const SALT_BYTES: usize = 16;
const LABEL_FILE_KEY: &[u8] = b"offpay purse file v2";
/// Format version of a sealed purse file (2: sealed with the PIN through Argon2id).
pub const FILE_FORMAT_VERSION: u8 = 2;
/// Wrong PINs (files that would not open) a device allows per purse before it refuses to try
/// again; the holder then asks the operator for a new purse (the balance moves to it).
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
/// wrong PINs. Kept in its own file, readable only by its owner, never next to the purse files it
/// seals when that can be avoided (on a phone: the platform keystore).
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct DeviceSecret {
    bytes: [u8; DEVICE_SECRET_BYTES],
    /// The try store; `None`: counted in memory only (tests).
    #[zeroize(skip)]
    tries: Option<PathBuf>,
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

    /// The sealing key of one purse file: HMAC(device secret, label ‖ operator ‖ purse id ‖
    /// Argon2id(PIN, salt)).
    fn file_key(
        &self,
        operator: OperatorId,
        purse_id: PurseId,
        pin: &Pin,
        salt: &[u8; SALT_BYTES],
        params: SealParams,
    ) -> Result<FileKey, PurseError> {
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
        let mut pin_bytes = pin.to_bytes();
        let mut stretched = [0u8; 32];
        let result = argon.hash_password_into(&pin_bytes, salt, &mut stretched);
        pin_bytes.zeroize();
        result.map_err(|_| PurseError::Storage(StorageProblem::Tampered))?;
        let key = hmac_sha256(
            &self.bytes,
            LABEL_FILE_KEY,
            &[operator.as_bytes(), &purse_id.0.to_be_bytes(), &stretched],
        );
        stretched.zeroize();
        Ok(FileKey {
            key,
            salt: *salt,
            params,
        })
    }

    fn tries_entry(operator: OperatorId, purse_id: PurseId) -> String {
        format!("{} {}", operator.as_str(), purse_id.0)
    }

    /// Wrong PINs counted for this purse on this device.
    pub fn wrong_pins(&self, operator: OperatorId, purse_id: PurseId) -> u8 {
        let entry = DeviceSecret::tries_entry(operator, purse_id);
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
        let entry = DeviceSecret::tries_entry(operator, purse_id);
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
    /// Wrong PINs of secrets without a try store (tests), per thread.
    static MEMORY_TRIES: core::cell::RefCell<Vec<(String, u8)>> =
        const { core::cell::RefCell::new(Vec::new()) };
}

/// A derived sealing key with the salt and parameters it was derived with.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
struct FileKey {
    key: [u8; 32],
    salt: [u8; SALT_BYTES],
    #[zeroize(skip)]
    params: SealParams,
}

impl core::fmt::Debug for DeviceSecret {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("DeviceSecret(<redacted>)")
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

/// Reads the clear header of a purse file: which operator and purse it belongs to.
pub fn peek_file(path: &Path) -> Result<(OperatorId, PurseId), PurseError> {
    let bytes = fs::read(path).map_err(io_error)?;
    let (operator, purse_id, _) = read_header(&bytes)?;
    Ok((operator, purse_id))
}

fn read_header(bytes: &[u8]) -> Result<(OperatorId, PurseId, usize), PurseError> {
    let tampered = PurseError::Storage(StorageProblem::Tampered);
    let mut r = Reader::new(bytes);
    let version = r.u8().map_err(|_| tampered.clone())?;
    if version != FILE_FORMAT_VERSION {
        return Err(PurseError::UnsupportedVersion { found: version });
    }
    let operator = core::str::from_utf8(r.short_bytes().map_err(|_| tampered.clone())?)
        .ok()
        .and_then(|text| OperatorId::new(text).ok())
        .ok_or(tampered.clone())?;
    let purse_id = PurseId(r.u64().map_err(|_| tampered.clone())?);
    let header_length = 1 + 1 + operator.as_bytes().len() + 8;
    Ok((operator, purse_id, header_length))
}

/// The KDF parameters and salt after the identity header; returns them and the full header length.
fn read_kdf(
    bytes: &[u8],
    identity_length: usize,
) -> Result<(SealParams, [u8; SALT_BYTES], usize), PurseError> {
    let tampered = PurseError::Storage(StorageProblem::Tampered);
    let rest = bytes.get(identity_length..).ok_or(tampered.clone())?;
    let mut r = Reader::new(rest);
    let params = SealParams {
        memory_kib: r.u32().map_err(|_| tampered.clone())?,
        passes: r.u32().map_err(|_| tampered.clone())?,
        lanes: r.u8().map_err(|_| tampered.clone())?,
    };
    let salt: [u8; SALT_BYTES] = r.array().map_err(|_| tampered.clone())?;
    Ok((params, salt, identity_length + 4 + 4 + 1 + SALT_BYTES))
}

fn seal(key: &FileKey, purse: &Purse, random: &mut dyn RandomSource) -> Vec<u8> {
    let identity = purse.identity();
    let mut header = Writer::new();
    header.u8(FILE_FORMAT_VERSION);
    header.short_bytes(identity.operator.as_bytes());
    header.u64(identity.purse_id.0);
    header.u32(key.params.memory_kib);
    header.u32(key.params.passes);
    header.u8(key.params.lanes);
    header.bytes(&key.salt);
    let header = header.finish();
    let mut nonce = [0u8; NONCE_BYTES];
    random.fill_bytes(&mut nonce);
    let cipher = XChaCha20Poly1305::new(&Key::from(key.key));
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

/// Opens a sealed file with the PIN. A file that does not open counts as a wrong PIN on this
/// device (a wrong PIN and a damaged file cannot be told apart without a PIN oracle).
fn unseal(
    secret: &DeviceSecret,
    bytes: &[u8],
    expected_operator: OperatorId,
    pin: &Pin,
) -> Result<(Purse, FileKey), PurseError> {
    let tampered = PurseError::Storage(StorageProblem::Tampered);
    let (operator, purse_id, identity_length) = read_header(bytes)?;
    if operator != expected_operator {
        return Err(PurseError::WrongOperator {
            expected: expected_operator,
            found: operator,
        });
    }
    let (params, salt, header_length) = read_kdf(bytes, identity_length)?;
    if bytes.len() < header_length + NONCE_BYTES + 16 {
        return Err(tampered);
    }
    let wrong = secret.wrong_pins(operator, purse_id);
    if wrong >= DEVICE_PIN_TRIES_MAX {
        return Err(PurseError::PinBlocked);
    }
    let (header, rest) = bytes.split_at(header_length);
    let (nonce, sealed) = rest.split_at(NONCE_BYTES);
    let mut nonce_bytes = [0u8; NONCE_BYTES];
    nonce_bytes.copy_from_slice(nonce);
    let key = secret.file_key(operator, purse_id, pin, &salt, params)?;
    let cipher = XChaCha20Poly1305::new(&Key::from(key.key));
    let Ok(mut state) = cipher.decrypt(
        &XNonce::from(nonce_bytes),
        Payload {
            msg: sealed,
            aad: header,
        },
    ) else {
        let wrong = wrong.saturating_add(1);
        secret.set_wrong_pins(operator, purse_id, wrong)?;
        return Err(if wrong >= DEVICE_PIN_TRIES_MAX {
            PurseError::PinBlocked
        } else {
            PurseError::WrongPin {
                tries_left: DEVICE_PIN_TRIES_MAX - wrong,
            }
        });
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
    Ok((purse, key))
}

/// A purse in a sealed file, answering APDUs.
pub struct SoftwareSecureElement<R: RandomSource = SystemRandom> {
    path: PathBuf,
    secret: DeviceSecret,
    key: FileKey,
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
        let key = derive_new_key(&secret, &purse, params, &mut random)?;
        write_atomically(path, &seal(&key, &purse, &mut random))?;
        Ok(SoftwareSecureElement {
            path: path.to_path_buf(),
            secret,
            key,
            purse,
            random,
        })
    }

    /// [`SoftwareSecureElement::open`] with a given source of randomness.
    pub fn open_with(
        path: &Path,
        secret: DeviceSecret,
        operator: OperatorId,
        pin: &Pin,
        random: R,
    ) -> Result<SoftwareSecureElement<R>, PurseError> {
        let bytes = fs::read(path).map_err(io_error)?;
        let (purse, key) = unseal(&secret, &bytes, operator, pin)?;
        Ok(SoftwareSecureElement {
            path: path.to_path_buf(),
            secret,
            key,
            purse,
            random,
        })
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
            // A new PIN re-derives the sealing key (new salt): the old PIN no longer opens it.
            let key = if working.pin().matches(self.purse.pin()) {
                Ok(self.key.clone())
            } else {
                derive_new_key(&self.secret, &working, self.key.params, &mut self.random)
            };
            let key = match key {
                Ok(key) => key,
                Err(error) => {
                    return ResponseApdu {
                        data: crate::apdu::encode_error(&error),
                        status: sw::MEMORY_FAILURE,
                    }
                    .encode();
                }
            };
            let sealed = seal(&key, &working, &mut self.random);
            if let Err(error) = write_atomically(&self.path, &sealed) {
                return ResponseApdu {
                    data: crate::apdu::encode_error(&error),
                    status: sw::MEMORY_FAILURE,
                }
                .encode();
            }
            self.purse = working;
            self.key = key;
        }
        response.encode()
    }
}

fn derive_new_key(
    secret: &DeviceSecret,
    purse: &Purse,
    params: SealParams,
    random: &mut dyn RandomSource,
) -> Result<FileKey, PurseError> {
    let mut salt = [0u8; SALT_BYTES];
    random.fill_bytes(&mut salt);
    let identity = purse.identity();
    secret.file_key(
        identity.operator,
        identity.purse_id,
        purse.pin(),
        &salt,
        params,
    )
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
