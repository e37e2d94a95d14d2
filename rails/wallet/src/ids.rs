//! Identifiers: wallets, transfers, postings. Plain 16-byte values, shown in hex.

use core::fmt;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; 16]);

        impl $name {
            /// Size in bytes on the wire.
            pub const BYTES: usize = 16;
            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; 16] {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                for byte in &self.0 {
                    write!(f, "{byte:02x}")?;
                }
                Ok(())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self)
            }
        }
    };
}

id_type!(
    /// A wallet's unique id, chosen by the money office when it issues the credential.
    WalletId
);
id_type!(
    /// A transfer's id, chosen at random by the seller when it starts a sale; it is also the
    /// session id that every message of the sale carries.
    TransferId
);
id_type!(
    /// A deterministic id for a ledger posting: the same event always maps to the same id, so the
    /// ledger can post it idempotently.
    PostingId
);

/// Wall-clock time in milliseconds since the Unix epoch, supplied by the caller. It drives both the
/// retransmission timers and credential expiry; a clock that jumps only changes when timers fire.
pub type Millis = u64;
