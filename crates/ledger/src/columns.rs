//! What every SQL backend needs to map ledger values to columns and back, written once.

use crate::ids::TransferId;
use crate::model::{PendingState, TransferKind};
use crate::store::StoreError;

/// A transfer kind as the `kind` and `pending_id` columns store it.
pub fn transfer_kind_columns(kind: &TransferKind) -> (&'static str, Option<&str>) {
    match kind {
        TransferKind::Posted => ("posted", None),
        TransferKind::Pending => ("pending", None),
        TransferKind::PostPending(pending) => ("post_pending", Some(pending.as_str())),
        TransferKind::VoidPending(pending) => ("void_pending", Some(pending.as_str())),
    }
}

/// Reads the `kind` and `pending_id` columns of transfer `id` back.
pub fn transfer_kind_from_columns(
    id: &str,
    kind: &str,
    pending_id: Option<String>,
) -> Result<TransferKind, StoreError> {
    let pending = || -> Result<TransferId, StoreError> {
        let pending_id = pending_id
            .clone()
            .ok_or_else(|| StoreError::Corrupt(format!("transfer {id}: no pending id")))?;
        TransferId::new(pending_id)
            .map_err(|error| StoreError::Corrupt(format!("transfer {id}: pending id: {error}")))
    };
    Ok(match kind {
        "posted" => TransferKind::Posted,
        "pending" => TransferKind::Pending,
        "post_pending" => TransferKind::PostPending(pending()?),
        "void_pending" => TransferKind::VoidPending(pending()?),
        other => {
            return Err(StoreError::Corrupt(format!(
                "transfer {id}: unknown kind {other:?}"
            )));
        }
    })
}

/// Reads the `pending_state` column of transfer `id` back.
pub fn pending_state_from_column(
    id: &str,
    state: Option<String>,
) -> Result<Option<PendingState>, StoreError> {
    state
        .map(|state| {
            PendingState::parse(&state).ok_or_else(|| {
                StoreError::Corrupt(format!("transfer {id}: pending state {state:?}"))
            })
        })
        .transpose()
}

/// A `LIKE … ESCAPE '\'` pattern matching every string that starts with `prefix` literally:
/// `%`, `_` and `\` in the prefix are escaped.
pub fn like_prefix(prefix: &str) -> String {
    let mut pattern = String::with_capacity(prefix.len() + 1);
    for character in prefix.chars() {
        if matches!(character, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(character);
    }
    pattern.push('%');
    pattern
}

/// The least string greater than every string that starts with `prefix`, in byte (code point)
/// order, for a range scan `prefix <= key < bound`; `None` when no such string exists (the prefix
/// is empty or only `char::MAX`s), and the scan has no upper end.
pub fn prefix_upper_bound(prefix: &str) -> Option<String> {
    let mut characters: Vec<char> = prefix.chars().collect();
    while let Some(last) = characters.pop() {
        let next = (u32::from(last) + 1..=u32::from(char::MAX)).find_map(char::from_u32);
        if let Some(next) = next {
            characters.push(next);
            return Some(characters.into_iter().collect());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upper_bound_of_a_prefix_is_just_past_it() {
        assert_eq!(prefix_upper_bound("a:").as_deref(), Some("a;"));
        assert_eq!(prefix_upper_bound("").as_deref(), None);
        assert_eq!(prefix_upper_bound("\u{10FFFF}"), None);
        assert_eq!(prefix_upper_bound("a\u{10FFFF}").as_deref(), Some("b"));
        // Surrogates are not characters: the next one after U+D7FF is U+E000.
        assert_eq!(prefix_upper_bound("\u{D7FF}").as_deref(), Some("\u{E000}"));
    }

    #[test]
    fn kinds_round_trip_through_columns() {
        let pending = TransferId::new("p1").unwrap();
        for kind in [
            TransferKind::Posted,
            TransferKind::Pending,
            TransferKind::PostPending(pending.clone()),
            TransferKind::VoidPending(pending),
        ] {
            let (name, pending_id) = transfer_kind_columns(&kind);
            let back =
                transfer_kind_from_columns("t", name, pending_id.map(str::to_owned)).unwrap();
            assert_eq!(back, kind);
        }
        assert!(transfer_kind_from_columns("t", "post_pending", None).is_err());
        assert!(transfer_kind_from_columns("t", "maybe", None).is_err());
        assert!(pending_state_from_column("t", Some("limbo".into())).is_err());
    }

    #[test]
    fn like_prefixes_are_literal() {
        assert_eq!(like_prefix("a%_\\"), "a\\%\\_\\\\%");
        assert_eq!(like_prefix(""), "%");
    }
}
