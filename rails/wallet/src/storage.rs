//! Where the wallet log lives. The wallet never writes by itself: it hands the caller frames in
//! [`crate::Action::Persist`], and the caller appends them through this trait before it performs
//! any later action.

use alloc::vec::Vec;

use crate::error::StorageError;

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
        let file = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(io_error)?;
        if !existed {
            file.sync_all().map_err(io_error)?;
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::File::open(parent)
                    .and_then(|dir| dir.sync_all())
                    .map_err(io_error)?;
            }
        }
        Ok(FileStorage { file })
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
