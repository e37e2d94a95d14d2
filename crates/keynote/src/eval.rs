//! Evaluation of Conditions programs (RFC 2704 §5.3.4) with the reference's runtime rules.
//!
//! A runtime error (division by zero, integer overflow, an invalid regular expression, a string
//! too long) makes the clause it occurs in false, as in the reference; evaluation continues with
//! the next clause. Running out of the work budget stops the whole assertion, which then
//! contributes `_MIN_TRUST`: monotonicity means a stopped evaluation can only lower trust.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use crate::ast::{ArithOp, Clause, ClauseValue, CmpOp, FloatExpr, IntExpr, StrExpr, Test};
use crate::limits::{REGEX_GROUPS_EXPOSED_MAX, STRING_BYTES_MAX};
use crate::regex::Regex;

/// Compiled patterns kept per thread; a credential's pattern is then compiled once, not at
/// every query that evaluates it.
const REGEX_CACHE_ENTRIES_MAX: usize = 256;
/// Longer patterns are compiled each time rather than kept.
const REGEX_CACHE_PATTERN_BYTES_MAX: usize = 1024;

thread_local! {
    static REGEX_CACHE: RefCell<HashMap<Vec<u8>, Rc<Regex>>> = RefCell::new(HashMap::new());
}

/// `pattern` compiled, from this thread's cache when it is there; `None` when it is invalid.
fn compiled(pattern: &[u8]) -> Option<Rc<Regex>> {
    if pattern.len() > REGEX_CACHE_PATTERN_BYTES_MAX {
        return Regex::new(pattern).ok().map(Rc::new);
    }
    REGEX_CACHE.with(|cache| {
        if let Some(regex) = cache.borrow().get(pattern) {
            return Some(Rc::clone(regex));
        }
        let regex = Rc::new(Regex::new(pattern).ok()?);
        let mut cache = cache.borrow_mut();
        if cache.len() >= REGEX_CACHE_ENTRIES_MAX {
            cache.clear();
        }
        cache.insert(pattern.to_vec(), Rc::clone(&regex));
        Some(regex)
    })
}

/// Why an evaluation step failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// A runtime error: the enclosing clause is false.
    Runtime,
    /// The work budget is spent: the whole assertion yields `_MIN_TRUST`.
    Budget,
}

type Eval<T> = Result<T, Fault>;

/// Everything a Conditions program can read.
pub(crate) struct Scope<'a> {
    pub(crate) attributes: &'a crate::FastMap<Vec<u8>, Vec<u8>>,
    pub(crate) local_constants: &'a [(String, Vec<u8>)],
    pub(crate) values: &'a [Vec<u8>],
    pub(crate) values_joined: &'a [u8],
    pub(crate) authorizers_joined: &'a [u8],
}

/// One evaluation: the scope, the regular-expression temporaries `_0.._n` and the budget.
pub(crate) struct Evaluator<'a> {
    scope: &'a Scope<'a>,
    temporaries: Vec<Vec<u8>>,
    budget: u64,
}

impl<'a> Evaluator<'a> {
    pub(crate) fn new(scope: &'a Scope<'a>, budget: u64) -> Self {
        Self {
            scope,
            temporaries: Vec::new(),
            budget,
        }
    }

    /// Work units not yet spent.
    pub(crate) fn budget_left(&self) -> u64 {
        self.budget
    }

    fn charge(&mut self, units: u64) -> Eval<()> {
        if units > self.budget {
            self.budget = 0;
            return Err(Fault::Budget);
        }
        self.budget -= units;
        Ok(())
    }

    fn max_index(&self) -> u8 {
        u8::try_from(self.scope.values.len().saturating_sub(1)).unwrap_or(u8::MAX)
    }

    /// The value of a whole program: the highest value among clauses whose test holds.
    pub(crate) fn program(&mut self, clauses: &[Clause]) -> Eval<u8> {
        let mut best = 0u8;
        for clause in clauses {
            let value = self.clause(clause);
            self.temporaries.clear();
            let value = match value {
                Ok(v) => v,
                Err(Fault::Runtime) => 0,
                Err(Fault::Budget) => return Err(Fault::Budget),
            };
            best = best.max(value);
        }
        Ok(best)
    }

    fn clause(&mut self, clause: &Clause) -> Eval<u8> {
        if !self.test(&clause.test)? {
            return Ok(0);
        }
        match &clause.value {
            ClauseValue::MaxTrust => Ok(self.max_index()),
            ClauseValue::Value(expr) => {
                let name = self.string(expr)?;
                Ok(self
                    .scope
                    .values
                    .iter()
                    .position(|v| v.as_slice() == name.as_ref())
                    .and_then(|i| u8::try_from(i).ok())
                    .unwrap_or(0))
            }
            ClauseValue::Block(inner) => self.program(inner),
        }
    }

    fn test(&mut self, test: &Test) -> Eval<bool> {
        self.charge(1)?;
        Ok(match test {
            Test::True => true,
            Test::False => false,
            Test::Not(inner) => !self.test(inner)?,
            Test::And(parts) => {
                for part in parts {
                    if !self.test(part)? {
                        return Ok(false);
                    }
                }
                true
            }
            Test::Or(parts) => {
                for part in parts {
                    if self.test(part)? {
                        return Ok(true);
                    }
                }
                false
            }
            Test::Int(a, op, b) => {
                let (a, b) = (self.int(a)?, self.int(b)?);
                compare(a.cmp(&b), *op)
            }
            Test::Float(a, op, b) => {
                let (a, b) = (self.float(a)?, self.float(b)?);
                match a.partial_cmp(&b) {
                    Some(ordering) => compare(ordering, *op),
                    None => false,
                }
            }
            Test::Str(a, op, b) => {
                let a = self.string(a)?;
                let b = self.string(b)?;
                compare(a.as_ref().cmp(b.as_ref()), *op)
            }
            Test::Regex(subject, pattern) => {
                let subject = self.string(subject)?;
                let pattern = self.string(pattern)?;
                self.regex(&subject, &pattern)?
            }
        })
    }

    fn regex(&mut self, subject: &[u8], pattern: &[u8]) -> Eval<bool> {
        let regex = compiled(pattern).ok_or(Fault::Runtime)?;
        self.charge(regex.cost_bound(subject))?;
        self.temporaries.clear();
        let Some(captures) = regex.captures(subject).map_err(|_| Fault::Runtime)? else {
            return Ok(false);
        };
        self.temporaries
            .push(regex.group_count().to_string().into_bytes());
        for group in captures.groups.iter().take(REGEX_GROUPS_EXPOSED_MAX) {
            // The reference stops at the first group that took no part in the match.
            let Some((start, end)) = group else { break };
            self.temporaries.push(subject[*start..*end].to_vec());
        }
        Ok(true)
    }

    fn lookup(&self, name: &[u8]) -> Cow<'a, [u8]> {
        let scope = self.scope;
        match name {
            b"_MIN_TRUST" => {
                return Cow::Borrowed(scope.values.first().map_or(&[][..], Vec::as_slice));
            }
            b"_MAX_TRUST" => {
                return Cow::Borrowed(scope.values.last().map_or(&[][..], Vec::as_slice));
            }
            b"_VALUES" => return Cow::Borrowed(scope.values_joined),
            b"_ACTION_AUTHORIZERS" => return Cow::Borrowed(scope.authorizers_joined),
            _ => {}
        }
        if let Some(index) = temporary_index(name)
            && let Some(value) = self.temporaries.get(index)
        {
            return Cow::Owned(value.clone());
        }
        if let Some((_, value)) = scope
            .local_constants
            .iter()
            .find(|(n, _)| n.as_bytes() == name)
        {
            return Cow::Borrowed(value);
        }
        Cow::Borrowed(scope.attributes.get(name).map_or(&[][..], Vec::as_slice))
    }

    pub(crate) fn string(&mut self, expr: &StrExpr) -> Eval<Cow<'a, [u8]>> {
        self.charge(1)?;
        match expr {
            StrExpr::Literal(value) => Ok(Cow::Owned(value.clone())),
            StrExpr::Attribute(name) => Ok(self.lookup(name.as_bytes())),
            StrExpr::Deref(inner) => {
                let name = self.string(inner)?.into_owned();
                Ok(self.lookup(&name))
            }
            StrExpr::Concat(parts) => {
                let mut out = Vec::new();
                for part in parts {
                    let piece = self.string(part)?;
                    if out.len() + piece.len() > STRING_BYTES_MAX {
                        return Err(Fault::Runtime);
                    }
                    self.charge(u64::try_from(piece.len() / 64).unwrap_or(u64::MAX))?;
                    out.extend_from_slice(&piece);
                }
                Ok(Cow::Owned(out))
            }
        }
    }

    fn int(&mut self, expr: &IntExpr) -> Eval<i32> {
        self.charge(1)?;
        match expr {
            IntExpr::Literal(value) => Ok(*value),
            IntExpr::Negate(inner) => self.int(inner)?.checked_neg().ok_or(Fault::Runtime),
            IntExpr::FromString(inner) => {
                let text = self.string(inner)?;
                string_to_int(&text)
            }
            IntExpr::Chain(head, rest) => {
                let mut acc = self.int(head)?;
                for (op, operand) in rest {
                    let value = self.int(operand)?;
                    acc = int_op(acc, *op, value)?;
                }
                Ok(acc)
            }
        }
    }

    fn float(&mut self, expr: &FloatExpr) -> Eval<f64> {
        self.charge(1)?;
        match expr {
            FloatExpr::Literal(value) => Ok(*value),
            FloatExpr::Negate(inner) => Ok(-self.float(inner)?),
            FloatExpr::FromString(inner) => {
                let text = self.string(inner)?;
                Ok(string_to_float(&text))
            }
            FloatExpr::Chain(head, rest) => {
                let mut acc = self.float(head)?;
                for (op, operand) in rest {
                    let value = self.float(operand)?;
                    acc = match op {
                        ArithOp::Add => acc + value,
                        ArithOp::Sub => acc - value,
                        ArithOp::Mul => acc * value,
                        ArithOp::Div => {
                            if value == 0.0 {
                                return Err(Fault::Runtime);
                            }
                            acc / value
                        }
                        ArithOp::Pow => acc.powf(value),
                        // The parser refuses `%` on floats.
                        ArithOp::Mod => return Err(Fault::Runtime),
                    };
                }
                Ok(acc)
            }
        }
    }
}

fn compare(ordering: core::cmp::Ordering, op: CmpOp) -> bool {
    use core::cmp::Ordering::{Equal, Greater, Less};
    match op {
        CmpOp::Eq => ordering == Equal,
        CmpOp::Ne => ordering != Equal,
        CmpOp::Lt => ordering == Less,
        CmpOp::Gt => ordering == Greater,
        CmpOp::Le => ordering != Greater,
        CmpOp::Ge => ordering != Less,
    }
}

/// Integer arithmetic: 32-bit; overflow and division by zero are runtime errors (the reference
/// wraps or traps, which no credential should rely on); `x ^ y` with `y < 0` is 0 as in the
/// reference.
fn int_op(a: i32, op: ArithOp, b: i32) -> Eval<i32> {
    let result = match op {
        ArithOp::Add => a.checked_add(b),
        ArithOp::Sub => a.checked_sub(b),
        ArithOp::Mul => a.checked_mul(b),
        ArithOp::Div => a.checked_div(b),
        ArithOp::Mod => a.checked_rem(b),
        ArithOp::Pow => {
            if b < 0 {
                Some(0)
            } else {
                a.checked_pow(b.unsigned_abs())
            }
        }
    };
    result.ok_or(Fault::Runtime)
}

/// The reference's test for a numeric string: digits with at most one `.`, nothing else (no
/// sign, no exponent); the empty string passes and converts to zero.
fn is_float_string(text: &[u8]) -> bool {
    text.iter().all(|b| b.is_ascii_digit() || *b == b'.')
        && text.iter().filter(|b| **b == b'.').count() <= 1
}

fn parse_float(text: &[u8]) -> f64 {
    core::str::from_utf8(text)
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(0.0)
}

/// `@x`: rounded down; 0 unless `x` is a numeric string; a value outside 32 bits is a runtime
/// error.
fn string_to_int(text: &[u8]) -> Eval<i32> {
    if !is_float_string(text) {
        return Ok(0);
    }
    let value = parse_float(text).floor();
    if (-2_147_483_648.0..=2_147_483_647.0).contains(&value) {
        Ok(value as i32)
    } else {
        Err(Fault::Runtime)
    }
}

/// `&x`: 0 unless `x` is a numeric string.
fn string_to_float(text: &[u8]) -> f64 {
    if is_float_string(text) {
        parse_float(text)
    } else {
        0.0
    }
}

/// `_N` names the reference sets: `_0`, `_1`, ... with no leading zeros.
fn temporary_index(name: &[u8]) -> Option<usize> {
    let digits = name.strip_prefix(b"_")?;
    if digits.is_empty()
        || !digits.iter().all(u8::is_ascii_digit)
        || (digits.len() > 1 && digits[0] == b'0')
    {
        return None;
    }
    core::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compiled_pattern_cache_stays_bounded() {
        for n in 0..REGEX_CACHE_ENTRIES_MAX * 2 {
            let pattern = format!("^a{n}$");
            assert!(compiled(pattern.as_bytes()).is_some());
            REGEX_CACHE.with(|cache| assert!(cache.borrow().len() <= REGEX_CACHE_ENTRIES_MAX));
        }
        // Long patterns compile but are not kept; invalid ones are not kept either.
        let before = REGEX_CACHE.with(|cache| cache.borrow().len());
        let long = "a".repeat(REGEX_CACHE_PATTERN_BYTES_MAX + 1);
        assert!(compiled(long.as_bytes()).is_some());
        assert!(compiled(b"(").is_none());
        assert_eq!(REGEX_CACHE.with(|cache| cache.borrow().len()), before);
    }

    #[test]
    fn conversions_follow_the_reference() {
        assert_eq!(string_to_int(b"3.7"), Ok(3));
        assert_eq!(string_to_int(b"-5"), Ok(0));
        assert_eq!(string_to_int(b""), Ok(0));
        assert_eq!(string_to_int(b"1.2.3"), Ok(0));
        assert_eq!(string_to_int(b"bar"), Ok(0));
        assert_eq!(string_to_int(b"99999999999"), Err(Fault::Runtime));
        assert_eq!(string_to_float(b"0.55"), 0.55);
        assert_eq!(string_to_float(b"1e5"), 0.0);
        assert_eq!(string_to_float(b"."), 0.0);
    }

    #[test]
    fn integer_rules() {
        assert_eq!(int_op(2, ArithOp::Pow, -1), Ok(0));
        assert_eq!(int_op(2, ArithOp::Pow, 10), Ok(1024));
        assert_eq!(int_op(1, ArithOp::Div, 0), Err(Fault::Runtime));
        assert_eq!(int_op(1, ArithOp::Mod, 0), Err(Fault::Runtime));
        assert_eq!(int_op(i32::MIN, ArithOp::Div, -1), Err(Fault::Runtime));
        assert_eq!(int_op(i32::MAX, ArithOp::Add, 1), Err(Fault::Runtime));
        assert_eq!(int_op(-7, ArithOp::Div, 2), Ok(-3));
        assert_eq!(int_op(-7, ArithOp::Mod, 2), Ok(-1));
    }

    #[test]
    fn temporaries_are_canonical_names() {
        assert_eq!(temporary_index(b"_0"), Some(0));
        assert_eq!(temporary_index(b"_12"), Some(12));
        assert_eq!(temporary_index(b"_01"), None);
        assert_eq!(temporary_index(b"_"), None);
        assert_eq!(temporary_index(b"_x"), None);
    }
}
