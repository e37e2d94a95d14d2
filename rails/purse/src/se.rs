//! The software secure element: a purse sealed in one file, driven through the APDU interface.
//!
//! File format (version first):
//! ```text
//! version(1) ‖ operator id(1+n) ‖ purse id(8) ‖ nonce(24) ‖ XChaCha20-Poly1305(state) ‖ tag(16)
//! ```
//! The header is the AEAD's associated data, so it cannot be altered either. The sealing key is
//! HMAC-SHA256(device secret, "offpay purse file v1" ‖ operator ‖ purse id): the file opens only
//! on the device holding the secret. Each write draws a fresh random nonce.
//!
//! Durability: a write goes to `<file>.tmp`, is fsynced, renamed over the file, and the directory
//! is fsynced. A crash at any point leaves the old file or the new one, never a mixture; a broken
//! `.tmp` left by a crash is ignored and overwritten. A command's response is released only after
//! the new state is durable; if the write fails the purse keeps its previous state and answers
//! 6581.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::vec::Vec;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::apdu::{ResponseApdu, Transport, dispatch, sw};
use crate::crypto::hmac_sha256;
use crate::error::{PurseError, StorageProblem};
use crate::params::FORMAT_VERSION;
use crate::purse::Purse;
use crate::types::{OperatorId, PurseId, RandomSource, SystemRandom, Timestamp};
use crate::wire::{Reader, Writer};

/// Bytes of a device secret.
pub const DEVICE_SECRET_BYTES: usize = 32;
const NONCE_BYTES: usize = 24;
const LABEL_FILE_KEY: &[u8] = b"offpay purse file v1";

/// The secret of the device that holds purse files (a phone, a PC). Kept in its own file, readable
/// only by its owner, never next to the purse files it seals when that can be avoided.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct DeviceSecret([u8; DEVICE_SECRET_BYTES]);

impl DeviceSecret {
    /// From raw bytes.
    pub fn from_bytes(bytes: [u8; DEVICE_SECRET_BYTES]) -> DeviceSecret {
        DeviceSecret(bytes)
    }

    /// A fresh random secret.
    pub fn generate(random: &mut dyn RandomSource) -> DeviceSecret {
        let mut bytes = [0u8; DEVICE_SECRET_BYTES];
        random.fill_bytes(&mut bytes);
        DeviceSecret(bytes)
    }

    /// Reads the secret from `path`, creating it (mode 0600) with fresh randomness if absent.
    pub fn load_or_create(path: &Path) -> Result<DeviceSecret, PurseError> {
        match fs::read(path) {
            Ok(bytes) => {
                let bytes: [u8; DEVICE_SECRET_BYTES] = bytes
                    .try_into()
                    .map_err(|_| PurseError::Storage(StorageProblem::Tampered))?;
                Ok(DeviceSecret(bytes))
            }
            Err(error) if error.kind() == ErrorKind::NotFound => {
                let secret = DeviceSecret::generate(&mut SystemRandom);
                write_atomically(path, &secret.0)?;
                Ok(secret)
            }
            Err(_) => Err(PurseError::Storage(StorageProblem::Io)),
        }
    }

    fn file_key(&self, operator: OperatorId, purse_id: PurseId) -> [u8; 32] {
        hmac_sha256(
            &self.0,
            LABEL_FILE_KEY,
            &[operator.as_bytes(), &purse_id.0.to_be_bytes()],
        )
    }
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
    if version != FORMAT_VERSION {
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

fn seal(secret: &DeviceSecret, purse: &Purse, random: &mut dyn RandomSource) -> Vec<u8> {
    let identity = purse.identity();
    let mut header = Writer::new();
    header.u8(FORMAT_VERSION);
    header.short_bytes(identity.operator.as_bytes());
    header.u64(identity.purse_id.0);
    let header = header.finish();
    let mut nonce = [0u8; NONCE_BYTES];
    random.fill_bytes(&mut nonce);
    let mut key = secret.file_key(identity.operator, identity.purse_id);
    let cipher = XChaCha20Poly1305::new(&Key::from(key));
    key.zeroize();
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

fn unseal(
    secret: &DeviceSecret,
    bytes: &[u8],
    expected_operator: OperatorId,
) -> Result<Purse, PurseError> {
    let tampered = PurseError::Storage(StorageProblem::Tampered);
    let (operator, purse_id, header_length) = read_header(bytes)?;
    if operator != expected_operator {
        return Err(PurseError::WrongOperator {
            expected: expected_operator,
            found: operator,
        });
    }
    if bytes.len() < header_length + NONCE_BYTES + 16 {
        return Err(tampered);
    }
    let (header, rest) = bytes.split_at(header_length);
    let (nonce, sealed) = rest.split_at(NONCE_BYTES);
    let mut nonce_bytes = [0u8; NONCE_BYTES];
    nonce_bytes.copy_from_slice(nonce);
    let mut key = secret.file_key(operator, purse_id);
    let cipher = XChaCha20Poly1305::new(&Key::from(key));
    key.zeroize();
    let mut state = cipher
        .decrypt(
            &XNonce::from(nonce_bytes),
            Payload {
                msg: sealed,
                aad: header,
            },
        )
        .map_err(|_| tampered.clone())?;
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
    /// Seals a freshly provisioned purse into a new file (refuses to overwrite one).
    pub fn create(
        path: &Path,
        secret: DeviceSecret,
        purse: Purse,
    ) -> Result<SoftwareSecureElement<SystemRandom>, PurseError> {
        SoftwareSecureElement::create_with(path, secret, purse, SystemRandom)
    }

    /// Opens a purse file of `operator`. A file of another operator is refused with
    /// [`PurseError::WrongOperator`]; a modified one with `Storage(Tampered)`.
    pub fn open(
        path: &Path,
        secret: DeviceSecret,
        operator: OperatorId,
    ) -> Result<SoftwareSecureElement<SystemRandom>, PurseError> {
        SoftwareSecureElement::open_with(path, secret, operator, SystemRandom)
    }
}

impl<R: RandomSource> SoftwareSecureElement<R> {
    /// [`SoftwareSecureElement::create`] with a given source of randomness.
    pub fn create_with(
        path: &Path,
        secret: DeviceSecret,
        purse: Purse,
        mut random: R,
    ) -> Result<SoftwareSecureElement<R>, PurseError> {
        if path.exists() {
            return Err(PurseError::Storage(StorageProblem::AlreadyExists));
        }
        write_atomically(path, &seal(&secret, &purse, &mut random))?;
        Ok(SoftwareSecureElement {
            path: path.to_path_buf(),
            secret,
            purse,
            random,
        })
    }

    /// [`SoftwareSecureElement::open`] with a given source of randomness.
    pub fn open_with(
        path: &Path,
        secret: DeviceSecret,
        operator: OperatorId,
        random: R,
    ) -> Result<SoftwareSecureElement<R>, PurseError> {
        let bytes = fs::read(path).map_err(io_error)?;
        let purse = unseal(&secret, &bytes, operator)?;
        Ok(SoftwareSecureElement {
            path: path.to_path_buf(),
            secret,
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
            let sealed = seal(&self.secret, &working, &mut self.random);
            if let Err(error) = write_atomically(&self.path, &sealed) {
                return ResponseApdu {
                    data: crate::apdu::encode_error(&error),
                    status: sw::MEMORY_FAILURE,
                }
                .encode();
            }
            self.purse = working;
        }
        response.encode()
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
