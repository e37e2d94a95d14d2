//! The purse area's texts (`locales/*/purse.ftl`).

crate::messages! {}
