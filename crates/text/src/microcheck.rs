//! The microcheck area's texts (`locales/*/microcheck.ftl`).

crate::messages! {}
