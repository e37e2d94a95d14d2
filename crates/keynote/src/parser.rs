//! Parsers for the Conditions, Licensees, Local-Constants, KeyNote-Version, Authorizer and
//! Signature fields.
//!
//! Conditions are parsed in two steps: an untyped precedence-climbing parse (the reference's
//! yacc precedences: `||` < `&&` < `!` < comparisons < `+ - .` < `* / %` < `^` < unary `- $ @ &`),
//! then a typing pass that turns it into [`Test`], [`IntExpr`], [`FloatExpr`] and [`StrExpr`]
//! nodes and refuses mixed types. Recursion is bounded by
//! [`NESTING_DEPTH_MAX`](crate::limits::NESTING_DEPTH_MAX) levels of parentheses, unary
//! operators and blocks.

use crate::ast::{
    ArithOp, Clause, ClauseValue, CmpOp, FloatExpr, IntExpr, LicenseeExpr, StrExpr, Test,
};
use crate::error::{ParseError, Rule};
use crate::lexer::{Tok, Token};
use crate::limits::NESTING_DEPTH_MAX;

struct Cursor<'t> {
    tokens: &'t [Token],
    position: usize,
    /// Offset reported for errors at the end of the field.
    end_offset: usize,
    depth: usize,
    rule: Rule,
}

impl<'t> Cursor<'t> {
    fn new(tokens: &'t [Token], end_offset: usize, rule: Rule) -> Self {
        Self {
            tokens,
            position: 0,
            end_offset,
            depth: 0,
            rule,
        }
    }

    fn peek(&self) -> Option<&'t Tok> {
        self.tokens.get(self.position).map(|t| &t.tok)
    }

    fn offset(&self) -> usize {
        self.tokens
            .get(self.position)
            .map_or(self.end_offset, |t| t.offset)
    }

    fn bump(&mut self) -> Option<&'t Token> {
        let token = self.tokens.get(self.position);
        if token.is_some() {
            self.position += 1;
        }
        token
    }

    fn eat(&mut self, tok: &Tok) -> bool {
        if self.peek() == Some(tok) {
            self.position += 1;
            true
        } else {
            false
        }
    }

    fn error(&self, message: impl Into<String>) -> ParseError {
        ParseError::new(self.offset(), self.rule, message)
    }

    fn found(&self) -> String {
        self.peek()
            .map_or_else(|| "the end of the field".to_string(), Tok::describe)
    }

    fn expect(&mut self, tok: &Tok, what: &str) -> Result<(), ParseError> {
        if self.eat(tok) {
            Ok(())
        } else {
            Err(self.error(format!("expected {what}, found {}", self.found())))
        }
    }

    fn enter(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > NESTING_DEPTH_MAX {
            return Err(ParseError::new(
                self.offset(),
                Rule::Nesting,
                format!("nesting deeper than {NESTING_DEPTH_MAX} levels"),
            ));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }
}

// ---------------------------------------------------------------------------------------------
// Untyped expression tree.

#[derive(Debug)]
enum Node {
    Int(i32),
    Float(f64),
    Str(Vec<u8>),
    Ident(String),
    True,
    False,
    Paren(Box<Node>),
    Negate(Box<Node>),
    Deref(Box<Node>),
    ToInt(Box<Node>),
    ToFloat(Box<Node>),
    Not(Box<Node>),
    And(Vec<Located>),
    Or(Vec<Located>),
    Compare(Box<Located>, Compare, Box<Located>),
    /// A chain of one precedence level; `Dot` appears only at the additive level.
    Chain(Box<Located>, Vec<(ChainOp, Located)>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compare {
    Cmp(CmpOp),
    Match,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChainOp {
    Arith(ArithOp),
    Dot,
}

#[derive(Debug)]
struct Located {
    node: Node,
    offset: usize,
}

fn located(node: Node, offset: usize) -> Located {
    Located { node, offset }
}

fn parse_or(c: &mut Cursor<'_>) -> Result<Located, ParseError> {
    let first = parse_and(c)?;
    if c.peek() != Some(&Tok::Or) {
        return Ok(first);
    }
    let offset = first.offset;
    let mut parts = vec![first];
    while c.eat(&Tok::Or) {
        parts.push(parse_and(c)?);
    }
    Ok(located(Node::Or(parts), offset))
}

fn parse_and(c: &mut Cursor<'_>) -> Result<Located, ParseError> {
    let first = parse_not(c)?;
    if c.peek() != Some(&Tok::And) {
        return Ok(first);
    }
    let offset = first.offset;
    let mut parts = vec![first];
    while c.eat(&Tok::And) {
        parts.push(parse_not(c)?);
    }
    Ok(located(Node::And(parts), offset))
}

fn parse_not(c: &mut Cursor<'_>) -> Result<Located, ParseError> {
    let offset = c.offset();
    if c.eat(&Tok::Not) {
        c.enter()?;
        let inner = parse_not(c)?;
        c.leave();
        return Ok(located(Node::Not(Box::new(inner.node)), offset));
    }
    parse_compare(c)
}

fn parse_compare(c: &mut Cursor<'_>) -> Result<Located, ParseError> {
    let left = parse_chain(c, 1)?;
    let op = match c.peek() {
        Some(Tok::Eq) => Compare::Cmp(CmpOp::Eq),
        Some(Tok::Ne) => Compare::Cmp(CmpOp::Ne),
        Some(Tok::Lt) => Compare::Cmp(CmpOp::Lt),
        Some(Tok::Gt) => Compare::Cmp(CmpOp::Gt),
        Some(Tok::Le) => Compare::Cmp(CmpOp::Le),
        Some(Tok::Ge) => Compare::Cmp(CmpOp::Ge),
        Some(Tok::Match) => Compare::Match,
        _ => return Ok(left),
    };
    let offset = c.offset();
    c.bump();
    let right = parse_chain(c, 1)?;
    if matches!(
        c.peek(),
        Some(Tok::Eq | Tok::Ne | Tok::Lt | Tok::Gt | Tok::Le | Tok::Ge | Tok::Match)
    ) {
        return Err(c.error("comparisons do not chain; use `&&` or parentheses"));
    }
    Ok(located(
        Node::Compare(Box::new(left), op, Box::new(right)),
        offset,
    ))
}

fn chain_op(tok: Option<&Tok>, level: u8) -> Option<ChainOp> {
    Some(match (level, tok?) {
        (1, Tok::Plus) => ChainOp::Arith(ArithOp::Add),
        (1, Tok::Minus) => ChainOp::Arith(ArithOp::Sub),
        (1, Tok::Dot) => ChainOp::Dot,
        (2, Tok::Star) => ChainOp::Arith(ArithOp::Mul),
        (2, Tok::Slash) => ChainOp::Arith(ArithOp::Div),
        (2, Tok::Percent) => ChainOp::Arith(ArithOp::Mod),
        (3, Tok::Caret) => ChainOp::Arith(ArithOp::Pow),
        _ => return None,
    })
}

fn parse_chain(c: &mut Cursor<'_>, level: u8) -> Result<Located, ParseError> {
    let next = |c: &mut Cursor<'_>| {
        if level < 3 {
            parse_chain(c, level + 1)
        } else {
            parse_unary(c)
        }
    };
    let head = next(c)?;
    if chain_op(c.peek(), level).is_none() {
        return Ok(head);
    }
    let offset = head.offset;
    let mut rest = Vec::new();
    while let Some(op) = chain_op(c.peek(), level) {
        let op_offset = c.offset();
        c.bump();
        let operand = next(c)?;
        rest.push((
            op,
            Located {
                node: operand.node,
                offset: op_offset,
            },
        ));
    }
    Ok(located(Node::Chain(Box::new(head), rest), offset))
}

fn parse_unary(c: &mut Cursor<'_>) -> Result<Located, ParseError> {
    let offset = c.offset();
    let wrap: fn(Box<Node>) -> Node = match c.peek() {
        Some(Tok::Minus) => Node::Negate,
        Some(Tok::Dollar) => Node::Deref,
        Some(Tok::At) => Node::ToInt,
        Some(Tok::Amp) => Node::ToFloat,
        _ => return parse_primary(c),
    };
    c.bump();
    c.enter()?;
    let inner = parse_unary(c)?;
    c.leave();
    Ok(located(wrap(Box::new(inner.node)), offset))
}

fn parse_primary(c: &mut Cursor<'_>) -> Result<Located, ParseError> {
    let offset = c.offset();
    let node = match c.peek() {
        Some(Tok::Int(v)) => Node::Int(*v),
        Some(Tok::Float(v)) => Node::Float(*v),
        Some(Tok::Str(v)) => Node::Str(v.clone()),
        Some(Tok::Ident(name)) => Node::Ident(name.clone()),
        Some(Tok::True) => Node::True,
        Some(Tok::False) => Node::False,
        Some(Tok::LParen) => {
            c.bump();
            c.enter()?;
            let inner = parse_or(c)?;
            c.leave();
            c.expect(&Tok::RParen, "`)`")?;
            return Ok(located(Node::Paren(Box::new(inner.node)), offset));
        }
        _ => {
            return Err(c.error(format!(
                "expected a number, string, attribute name, `true`, `false`, `(` or a unary \
                 operator, found {}",
                c.found()
            )));
        }
    };
    c.bump();
    Ok(located(node, offset))
}

// ---------------------------------------------------------------------------------------------
// Typing.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Type {
    Bool,
    Int,
    Float,
    Str,
}

impl Type {
    fn name(self) -> &'static str {
        match self {
            Type::Bool => "a test (true/false)",
            Type::Int => "an integer",
            Type::Float => "a float",
            Type::Str => "a string",
        }
    }
}

fn type_error(offset: usize, message: String) -> ParseError {
    ParseError::new(offset, Rule::Types, message)
}

fn type_of(node: &Node) -> Type {
    match node {
        Node::Int(_) | Node::ToInt(_) => Type::Int,
        Node::Float(_) | Node::ToFloat(_) => Type::Float,
        Node::Str(_) | Node::Ident(_) | Node::Deref(_) => Type::Str,
        Node::True | Node::False | Node::Not(_) | Node::And(_) | Node::Or(_) => Type::Bool,
        Node::Compare(..) => Type::Bool,
        Node::Paren(inner) | Node::Negate(inner) => type_of(inner),
        Node::Chain(head, rest) => {
            if rest.iter().all(|(op, _)| *op == ChainOp::Dot) {
                Type::Str
            } else {
                type_of(&head.node)
            }
        }
    }
}

fn to_str(node: Node, offset: usize) -> Result<StrExpr, ParseError> {
    Ok(match node {
        Node::Str(v) => StrExpr::Literal(v),
        Node::Ident(name) => StrExpr::Attribute(name),
        Node::Paren(inner) => to_str(*inner, offset)?,
        Node::Deref(inner) => StrExpr::Deref(Box::new(to_str(*inner, offset)?)),
        Node::Chain(head, rest) if rest.iter().all(|(op, _)| *op == ChainOp::Dot) => {
            let mut parts = Vec::with_capacity(rest.len() + 1);
            parts.push(to_str(head.node, head.offset)?);
            for (_, operand) in rest {
                parts.push(to_str(operand.node, operand.offset)?);
            }
            StrExpr::Concat(parts)
        }
        Node::Chain(_, rest) => {
            let (_, bad) = rest
                .iter()
                .find(|(op, _)| *op != ChainOp::Dot)
                .map_or((ChainOp::Dot, offset), |(op, l)| (*op, l.offset));
            return Err(type_error(
                bad,
                "arithmetic operators cannot be mixed with `.` string concatenation".into(),
            ));
        }
        other => {
            let found = type_of(&other);
            return Err(type_error(
                offset,
                format!("expected a string here, found {}", found.name()),
            ));
        }
    })
}

fn to_int(node: Node, offset: usize) -> Result<IntExpr, ParseError> {
    Ok(match node {
        Node::Int(v) => IntExpr::Literal(v),
        Node::Paren(inner) => to_int(*inner, offset)?,
        Node::Negate(inner) => IntExpr::Negate(Box::new(to_int(*inner, offset)?)),
        Node::ToInt(inner) => IntExpr::FromString(Box::new(to_str(*inner, offset)?)),
        Node::Chain(head, rest) => {
            let head = to_int(head.node, head.offset)?;
            let mut chain = Vec::with_capacity(rest.len());
            for (op, operand) in rest {
                let ChainOp::Arith(op) = op else {
                    return Err(type_error(
                        operand.offset,
                        "`.` concatenates strings, not integers".into(),
                    ));
                };
                chain.push((op, to_int(operand.node, operand.offset)?));
            }
            IntExpr::Chain(Box::new(head), chain)
        }
        other => {
            let found = type_of(&other);
            return Err(type_error(
                offset,
                format!("expected an integer here, found {}", found.name()),
            ));
        }
    })
}

fn to_float(node: Node, offset: usize) -> Result<FloatExpr, ParseError> {
    Ok(match node {
        Node::Float(v) => FloatExpr::Literal(v),
        Node::Paren(inner) => to_float(*inner, offset)?,
        Node::Negate(inner) => FloatExpr::Negate(Box::new(to_float(*inner, offset)?)),
        Node::ToFloat(inner) => FloatExpr::FromString(Box::new(to_str(*inner, offset)?)),
        Node::Chain(head, rest) => {
            let head = to_float(head.node, head.offset)?;
            let mut chain = Vec::with_capacity(rest.len());
            for (op, operand) in rest {
                let op = match op {
                    ChainOp::Arith(ArithOp::Mod) => {
                        return Err(type_error(
                            operand.offset,
                            "`%` is defined for integers only".into(),
                        ));
                    }
                    ChainOp::Arith(op) => op,
                    ChainOp::Dot => {
                        return Err(type_error(
                            operand.offset,
                            "`.` concatenates strings, not floats".into(),
                        ));
                    }
                };
                chain.push((op, to_float(operand.node, operand.offset)?));
            }
            FloatExpr::Chain(Box::new(head), chain)
        }
        other => {
            let found = type_of(&other);
            return Err(type_error(
                offset,
                format!("expected a float here, found {}", found.name()),
            ));
        }
    })
}

fn to_test(node: Node, offset: usize) -> Result<Test, ParseError> {
    Ok(match node {
        Node::True => Test::True,
        Node::False => Test::False,
        Node::Paren(inner) => to_test(*inner, offset)?,
        Node::Not(inner) => Test::Not(Box::new(to_test(*inner, offset)?)),
        Node::And(parts) => Test::And(
            parts
                .into_iter()
                .map(|p| to_test(p.node, p.offset))
                .collect::<Result<_, _>>()?,
        ),
        Node::Or(parts) => Test::Or(
            parts
                .into_iter()
                .map(|p| to_test(p.node, p.offset))
                .collect::<Result<_, _>>()?,
        ),
        Node::Compare(left, op, right) => {
            let left_type = type_of(&left.node);
            let right_type = type_of(&right.node);
            if left_type != right_type {
                return Err(type_error(
                    offset,
                    format!(
                        "cannot compare {} with {}",
                        left_type.name(),
                        right_type.name()
                    ),
                ));
            }
            match (op, left_type) {
                (Compare::Match, Type::Str) => Test::Regex(
                    to_str(left.node, left.offset)?,
                    to_str(right.node, right.offset)?,
                ),
                (Compare::Match, other) => {
                    return Err(type_error(
                        offset,
                        format!("`~=` matches strings, found {}", other.name()),
                    ));
                }
                (Compare::Cmp(op), Type::Str) => Test::Str(
                    to_str(left.node, left.offset)?,
                    op,
                    to_str(right.node, right.offset)?,
                ),
                (Compare::Cmp(op), Type::Int) => Test::Int(
                    to_int(left.node, left.offset)?,
                    op,
                    to_int(right.node, right.offset)?,
                ),
                (Compare::Cmp(op @ (CmpOp::Eq | CmpOp::Ne)), Type::Float) => {
                    return Err(type_error(
                        offset,
                        format!(
                            "floats cannot be compared with `{}` (RFC 2704 §4.6.5 allows only \
                             <, >, <=, >=)",
                            op.symbol()
                        ),
                    ));
                }
                (Compare::Cmp(op), Type::Float) => Test::Float(
                    to_float(left.node, left.offset)?,
                    op,
                    to_float(right.node, right.offset)?,
                ),
                (Compare::Cmp(_), Type::Bool) => {
                    return Err(type_error(
                        offset,
                        "tests cannot be compared; combine them with `&&` or `||`".into(),
                    ));
                }
            }
        }
        other => {
            let found = type_of(&other);
            return Err(type_error(
                offset,
                format!(
                    "a clause test must be a comparison, `true` or `false`, found {}",
                    found.name()
                ),
            ));
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Conditions program.

/// Parse a whole Conditions field.
pub(crate) fn parse_conditions(
    tokens: &[Token],
    end_offset: usize,
) -> Result<Vec<Clause>, ParseError> {
    let mut c = Cursor::new(tokens, end_offset, Rule::Conditions);
    let program = parse_program(&mut c)?;
    if c.peek().is_some() {
        return Err(c.error(format!("expected a clause, found {}", c.found())));
    }
    Ok(program)
}

fn parse_program(c: &mut Cursor<'_>) -> Result<Vec<Clause>, ParseError> {
    let mut clauses = Vec::new();
    while c.peek().is_some() && c.peek() != Some(&Tok::RBrace) {
        let test_start = c.offset();
        let test = parse_or(c)?;
        let test = to_test(test.node, test_start)?;
        let value = if c.eat(&Tok::Arrow) {
            if c.peek() == Some(&Tok::LBrace) {
                c.bump();
                c.enter()?;
                let inner = parse_program(c)?;
                c.leave();
                c.expect(&Tok::RBrace, "`}` closing the clause block")?;
                ClauseValue::Block(inner)
            } else {
                let value_start = c.offset();
                let value = parse_or(c)?;
                ClauseValue::Value(to_str(value.node, value_start)?)
            }
        } else {
            ClauseValue::MaxTrust
        };
        c.expect(
            &Tok::Semicolon,
            "`;` after the clause (every clause ends with `;`)",
        )?;
        clauses.push(Clause { test, value });
    }
    Ok(clauses)
}

// ---------------------------------------------------------------------------------------------
// String expressions outside Conditions (Licensees, Authorizer, Signature).

fn parse_str_concat(c: &mut Cursor<'_>) -> Result<StrExpr, ParseError> {
    let head = parse_str_unary(c)?;
    if c.peek() != Some(&Tok::Dot) {
        return Ok(head);
    }
    let mut parts = vec![head];
    while c.eat(&Tok::Dot) {
        parts.push(parse_str_unary(c)?);
    }
    Ok(StrExpr::Concat(parts))
}

fn parse_str_unary(c: &mut Cursor<'_>) -> Result<StrExpr, ParseError> {
    match c.peek() {
        Some(Tok::Dollar) => {
            c.bump();
            c.enter()?;
            let inner = parse_str_unary(c)?;
            c.leave();
            Ok(StrExpr::Deref(Box::new(inner)))
        }
        Some(Tok::Str(v)) => {
            let v = v.clone();
            c.bump();
            Ok(StrExpr::Literal(v))
        }
        Some(Tok::Ident(name)) => {
            let name = name.clone();
            c.bump();
            Ok(StrExpr::Attribute(name))
        }
        Some(Tok::LParen) => {
            c.bump();
            c.enter()?;
            let inner = parse_str_concat(c)?;
            c.leave();
            c.expect(&Tok::RParen, "`)`")?;
            Ok(inner)
        }
        _ => Err(c.error(format!(
            "expected a principal (a string, a name or `$`), found {}",
            c.found()
        ))),
    }
}

/// Parse an Authorizer or Signature field: one string expression.
pub(crate) fn parse_principal_field(
    tokens: &[Token],
    end_offset: usize,
    rule: Rule,
) -> Result<StrExpr, ParseError> {
    let mut c = Cursor::new(tokens, end_offset, rule);
    if tokens.is_empty() {
        return Err(c.error("the field is empty"));
    }
    let expr = parse_str_concat(&mut c)?;
    if c.peek().is_some() {
        return Err(c.error(format!(
            "expected the end of the field, found {}",
            c.found()
        )));
    }
    Ok(expr)
}

/// Parse a Licensees field; `None` when the field is empty.
pub(crate) fn parse_licensees(
    tokens: &[Token],
    end_offset: usize,
) -> Result<Option<LicenseeExpr>, ParseError> {
    if tokens.is_empty() {
        return Ok(None);
    }
    let mut c = Cursor::new(tokens, end_offset, Rule::Licensees);
    let expr = parse_licensee_or(&mut c)?;
    if c.peek().is_some() {
        return Err(c.error(format!(
            "expected `&&`, `||` or the end of the field, found {}",
            c.found()
        )));
    }
    Ok(Some(expr))
}

fn parse_licensee_or(c: &mut Cursor<'_>) -> Result<LicenseeExpr, ParseError> {
    let first = parse_licensee_and(c)?;
    if c.peek() != Some(&Tok::Or) {
        return Ok(first);
    }
    let mut parts = vec![first];
    while c.eat(&Tok::Or) {
        parts.push(parse_licensee_and(c)?);
    }
    Ok(LicenseeExpr::Or(parts))
}

fn parse_licensee_and(c: &mut Cursor<'_>) -> Result<LicenseeExpr, ParseError> {
    let first = parse_licensee_unit(c)?;
    if c.peek() != Some(&Tok::And) {
        return Ok(first);
    }
    let mut parts = vec![first];
    while c.eat(&Tok::And) {
        parts.push(parse_licensee_unit(c)?);
    }
    Ok(LicenseeExpr::And(parts))
}

fn parse_licensee_unit(c: &mut Cursor<'_>) -> Result<LicenseeExpr, ParseError> {
    match c.peek() {
        Some(Tok::KOf(k)) => {
            let k = *k;
            let k_offset = c.offset();
            c.bump();
            c.expect(&Tok::LParen, "`(` after the threshold")?;
            let mut list = vec![parse_str_concat(c)?];
            while c.eat(&Tok::Comma) {
                list.push(parse_str_concat(c)?);
            }
            c.expect(&Tok::RParen, "`,` or `)` in the threshold list")?;
            if usize::try_from(k).map_or(true, |k| k > list.len()) {
                return Err(ParseError::new(
                    k_offset,
                    Rule::Licensees,
                    format!(
                        "{k}-of lists only {} principals (RFC 2704 §4.6.4: fewer than K \
                         principals makes the assertion invalid)",
                        list.len()
                    ),
                ));
            }
            Ok(LicenseeExpr::Threshold(k, list))
        }
        Some(Tok::LParen) => {
            c.bump();
            c.enter()?;
            let inner = parse_licensee_or(c)?;
            c.leave();
            c.expect(&Tok::RParen, "`)`")?;
            // `("a") . "b"`: the parentheses enclosed a string, which is being concatenated.
            if c.peek() == Some(&Tok::Dot) {
                let LicenseeExpr::Principal(head) = inner else {
                    return Err(c.error("`.` concatenates principals, not licensee expressions"));
                };
                let mut parts = vec![head];
                while c.eat(&Tok::Dot) {
                    parts.push(parse_str_unary(c)?);
                }
                return Ok(LicenseeExpr::Principal(StrExpr::Concat(parts)));
            }
            Ok(inner)
        }
        _ => Ok(LicenseeExpr::Principal(parse_str_concat(c)?)),
    }
}

/// Parse a Local-Constants field into `(name, value)` pairs.
pub(crate) fn parse_local_constants(
    tokens: &[Token],
) -> Result<Vec<(String, Vec<u8>)>, ParseError> {
    let mut constants: Vec<(String, Vec<u8>)> = Vec::new();
    let mut index = 0;
    while index < tokens.len() {
        let name_token = &tokens[index];
        let Tok::Ident(name) = &name_token.tok else {
            return Err(ParseError::new(
                name_token.offset,
                Rule::LocalConstants,
                format!(
                    "expected a constant name, found {}",
                    name_token.tok.describe()
                ),
            ));
        };
        if name.starts_with('_') {
            return Err(ParseError::new(
                name_token.offset,
                Rule::LocalConstants,
                format!("`{name}`: names starting with `_` are reserved for the runtime"),
            ));
        }
        if constants.iter().any(|(n, _)| n == name) {
            return Err(ParseError::new(
                name_token.offset,
                Rule::LocalConstants,
                format!("`{name}` is defined twice"),
            ));
        }
        let assign = tokens.get(index + 1);
        if assign.map(|t| &t.tok) != Some(&Tok::Assign) {
            return Err(ParseError::new(
                assign.map_or(name_token.offset, |t| t.offset),
                Rule::LocalConstants,
                format!("expected `=` after `{name}`"),
            ));
        }
        let value = tokens.get(index + 2);
        let Some(Token {
            tok: Tok::Str(value),
            ..
        }) = value
        else {
            return Err(ParseError::new(
                value.map_or(name_token.offset, |t| t.offset),
                Rule::LocalConstants,
                format!("expected a string literal after `{name} =`"),
            ));
        };
        constants.push((name.clone(), value.clone()));
        index += 3;
    }
    Ok(constants)
}

/// Check a KeyNote-Version field: it must say 2.
pub(crate) fn check_version(tokens: &[Token], field_offset: usize) -> Result<(), ParseError> {
    let value = match tokens {
        [
            Token {
                tok: Tok::VersionNumber(v) | Tok::Str(v),
                ..
            },
        ] => v,
        [] => {
            return Err(ParseError::new(
                field_offset,
                Rule::Version,
                "the version is missing",
            ));
        }
        [_, extra, ..] => {
            return Err(ParseError::new(
                extra.offset,
                Rule::Version,
                "the version must be a single number or string",
            ));
        }
        [other] => {
            return Err(ParseError::new(
                other.offset,
                Rule::Version,
                "the version must be a number or a string",
            ));
        }
    };
    if value.as_slice() != b"2" {
        return Err(ParseError::new(
            tokens[0].offset,
            Rule::Version,
            format!(
                "unsupported KeyNote version `{}` (only 2 exists)",
                String::from_utf8_lossy(value)
            ),
        ));
    }
    Ok(())
}
