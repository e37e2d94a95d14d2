//! The typed syntax trees of the Conditions and Licensees languages, and their printing.
//!
//! Chains of one precedence level are kept n-ary (`a + b - c` is one node), so that a long
//! chain from the network does not become a deep tree; printing puts parentheses around every
//! compound operand, so that printing and parsing again gives back the same tree.

use core::fmt;

use crate::text::escape;

/// A string expression (RFC 2704 §4.3.2).
#[derive(Debug, Clone, PartialEq)]
pub enum StrExpr {
    /// A quoted literal, already unescaped.
    Literal(Vec<u8>),
    /// An attribute name used directly: Local-Constants, then the action environment.
    Attribute(String),
    /// `$x`: the attribute whose name is the value of `x`.
    Deref(Box<StrExpr>),
    /// `a . b . c`: concatenation (at least two parts).
    Concat(Vec<StrExpr>),
}

/// An arithmetic operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%` (integers only)
    Mod,
    /// `^` exponentiation, left-associative like the reference.
    Pow,
}

impl ArithOp {
    pub(crate) fn symbol(self) -> &'static str {
        match self {
            ArithOp::Add => "+",
            ArithOp::Sub => "-",
            ArithOp::Mul => "*",
            ArithOp::Div => "/",
            ArithOp::Mod => "%",
            ArithOp::Pow => "^",
        }
    }

    /// Precedence level: 1 for `+ -`, 2 for `* / %`, 3 for `^`.
    pub fn level(self) -> u8 {
        match self {
            ArithOp::Add | ArithOp::Sub => 1,
            ArithOp::Mul | ArithOp::Div | ArithOp::Mod => 2,
            ArithOp::Pow => 3,
        }
    }
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `>`
    Gt,
    /// `<=`
    Le,
    /// `>=`
    Ge,
}

impl CmpOp {
    pub(crate) fn symbol(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Gt => ">",
            CmpOp::Le => "<=",
            CmpOp::Ge => ">=",
        }
    }
}

/// An integer expression (32-bit, as RFC 2704 §4.4 specifies).
#[derive(Debug, Clone, PartialEq)]
pub enum IntExpr {
    /// A decimal literal.
    Literal(i32),
    /// Unary minus.
    Negate(Box<IntExpr>),
    /// `@x`: the string converted to an integer (rounded down; 0 if not a number).
    FromString(Box<StrExpr>),
    /// A left-to-right chain of operators of one precedence level.
    Chain(Box<IntExpr>, Vec<(ArithOp, IntExpr)>),
}

/// A floating-point expression.
#[derive(Debug, Clone, PartialEq)]
pub enum FloatExpr {
    /// A `digits.digits` literal.
    Literal(f64),
    /// Unary minus.
    Negate(Box<FloatExpr>),
    /// `&x`: the string converted to a float (0 if not a number).
    FromString(Box<StrExpr>),
    /// A left-to-right chain of operators of one precedence level (no `%`).
    Chain(Box<FloatExpr>, Vec<(ArithOp, FloatExpr)>),
}

/// A clause test (RFC 2704 §4.6.5 `<RelExpr>`).
#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    /// `true`
    True,
    /// `false`
    False,
    /// `!t`
    Not(Box<Test>),
    /// `a && b && ...` (at least two)
    And(Vec<Test>),
    /// `a || b || ...` (at least two)
    Or(Vec<Test>),
    /// Integer comparison.
    Int(IntExpr, CmpOp, IntExpr),
    /// Float comparison (`<`, `>`, `<=`, `>=` only).
    Float(FloatExpr, CmpOp, FloatExpr),
    /// String comparison (byte-wise, case-sensitive).
    Str(StrExpr, CmpOp, StrExpr),
    /// `s ~= re`: POSIX extended regular expression match.
    Regex(StrExpr, StrExpr),
}

/// What a clause yields when its test holds.
#[derive(Debug, Clone, PartialEq)]
pub enum ClauseValue {
    /// No `->`: the clause yields `_MAX_TRUST`.
    MaxTrust,
    /// `-> value`: a compliance value name (unknown names count as `_MIN_TRUST`).
    Value(StrExpr),
    /// `-> { ... }`: a nested program, evaluated only when the test holds.
    Block(Vec<Clause>),
}

/// One clause of a Conditions program.
#[derive(Debug, Clone, PartialEq)]
pub struct Clause {
    /// The test.
    pub test: Test,
    /// The value when the test holds.
    pub value: ClauseValue,
}

/// A Licensees expression (RFC 2704 §4.6.4).
#[derive(Debug, Clone, PartialEq)]
pub enum LicenseeExpr {
    /// A principal, given as a string expression.
    Principal(StrExpr),
    /// `a && b && ...`: the lowest value.
    And(Vec<LicenseeExpr>),
    /// `a || b || ...`: the highest value.
    Or(Vec<LicenseeExpr>),
    /// `k-of(p1, p2, ...)`: the k-th highest value.
    Threshold(u32, Vec<StrExpr>),
}

fn needs_parens_str(expr: &StrExpr) -> bool {
    matches!(expr, StrExpr::Concat(_))
}

impl fmt::Display for StrExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StrExpr::Literal(value) => f.write_str(&escape(value)),
            StrExpr::Attribute(name) => f.write_str(name),
            StrExpr::Deref(inner) => {
                if needs_parens_str(inner) {
                    write!(f, "$({inner})")
                } else {
                    write!(f, "${inner}")
                }
            }
            StrExpr::Concat(parts) => {
                for (index, part) in parts.iter().enumerate() {
                    if index > 0 {
                        f.write_str(" . ")?;
                    }
                    if needs_parens_str(part) {
                        write!(f, "({part})")?;
                    } else {
                        write!(f, "{part}")?;
                    }
                }
                Ok(())
            }
        }
    }
}

fn write_conversion(f: &mut fmt::Formatter<'_>, sigil: char, inner: &StrExpr) -> fmt::Result {
    if needs_parens_str(inner) {
        write!(f, "{sigil}({inner})")
    } else {
        write!(f, "{sigil}{inner}")
    }
}

impl fmt::Display for IntExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let operand = |f: &mut fmt::Formatter<'_>, e: &IntExpr| match e {
            IntExpr::Chain(..) | IntExpr::Negate(_) => write!(f, "({e})"),
            _ => write!(f, "{e}"),
        };
        match self {
            IntExpr::Literal(value) if *value < 0 => {
                // A negative literal only arises from a caller's tree; print it as negation.
                write!(f, "-{}", i64::from(*value).unsigned_abs())
            }
            IntExpr::Literal(value) => write!(f, "{value}"),
            IntExpr::Negate(inner) => {
                f.write_str("-")?;
                operand(f, inner)
            }
            IntExpr::FromString(inner) => write_conversion(f, '@', inner),
            IntExpr::Chain(head, rest) => {
                operand(f, head)?;
                for (op, e) in rest {
                    write!(f, " {} ", op.symbol())?;
                    operand(f, e)?;
                }
                Ok(())
            }
        }
    }
}

/// Print a float so that it lexes back as a float literal (`digits.digits`) of equal value.
pub(crate) fn float_literal(value: f64) -> String {
    let text = format!("{value}");
    if text.contains('.') {
        text
    } else {
        format!("{text}.0")
    }
}

impl fmt::Display for FloatExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let operand = |f: &mut fmt::Formatter<'_>, e: &FloatExpr| match e {
            FloatExpr::Chain(..) | FloatExpr::Negate(_) => write!(f, "({e})"),
            _ => write!(f, "{e}"),
        };
        match self {
            FloatExpr::Literal(value) if value.is_sign_negative() => {
                write!(f, "-{}", float_literal(-value))
            }
            FloatExpr::Literal(value) => f.write_str(&float_literal(*value)),
            FloatExpr::Negate(inner) => {
                f.write_str("-")?;
                operand(f, inner)
            }
            FloatExpr::FromString(inner) => write_conversion(f, '&', inner),
            FloatExpr::Chain(head, rest) => {
                operand(f, head)?;
                for (op, e) in rest {
                    write!(f, " {} ", op.symbol())?;
                    operand(f, e)?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for Test {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let junction = |f: &mut fmt::Formatter<'_>, parts: &[Test], op: &str| {
            for (index, part) in parts.iter().enumerate() {
                if index > 0 {
                    write!(f, " {op} ")?;
                }
                match part {
                    Test::And(_) | Test::Or(_) => write!(f, "({part})")?,
                    _ => write!(f, "{part}")?,
                }
            }
            Ok(())
        };
        match self {
            Test::True => f.write_str("true"),
            Test::False => f.write_str("false"),
            Test::Not(inner) => match **inner {
                Test::And(_) | Test::Or(_) => write!(f, "!({inner})"),
                _ => write!(f, "!{inner}"),
            },
            Test::And(parts) => junction(f, parts, "&&"),
            Test::Or(parts) => junction(f, parts, "||"),
            Test::Int(a, op, b) => write!(f, "{a} {} {b}", op.symbol()),
            Test::Float(a, op, b) => write!(f, "{a} {} {b}", op.symbol()),
            Test::Str(a, op, b) => write!(f, "{a} {} {b}", op.symbol()),
            Test::Regex(a, b) => write!(f, "{a} ~= {b}"),
        }
    }
}

/// The source text of a Conditions program, one clause per line, indented so it can follow
/// `Conditions:` as continuation lines.
pub fn program_to_string(clauses: &[Clause]) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write_program(&mut out, clauses, 4);
    out
}

/// Print a clause list, one clause per line, each line indented by `indent` spaces.
pub(crate) fn write_program(
    f: &mut impl fmt::Write,
    clauses: &[Clause],
    indent: usize,
) -> fmt::Result {
    for clause in clauses {
        f.write_str(&" ".repeat(indent))?;
        write!(f, "{}", clause.test)?;
        match &clause.value {
            ClauseValue::MaxTrust => {}
            ClauseValue::Value(value) => write!(f, " -> {value}")?,
            ClauseValue::Block(inner) => {
                f.write_str(" -> {\n")?;
                write_program(f, inner, indent + 4)?;
                f.write_str(&" ".repeat(indent + 2))?;
                f.write_str("}")?;
            }
        }
        f.write_str(";\n")?;
    }
    Ok(())
}

impl fmt::Display for LicenseeExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let junction = |f: &mut fmt::Formatter<'_>, parts: &[LicenseeExpr], op: &str| {
            for (index, part) in parts.iter().enumerate() {
                if index > 0 {
                    write!(f, " {op} ")?;
                }
                match part {
                    LicenseeExpr::And(_) | LicenseeExpr::Or(_) => write!(f, "({part})")?,
                    _ => write!(f, "{part}")?,
                }
            }
            Ok(())
        };
        match self {
            LicenseeExpr::Principal(p) => write!(f, "{p}"),
            LicenseeExpr::And(parts) => junction(f, parts, "&&"),
            LicenseeExpr::Or(parts) => junction(f, parts, "||"),
            LicenseeExpr::Threshold(k, list) => {
                write!(f, "{k}-of(")?;
                for (index, p) in list.iter().enumerate() {
                    if index > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{p}")?;
                }
                f.write_str(")")
            }
        }
    }
}
