//! `offpay backup`, `offpay backup keygen`, `offpay backup verify` and `offpay restore`.
//!
//! A backup is one file: a consistent snapshot of the ledger database taken while the server
//! runs (SQLite's `VACUUM INTO` on a read-only connection: one read transaction, so it sees one
//! committed state, and it never blocks the writer; PostgreSQL's `pg_dump`, one repeatable-read
//! transaction, see [`crate::pgdump`]), plus every other file of the data directory (the operator
//! token, the rails' key files), encrypted to the operator's backup key.
//!
//! # Archive format (version 1)
//! ```text
//! header  = "OFFPAY-BACKUP\0" (14 bytes) | version (1 byte, = 1)
//!         | recipient public key (32) | ephemeral public key (32)
//! key     = HKDF-SHA256(salt = ephemeral public ‖ recipient public,
//!                       ikm = X25519(ephemeral secret, recipient public), info = KEY_INFO)
//! body    = chunks of ChaCha20-Poly1305 over the payload, CHUNK_BYTES of plaintext each except
//!           the last, which is shorter (possibly empty); chunk i's nonce is i (8 bytes, big
//!           endian) ‖ 0 0 0 ‖ 1 if last else 0; every chunk's associated data is the header
//! payload = entries: kind (1 byte: 1 manifest, 2 file, 0 end) | name length (2, BE) | name
//!           | size (8, BE) | bytes; the manifest (JSON) first, the end entry last
//! ```
//! Changing, dropping, reordering or truncating chunks makes decryption fail; a payload without
//! its end entry is refused. Nothing is written to the target of a restore until the whole
//! archive has been decrypted and checked.

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use chacha20poly1305::ChaCha20Poly1305;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use clap::{Args, Subcommand};
use hkdf::Hkdf;
use offpay_server::config::{Overrides, ServerConfig};
use offpay_server::datadir::{DataDirLock, LOCK_FILE_NAME, LockError};
use offpay_server::keyfile::{create_private_dir_all, create_private_file};
use serde_json::{Value, json};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::{exit, pgdump};

/// The archive's first bytes.
const MAGIC: &[u8; 14] = b"OFFPAY-BACKUP\0";
/// The archive format this build writes and reads.
const FORMAT_VERSION: u8 = 1;
/// Header bytes: magic, version, recipient public key, ephemeral public key.
const HEADER_BYTES: usize = MAGIC.len() + 1 + 32 + 32;
/// Plaintext bytes per encrypted chunk.
const CHUNK_BYTES: usize = 64 * 1024;
/// Poly1305 tag bytes per chunk.
const TAG_BYTES: usize = 16;
/// HKDF info: binds the key to this use and format.
const KEY_INFO: &[u8] = b"offpay backup v1 payload key";
/// Longest entry name (a path relative to the data directory).
const NAME_BYTES_MAX: usize = 1024;
/// Most entries in one archive.
const ENTRIES_MAX: usize = 100_000;
/// Largest manifest.
const MANIFEST_BYTES_MAX: u64 = 1024 * 1024;
/// The identity file's first word, and the recipient text's prefix.
const IDENTITY_PREFIX: &str = "OFFPAY-BACKUP-IDENTITY-1 ";
const RECIPIENT_PREFIX: &str = "offpay-backup-recipient-1:";
/// The database's name inside the archive, and in a restored data directory.
const DATABASE_ENTRY: &str = offpay_server::config::SQLITE_FILE_NAME;
/// A PostgreSQL ledger's dump inside the archive (`pg_dump --format=custom`).
const PG_DUMP_ENTRY: &str = "ledger.pgdump";
/// The tables every offpay ledger dump holds data for.
const LEDGER_TABLES: [&str; 3] = ["accounts", "records", "transfers"];

const ENTRY_END: u8 = 0;
const ENTRY_MANIFEST: u8 = 1;
const ENTRY_FILE: u8 = 2;

/// `offpay backup`: a snapshot of the running server's data, encrypted to a backup key.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BackupArgs {
    #[command(subcommand)]
    command: Option<BackupCommand>,
    /// Data directory [default: ./offpay-data, or OFFPAY_DATA_DIR]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Database URL, as for `offpay serve` (SQLite, or PostgreSQL through pg_dump)
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// TOML configuration file, as for `offpay serve`
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The backup key's recipient (offpay-backup-recipient-1:...), or a file holding it
    #[arg(long, value_name = "KEY|FILE")]
    recipient: Option<String>,
    /// Where to write the archive (created 0600; an existing file is not replaced)
    #[arg(long, short, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Print the result as JSON
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum BackupCommand {
    /// Make a backup key pair: the identity (secret, 0600) and its recipient (FILE.pub)
    Keygen {
        /// The identity file to create (never overwritten)
        #[arg(long, short, value_name = "FILE")]
        out: PathBuf,
        /// Print the result as JSON
        #[arg(long)]
        json: bool,
    },
    /// Decrypt an archive, check the database's integrity and that the ledger balances, and
    /// say what it holds
    Verify {
        /// The archive
        archive: PathBuf,
        /// The identity file made by `offpay backup keygen`
        #[arg(long, value_name = "FILE")]
        identity: PathBuf,
        /// For a PostgreSQL ledger: an empty database to load the dump into, to check that its
        /// balances sum to zero (without it, only the dump's readability is checked)
        #[arg(long, value_name = "URL")]
        scratch_database_url: Option<String>,
        /// Print the result as JSON
        #[arg(long)]
        json: bool,
    },
}

/// `offpay restore`: a data directory from an archive.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The archive
    archive: PathBuf,
    /// The identity file made by `offpay backup keygen`
    #[arg(long, value_name = "FILE")]
    identity: PathBuf,
    /// The data directory to restore into (must be empty or absent unless --force)
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,
    /// For an archive of a PostgreSQL ledger: the database to load it into (empty, unless
    /// --force)
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// Replace what a non-empty data directory (and database) holds (never while a server runs
    /// on it)
    #[arg(long)]
    force: bool,
    /// Print the result as JSON
    #[arg(long)]
    json: bool,
}

/// A failure with its exit code.
#[derive(Debug)]
struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    fn new(code: u8, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }

    fn io(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> Failure {
        move |error| Failure::new(exit::FAILURE, format!("{what}: {error}"))
    }

    fn damaged(message: impl Into<String>) -> Failure {
        Failure::new(exit::DATA, message)
    }
}

fn finish(command: &str, json: bool, result: Result<(Value, String), Failure>) -> ExitCode {
    match result {
        Ok((value, text)) => {
            if json {
                println!("{value}");
            } else {
                println!("{text}");
            }
            ExitCode::SUCCESS
        }
        Err(failure) => {
            if json {
                println!(
                    "{}",
                    json!({ "error": { "message": failure.message, "exit_code": failure.code } })
                );
            } else {
                eprintln!("offpay {command}: {}", failure.message);
            }
            exit::code(failure.code)
        }
    }
}

pub fn run(args: BackupArgs) -> ExitCode {
    match args.command {
        Some(BackupCommand::Keygen { out, json }) => finish("backup keygen", json, keygen(&out)),
        Some(BackupCommand::Verify {
            archive,
            identity,
            scratch_database_url,
            json,
        }) => finish(
            "backup verify",
            json,
            verify(&archive, &identity, scratch_database_url.as_deref()),
        ),
        None => {
            let json = args.json;
            finish("backup", json, create(args))
        }
    }
}

pub fn run_restore(args: RestoreArgs) -> ExitCode {
    let json = args.json;
    finish("restore", json, restore(&args))
}

// ------------------------------------------------------------------------------- keys

fn random_32() -> Result<Zeroizing<[u8; 32]>, Failure> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    getrandom::fill(bytes.as_mut())
        .map_err(|error| Failure::new(exit::FAILURE, format!("no randomness: {error}")))?;
    Ok(bytes)
}

fn public_of(secret: &[u8; 32]) -> [u8; 32] {
    x25519_dalek::x25519(*secret, x25519_dalek::X25519_BASEPOINT_BYTES)
}

fn recipient_text(public: &[u8; 32]) -> String {
    format!("{RECIPIENT_PREFIX}{}", hex::encode(public))
}

fn keygen(out: &Path) -> Result<(Value, String), Failure> {
    let secret = random_32()?;
    let public = public_of(&secret);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(out).map_err(|error| {
        let code = if error.kind() == std::io::ErrorKind::AlreadyExists {
            exit::REFUSED
        } else {
            exit::FAILURE
        };
        Failure::new(code, format!("cannot create {}: {error}", out.display()))
    })?;
    let line = Zeroizing::new(format!("{IDENTITY_PREFIX}{}\n", hex::encode(*secret)));
    file.write_all(line.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(Failure::io(out.display()))?;
    let recipient = recipient_text(&public);
    let mut public_path = out.as_os_str().to_owned();
    public_path.push(".pub");
    let public_path = PathBuf::from(public_path);
    std::fs::write(&public_path, format!("{recipient}\n"))
        .map_err(Failure::io(public_path.display()))?;
    Ok((
        json!({ "identity": out, "recipient": recipient, "recipient_file": public_path }),
        format!(
            "identity written to {} (mode 0600): keep it offline, away from the backups\nrecipient: {recipient}\n(also in {})",
            out.display(),
            public_path.display()
        ),
    ))
}

fn read_identity(path: &Path) -> Result<Zeroizing<[u8; 32]>, Failure> {
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|error| {
        Failure::new(
            exit::DENIED,
            format!("cannot read the identity {}: {error}", path.display()),
        )
    })?);
    let hex_text = text
        .trim()
        .strip_prefix(IDENTITY_PREFIX.trim_end())
        .map(str::trim)
        .ok_or_else(|| {
            Failure::new(
                exit::DENIED,
                format!(
                    "{} is not an offpay backup identity (made by `offpay backup keygen`)",
                    path.display()
                ),
            )
        })?;
    let mut secret = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(hex_text, secret.as_mut()).map_err(|_| {
        Failure::new(
            exit::DENIED,
            format!("{}: the identity is not 64 hex digits", path.display()),
        )
    })?;
    Ok(secret)
}

fn parse_recipient(given: &str) -> Result<[u8; 32], Failure> {
    let text = if given.starts_with(RECIPIENT_PREFIX) {
        given.to_owned()
    } else {
        std::fs::read_to_string(given).map_err(|error| {
            Failure::new(
                exit::USAGE,
                format!("--recipient is neither {RECIPIENT_PREFIX}... nor a readable file: {given}: {error}"),
            )
        })?
    };
    let hex_text = text
        .trim()
        .strip_prefix(RECIPIENT_PREFIX)
        .ok_or_else(|| Failure::new(exit::USAGE, format!("not a backup recipient: {given}")))?;
    let mut public = [0u8; 32];
    hex::decode_to_slice(hex_text, &mut public).map_err(|_| {
        Failure::new(
            exit::USAGE,
            "the recipient's key is not 64 hex digits".to_owned(),
        )
    })?;
    Ok(public)
}

fn payload_key(
    shared: &[u8; 32],
    ephemeral_public: &[u8; 32],
    recipient_public: &[u8; 32],
) -> Result<Zeroizing<[u8; 32]>, Failure> {
    if shared.iter().all(|byte| *byte == 0) {
        return Err(Failure::damaged(
            "the archive's key exchange gives no shared secret (a crafted public key)",
        ));
    }
    let mut salt = [0u8; 64];
    salt[..32].copy_from_slice(ephemeral_public);
    salt[32..].copy_from_slice(recipient_public);
    let mut key = Zeroizing::new([0u8; 32]);
    Hkdf::<Sha256>::new(Some(&salt), shared)
        .expand(KEY_INFO, key.as_mut())
        .map_err(|_| Failure::new(exit::FAILURE, "key derivation failed"))?;
    Ok(key)
}

fn nonce(counter: u64, last: bool) -> [u8; 12] {
    let mut nonce = [0u8; 12];
    nonce[..8].copy_from_slice(&counter.to_be_bytes());
    nonce[11] = u8::from(last);
    nonce
}

// ----------------------------------------------------------------- sealing and opening

/// Encrypts what is written to it, chunk by chunk, into `inner`.
struct Sealer<W: Write> {
    inner: W,
    cipher: ChaCha20Poly1305,
    header: Vec<u8>,
    buffer: Zeroizing<Vec<u8>>,
    counter: u64,
}

impl<W: Write> Sealer<W> {
    fn new(mut inner: W, recipient: &[u8; 32]) -> Result<Sealer<W>, Failure> {
        let ephemeral = random_32()?;
        let ephemeral_public = public_of(&ephemeral);
        let shared = Zeroizing::new(x25519_dalek::x25519(*ephemeral, *recipient));
        let key = payload_key(&shared, &ephemeral_public, recipient)?;
        let mut header = Vec::with_capacity(HEADER_BYTES);
        header.extend_from_slice(MAGIC);
        header.push(FORMAT_VERSION);
        header.extend_from_slice(recipient);
        header.extend_from_slice(&ephemeral_public);
        inner
            .write_all(&header)
            .map_err(Failure::io("writing the archive"))?;
        Ok(Sealer {
            inner,
            cipher: ChaCha20Poly1305::new(&(*key).into()),
            header,
            buffer: Zeroizing::new(Vec::with_capacity(CHUNK_BYTES)),
            counter: 0,
        })
    }

    fn seal_chunk(&mut self, last: bool) -> std::io::Result<()> {
        let sealed = self
            .cipher
            .encrypt(
                &nonce(self.counter, last).into(),
                Payload {
                    msg: &self.buffer,
                    aad: &self.header,
                },
            )
            .map_err(|_| std::io::Error::other("encryption failed"))?;
        self.inner.write_all(&sealed)?;
        self.buffer.clear();
        self.counter += 1;
        Ok(())
    }

    /// Seals the last chunk and returns the inner writer.
    fn finish(mut self) -> std::io::Result<W> {
        self.seal_chunk(true)?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for Sealer<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let room = CHUNK_BYTES - self.buffer.len();
        let taken = room.min(bytes.len());
        self.buffer.extend_from_slice(&bytes[..taken]);
        if self.buffer.len() == CHUNK_BYTES {
            self.seal_chunk(false)?;
        }
        Ok(taken)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Decrypts an archive chunk by chunk; every byte it yields has been authenticated.
struct Opener<R: Read> {
    inner: R,
    cipher: ChaCha20Poly1305,
    header: Vec<u8>,
    plain: Zeroizing<Vec<u8>>,
    position: usize,
    counter: u64,
    done: bool,
}

impl<R: Read> Opener<R> {
    fn new(mut inner: R, identity: &[u8; 32]) -> Result<Opener<R>, Failure> {
        let mut header = vec![0u8; HEADER_BYTES];
        inner.read_exact(&mut header).map_err(|_| {
            Failure::damaged("not an offpay backup: the file is shorter than the header")
        })?;
        if &header[..MAGIC.len()] != MAGIC {
            return Err(Failure::damaged("not an offpay backup archive"));
        }
        let version = header[MAGIC.len()];
        if version != FORMAT_VERSION {
            return Err(Failure::damaged(format!(
                "archive format version {version}; this offpay reads version {FORMAT_VERSION}"
            )));
        }
        let mut recipient = [0u8; 32];
        recipient.copy_from_slice(&header[MAGIC.len() + 1..MAGIC.len() + 33]);
        let mut ephemeral_public = [0u8; 32];
        ephemeral_public.copy_from_slice(&header[MAGIC.len() + 33..]);
        if recipient != public_of(identity) {
            return Err(Failure::new(
                exit::DENIED,
                format!(
                    "the archive is encrypted to another backup key ({}), not this identity's",
                    recipient_text(&recipient)
                ),
            ));
        }
        let shared = Zeroizing::new(x25519_dalek::x25519(*identity, ephemeral_public));
        let key = payload_key(&shared, &ephemeral_public, &recipient)?;
        Ok(Opener {
            inner,
            cipher: ChaCha20Poly1305::new(&(*key).into()),
            header,
            plain: Zeroizing::new(Vec::new()),
            position: 0,
            counter: 0,
            done: false,
        })
    }

    fn next_chunk(&mut self) -> std::io::Result<()> {
        let mut sealed = vec![0u8; CHUNK_BYTES + TAG_BYTES];
        let mut filled = 0;
        while filled < sealed.len() {
            match self.inner.read(&mut sealed[filled..])? {
                0 => break,
                count => filled += count,
            }
        }
        let last = filled < sealed.len();
        if last && filled < TAG_BYTES {
            return Err(damaged_io(format!(
                "the archive is truncated (chunk {} is missing)",
                self.counter
            )));
        }
        sealed.truncate(filled);
        let plain = self
            .cipher
            .decrypt(
                &nonce(self.counter, last).into(),
                Payload {
                    msg: &sealed,
                    aad: &self.header,
                },
            )
            .map_err(|_| {
                damaged_io(format!(
                    "the archive was changed or damaged: chunk {} does not authenticate",
                    self.counter
                ))
            })?;
        self.plain = Zeroizing::new(plain);
        self.position = 0;
        self.counter += 1;
        self.done = last;
        Ok(())
    }
}

fn damaged_io(message: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message)
}

impl<R: Read> Read for Opener<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.position == self.plain.len() {
            if self.done {
                return Ok(0);
            }
            self.next_chunk()?;
        }
        let count = out.len().min(self.plain.len() - self.position);
        out[..count].copy_from_slice(&self.plain[self.position..self.position + count]);
        self.position += count;
        Ok(count)
    }
}

// --------------------------------------------------------------------------- entries

fn write_entry_head(out: &mut impl Write, kind: u8, name: &str, size: u64) -> std::io::Result<()> {
    let name_length = u16::try_from(name.len())
        .ok()
        .filter(|length| usize::from(*length) <= NAME_BYTES_MAX)
        .ok_or_else(|| std::io::Error::other(format!("file name too long: {name}")))?;
    out.write_all(&[kind])?;
    out.write_all(&name_length.to_be_bytes())?;
    out.write_all(name.as_bytes())?;
    out.write_all(&size.to_be_bytes())
}

/// One entry as read: its kind, name and size; the bytes follow in the stream.
struct EntryHead {
    kind: u8,
    name: String,
    size: u64,
}

fn read_entry_head(input: &mut impl Read) -> Result<EntryHead, Failure> {
    let damaged = |error: std::io::Error| {
        if error.kind() == std::io::ErrorKind::InvalidData {
            Failure::damaged(error.to_string())
        } else if error.kind() == std::io::ErrorKind::UnexpectedEof {
            Failure::damaged("the archive ends before its end entry (truncated)")
        } else {
            Failure::new(exit::FAILURE, format!("reading the archive: {error}"))
        }
    };
    let mut kind = [0u8; 1];
    input.read_exact(&mut kind).map_err(damaged)?;
    let mut length = [0u8; 2];
    input.read_exact(&mut length).map_err(damaged)?;
    let length = usize::from(u16::from_be_bytes(length));
    if length > NAME_BYTES_MAX {
        return Err(Failure::damaged("an entry name is too long"));
    }
    let mut name = vec![0u8; length];
    input.read_exact(&mut name).map_err(damaged)?;
    let name =
        String::from_utf8(name).map_err(|_| Failure::damaged("an entry name is not UTF-8"))?;
    let mut size = [0u8; 8];
    input.read_exact(&mut size).map_err(damaged)?;
    Ok(EntryHead {
        kind: kind[0],
        name,
        size: u64::from_be_bytes(size),
    })
}

/// A name from an archive as a relative path that stays inside the target directory.
fn safe_relative(name: &str) -> Result<PathBuf, Failure> {
    let path = Path::new(name);
    let normal = path
        .components()
        .all(|component| matches!(component, std::path::Component::Normal(_)));
    if name.is_empty() || !normal || name == LOCK_FILE_NAME {
        return Err(Failure::damaged(format!(
            "the archive names a file outside the data directory: {name:?}"
        )));
    }
    Ok(path.to_path_buf())
}

/// What an archive held, once unpacked into a directory.
struct Unpacked {
    manifest: Value,
    files: Vec<(String, u64)>,
}

/// Decrypts `archive` into `directory` (which must exist and be private), checking every
/// chunk and the end entry.
fn unpack(archive: &Path, identity: &Path, directory: &Path) -> Result<Unpacked, Failure> {
    let secret = read_identity(identity)?;
    let file = std::fs::File::open(archive).map_err(|error| {
        Failure::new(
            exit::FAILURE,
            format!("cannot open {}: {error}", archive.display()),
        )
    })?;
    let total = file.metadata().map(|metadata| metadata.len()).unwrap_or(0);
    let bar = progress(total, "decrypting");
    let mut input = BufReader::new(Opener::new(bar.wrap_read(BufReader::new(file)), &secret)?);
    let head = read_entry_head(&mut input)?;
    if head.kind != ENTRY_MANIFEST || head.size > MANIFEST_BYTES_MAX {
        return Err(Failure::damaged(
            "the archive does not start with a manifest",
        ));
    }
    let mut manifest = vec![0u8; usize::try_from(head.size).unwrap_or(0)];
    input
        .read_exact(&mut manifest)
        .map_err(|error| Failure::damaged(error.to_string()))?;
    let manifest: Value = serde_json::from_slice(&manifest)
        .map_err(|error| Failure::damaged(format!("the manifest is not JSON: {error}")))?;
    let mut files = Vec::new();
    loop {
        let head = read_entry_head(&mut input)?;
        match head.kind {
            ENTRY_END => break,
            ENTRY_FILE if files.len() < ENTRIES_MAX => {
                let relative = safe_relative(&head.name)?;
                let path = directory.join(&relative);
                if let Some(parent) = path.parent() {
                    create_private_dir_all(parent).map_err(Failure::io(parent.display()))?;
                }
                let mut out = BufWriter::new(
                    create_private_file(&path).map_err(Failure::io(path.display()))?,
                );
                let copied = std::io::copy(&mut (&mut input).take(head.size), &mut out).map_err(
                    |error| {
                        if error.kind() == std::io::ErrorKind::InvalidData {
                            Failure::damaged(error.to_string())
                        } else {
                            Failure::new(exit::FAILURE, format!("{}: {error}", path.display()))
                        }
                    },
                )?;
                if copied != head.size {
                    return Err(Failure::damaged(format!(
                        "the archive ends inside {} (truncated)",
                        head.name
                    )));
                }
                out.into_inner()
                    .map_err(|error| Failure::io(path.display())(error.into_error()))?
                    .sync_all()
                    .map_err(Failure::io(path.display()))?;
                files.push((head.name, head.size));
            }
            other => {
                return Err(Failure::damaged(format!(
                    "unknown entry kind {other} in the archive"
                )));
            }
        }
    }
    // Nothing may follow the end entry: reading on authenticates the last chunk.
    let mut rest = [0u8; 1];
    match input.read(&mut rest) {
        Ok(0) => {}
        Ok(_) => return Err(Failure::damaged("bytes follow the archive's end entry")),
        Err(error) => return Err(Failure::damaged(error.to_string())),
    }
    bar.finish_and_clear();
    Ok(Unpacked { manifest, files })
}

fn progress(total: u64, what: &'static str) -> indicatif::ProgressBar {
    // Drawn on stderr only when it is a terminal; scripts and --json see nothing of it.
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(total),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{msg} {bar:30} {bytes}/{total_bytes} ({eta})")
    {
        bar.set_style(style);
    }
    bar.set_message(what);
    bar
}

// ---------------------------------------------------------------------------- backup

fn resolve(args: &BackupArgs) -> Result<ServerConfig, Failure> {
    ServerConfig::resolve(
        Overrides {
            data_dir: args.data_dir.clone(),
            listen: None,
            database_url: args.database_url.clone(),
            config_file: args.config.clone(),
            ..Overrides::default()
        },
        &|name| std::env::var(name).ok(),
    )
    .map_err(|error| Failure::new(exit::USAGE, error.to_string()))
}

/// Where a server's ledger is.
enum LedgerAt {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL database (its URL).
    Postgres(String),
}

/// The ledger of `config`.
fn ledger_of(config: &ServerConfig) -> Result<LedgerAt, Failure> {
    match config.database_url.as_deref() {
        None => Ok(LedgerAt::Sqlite(config.sqlite_path())),
        Some(url) => match url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            Some(path) => Ok(LedgerAt::Sqlite(PathBuf::from(path))),
            None => Ok(LedgerAt::Postgres(url.to_owned())),
        },
    }
}

fn connection(url: &str) -> Result<pgdump::Connection, Failure> {
    pgdump::Connection::parse(url).map_err(|message| Failure::new(exit::USAGE, message))
}

/// Files of the data directory to keep besides the database: everything but the database, its
/// WAL, shared-memory and journal files, and the lock.
fn data_files(data_dir: &Path, database: &Path) -> Result<Vec<(String, PathBuf)>, Failure> {
    let mut skipped: Vec<PathBuf> = ["", "-wal", "-shm", "-journal"]
        .iter()
        .map(|suffix| {
            let mut name = database.as_os_str().to_owned();
            name.push(suffix);
            PathBuf::from(name)
        })
        .collect();
    skipped.push(data_dir.join(LOCK_FILE_NAME));
    let mut found = Vec::new();
    let mut pending = vec![data_dir.to_path_buf()];
    while let Some(directory) = pending.pop() {
        let entries = std::fs::read_dir(&directory).map_err(Failure::io(directory.display()))?;
        for entry in entries {
            let entry = entry.map_err(Failure::io(directory.display()))?;
            let path = entry.path();
            let kind = entry.file_type().map_err(Failure::io(path.display()))?;
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() && !skipped.contains(&path) {
                let relative = path
                    .strip_prefix(data_dir)
                    .ok()
                    .and_then(Path::to_str)
                    .ok_or_else(|| {
                        Failure::new(
                            exit::FAILURE,
                            format!("{} has a name that is not UTF-8", path.display()),
                        )
                    })?
                    .to_owned();
                found.push((relative, path));
            }
            if found.len() > ENTRIES_MAX {
                return Err(Failure::new(
                    exit::FAILURE,
                    format!("more than {ENTRIES_MAX} files in the data directory"),
                ));
            }
        }
    }
    found.sort();
    Ok(found)
}

fn create(args: BackupArgs) -> Result<(Value, String), Failure> {
    let recipient = parse_recipient(
        args.recipient
            .as_deref()
            .ok_or_else(|| Failure::new(exit::USAGE, "name the backup key with --recipient"))?,
    )?;
    let out = args
        .out
        .clone()
        .ok_or_else(|| Failure::new(exit::USAGE, "name the archive with --out FILE"))?;
    let config = resolve(&args)?;
    let ledger = ledger_of(&config)?;
    if let LedgerAt::Sqlite(database) = &ledger
        && !database.is_file()
    {
        return Err(Failure::new(
            exit::USAGE,
            format!("no ledger database at {}", database.display()),
        ));
    }
    let parent = out
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // The plaintext snapshot lives beside the archive, in a private directory, only until it
    // is encrypted.
    let scratch = tempfile::Builder::new()
        .prefix(".offpay-backup-")
        .tempdir_in(parent)
        .map_err(Failure::io(parent.display()))?;
    let (snapshot, kind, database) = match &ledger {
        LedgerAt::Sqlite(database) => {
            let snapshot = scratch.path().join(DATABASE_ENTRY);
            snapshot_sqlite(database, &snapshot)?;
            (snapshot, SnapshotKind::SQLITE, database.clone())
        }
        LedgerAt::Postgres(url) => {
            let snapshot = scratch.path().join(PG_DUMP_ENTRY);
            pgdump::dump(&connection(url)?, &snapshot)
                .map_err(|message| Failure::new(exit::UNAVAILABLE, message))?;
            (snapshot, SnapshotKind::POSTGRES, config.sqlite_path())
        }
    };
    let files = data_files(&config.data_dir, &database)?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let archive = options.open(&out).map_err(|error| {
        let code = if error.kind() == std::io::ErrorKind::AlreadyExists {
            exit::REFUSED
        } else {
            exit::FAILURE
        };
        Failure::new(code, format!("cannot create {}: {error}", out.display()))
    })?;
    let written = write_archive(archive, &recipient, &snapshot, &kind, &files);
    if written.is_err() {
        let _ = std::fs::remove_file(&out);
    }
    let (database_bytes, total) = written?;
    let names: Vec<&str> = files.iter().map(|(name, _)| name.as_str()).collect();
    Ok((
        json!({
            "archive": out,
            "bytes": total,
            "database": { "backend": kind.backend, "method": kind.method, "bytes": database_bytes },
            "files": names,
            "recipient": recipient_text(&recipient),
        }),
        format!(
            "backup written to {} ({total} bytes, encrypted to {}):\n  database: {database_bytes} bytes ({}, a consistent snapshot by {})\n  files: {}",
            out.display(),
            recipient_text(&recipient),
            kind.backend,
            kind.method,
            names.join(", ")
        ),
    ))
}

/// A consistent copy of the live SQLite database at `database` into `snapshot`: `VACUUM INTO`
/// runs in one read transaction on a read-only connection, so it sees one committed state and
/// does not stop the server's writer (WAL mode).
fn snapshot_sqlite(database: &Path, snapshot: &Path) -> Result<(), Failure> {
    let connection = rusqlite::Connection::open_with_flags(
        database,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|error| {
        Failure::new(
            exit::FAILURE,
            format!("cannot open {}: {error}", database.display()),
        )
    })?;
    connection
        .busy_timeout(std::time::Duration::from_secs(30))
        .map_err(|error| Failure::new(exit::FAILURE, error.to_string()))?;
    let target = snapshot.to_str().ok_or_else(|| {
        Failure::new(
            exit::FAILURE,
            "the archive's directory has a name that is not UTF-8",
        )
    })?;
    connection
        .execute("VACUUM INTO ?1", [target])
        .map_err(|error| {
            Failure::new(
                exit::FAILURE,
                format!("cannot snapshot {}: {error}", database.display()),
            )
        })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(snapshot, std::fs::Permissions::from_mode(0o600))
            .map_err(Failure::io(snapshot.display()))?;
    }
    Ok(())
}

/// What the archive's database entry is.
struct SnapshotKind {
    /// The manifest's `backend`.
    backend: &'static str,
    /// How it was taken (the manifest's `snapshot`).
    method: &'static str,
    /// The entry's name.
    entry: &'static str,
}

impl SnapshotKind {
    const SQLITE: SnapshotKind = SnapshotKind {
        backend: "sqlite",
        method: "VACUUM INTO",
        entry: DATABASE_ENTRY,
    };
    const POSTGRES: SnapshotKind = SnapshotKind {
        backend: "postgresql",
        method: "pg_dump",
        entry: PG_DUMP_ENTRY,
    };
}

fn write_archive(
    archive: std::fs::File,
    recipient: &[u8; 32],
    snapshot: &Path,
    kind: &SnapshotKind,
    files: &[(String, PathBuf)],
) -> Result<(u64, u64), Failure> {
    let database_bytes = std::fs::metadata(snapshot)
        .map_err(Failure::io(snapshot.display()))?
        .len();
    let mut total_plain = database_bytes;
    for (_, path) in files {
        total_plain += std::fs::metadata(path)
            .map_err(Failure::io(path.display()))?
            .len();
    }
    let created_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    let manifest = json!({
        "format": "offpay-backup",
        "version": FORMAT_VERSION,
        "offpay_version": env!("CARGO_PKG_VERSION"),
        "created_at_unix": created_at,
        "backend": kind.backend,
        "snapshot": kind.method,
        "database": kind.entry,
    })
    .to_string();
    let bar = progress(total_plain, "encrypting");
    let mut sealer = Sealer::new(BufWriter::new(archive), recipient)?;
    let write_error = Failure::io("writing the archive");
    let result: std::io::Result<()> = (|| {
        write_entry_head(
            &mut sealer,
            ENTRY_MANIFEST,
            "manifest.json",
            manifest.len() as u64,
        )?;
        sealer.write_all(manifest.as_bytes())?;
        let entries = std::iter::once((kind.entry.to_owned(), snapshot.to_path_buf()))
            .chain(files.iter().cloned());
        for (name, path) in entries {
            let mut file = std::fs::File::open(&path)?;
            let size = file.metadata()?.len();
            write_entry_head(&mut sealer, ENTRY_FILE, &name, size)?;
            let copied = std::io::copy(
                &mut (&mut file).take(size),
                &mut bar.wrap_write(&mut sealer),
            )?;
            if copied != size {
                return Err(std::io::Error::other(format!(
                    "{} changed size while it was read",
                    path.display()
                )));
            }
        }
        write_entry_head(&mut sealer, ENTRY_END, "", 0)?;
        let mut inner = sealer.finish()?;
        inner.flush()?;
        inner
            .into_inner()
            .map_err(std::io::IntoInnerError::into_error)?
            .sync_all()
    })();
    result.map_err(write_error)?;
    bar.finish_and_clear();
    Ok((database_bytes, total_plain))
}

// ---------------------------------------------------------------------------- verify

/// What the database of an unpacked archive holds, checked: SQLite's integrity check, then the
/// ledger opened as the server opens it (which checks that balances sum to zero per currency).
fn inspect_database(path: &Path) -> Result<Value, Failure> {
    let connection =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|error| Failure::damaged(format!("the database does not open: {error}")))?;
    let integrity: String = connection
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .map_err(|error| Failure::damaged(format!("the integrity check failed: {error}")))?;
    if integrity != "ok" {
        return Err(Failure::damaged(format!(
            "the database fails SQLite's integrity check: {integrity}"
        )));
    }
    let count = |table: &str| -> Result<i64, Failure> {
        connection
            .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |row| {
                row.get(0)
            })
            .map_err(|error| Failure::damaged(format!("{table}: {error}")))
    };
    let (accounts, transfers, records) =
        (count("accounts")?, count("transfers")?, count("records")?);
    drop(connection);
    let mut store = offpay_ledger_sqlite::SqliteStore::open(path)
        .map_err(|error| Failure::damaged(format!("the ledger does not open: {error}")))?;
    let totals = offpay_ledger::verify_conservation(&mut store)
        .map_err(|error| Failure::damaged(format!("the ledger does not balance: {error}")))?;
    let currencies = currencies_json(&totals);
    Ok(json!({
        "integrity": "ok",
        "accounts": accounts,
        "transfers": transfers,
        "records": records,
        "balanced": true,
        "currencies": currencies,
    }))
}

/// The backend an unpacked archive's manifest names (archives from before PostgreSQL backups
/// name `sqlite`).
fn archive_backend(manifest: &Value) -> Result<&'static str, Failure> {
    match manifest["backend"].as_str() {
        Some("sqlite") => Ok(SnapshotKind::SQLITE.backend),
        Some("postgresql") => Ok(SnapshotKind::POSTGRES.backend),
        other => Err(Failure::damaged(format!(
            "the manifest names an unknown database backend {other:?}"
        ))),
    }
}

/// A PostgreSQL ledger's dump, checked: readable by `pg_restore` and holding the ledger's
/// tables. Loaded into `scratch` when given (an empty database no server uses), it is opened as
/// the server opens a ledger and its balances must sum to zero.
fn inspect_dump(dump: &Path, scratch: Option<&str>) -> Result<Value, Failure> {
    let tables = pgdump::tables_with_data(dump).map_err(|message| {
        Failure::damaged(format!("the ledger dump is not readable: {message}"))
    })?;
    let missing: Vec<&str> = LEDGER_TABLES
        .iter()
        .copied()
        .filter(|table| !tables.iter().any(|found| found == table))
        .collect();
    if !missing.is_empty() {
        return Err(Failure::damaged(format!(
            "the dump holds no data for the ledger's tables {}",
            missing.join(", ")
        )));
    }
    let Some(url) = scratch else {
        return Ok(json!({ "dump": "readable", "tables": tables, "balanced": null }));
    };
    load_dump(url, dump, false)?;
    let currencies = check_postgres_ledger(url)?;
    Ok(json!({
        "dump": "readable",
        "tables": tables,
        "loaded_into": pgdump::Connection::parse(url).map(|c| c.target).unwrap_or_default(),
        "balanced": true,
        "currencies": currencies,
    }))
}

/// Loads `dump` into the database at `url`: refused while an offpay server is connected to it,
/// and (unless `replace`) when it holds tables already.
fn load_dump(url: &str, dump: &Path, replace: bool) -> Result<(), Failure> {
    let connection = connection(url)?;
    let usage = offpay_ledger_postgres::database_use(url)
        .map_err(|error| Failure::new(exit::UNAVAILABLE, error.to_string()))?;
    if usage.offpay_sessions > 0 {
        return Err(Failure::new(
            exit::UNAVAILABLE,
            format!(
                "{} offpay session(s) are connected to {}: stop the servers using it first",
                usage.offpay_sessions, connection.target
            ),
        ));
    }
    if usage.tables > 0 && !replace {
        return Err(Failure::new(
            exit::REFUSED,
            format!(
                "{} holds {} table(s) already: load into an empty database, or add --force to replace offpay's tables in it",
                connection.target, usage.tables
            ),
        ));
    }
    pgdump::restore(&connection, dump, replace).map_err(|message| {
        Failure::new(
            exit::FAILURE,
            format!("{message}\nnothing was loaded (one transaction)"),
        )
    })
}

/// Opens the ledger at `url` as the server does and checks that balances sum to zero in every
/// currency; the per-currency totals.
fn check_postgres_ledger(url: &str) -> Result<Vec<Value>, Failure> {
    let mut store = offpay_ledger_postgres::PostgresStore::open(url)
        .map_err(|error| Failure::damaged(format!("the loaded ledger does not open: {error}")))?;
    let totals = offpay_ledger::verify_conservation(&mut store).map_err(|error| {
        Failure::damaged(format!(
            "the loaded ledger does not balance: {error}; do not start a server on it"
        ))
    })?;
    Ok(currencies_json(&totals))
}

/// Each currency's totals as `verify` and `restore` report them.
fn currencies_json(totals: &[offpay_ledger::CurrencyTotal]) -> Vec<Value> {
    totals
        .iter()
        .map(|total| {
            json!({
                "currency": total.currency.code(),
                "accounts": total.accounts,
                "posted_sum": total.posted_sum.to_string(),
                "pending_sum": total.pending_sum.to_string(),
                "balanced": total.balanced(),
            })
        })
        .collect()
}

fn currencies_text(ledger: &Value) -> String {
    let currencies = ledger["currencies"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|currency| {
            format!(
                "{} ({} accounts)",
                currency["currency"].as_str().unwrap_or("?"),
                currency["accounts"]
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    if currencies.is_empty() {
        "none yet".to_owned()
    } else {
        currencies
    }
}

fn verify(
    archive: &Path,
    identity: &Path,
    scratch_database: Option<&str>,
) -> Result<(Value, String), Failure> {
    let scratch = tempfile::Builder::new()
        .prefix("offpay-verify-")
        .tempdir()
        .map_err(Failure::io("a temporary directory"))?;
    let unpacked = unpack(archive, identity, scratch.path())?;
    let backend = archive_backend(&unpacked.manifest)?;
    let (ledger, database_text) = if backend == SnapshotKind::POSTGRES.backend {
        let dump = scratch.path().join(PG_DUMP_ENTRY);
        if !dump.is_file() {
            return Err(Failure::damaged("the archive holds no ledger dump"));
        }
        let ledger = inspect_dump(&dump, scratch_database)?;
        let text = if ledger["balanced"] == true {
            format!(
                "database: PostgreSQL dump readable; loaded into {}, balances sum to zero in every currency: {}",
                ledger["loaded_into"].as_str().unwrap_or("?"),
                currencies_text(&ledger)
            )
        } else {
            "database: PostgreSQL dump readable, with the ledger's tables; balances not checked (give --scratch-database-url, an empty database, to load it and check them)".to_owned()
        };
        (ledger, text)
    } else {
        if scratch_database.is_some() {
            return Err(Failure::new(
                exit::USAGE,
                "this archive holds a SQLite ledger: it is checked without --scratch-database-url",
            ));
        }
        let database = scratch.path().join(DATABASE_ENTRY);
        if !database.is_file() {
            return Err(Failure::damaged("the archive holds no ledger database"));
        }
        let ledger = inspect_database(&database)?;
        let text = format!(
            "database: integrity ok, {} accounts, {} transfers, {} records; balances sum to zero in every currency: {}",
            ledger["accounts"],
            ledger["transfers"],
            ledger["records"],
            currencies_text(&ledger)
        );
        (ledger, text)
    };
    let files: Vec<Value> = unpacked
        .files
        .iter()
        .map(|(name, bytes)| json!({ "name": name, "bytes": bytes }))
        .collect();
    let text = format!(
        "{} verifies: made by offpay {} at {} (unix seconds)\n  {database_text}\n  files: {}",
        archive.display(),
        unpacked.manifest["offpay_version"].as_str().unwrap_or("?"),
        unpacked.manifest["created_at_unix"],
        unpacked
            .files
            .iter()
            .map(|(name, bytes)| format!("{name} ({bytes} bytes)"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok((
        json!({ "archive": archive, "verified": true, "manifest": unpacked.manifest, "ledger": ledger, "files": files }),
        text,
    ))
}

// --------------------------------------------------------------------------- restore

fn restore(args: &RestoreArgs) -> Result<(Value, String), Failure> {
    let target = &args.data_dir;
    let existing: Vec<PathBuf> = match std::fs::read_dir(target) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.file_name() != Some(std::ffi::OsStr::new(LOCK_FILE_NAME)))
            .collect(),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(error) => return Err(Failure::io(target.display())(error)),
    };
    if !existing.is_empty() && !args.force {
        return Err(Failure::new(
            exit::REFUSED,
            format!(
                "{} is not empty; restore into an empty directory, or add --force to replace what it holds",
                target.display()
            ),
        ));
    }
    create_private_dir_all(target).map_err(Failure::io(target.display()))?;
    // Held until the restore is done: no server may start on the directory meanwhile, and
    // none may be running on it now.
    let _lock = DataDirLock::acquire(target).map_err(|error| match error {
        LockError::Held { .. } => Failure::new(exit::UNAVAILABLE, error.to_string()),
        other => Failure::new(exit::FAILURE, other.to_string()),
    })?;
    let parent = target
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let staging = tempfile::Builder::new()
        .prefix(".offpay-restore-")
        .tempdir_in(parent)
        .map_err(Failure::io(parent.display()))?;
    // The whole archive is decrypted and checked before the target is touched.
    let unpacked = unpack(&args.archive, &args.identity, staging.path())?;
    let postgres = archive_backend(&unpacked.manifest)? == SnapshotKind::POSTGRES.backend;
    let ledger = match (postgres, args.database_url.as_deref()) {
        (false, None) => inspect_database(&staging.path().join(DATABASE_ENTRY))?,
        (false, Some(_)) => {
            return Err(Failure::new(
                exit::USAGE,
                "this archive holds a SQLite ledger: restore it into the data directory, without --database-url",
            ));
        }
        (true, None) => {
            return Err(Failure::new(
                exit::USAGE,
                "this archive holds a PostgreSQL ledger: name the database to load it into with --database-url (an empty one, or --force to replace offpay's tables in it)",
            ));
        }
        (true, Some(url)) => {
            let dump = staging.path().join(PG_DUMP_ENTRY);
            inspect_dump(&dump, None)?;
            load_dump(url, &dump, args.force)?;
            let currencies = check_postgres_ledger(url)?;
            json!({ "database": connection(url)?.target, "balanced": true, "currencies": currencies })
        }
    };
    for path in &existing {
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(path)
        } else {
            std::fs::remove_file(path)
        };
        removed.map_err(Failure::io(path.display()))?;
    }
    let mut placed = Vec::new();
    if !postgres {
        placed.push(DATABASE_ENTRY.to_owned());
    }
    placed.extend(
        unpacked
            .files
            .iter()
            .map(|(name, _)| name.clone())
            .filter(|name| !(postgres && name == PG_DUMP_ENTRY)),
    );
    placed.sort();
    placed.dedup();
    for name in &placed {
        let relative = safe_relative(name)?;
        let from = staging.path().join(&relative);
        let to = target.join(&relative);
        if let Some(parent) = to.parent() {
            create_private_dir_all(parent).map_err(Failure::io(parent.display()))?;
        }
        std::fs::rename(&from, &to).map_err(Failure::io(to.display()))?;
    }
    let text = match args.database_url.as_deref().filter(|_| postgres) {
        Some(url) => format!(
            "restored {} into {} and the PostgreSQL database {}: balances sum to zero in every currency: {}\n  files: {}\nstart it with: offpay serve --data-dir {} --database-url <the same URL>",
            args.archive.display(),
            target.display(),
            connection(url)?.target,
            currencies_text(&ledger),
            placed.join(", "),
            target.display()
        ),
        None => format!(
            "restored {} into {}: {} accounts, {} transfers; balances sum to zero\n  files: {}\nstart it with: offpay serve --data-dir {}",
            args.archive.display(),
            target.display(),
            ledger["accounts"],
            ledger["transfers"],
            placed.join(", "),
            target.display()
        ),
    };
    Ok((
        json!({ "data_dir": target, "files": placed, "ledger": ledger }),
        text,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seal(recipient: &[u8; 32], payload: &[u8]) -> Vec<u8> {
        let mut sealer = Sealer::new(Vec::new(), recipient).unwrap();
        sealer.write_all(payload).unwrap();
        sealer.finish().unwrap()
    }

    fn open(identity: &[u8; 32], archive: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut opener = Opener::new(archive, identity).map_err(|failure| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, failure.message)
        })?;
        let mut plain = Vec::new();
        opener.read_to_end(&mut plain)?;
        Ok(plain)
    }

    #[test]
    fn sealed_payloads_open_whole_and_any_change_is_refused() {
        let identity = *random_32().unwrap();
        let recipient = public_of(&identity);
        for size in [0, 1, CHUNK_BYTES - 1, CHUNK_BYTES, 2 * CHUNK_BYTES + 7] {
            let payload: Vec<u8> = (0..size).map(|index| (index % 251) as u8).collect();
            let archive = seal(&recipient, &payload);
            assert_eq!(open(&identity, &archive).unwrap(), payload, "size {size}");
            // A flipped bit anywhere, a dropped chunk, a truncation: refused.
            for position in [HEADER_BYTES - 1, HEADER_BYTES, archive.len() - 1] {
                let mut changed = archive.clone();
                changed[position] ^= 1;
                assert!(
                    open(&identity, &changed).is_err(),
                    "size {size} bit {position}"
                );
            }
            if size >= CHUNK_BYTES {
                let mut dropped = archive[..HEADER_BYTES].to_vec();
                dropped.extend_from_slice(&archive[HEADER_BYTES + CHUNK_BYTES + TAG_BYTES..]);
                assert!(open(&identity, &dropped).is_err(), "size {size} dropped");
                let cut = &archive[..HEADER_BYTES + CHUNK_BYTES + TAG_BYTES];
                assert!(open(&identity, cut).is_err(), "size {size} truncated");
            }
        }
        let other = *random_32().unwrap();
        assert!(open(&other, &seal(&recipient, b"x")).is_err());
    }

    #[test]
    fn names_that_leave_the_data_directory_are_refused() {
        for name in ["../x", "/etc/passwd", "a/../../b", "", LOCK_FILE_NAME] {
            assert!(safe_relative(name).is_err(), "{name}");
        }
        assert!(safe_relative("purse/master.key").is_ok());
    }
}
