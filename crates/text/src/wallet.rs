//! The wallet area's texts (`locales/*/wallet.ftl`).

crate::messages! {}
