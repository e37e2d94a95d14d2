//! The crate's one error type, split by who is at fault.

use core::fmt;

/// Everything that can go wrong, split by cause: malformed input from a peer
/// ([`Error::Syntax`]), input that is well formed but too big or too costly ([`Error::Limit`]),
/// keys and signatures that do not check out ([`Error::Key`], [`Error::Signature`]), and a caller
/// misusing the API ([`Error::Usage`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The text breaks a rule of the KeyNote grammar; says where and which rule.
    #[error("syntax error: {0}")]
    Syntax(SyntaxError),
    /// Input exceeds one of the bounds in [`crate::limits`].
    #[error("limit exceeded: {what} (at most {max})")]
    Limit {
        /// What was too large.
        what: &'static str,
        /// The bound that was exceeded.
        max: usize,
    },
    /// A key string could not be decoded, or names an algorithm this engine cannot use.
    #[error("key: {0}")]
    Key(String),
    /// A signature is missing, malformed, of an unsupported algorithm, or does not verify.
    #[error("signature: {0}")]
    Signature(String),
    /// The caller used the API wrongly (for example an empty compliance value set).
    #[error("usage: {0}")]
    Usage(String),
}

/// Which rule of RFC 2704 (or of a companion file format) a syntax error breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rule {
    /// Field layout: names, continuation lines, order, duplicates (RFC 2704 §4.1).
    Layout,
    /// String literal syntax and escapes (§4.3.1).
    StringLiteral,
    /// A character that starts no token in this field.
    Token,
    /// The KeyNote-Version field (§4.6.1).
    Version,
    /// The Local-Constants field (§4.6.2).
    LocalConstants,
    /// The Authorizer field (§4.6.3).
    Authorizer,
    /// The Licensees field (§4.6.4).
    Licensees,
    /// The Conditions field grammar (§4.6.5).
    Conditions,
    /// Operand types in Conditions: integer, float, string and boolean do not mix (§4.6.5).
    Types,
    /// The Signature field (§4.6.7).
    Signature,
    /// A cryptographic principal identifier that does not decode (§4.5.2, RFC 2792).
    Key,
    /// Nesting deeper than [`crate::limits::NESTING_DEPTH_MAX`].
    Nesting,
    /// An action environment file (`name = "value"` lines) as `keynote verify -e` reads it.
    Environment,
    /// A key file (one quoted key string) as `keynote verify -k` and `keynote sign` read it.
    KeyFile,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Rule::Layout => "assertion layout (RFC 2704 §4.1)",
            Rule::StringLiteral => "string literal (RFC 2704 §4.3.1)",
            Rule::Token => "token",
            Rule::Version => "KeyNote-Version field (RFC 2704 §4.6.1)",
            Rule::LocalConstants => "Local-Constants field (RFC 2704 §4.6.2)",
            Rule::Authorizer => "Authorizer field (RFC 2704 §4.6.3)",
            Rule::Licensees => "Licensees field (RFC 2704 §4.6.4)",
            Rule::Conditions => "Conditions field (RFC 2704 §4.6.5)",
            Rule::Types => "expression types (RFC 2704 §4.6.5)",
            Rule::Signature => "Signature field (RFC 2704 §4.6.7)",
            Rule::Key => "principal key encoding (RFC 2704 §4.5.2, RFC 2792)",
            Rule::Nesting => "nesting depth limit",
            Rule::Environment => "action environment file",
            Rule::KeyFile => "key file",
        };
        f.write_str(text)
    }
}

/// A syntax error with its 1-based line and column (counted in bytes) in the text given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// 1-based line.
    pub line: u32,
    /// 1-based column, in bytes.
    pub column: u32,
    /// The rule broken.
    pub rule: Rule,
    /// What exactly was wrong.
    pub message: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {}: {}: {}",
            self.line, self.column, self.rule, self.message
        )
    }
}

/// A syntax error located by byte offset; turned into a [`SyntaxError`] once the whole text is
/// known, so inner parsers need not carry line bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParseError {
    pub(crate) offset: usize,
    pub(crate) rule: Rule,
    pub(crate) message: String,
}

impl ParseError {
    pub(crate) fn new(offset: usize, rule: Rule, message: impl Into<String>) -> Self {
        Self {
            offset,
            rule,
            message: message.into(),
        }
    }

    /// Locate the error in `text`; `line_base` is the line `text` starts on in its file (0 for
    /// a text parsed on its own).
    pub(crate) fn locate(self, text: &[u8], line_base: u32) -> SyntaxError {
        let (line, column) = line_column(text, self.offset);
        SyntaxError {
            line: line.saturating_add(line_base),
            column,
            rule: self.rule,
            message: self.message,
        }
    }
}

/// 1-based line and column of byte `offset` in `text`.
pub(crate) fn line_column(text: &[u8], offset: usize) -> (u32, u32) {
    let end = offset.min(text.len());
    let before = &text[..end];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    let column = end - line_start + 1;
    (
        u32::try_from(line).unwrap_or(u32::MAX),
        u32::try_from(column).unwrap_or(u32::MAX),
    )
}

/// Shorthand used across the crate.
pub type Result<T, E = Error> = core::result::Result<T, E>;
