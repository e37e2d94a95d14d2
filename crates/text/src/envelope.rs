//! The envelope area's texts (`locales/*/envelope.ftl`).

crate::messages! {}
