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
