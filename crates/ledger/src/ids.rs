//! Identifiers chosen by clients: account ids and transfer ids.

use std::fmt;

/// Longest account or transfer id, in bytes.
pub const ID_LENGTH_MAX: usize = 64;

/// Characters allowed in ids: letters, digits and `_ . : + - @ /`. Enough for phone numbers
/// (`+254700000001`), prefixes (`purse:...`) and hex digests, nothing that needs escaping in a URL
/// path segment or a log line.
fn id_character_allowed(character: u8) -> bool {
    character.is_ascii_alphanumeric() || b"_.:+-@".contains(&character)
}

fn validate_id(text: &str) -> Result<(), IdError> {
    if text.is_empty() {
        return Err(IdError::Empty);
    }
    if text.len() > ID_LENGTH_MAX {
        return Err(IdError::TooLong);
    }
    if let Some(position) = text.bytes().position(|byte| !id_character_allowed(byte)) {
        return Err(IdError::InvalidCharacter { position });
    }
    Ok(())
}

/// Why an id was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    /// The id is empty.
    #[error("the id is empty")]
    Empty,
    /// The id is longer than [`ID_LENGTH_MAX`].
    #[error("the id is longer than {ID_LENGTH_MAX} characters")]
    TooLong,
    /// A character outside letters, digits and `_ . : + - @`.
    #[error("character {} of the id is not a letter, digit or one of _ . : + - @", position + 1)]
    InvalidCharacter {
        /// Zero-based byte position.
        position: usize,
    },
}

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Validates and wraps `text`.
            pub fn new(text: impl Into<String>) -> Result<Self, IdError> {
                let text = text.into();
                validate_id(&text)?;
                Ok(Self(text))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(text: &str) -> Result<Self, IdError> {
                Self::new(text)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                Self::new(text).map_err(serde::de::Error::custom)
            }
        }
    };
}

id_type!(
    /// An account's id, chosen by whoever creates it (e.g. `purse:+254700000001`).
    AccountId
);
id_type!(
    /// A transfer's id, chosen by the client: the idempotency key. The same id with the same body
    /// posts once; the same id with another body is refused.
    TransferId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_accept_phone_numbers_and_prefixes() {
        assert!(AccountId::new("purse:+254700000001").is_ok());
        assert!(TransferId::new("a1b2-c3.d4_e5@x").is_ok());
    }

    #[test]
    fn ids_refuse_empty_long_and_odd_characters() {
        assert_eq!(AccountId::new(""), Err(IdError::Empty));
        assert_eq!(
            AccountId::new("x".repeat(ID_LENGTH_MAX + 1)),
            Err(IdError::TooLong)
        );
        assert!(AccountId::new("x".repeat(ID_LENGTH_MAX)).is_ok());
        assert_eq!(
            TransferId::new("a b"),
            Err(IdError::InvalidCharacter { position: 1 })
        );
        assert_eq!(
            TransferId::new("a/b"),
            Err(IdError::InvalidCharacter { position: 1 })
        );
    }
}
