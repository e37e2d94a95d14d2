//! The operator API token: 32 random bytes, hex-encoded, kept in `DATA_DIR/admin.token` (mode
//! 0600). Compared in constant time; never printed, logged or shown by `Debug`.

use std::fmt;
use std::path::Path;

use subtle::ConstantTimeEq;

/// Token length in bytes before hex encoding.
pub const TOKEN_BYTES: usize = 32;

/// The operator token.
#[derive(Clone)]
pub struct AdminToken(String);

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

impl AdminToken {
    /// Whether `presented` is the token, compared in constant time.
    pub fn matches(&self, presented: &str) -> bool {
        self.0.as_bytes().ct_eq(presented.as_bytes()).into()
    }

    /// The token's text, to hash it for the bootstrap user (never to print).
    pub fn reveal(&self) -> &str {
        &self.0
    }

    /// Reads the token from `path`, or creates it (mode 0600) on first start. Returns the token and
    /// whether it was created now.
    pub fn load_or_create(
        path: &Path,
        entropy: &dyn offpay_operator::Entropy,
    ) -> std::io::Result<(AdminToken, bool)> {
        let (contents, created) = crate::keyfile::read_or_create(path, || {
            crate::keyfile::random_hex_line(entropy, TOKEN_BYTES)
        })?;
        let token = crate::keyfile::hex_text(
            &contents,
            TOKEN_BYTES,
            &format!("{} is not an offpay token file", path.display()),
        )?;
        Ok((AdminToken(token.to_string()), created))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_a_private_token_once_and_reads_it_back() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("admin.token");
        let (token, created) =
            AdminToken::load_or_create(&path, &offpay_operator::OsEntropy).unwrap();
        assert!(created);
        let (again, created_again) =
            AdminToken::load_or_create(&path, &offpay_operator::OsEntropy).unwrap();
        assert!(!created_again);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(token.matches(text.trim()) && again.matches(text.trim()));
        assert!(!token.matches("00"));
        assert_eq!(format!("{token:?}"), "AdminToken(<redacted>)");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
    }

    #[test]
    fn refuses_a_file_that_is_not_a_token() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("admin.token");
        std::fs::write(&path, "hunter2").unwrap();
        let error = AdminToken::load_or_create(&path, &offpay_operator::OsEntropy).unwrap_err();
        assert!(error.to_string().contains("not an offpay token file"));
        assert!(!error.to_string().contains("hunter2"));
    }
}
