//! Where the wallet log lives. The wallet never writes by itself: it hands the caller frames in
//! [`crate::Action::Persist`], and the caller appends them through this trait before it performs
//! any later action.

use alloc::vec::Vec;

use crate::error::StorageError;
#[cfg(feature = "std")]
use crate::sealed::{LogKey, SEALED_LOG_HEADER_BYTES, is_sealed_log, sealed_log_header};

/// Durable, append-only storage for the wallet log.
///
/// **What "written" means.** [`LogStorage::append`] returns `Ok` only when the frame is on stable
/// storage: it survives a crash or a power cut from that moment on (for a file, the data has been
/// `fsync`ed, and so has the directory entry of a file just created). Appends are ordered: a frame
/// is never durable unless every frame appended before it is. When `append` fails, the frame may
/// be absent, whole or torn; the caller must then stop using the wallet, perform none of the
/// actions that followed, and reopen it from storage, which drops a torn tail.
pub trait LogStorage {
    /// Appends one frame durably (see above).
    fn append(&mut self, frame: &[u8]) -> Result<(), StorageError>;
    /// Every byte appended so far, possibly ending in a torn frame after a crash.
    fn load(&mut self) -> Result<Vec<u8>, StorageError>;
    /// Durably cuts the log to its first `length` bytes (used on open to drop a torn tail).
    fn truncate(&mut self, length: u64) -> Result<(), StorageError>;
}

/// Log storage in memory, for tests and simulations. Cloning it is taking a snapshot of the
/// disk; [`MemoryStorage::tear`] leaves half a frame as a power cut during an append would.
#[derive(Clone, Debug, Default)]
pub struct MemoryStorage {
    bytes: Vec<u8>,
    appends: u64,
}

impl MemoryStorage {
    /// Empty storage.
    pub fn new() -> Self {
        MemoryStorage::default()
    }
    /// The stored bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
    /// Number of successful appends (a bench counts fsyncs with it).
    pub fn appends(&self) -> u64 {
        self.appends
    }
    /// Simulates a torn append: writes only the first half of `frame`.
    pub fn tear(&mut self, frame: &[u8]) {
        self.bytes.extend_from_slice(&frame[..frame.len() / 2]);
    }
}

impl LogStorage for MemoryStorage {
    fn append(&mut self, frame: &[u8]) -> Result<(), StorageError> {
        self.bytes.extend_from_slice(frame);
        self.appends += 1;
        Ok(())
    }
    fn load(&mut self) -> Result<Vec<u8>, StorageError> {
        Ok(self.bytes.clone())
    }
    fn truncate(&mut self, length: u64) -> Result<(), StorageError> {
        self.bytes.truncate(length as usize);
        Ok(())
    }
}

/// Log storage in a file: each append is `write_all` followed by `fsync` (`File::sync_data`).
#[cfg(feature = "std")]
#[derive(Debug)]
pub struct FileStorage {
    file: std::fs::File,
}

#[cfg(feature = "std")]
impl FileStorage {
    /// Opens (or creates) the log file at `path`. A new file's directory entry is synced too.
    pub fn open(path: &std::path::Path) -> Result<FileStorage, StorageError> {
        let existed = path.exists();
        let file = open_private(path)?;
        if !existed {
            file.sync_all().map_err(io_error)?;
            sync_directory_of(path)?;
        }
        Ok(FileStorage { file })
    }
}

/// Opens (or creates, 0600) a file for reading and appending; an existing file readable by
/// others is made private.
#[cfg(feature = "std")]
fn open_private(path: &std::path::Path) -> Result<std::fs::File, StorageError> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true).append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file = options.open(path).map_err(io_error)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = file.metadata().map_err(io_error)?.permissions().mode();
        if mode & 0o077 != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(io_error)?;
        }
    }
    Ok(file)
}

#[cfg(feature = "std")]
fn sync_directory_of(path: &std::path::Path) -> Result<(), StorageError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::File::open(parent)
            .and_then(|dir| dir.sync_all())
            .map_err(io_error)?;
    }
    Ok(())
}

/// The wallet log in a file, encrypted at rest ([`crate::sealed`]): each frame is sealed under
/// the wallet's [`LogKey`] before it is written and forced; [`LogStorage::load`] opens them and
/// cuts a torn sealed tail off the disk; the wallet sees plain frames. The file is created 0600.
/// An earlier release's plain log is sealed on open, through a forced temporary file renamed
/// over it.
#[cfg(feature = "std")]
#[derive(Debug)]
pub struct SealedFileStorage {
    file: std::fs::File,
    key: LogKey,
    /// For each frame on disk: where it ends in the plain log and on disk.
    frame_ends: Vec<(u64, u64)>,
    torn_bytes_cut: u64,
}

#[cfg(feature = "std")]
impl SealedFileStorage {
    /// Opens (or creates) the sealed log at `path`.
    pub fn open(path: &std::path::Path, key: LogKey) -> Result<SealedFileStorage, StorageError> {
        use std::io::Write;
        let existed = path.exists();
        let mut file = open_private(path)?;
        let length = file.metadata().map_err(io_error)?.len();
        if !existed || length == 0 {
            file.write_all(&sealed_log_header()).map_err(io_error)?;
            file.sync_all().map_err(io_error)?;
            sync_directory_of(path)?;
        } else {
            let bytes = std::fs::read(path).map_err(io_error)?;
            if !is_sealed_log(&bytes) {
                // An earlier release's plain log: seal it whole, then swap it in.
                let sealed = key.seal_log(&bytes)?;
                let mut temporary = path.as_os_str().to_owned();
                temporary.push(".sealing");
                let temporary = std::path::PathBuf::from(temporary);
                let _ = std::fs::remove_file(&temporary);
                let mut out = open_private(&temporary)?;
                out.write_all(&sealed)
                    .and_then(|()| out.sync_all())
                    .map_err(io_error)?;
                std::fs::rename(&temporary, path).map_err(io_error)?;
                sync_directory_of(path)?;
                file = open_private(path)?;
            }
        }
        Ok(SealedFileStorage {
            file,
            key,
            frame_ends: Vec::new(),
            torn_bytes_cut: 0,
        })
    }

    /// Bytes of a torn sealed append cut off the end of the file by the last load.
    pub fn torn_bytes_cut(&self) -> u64 {
        self.torn_bytes_cut
    }
}

#[cfg(feature = "std")]
impl LogStorage for SealedFileStorage {
    fn append(&mut self, frame: &[u8]) -> Result<(), StorageError> {
        use std::io::Write;
        let sealed = self.key.seal_frame(frame);
        self.file.write_all(&sealed).map_err(io_error)?;
        self.file.sync_data().map_err(io_error)?;
        let (plain_end, disk_end) = self
            .frame_ends
            .last()
            .copied()
            .unwrap_or((0, SEALED_LOG_HEADER_BYTES as u64));
        self.frame_ends.push((
            plain_end + frame.len() as u64,
            disk_end + sealed.len() as u64,
        ));
        Ok(())
    }

    fn load(&mut self) -> Result<Vec<u8>, StorageError> {
        use std::io::{Read, Seek, SeekFrom};
        let mut bytes = Vec::new();
        self.file.seek(SeekFrom::Start(0)).map_err(io_error)?;
        self.file.read_to_end(&mut bytes).map_err(io_error)?;
        let opened = self.key.open_log(&bytes)?;
        if opened.torn_bytes > 0 {
            self.file.set_len(opened.valid_bytes).map_err(io_error)?;
            self.file.sync_all().map_err(io_error)?;
        }
        self.torn_bytes_cut = opened.torn_bytes;
        self.frame_ends = opened.frame_ends;
        Ok(opened.plain.to_vec())
    }

    fn truncate(&mut self, length: u64) -> Result<(), StorageError> {
        let keep = self
            .frame_ends
            .iter()
            .position(|(plain_end, _)| *plain_end == length);
        let disk_length = match keep {
            Some(index) => {
                self.frame_ends.truncate(index + 1);
                self.frame_ends[index].1
            }
            None if length == 0 => {
                self.frame_ends.clear();
                SEALED_LOG_HEADER_BYTES as u64
            }
            // Only whole sealed frames are loaded, so a cut always falls between two of them.
            None => return Err(StorageError::Corrupt { offset: length }),
        };
        self.file.set_len(disk_length).map_err(io_error)?;
        self.file.sync_all().map_err(io_error)
    }
}

#[cfg(feature = "std")]
fn io_error(error: std::io::Error) -> StorageError {
    StorageError::Io(alloc::format!("{error}"))
}

#[cfg(feature = "std")]
impl LogStorage for FileStorage {
    fn append(&mut self, frame: &[u8]) -> Result<(), StorageError> {
        use std::io::Write;
        self.file.write_all(frame).map_err(io_error)?;
        self.file.sync_data().map_err(io_error)
    }
    fn load(&mut self) -> Result<Vec<u8>, StorageError> {
        use std::io::{Read, Seek, SeekFrom};
        let mut bytes = Vec::new();
        self.file.seek(SeekFrom::Start(0)).map_err(io_error)?;
        self.file.read_to_end(&mut bytes).map_err(io_error)?;
        Ok(bytes)
    }
    fn truncate(&mut self, length: u64) -> Result<(), StorageError> {
        self.file.set_len(length).map_err(io_error)?;
        self.file.sync_all().map_err(io_error)
    }
}
