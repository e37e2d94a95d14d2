//! Key files in the data directory: read when present; otherwise created once — never
//! overwritten — readable by the owner only (mode 0600), written and synced before use. The
//! secrets in them never reach logs, errors or the database.

use std::io::{ErrorKind, Write};
use std::path::Path;

use offpay_operator::Entropy;
use zeroize::Zeroizing;

use crate::StartError;

/// The contents of the key file at `path`, or — when there is none — the bytes `create`
/// returns, written to a new file. Also says whether the file was created now.
pub fn read_or_create(
    path: &Path,
    create: impl FnOnce() -> std::io::Result<Zeroizing<Vec<u8>>>,
) -> std::io::Result<(Zeroizing<Vec<u8>>, bool)> {
    match std::fs::read(path) {
        Ok(bytes) => Ok((Zeroizing::new(bytes), false)),
        Err(error) if error.kind() == ErrorKind::NotFound => {
            let bytes = create()?;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut file = options.open(path)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            Ok((bytes, true))
        }
        Err(error) => Err(error),
    }
}

/// Creates `path` and any missing parents as directories only the owner may enter (0700); an
/// existing directory is left as it is. Every directory the server or the CLI makes for money
/// data or secrets comes from here.
pub fn create_private_dir_all(path: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(path)
}

/// Opens `path` for writing, created readable and writable by the owner only (0600) and
/// truncated; an existing file is narrowed to 0600 too. For files that hold money data or
/// secrets and may be written again (printed envelopes, backups, exports).
pub fn create_private_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file = options.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(file)
}

/// `count` fresh random bytes.
pub fn random(entropy: &dyn Entropy, count: usize) -> std::io::Result<Zeroizing<Vec<u8>>> {
    let mut bytes = Zeroizing::new(vec![0u8; count]);
    entropy
        .fill(&mut bytes)
        .map_err(|error| std::io::Error::other(error.to_string()))?;
    Ok(bytes)
}

/// `count` fresh random bytes as a line of hex.
pub fn random_hex_line(entropy: &dyn Entropy, count: usize) -> std::io::Result<Zeroizing<Vec<u8>>> {
    let bytes = random(entropy, count)?;
    let mut line = Zeroizing::new(hex::encode(&*bytes).into_bytes());
    line.push(b'\n');
    Ok(line)
}

/// The hex text of a key file of `count` bytes, trimmed, or an error saying what was expected.
pub fn hex_text(contents: &[u8], count: usize, what: &str) -> std::io::Result<Zeroizing<String>> {
    let text = std::str::from_utf8(contents)
        .map(|text| Zeroizing::new(text.trim().to_owned()))
        .map_err(|_| invalid(format!("{what}: not text")))?;
    if text.len() != count * 2 || !text.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return Err(invalid(format!(
            "{what}: expected {} hex digits",
            count * 2
        )));
    }
    Ok(text)
}

/// An error for a key file whose contents are not what they should be.
pub fn invalid(message: impl Into<String>) -> std::io::Error {
    std::io::Error::new(ErrorKind::InvalidData, message.into())
}

/// A start-up error about the key file `what` at `path`.
pub fn start_error(what: &str, path: &Path) -> impl FnOnce(std::io::Error) -> StartError {
    let context = format!("{what} {}", path.display());
    move |source| StartError::Io { context, source }
}

#[cfg(test)]
mod tests {
    use offpay_operator::SeededEntropy;

    use super::*;

    #[cfg(unix)]
    #[test]
    fn private_files_and_directories_are_the_owners_only() {
        use std::os::unix::fs::PermissionsExt;
        let directory = tempfile::tempdir().unwrap();
        let nested = directory.path().join("a/b");
        create_private_dir_all(&nested).unwrap();
        for path in [directory.path().join("a"), nested.clone()] {
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700, "{}", path.display());
        }
        let file = nested.join("f");
        std::fs::write(&file, b"old").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        create_private_file(&file)
            .unwrap()
            .write_all(b"new")
            .unwrap();
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::read(&file).unwrap(), b"new");
    }

    #[test]
    fn a_key_file_is_created_once_private_and_then_read() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("k");
        let entropy = SeededEntropy::from_seed(3);
        let (first, created) = read_or_create(&path, || random_hex_line(&entropy, 16)).unwrap();
        assert!(created);
        let (again, created) = read_or_create(&path, || panic!("must not create twice")).unwrap();
        assert!(!created);
        assert_eq!(*first, *again);
        assert_eq!(hex_text(&again, 16, "k").unwrap().len(), 32);
        assert!(hex_text(&again, 8, "k").is_err());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
