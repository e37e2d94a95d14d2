//! The web area's texts (`locales/*/web.ftl`).

crate::messages! {}
