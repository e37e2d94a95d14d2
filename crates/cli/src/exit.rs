//! One exit-code scheme for every `offpay` command, so that scripts can tell apart what went
//! wrong without parsing messages. `offpay --help` prints it ([`SCHEME`]); the operator guide
//! documents it ("Exit codes").

use std::process::ExitCode;

use crate::client::CallError;

/// Failed for a reason none of the codes below names.
pub const FAILURE: u8 = 1;
/// The command line or the configuration is wrong (clap's own code for a usage error).
pub const USAGE: u8 = 2;
/// The server or the device understood the request and refused it: a payment declined or
/// refused, an unknown account, an id used before with another body, a deposit partly refused.
pub const REFUSED: u8 = 3;
/// Authentication or permission: a missing, wrong or revoked token, a role without the right.
pub const DENIED: u8 = 4;
/// A data problem: a corrupt or tampered file, a backup that does not verify, a ledger whose
/// balances do not sum to zero.
pub const DATA: u8 = 5;
/// Unavailable: the server cannot be reached or is not ready, the database is down, the data
/// directory is in use by another process. Trying again later may succeed.
pub const UNAVAILABLE: u8 = 6;

/// The scheme, for `--help`.
pub const SCHEME: &str = "Exit codes: 0 done, 1 failure, 2 usage or configuration error, \
3 refused (declined, unknown, conflicting), 4 authentication or permission, \
5 data problem (corrupt or tampered file, backup does not verify), \
6 unavailable (server unreachable or not ready, data directory in use).";

/// The process exit code `code`.
pub fn code(code: u8) -> ExitCode {
    ExitCode::from(code)
}

/// The exit code for a failed API call.
pub fn for_call(error: &CallError) -> ExitCode {
    code(match error {
        CallError::Transport(_) => UNAVAILABLE,
        CallError::Api { status, .. } => for_status(*status),
    })
}

/// The exit code for an HTTP error status.
pub fn for_status(status: u16) -> u8 {
    match status {
        401 | 403 => DENIED,
        502..=504 => UNAVAILABLE,
        400..=499 => REFUSED,
        _ => FAILURE,
    }
}

/// The exit code for a server that could not start.
pub fn for_start(error: &offpay_server::StartError) -> ExitCode {
    use offpay_ledger::StoreError;
    use offpay_server::StartError;
    code(match error {
        StartError::Config(_) | StartError::Tls(_) => USAGE,
        StartError::DataDirLocked(offpay_server::datadir::LockError::Held { .. }) => UNAVAILABLE,
        StartError::Store(StoreError::Database(_)) => UNAVAILABLE,
        StartError::Store(_) => DATA,
        _ => FAILURE,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_statuses_map_onto_the_scheme() {
        assert_eq!(for_status(401), DENIED);
        assert_eq!(for_status(403), DENIED);
        assert_eq!(for_status(404), REFUSED);
        assert_eq!(for_status(409), REFUSED);
        assert_eq!(for_status(422), REFUSED);
        assert_eq!(for_status(503), UNAVAILABLE);
        assert_eq!(for_status(500), FAILURE);
    }
}
