//! Byte-level text handling shared by the parsers: string-literal escapes, the field layout of
//! an assertion, splitting a file into assertions, and the reference tool's key printing.

use crate::error::{ParseError, Rule};
use crate::limits::ASSERTION_BYTES_MAX;

/// The whitespace set of C's `isspace` in the C locale, which the reference uses throughout.
pub(crate) fn is_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn is_octal(byte: Option<&u8>) -> bool {
    matches!(byte, Some(b'0'..=b'7'))
}

/// Decode the body of a string literal (between the quotes) as the reference does: `\n`, `\t`,
/// `\r`, `\f`; `\0o`, `\0oo` and `\ooo` octal escapes whose value is not NUL; a backslash before
/// a newline removes the newline and all whitespace after it; any other escaped byte stands for
/// itself (so `\\` is a backslash and `\"` a quote).
pub(crate) fn unescape(body: &[u8]) -> Vec<u8> {
    if memchr::memchr(b'\\', body).is_none() {
        return body.to_vec();
    }
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        let byte = body[i];
        if byte != b'\\' {
            out.push(byte);
            i += 1;
            continue;
        }
        let Some(&next) = body.get(i + 1) else {
            // A lone trailing backslash cannot occur in a lexed literal; keep nothing for it.
            break;
        };
        i += 1;
        if next == b'\n' {
            i += 1;
            while i < body.len() && is_space(body[i]) {
                i += 1;
            }
            continue;
        }
        if let Some((value, advance)) = octal_escape(&body[i..]) {
            out.push(value);
            i += advance;
            continue;
        }
        out.push(match next {
            b'n' => b'\n',
            b't' => b'\t',
            b'r' => b'\r',
            b'f' => 0x0c,
            other => other,
        });
        i += 1;
    }
    out
}

/// The reference's octal rule: `0o`, `0oo`, or three digits led by 1-7; the value is taken
/// modulo 256 and a result of zero means "not an escape" (NUL cannot be written).
fn octal_escape(s: &[u8]) -> Option<(u8, usize)> {
    let digit = |k: usize| s.get(k).map_or(0, |b| b.wrapping_sub(b'0'));
    let (value, advance) = if s.first() == Some(&b'0') {
        if !is_octal(s.get(1)) {
            return None;
        }
        if is_octal(s.get(2)) {
            (digit(1) * 8 + digit(2), 3)
        } else {
            (digit(1), 2)
        }
    } else if is_octal(s.first()) && is_octal(s.get(1)) && is_octal(s.get(2)) {
        let wide = u32::from(digit(0)) * 64 + u32::from(digit(1)) * 8 + u32::from(digit(2));
        ((wide & 0xff) as u8, 3)
    } else {
        return None;
    };
    (value != 0).then_some((value, advance))
}

/// Write `value` as a KeyNote string literal (with quotes) that [`unescape`] turns back into
/// exactly `value`. Printable ASCII is kept; everything else becomes a three-digit octal escape,
/// except the bytes that octal cannot carry, for which a short escape exists.
pub(crate) fn escape(value: &[u8]) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for &byte in value {
        match byte {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\t' => out.push_str("\\t"),
            b'\r' => out.push_str("\\r"),
            0x0c => out.push_str("\\f"),
            0x20..=0x7e => out.push(char::from(byte)),
            0 => {
                // NUL cannot be expressed in KeyNote; callers never produce it (the lexer
                // refuses NUL bytes), so spell it as the reference would read "\0": a zero digit.
                out.push('0');
            }
            other => {
                out.push('\\');
                out.push(char::from(b'0' + (other >> 6)));
                out.push(char::from(b'0' + ((other >> 3) & 7)));
                out.push(char::from(b'0' + (other & 7)));
            }
        }
    }
    out.push('"');
    out
}

/// The seven fields of RFC 2704 §4.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FieldKind {
    Version,
    Comment,
    LocalConstants,
    Authorizer,
    Licensees,
    Conditions,
    Signature,
}

impl FieldKind {
    fn from_name(name: &[u8]) -> Option<Self> {
        let lower = name.to_ascii_lowercase();
        Some(match lower.as_slice() {
            b"keynote-version" => FieldKind::Version,
            b"comment" => FieldKind::Comment,
            b"local-constants" => FieldKind::LocalConstants,
            b"authorizer" => FieldKind::Authorizer,
            b"licensees" => FieldKind::Licensees,
            b"conditions" => FieldKind::Conditions,
            b"signature" => FieldKind::Signature,
            _ => return None,
        })
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            FieldKind::Version => "KeyNote-Version",
            FieldKind::Comment => "Comment",
            FieldKind::LocalConstants => "Local-Constants",
            FieldKind::Authorizer => "Authorizer",
            FieldKind::Licensees => "Licensees",
            FieldKind::Conditions => "Conditions",
            FieldKind::Signature => "Signature",
        }
    }
}

/// One field located in the assertion text: `name_offset` is where its label starts, the body
/// is `text[body_start..body_end]` (after the colon, continuation lines included).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawField {
    pub(crate) kind: FieldKind,
    pub(crate) name_offset: usize,
    pub(crate) body_start: usize,
    pub(crate) body_end: usize,
}

/// The fields of one assertion, and where its signed text begins.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    /// First non-whitespace byte: the start of the signed text (RFC 2704 §4.6.7).
    pub(crate) start: usize,
    pub(crate) fields: Vec<RawField>,
}

impl Layout {
    pub(crate) fn field(&self, kind: FieldKind) -> Option<RawField> {
        self.fields.iter().copied().find(|f| f.kind == kind)
    }
}

/// Split an assertion into fields (RFC 2704 §4.1 as the reference reads it): a field label
/// starts a line and ends with `:`; a line that starts with whitespace or `#` continues the
/// field; a line that starts with `#` where a label is expected is a comment; a blank line ends
/// the assertion.
pub(crate) fn split_fields(text: &[u8]) -> Result<Layout, ParseError> {
    if let Some(position) = memchr::memchr(0, text) {
        return Err(ParseError::new(
            position,
            Rule::Layout,
            "NUL bytes are not allowed in assertions",
        ));
    }
    let mut i = 0;
    while i < text.len() && is_space(text[i]) {
        i += 1;
    }
    if i == text.len() {
        return Err(ParseError::new(i, Rule::Layout, "the assertion is empty"));
    }
    if i > 0 && text[i - 1] != b'\n' {
        return Err(ParseError::new(
            i,
            Rule::Layout,
            "a field label must start at the beginning of a line",
        ));
    }
    let start = i;
    let mut fields: Vec<RawField> = Vec::new();
    let mut ended_by_blank_line = false;
    while i < text.len() {
        if text[i] == b'#' {
            while i < text.len() && text[i] != b'\n' {
                i += 1;
            }
            i += 1;
            continue;
        }
        if let Some(previous) = fields.last()
            && previous.kind == FieldKind::Signature
        {
            return Err(ParseError::new(
                i,
                Rule::Layout,
                "the Signature field must be the last field",
            ));
        }
        let name_offset = i;
        while i < text.len() && (text[i].is_ascii_alphanumeric() || text[i] == b'-') {
            i += 1;
        }
        if i == name_offset {
            return Err(ParseError::new(
                i,
                Rule::Layout,
                "expected a field label such as `Authorizer:`",
            ));
        }
        if text.get(i) != Some(&b':') {
            return Err(ParseError::new(
                i,
                Rule::Layout,
                format!(
                    "expected `:` after the field label `{}`",
                    String::from_utf8_lossy(&text[name_offset..i])
                ),
            ));
        }
        let Some(kind) = FieldKind::from_name(&text[name_offset..i]) else {
            return Err(ParseError::new(
                name_offset,
                Rule::Layout,
                format!(
                    "unknown field `{}` (expected KeyNote-Version, Comment, Local-Constants, \
                     Authorizer, Licensees, Conditions or Signature)",
                    String::from_utf8_lossy(&text[name_offset..i])
                ),
            ));
        };
        if fields.iter().any(|f| f.kind == kind) {
            return Err(ParseError::new(
                name_offset,
                Rule::Layout,
                format!("the {} field appears more than once", kind.name()),
            ));
        }
        if kind == FieldKind::Version && !fields.is_empty() {
            return Err(ParseError::new(
                name_offset,
                Rule::Layout,
                "the KeyNote-Version field must be the first field",
            ));
        }
        let body_start = i + 1;
        let mut k = body_start;
        let body_end;
        loop {
            if k >= text.len() {
                body_end = text.len();
                i = text.len();
                break;
            }
            match memchr::memchr(b'\n', &text[k..]) {
                Some(skip) => k += skip,
                None => {
                    body_end = text.len();
                    i = text.len();
                    break;
                }
            }
            match text.get(k + 1) {
                None => {
                    body_end = k;
                    i = text.len();
                    break;
                }
                Some(b'\n') => {
                    body_end = k;
                    ended_by_blank_line = true;
                    i = k + 1;
                    break;
                }
                Some(b'\r') if text.get(k + 2) == Some(&b'\n') => {
                    body_end = k;
                    ended_by_blank_line = true;
                    i = k + 1;
                    break;
                }
                Some(&next) if is_space(next) || next == b'#' => k += 1,
                Some(_) => {
                    body_end = k;
                    i = k + 1;
                    break;
                }
            }
        }
        fields.push(RawField {
            kind,
            name_offset,
            body_start,
            body_end,
        });
        if ended_by_blank_line {
            break;
        }
    }
    if ended_by_blank_line && let Some(extra) = text[i..].iter().position(|&b| !is_space(b)) {
        return Err(ParseError::new(
            i + extra,
            Rule::Layout,
            "blank lines are not allowed inside an assertion (a blank line separates assertions)",
        ));
    }
    if !fields.iter().any(|f| f.kind == FieldKind::Authorizer) {
        return Err(ParseError::new(
            start,
            Rule::Layout,
            "the mandatory Authorizer field is missing",
        ));
    }
    Ok(Layout { start, fields })
}

/// One assertion cut out of a file, with the line it starts on (0-based) for error reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileChunk<'a> {
    /// The assertion's bytes.
    pub text: &'a [u8],
    /// How many lines of the file precede `text`.
    pub line_base: u32,
}

/// Split a file into assertions at blank lines, as the reference's `kn_read_asserts` does: two
/// newlines in a row end an assertion; chunks with only whitespace are dropped.
pub fn split_assertions(file: &[u8]) -> Vec<FileChunk<'_>> {
    let mut chunks = Vec::new();
    let mut chunk_start = 0;
    let mut previous_newline = false;
    let mut has_content = false;
    let mut line = 0u32;
    let mut chunk_line = 0u32;
    for (index, &byte) in file.iter().enumerate() {
        if byte == b'\n' {
            line = line.saturating_add(1);
            if previous_newline {
                if has_content {
                    chunks.push(FileChunk {
                        text: &file[chunk_start..index],
                        line_base: chunk_line,
                    });
                }
                has_content = false;
                previous_newline = false;
                chunk_start = index + 1;
                chunk_line = line;
                continue;
            }
            previous_newline = true;
            continue;
        }
        previous_newline = false;
        if !is_space(byte) {
            has_content = true;
        }
    }
    if has_content {
        chunks.push(FileChunk {
            text: &file[chunk_start..],
            line_base: chunk_line,
        });
    }
    chunks
}

/// Check an assertion's size before any parsing work.
pub(crate) fn check_assertion_size(text: &[u8]) -> Result<(), crate::Error> {
    if text.len() > ASSERTION_BYTES_MAX {
        return Err(crate::Error::Limit {
            what: "assertion size in bytes",
            max: ASSERTION_BYTES_MAX,
        });
    }
    Ok(())
}

/// Format a key or signature the way the reference tool prints it: `indent` spaces, a quote,
/// the algorithm prefix and the encoded bits, wrapped with backslash-newline so that no line
/// (after the indentation) is longer than `width`, and a closing quote. Like the reference,
/// it never wraps when the prefix alone already reaches `width`.
pub fn print_key(prefix: &str, encoded: &str, indent: usize, width: usize) -> String {
    let mut out = String::with_capacity(encoded.len() * 2 + indent + 4);
    let pad = " ".repeat(indent);
    out.push_str(&pad);
    out.push('"');
    out.push_str(prefix);
    let mut column = prefix.len() + 2;
    for ch in encoded.chars() {
        if column == width {
            out.push_str("\\\n");
            out.push_str(&pad);
            column = 1;
        }
        out.push(ch);
        column += 1;
    }
    out.push_str("\"\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_follow_rfc_2704_examples() {
        let a = unescape(b"this string contains a newline\\n followed by one space.");
        let b = unescape(b"this string contains a newline\\n \\\n        followed by one space.");
        let c = unescape(
            b"this str\\\n           ing contains a \\\n             newline\\n followed by one space.",
        );
        let d = unescape(b"this string contains a newline\\012\\040followed by one space.");
        assert_eq!(
            a,
            b"this string contains a newline\n followed by one space."
        );
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(a, d);
    }

    #[test]
    fn octal_edge_cases_match_the_reference() {
        assert_eq!(unescape(b"\\0"), b"0");
        assert_eq!(unescape(b"\\00"), b"00");
        assert_eq!(unescape(b"\\000"), b"000");
        assert_eq!(unescape(b"\\101"), b"A");
        assert_eq!(unescape(b"\\377"), [0xff]);
        assert_eq!(unescape(b"\\12"), b"12");
        assert_eq!(unescape(b"\\400"), b"400");
        assert_eq!(unescape(b"\\a\\\\\\\""), b"a\\\"");
        assert_eq!(unescape(b"test\\\n\t     in\\g"), b"testing");
    }

    #[test]
    fn escape_round_trips_every_byte() {
        let all: Vec<u8> = (1..=255u8).collect();
        let literal = escape(&all);
        let body = &literal.as_bytes()[1..literal.len() - 1];
        assert_eq!(unescape(body), all);
    }

    #[test]
    fn file_splitting_uses_two_newlines() {
        let file = b"a: 1\nb: 2\n\n\n  \nc: 3\n\nd: 4";
        let chunks = split_assertions(file);
        let texts: Vec<&[u8]> = chunks.iter().map(|c| c.text).collect();
        // Like the reference, a chunk keeps the first newline of the pair that ends it.
        assert_eq!(
            texts,
            vec![&b"a: 1\nb: 2\n"[..], &b"\n  \nc: 3\n"[..], &b"d: 4"[..]]
        );
        assert_eq!(chunks[2].line_base, 7);
    }

    #[test]
    fn print_key_wraps_like_the_reference() {
        let out = print_key("", "abcdefghij", 2, 6);
        assert_eq!(out, "  \"abcd\\\n  efghi\\\n  j\"\n");
    }
}
