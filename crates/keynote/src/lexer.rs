//! Tokens of the KeyNote field languages. One lexer serves every field; the mode says which
//! tokens exist in that field, as the reference's lexer start states do.

use crate::error::{ParseError, Rule};
use crate::text::{is_space, unescape};

/// Which field is being lexed; decides which characters start tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Conditions: the full expression language.
    Conditions,
    /// Licensees: principals, `&&`, `||`, `k-of(`, `,`, parentheses, `.` and `$`.
    Licensees,
    /// Authorizer and Signature: a string expression.
    Principal,
    /// Local-Constants: `name = "value"` pairs.
    LocalConstants,
    /// KeyNote-Version: a number or a string.
    Version,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    LParen,
    RParen,
    LBrace,
    RBrace,
    And,
    Or,
    Not,
    Arrow,
    Semicolon,
    Comma,
    Assign,
    Match,
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
    Plus,
    Minus,
    Star,
    Slash,
    Percent,
    Caret,
    Dot,
    Dollar,
    At,
    Amp,
    True,
    False,
    /// `k-of` in Licensees, with k.
    KOf(u32),
    Int(i32),
    Float(f64),
    /// A number in the KeyNote-Version field, kept as text.
    VersionNumber(Vec<u8>),
    Str(Vec<u8>),
    Ident(String),
}

impl Tok {
    /// How the token reads in an error message.
    pub(crate) fn describe(&self) -> String {
        let fixed = match self {
            Tok::LParen => "`(`",
            Tok::RParen => "`)`",
            Tok::LBrace => "`{`",
            Tok::RBrace => "`}`",
            Tok::And => "`&&`",
            Tok::Or => "`||`",
            Tok::Not => "`!`",
            Tok::Arrow => "`->`",
            Tok::Semicolon => "`;`",
            Tok::Comma => "`,`",
            Tok::Assign => "`=`",
            Tok::Match => "`~=`",
            Tok::Eq => "`==`",
            Tok::Ne => "`!=`",
            Tok::Lt => "`<`",
            Tok::Gt => "`>`",
            Tok::Le => "`<=`",
            Tok::Ge => "`>=`",
            Tok::Plus => "`+`",
            Tok::Minus => "`-`",
            Tok::Star => "`*`",
            Tok::Slash => "`/`",
            Tok::Percent => "`%`",
            Tok::Caret => "`^`",
            Tok::Dot => "`.`",
            Tok::Dollar => "`$`",
            Tok::At => "`@`",
            Tok::Amp => "`&`",
            Tok::True => "`true`",
            Tok::False => "`false`",
            Tok::KOf(k) => return format!("`{k}-of`"),
            Tok::Int(v) => return format!("integer {v}"),
            Tok::Float(v) => return format!("float {v}"),
            Tok::VersionNumber(v) => return format!("number {}", String::from_utf8_lossy(v)),
            Tok::Str(_) => "a string literal",
            Tok::Ident(name) => return format!("attribute name `{name}`"),
        };
        fixed.to_string()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub(crate) tok: Tok,
    pub(crate) offset: usize,
}

/// Lex `text[start..end]` in `mode`. Offsets in tokens and errors are positions in `text`.
pub(crate) fn lex(
    text: &[u8],
    start: usize,
    end: usize,
    mode: Mode,
) -> Result<Vec<Token>, ParseError> {
    // About one token per eight bytes of field text (names, quoted strings, operators).
    let mut tokens = Vec::with_capacity(end.saturating_sub(start) / 8 + 4);
    let mut i = start;
    let rule = match mode {
        Mode::Conditions => Rule::Conditions,
        Mode::Licensees => Rule::Licensees,
        Mode::Principal => Rule::Authorizer,
        Mode::LocalConstants => Rule::LocalConstants,
        Mode::Version => Rule::Version,
    };
    let conditions = mode == Mode::Conditions;
    let licensees = mode == Mode::Licensees;
    let expressions = conditions || licensees || mode == Mode::Principal;
    while i < end {
        let byte = text[i];
        let next = if i + 1 < end { Some(text[i + 1]) } else { None };
        let offset = i;
        if is_space(byte) {
            i += 1;
            continue;
        }
        if byte == b'#' {
            while i < end && text[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        if byte == b'"' {
            let (value, after) = lex_string(text, i, end)?;
            tokens.push(Token {
                tok: Tok::Str(value),
                offset,
            });
            i = after;
            continue;
        }
        let two = |a: u8, b: u8| byte == a && next == Some(b);
        let (tok, width) = if expressions && byte == b'(' {
            (Tok::LParen, 1)
        } else if expressions && byte == b')' {
            (Tok::RParen, 1)
        } else if (conditions || licensees) && two(b'&', b'&') {
            (Tok::And, 2)
        } else if (conditions || licensees) && two(b'|', b'|') {
            (Tok::Or, 2)
        } else if expressions && byte == b'.' && !next.is_some_and(|b| b.is_ascii_digit()) {
            (Tok::Dot, 1)
        } else if expressions && byte == b'$' {
            (Tok::Dollar, 1)
        } else if licensees && byte == b',' {
            (Tok::Comma, 1)
        } else if mode == Mode::LocalConstants && byte == b'=' {
            (Tok::Assign, 1)
        } else if conditions {
            match byte {
                b'-' if next == Some(b'>') => (Tok::Arrow, 2),
                b'~' if next == Some(b'=') => (Tok::Match, 2),
                b'=' if next == Some(b'=') => (Tok::Eq, 2),
                b'!' if next == Some(b'=') => (Tok::Ne, 2),
                b'<' if next == Some(b'=') => (Tok::Le, 2),
                b'>' if next == Some(b'=') => (Tok::Ge, 2),
                b'{' => (Tok::LBrace, 1),
                b'}' => (Tok::RBrace, 1),
                b';' => (Tok::Semicolon, 1),
                b'!' => (Tok::Not, 1),
                b'<' => (Tok::Lt, 1),
                b'>' => (Tok::Gt, 1),
                b'+' => (Tok::Plus, 1),
                b'-' => (Tok::Minus, 1),
                b'*' => (Tok::Star, 1),
                b'/' => (Tok::Slash, 1),
                b'%' => (Tok::Percent, 1),
                b'^' => (Tok::Caret, 1),
                b'@' => (Tok::At, 1),
                b'&' => (Tok::Amp, 1),
                b'0'..=b'9' => {
                    let (tok, after) = lex_number(text, i, end)?;
                    (tok, after - i)
                }
                b'.' => {
                    return Err(ParseError::new(
                        offset,
                        rule,
                        "a number must start with a digit",
                    ));
                }
                _ => ident_or_error(text, i, end, mode, rule)?,
            }
        } else if licensees && byte.is_ascii_digit() {
            let mut k = i;
            while k < end && text[k].is_ascii_digit() {
                k += 1;
            }
            // `-of` in any case, as the reference's lexer (built with `lex -i`) reads it.
            if byte != b'0'
                && k + 3 <= end
                && text
                    .get(k..k + 3)
                    .is_some_and(|of| of.eq_ignore_ascii_case(b"-of"))
            {
                let digits = &text[i..k];
                let value = parse_decimal_u32(digits).ok_or_else(|| {
                    ParseError::new(offset, Rule::Licensees, "threshold k is too large")
                })?;
                (Tok::KOf(value), k + 3 - i)
            } else {
                return Err(ParseError::new(
                    offset,
                    Rule::Licensees,
                    "expected a principal, `(` or a threshold `K-of(` with K from 1 up",
                ));
            }
        } else if mode == Mode::Version && byte.is_ascii_digit() {
            let mut k = i;
            while k < end && text[k].is_ascii_digit() {
                k += 1;
            }
            (Tok::VersionNumber(text[i..k].to_vec()), k - i)
        } else {
            ident_or_error(text, i, end, mode, rule)?
        };
        tokens.push(Token { tok, offset });
        i += width;
    }
    Ok(tokens)
}

fn parse_decimal_u32(digits: &[u8]) -> Option<u32> {
    let mut value: u32 = 0;
    for &d in digits {
        value = value.checked_mul(10)?.checked_add(u32::from(d - b'0'))?;
    }
    Some(value)
}

fn ident_or_error(
    text: &[u8],
    i: usize,
    end: usize,
    mode: Mode,
    rule: Rule,
) -> Result<(Tok, usize), ParseError> {
    let byte = text[i];
    let identifiers = mode != Mode::Version;
    if identifiers && (byte.is_ascii_alphabetic() || byte == b'_') {
        let mut k = i + 1;
        while k < end && (text[k].is_ascii_alphanumeric() || text[k] == b'_') {
            k += 1;
        }
        let name = String::from_utf8_lossy(&text[i..k]).into_owned();
        // Keywords in any case, as the reference's lexer (built with `lex -i`) reads them;
        // attribute names keep their case.
        let tok = match mode {
            Mode::Conditions if name.eq_ignore_ascii_case("true") => Tok::True,
            Mode::Conditions if name.eq_ignore_ascii_case("false") => Tok::False,
            _ => Tok::Ident(name),
        };
        return Ok((tok, k - i));
    }
    let shown = if byte.is_ascii_graphic() {
        format!("`{}`", char::from(byte))
    } else {
        format!("byte 0x{byte:02x}")
    };
    Err(ParseError::new(
        i,
        if rule == Rule::Conditions || rule == Rule::Licensees {
            rule
        } else {
            Rule::Token
        },
        format!("unexpected {shown}"),
    ))
}

fn lex_number(text: &[u8], i: usize, end: usize) -> Result<(Tok, usize), ParseError> {
    let mut k = i;
    while k < end && text[k].is_ascii_digit() {
        k += 1;
    }
    if k + 1 < end && text[k] == b'.' && text[k + 1].is_ascii_digit() {
        let mut m = k + 1;
        while m < end && text[m].is_ascii_digit() {
            m += 1;
        }
        let literal = String::from_utf8_lossy(&text[i..m]);
        let value: f64 = literal
            .parse()
            .map_err(|_| ParseError::new(i, Rule::Conditions, "float literal out of range"))?;
        return Ok((Tok::Float(value), m));
    }
    let literal = String::from_utf8_lossy(&text[i..k]);
    let value: i32 = literal.parse().map_err(|_| {
        ParseError::new(
            i,
            Rule::Conditions,
            "integer literal does not fit in 32 bits (RFC 2704 §4.4: -2147483648 to 2147483647)",
        )
    })?;
    Ok((Tok::Int(value), k))
}

/// Lex a string literal starting at the quote at `start`; returns its value and the offset
/// after the closing quote.
pub(crate) fn lex_string(
    text: &[u8],
    start: usize,
    end: usize,
) -> Result<(Vec<u8>, usize), ParseError> {
    let mut k = start + 1;
    while k < end {
        // Jump to the next byte that matters (keys and signatures are long plain runs).
        match memchr::memchr3(b'"', b'\\', b'\n', &text[k..end]) {
            Some(skip) => k += skip,
            None => break,
        }
        match text[k] {
            b'"' => return Ok((unescape(&text[start + 1..k]), k + 1)),
            b'\\' => {
                if k + 1 >= end {
                    break;
                }
                k += 2;
            }
            b'\n' => {
                return Err(ParseError::new(
                    k,
                    Rule::StringLiteral,
                    "unescaped newline inside a string literal (end the line with `\\` to \
                     continue it)",
                ));
            }
            _ => k += 1,
        }
    }
    Err(ParseError::new(
        start,
        Rule::StringLiteral,
        "string literal is not closed with `\"`",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str, mode: Mode) -> Vec<Tok> {
        lex(src.as_bytes(), 0, src.len(), mode)
            .unwrap()
            .into_iter()
            .map(|t| t.tok)
            .collect()
    }

    #[test]
    fn longest_match_operators() {
        assert_eq!(
            kinds("a->b && c || !d != e <= 1.5 . 2", Mode::Conditions),
            vec![
                Tok::Ident("a".into()),
                Tok::Arrow,
                Tok::Ident("b".into()),
                Tok::And,
                Tok::Ident("c".into()),
                Tok::Or,
                Tok::Not,
                Tok::Ident("d".into()),
                Tok::Ne,
                Tok::Ident("e".into()),
                Tok::Le,
                Tok::Float(1.5),
                Tok::Dot,
                Tok::Int(2),
            ]
        );
    }

    #[test]
    fn threshold_only_in_licensees() {
        assert_eq!(
            kinds("2-of(\"a\", b)", Mode::Licensees),
            vec![
                Tok::KOf(2),
                Tok::LParen,
                Tok::Str(b"a".to_vec()),
                Tok::Comma,
                Tok::Ident("b".into()),
                Tok::RParen,
            ]
        );
        assert!(lex(b"0-of(a)", 0, 7, Mode::Licensees).is_err());
    }

    #[test]
    fn comments_and_strings() {
        assert_eq!(
            kinds("\"a#b\" # comment \"x\n c", Mode::Conditions),
            vec![Tok::Str(b"a#b".to_vec()), Tok::Ident("c".into())]
        );
        let err = lex(b"\"abc\ndef\"", 0, 9, Mode::Conditions).unwrap_err();
        assert_eq!(err.rule, Rule::StringLiteral);
        assert_eq!(err.offset, 4);
    }
}
