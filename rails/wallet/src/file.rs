//! The wallet file, encrypted at rest, and backups.
//!
//! The key comes from the owner's passphrase through Argon2id (RFC 9106) with a random salt; the
//! contents are sealed with ChaCha20-Poly1305, the header (magic, version, KDF parameters, salt,
//! nonce) as associated data, so that a changed parameter is caught like a changed byte. A wrong
//! passphrase and an altered file give the same error.

use alloc::vec::Vec;
use chacha20poly1305::ChaCha20Poly1305;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use zeroize::{Zeroize, Zeroizing};

use crate::codec::{Reader, Writer};
use crate::credential::Credential;
use crate::error::{Error, Malformed, Misuse};
use crate::keys::{Entropy, WalletKeys, random_array};

/// Format version of the wallet file and of backups.
pub const WALLET_FILE_VERSION: u8 = 1;
const WALLET_FILE_MAGIC: &[u8; 4] = b"OPWF";
const BACKUP_MAGIC: &[u8; 4] = b"OPWB";
const PENDING_MAGIC: &[u8; 4] = b"OPWP";
const KDF_ARGON2ID: u8 = 1;
/// Largest Argon2 memory cost accepted from a file (1 GiB), so a forged header cannot exhaust
/// the device.
pub const KDF_MEMORY_KIB_MAX: u32 = 1 << 20;
/// Largest Argon2 iteration count accepted from a file.
pub const KDF_ITERATIONS_MAX: u32 = 16;
/// Largest Argon2 parallelism accepted from a file.
pub const KDF_PARALLELISM_MAX: u32 = 4;
/// Largest backup accepted (wallet file and log).
pub const BACKUP_BYTES_MAX: usize = 64 << 20;
const HEADER_BYTES: usize = 4 + 1 + 1 + 4 + 4 + 4 + 16 + 12;

/// Argon2id cost parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes over memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl KdfParams {
    /// The default for phones: 19 MiB, 2 passes, 1 lane (OWASP's Argon2id baseline).
    pub const DEFAULT: KdfParams = KdfParams {
        memory_kib: 19 * 1024,
        iterations: 2,
        parallelism: 1,
    };
    /// The cheapest Argon2 allows; for tests only.
    pub const INSECURE_FOR_TESTS: KdfParams = KdfParams {
        memory_kib: 8,
        iterations: 1,
        parallelism: 1,
    };

    fn check(&self) -> Result<(), Error> {
        let ok = (1..=KDF_PARALLELISM_MAX).contains(&self.parallelism)
            && (1..=KDF_ITERATIONS_MAX).contains(&self.iterations)
            && self.memory_kib >= 8 * self.parallelism
            && self.memory_kib <= KDF_MEMORY_KIB_MAX;
        if ok {
            Ok(())
        } else {
            Err(Misuse::KdfParametersOutOfRange.into())
        }
    }

    fn derive(&self, passphrase: &[u8], salt: &[u8; 16]) -> Result<Zeroizing<[u8; 32]>, Error> {
        self.check()?;
        let params =
            argon2::Params::new(self.memory_kib, self.iterations, self.parallelism, Some(32))
                .map_err(|_| Misuse::KdfParametersOutOfRange)?;
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut key = Zeroizing::new([0u8; 32]);
        argon
            .hash_password_into(passphrase, salt, key.as_mut())
            .map_err(|_| Misuse::KdfParametersOutOfRange)?;
        Ok(key)
    }
}

/// What the wallet file holds: the keys, the credential, and the money office's key.
#[derive(Clone, Debug)]
pub struct WalletSecrets {
    /// The wallet's keys (redacted in `Debug`).
    pub keys: WalletKeys,
    /// The wallet's credential as issued (the log holds renewals).
    pub credential: Credential,
    /// The money office's public key.
    pub office_public: [u8; 32],
}

fn seal_container(
    magic: &[u8; 4],
    plaintext: &[u8],
    passphrase: &[u8],
    params: KdfParams,
    entropy: &mut dyn Entropy,
) -> Result<Vec<u8>, Error> {
    let salt = random_array::<16>(entropy);
    let nonce = random_array::<12>(entropy);
    let key = params.derive(passphrase, &salt)?;
    let mut header = Writer::new();
    header
        .raw(magic)
        .u8(WALLET_FILE_VERSION)
        .u8(KDF_ARGON2ID)
        .u32(params.memory_kib)
        .u32(params.iterations)
        .u32(params.parallelism)
        .raw(&salt)
        .raw(&nonce);
    let cipher = ChaCha20Poly1305::new(&(*key).into());
    let ciphertext = cipher
        .encrypt(
            &nonce.into(),
            Payload {
                msg: plaintext,
                aad: &header.bytes,
            },
        )
        .map_err(|_| Malformed::TooLong)?;
    header.raw(&ciphertext);
    Ok(header.finish())
}

fn open_container(
    magic: &[u8; 4],
    bytes: &[u8],
    passphrase: &[u8],
) -> Result<Zeroizing<Vec<u8>>, Error> {
    if bytes.len() > BACKUP_BYTES_MAX {
        return Err(Malformed::TooLong.into());
    }
    let mut r = Reader::new(bytes);
    if r.take(4)? != magic {
        return Err(Malformed::UnknownKind(0).into());
    }
    let version = r.u8()?;
    if version != WALLET_FILE_VERSION {
        return Err(Malformed::UnknownVersion(version).into());
    }
    let kdf = r.u8()?;
    if kdf != KDF_ARGON2ID {
        return Err(Malformed::UnknownKind(kdf).into());
    }
    let params = KdfParams {
        memory_kib: r.u32()?,
        iterations: r.u32()?,
        parallelism: r.u32()?,
    };
    let salt: [u8; 16] = r.array()?;
    let nonce: [u8; 12] = r.array()?;
    debug_assert_eq!(r.position(), HEADER_BYTES);
    let key = params.derive(passphrase, &salt)?;
    let cipher = ChaCha20Poly1305::new(&(*key).into());
    let plaintext = cipher
        .decrypt(
            &nonce.into(),
            Payload {
                msg: &bytes[HEADER_BYTES..],
                aad: &bytes[..HEADER_BYTES],
            },
        )
        .map_err(|_| Misuse::WrongPassphraseOrCorrupt)?;
    Ok(Zeroizing::new(plaintext))
}

/// Encrypts the wallet file under a key derived from `passphrase`.
pub fn seal_wallet_file(
    secrets: &WalletSecrets,
    passphrase: &[u8],
    params: KdfParams,
    entropy: &mut dyn Entropy,
) -> Result<Vec<u8>, Error> {
    let mut plaintext = Writer::new();
    let mut seed = secrets.keys.signing_seed();
    plaintext
        .raw(&seed)
        .raw(secrets.keys.encryption_secret())
        .raw(&secrets.office_public)
        .raw(&secrets.credential.encode());
    seed.zeroize();
    let mut plaintext = plaintext.finish();
    let sealed = seal_container(WALLET_FILE_MAGIC, &plaintext, passphrase, params, entropy);
    plaintext.zeroize();
    sealed
}

/// Decrypts the wallet file.
pub fn open_wallet_file(bytes: &[u8], passphrase: &[u8]) -> Result<WalletSecrets, Error> {
    let plaintext = open_container(WALLET_FILE_MAGIC, bytes, passphrase)?;
    let mut r = Reader::new(&plaintext);
    let seed = Zeroizing::new(r.array::<32>()?);
    let encryption_secret = r.array::<32>()?;
    let office_public = r.array()?;
    let credential = Credential::read(&mut r)?;
    r.finish()?;
    let keys = WalletKeys::from_secrets(&seed, encryption_secret);
    if keys.signing_public() != credential.signing_key
        || keys.encryption_public() != credential.encryption_key
    {
        return Err(Misuse::WrongPassphraseOrCorrupt.into());
    }
    Ok(WalletSecrets {
        keys,
        credential,
        office_public,
    })
}

/// Seals the keys of a wallet not issued yet (`offpay wallet create` on the device, before the
/// operator issues its credential): `"OPWP"`, the same container as the wallet file, holding the
/// signing seed and the X25519 secret.
pub fn seal_pending_keys(
    keys: &WalletKeys,
    passphrase: &[u8],
    params: KdfParams,
    entropy: &mut dyn Entropy,
) -> Result<Vec<u8>, Error> {
    let mut plaintext = Zeroizing::new(Vec::with_capacity(64));
    let seed = Zeroizing::new(keys.signing_seed());
    plaintext.extend_from_slice(seed.as_ref());
    plaintext.extend_from_slice(keys.encryption_secret());
    seal_container(PENDING_MAGIC, &plaintext, passphrase, params, entropy)
}

/// Opens keys sealed by [`seal_pending_keys`].
pub fn open_pending_keys(bytes: &[u8], passphrase: &[u8]) -> Result<WalletKeys, Error> {
    let plaintext = open_container(PENDING_MAGIC, bytes, passphrase)?;
    let mut r = Reader::new(&plaintext);
    let seed = Zeroizing::new(r.array::<32>()?);
    let encryption_secret = r.array::<32>()?;
    r.finish()?;
    Ok(WalletKeys::from_secrets(&seed, encryption_secret))
}

/// Whether `bytes` are keys waiting for their credential ([`seal_pending_keys`]).
pub fn is_pending_keys(bytes: &[u8]) -> bool {
    bytes.starts_with(PENDING_MAGIC)
}

/// Packs the (already encrypted) wallet file and the log into one encrypted backup.
pub fn create_backup(
    wallet_file: &[u8],
    log: &[u8],
    passphrase: &[u8],
    params: KdfParams,
    entropy: &mut dyn Entropy,
) -> Result<Vec<u8>, Error> {
    if wallet_file.len() + log.len() + 64 > BACKUP_BYTES_MAX {
        return Err(Malformed::TooLong.into());
    }
    let mut plaintext = Writer::new();
    plaintext.long_bytes(wallet_file).long_bytes(log);
    seal_container(
        BACKUP_MAGIC,
        &plaintext.finish(),
        passphrase,
        params,
        entropy,
    )
}

/// Unpacks a backup into the wallet file and the log. Open the wallet from them with
/// `Wallet::open(keys, &log, now, true)`: a restored wallet may not pay before it syncs, since
/// a backup is an old state and paying from it would spend value twice.
pub fn restore_backup(bytes: &[u8], passphrase: &[u8]) -> Result<(Vec<u8>, Vec<u8>), Error> {
    let plaintext = open_container(BACKUP_MAGIC, bytes, passphrase)?;
    let mut r = Reader::new(&plaintext);
    let wallet_file = r.long_bytes(BACKUP_BYTES_MAX)?.to_vec();
    let log = r.long_bytes(BACKUP_BYTES_MAX)?.to_vec();
    r.finish()?;
    Ok((wallet_file, log))
}
