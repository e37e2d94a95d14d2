//! Assertions: parsing (RFC 2704 §4), printing, signature checking and authoring.

use core::fmt;
use std::collections::HashMap;
use std::sync::Arc;

use sha2::{Digest as _, Sha256};

use crate::ast::{Clause, LicenseeExpr, StrExpr, write_program};
use crate::error::{Error, ParseError, Result, Rule};
use crate::keys::{self, Encoding, Principal, PrivateKey, SignatureAlgorithm};
use crate::lexer::{Mode, lex};
use crate::parser;
use crate::text::{FieldKind, Layout, RawField, check_assertion_size, escape, split_fields};

/// SHA-256 of an assertion's exact text: the key of the signature-verification cache.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AssertionHash(pub [u8; 32]);

impl fmt::Debug for AssertionHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AssertionHash({})", hex::encode(&self.0[..8]))
    }
}

/// A licensee principal, decoded once at parse time when it does not depend on the action.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Leaf {
    /// Fixed by literals and Local-Constants.
    Static(Principal),
    /// Depends on the action environment; evaluated per query.
    Dynamic(StrExpr),
}

/// The Licensees field with principals resolved.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Licensees {
    /// No Licensees field: `_MAX_TRUST` (RFC 2704 §5.3.5).
    Missing,
    /// An empty Licensees field: `_MIN_TRUST`.
    Empty,
    /// An expression.
    Expr(Compiled),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Compiled {
    Leaf(Leaf),
    And(Vec<Compiled>),
    Or(Vec<Compiled>),
    Threshold(u32, Vec<Leaf>),
}

/// The Signature field.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SignaturePart {
    /// Where the `Signature:` label starts: the signed text ends here.
    label_offset: usize,
    /// The signature string; `None` for an empty field (an assertion prepared for signing).
    value: Option<Vec<u8>>,
}

/// A parsed KeyNote assertion. Immutable; cheap to share behind an `Arc` between sessions.
#[derive(Debug, Clone)]
pub struct Assertion {
    text: Vec<u8>,
    hash: AssertionHash,
    start: usize,
    has_version: bool,
    comment: Option<Vec<u8>>,
    local_constants: Vec<(String, Vec<u8>)>,
    authorizer_expr: StrExpr,
    authorizer: Principal,
    licensees_expr: Option<Option<LicenseeExpr>>,
    licensees: Licensees,
    conditions: Option<Arc<Vec<Clause>>>,
    signature: Option<SignaturePart>,
}

/// Parsed Conditions programs kept by their exact text, for a caller that parses many
/// assertions sharing one program — every microcheck of a payment system carries the same
/// Conditions and differs only in its Local-Constants. A program's parse depends on nothing but
/// its text, so a hit is exactly what parsing would give. Bounded; only programs that parsed
/// are kept.
#[derive(Debug, Default)]
pub struct ParseCache {
    conditions: HashMap<Vec<u8>, Arc<Vec<Clause>>>,
}

/// Programs a [`ParseCache`] keeps before it starts over.
const PARSE_CACHE_ENTRIES_MAX: usize = 256;
/// Longer programs are parsed each time rather than kept.
const PARSE_CACHE_PROGRAM_BYTES_MAX: usize = 4096;

impl ParseCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }
}

fn field_error(field: RawField, rule: Rule, message: impl Into<String>) -> ParseError {
    ParseError::new(field.body_start, rule, message)
}

/// Resolve a principal expression using only literals and Local-Constants.
fn resolve_static(expr: &StrExpr, constants: &[(String, Vec<u8>)]) -> Option<Vec<u8>> {
    let constant = |name: &[u8]| {
        constants
            .iter()
            .find(|(n, _)| n.as_bytes() == name)
            .map(|(_, v)| v.clone())
    };
    match expr {
        StrExpr::Literal(value) => Some(value.clone()),
        StrExpr::Attribute(name) => constant(name.as_bytes()),
        StrExpr::Deref(inner) => constant(&resolve_static(inner, constants)?),
        StrExpr::Concat(parts) => {
            let mut out = Vec::new();
            for part in parts {
                out.extend(resolve_static(part, constants)?);
            }
            Some(out)
        }
    }
}

fn compile_leaf(
    expr: &StrExpr,
    constants: &[(String, Vec<u8>)],
    field: RawField,
) -> Result<Leaf, ParseError> {
    match resolve_static(expr, constants) {
        Some(identifier) => Principal::parse(&identifier)
            .map(Leaf::Static)
            .map_err(|e| field_error(field, Rule::Key, format!("licensee key: {e}"))),
        None => Ok(Leaf::Dynamic(expr.clone())),
    }
}

fn compile_licensees(
    expr: &LicenseeExpr,
    constants: &[(String, Vec<u8>)],
    field: RawField,
) -> Result<Compiled, ParseError> {
    Ok(match expr {
        LicenseeExpr::Principal(p) => Compiled::Leaf(compile_leaf(p, constants, field)?),
        LicenseeExpr::And(parts) => Compiled::And(
            parts
                .iter()
                .map(|p| compile_licensees(p, constants, field))
                .collect::<Result<_, _>>()?,
        ),
        LicenseeExpr::Or(parts) => Compiled::Or(
            parts
                .iter()
                .map(|p| compile_licensees(p, constants, field))
                .collect::<Result<_, _>>()?,
        ),
        LicenseeExpr::Threshold(k, list) => Compiled::Threshold(
            *k,
            list.iter()
                .map(|p| compile_leaf(p, constants, field))
                .collect::<Result<_, _>>()?,
        ),
    })
}

impl Assertion {
    /// Parse one assertion. Syntax errors give the line and column in `text` and the rule
    /// broken.
    pub fn parse(text: &[u8]) -> Result<Self> {
        Self::parse_at(text, 0)
    }

    /// Parse one assertion that starts after `line_base` lines of a larger file, so that error
    /// positions are file positions.
    pub fn parse_at(text: &[u8], line_base: u32) -> Result<Self> {
        check_assertion_size(text)?;
        Self::parse_inner(text, None).map_err(|e| Error::Syntax(e.locate(text, line_base)))
    }

    /// [`Assertion::parse`], taking the Conditions program from `cache` when the same text was
    /// parsed before (and keeping it there when not).
    pub fn parse_cached(text: &[u8], cache: &mut ParseCache) -> Result<Self> {
        check_assertion_size(text)?;
        Self::parse_inner(text, Some(cache)).map_err(|e| Error::Syntax(e.locate(text, 0)))
    }

    fn parse_inner(text: &[u8], cache: Option<&mut ParseCache>) -> Result<Self, ParseError> {
        let layout: Layout = split_fields(text)?;
        let tokens =
            |field: RawField, mode: Mode| lex(text, field.body_start, field.body_end, mode);

        let has_version = match layout.field(FieldKind::Version) {
            Some(field) => {
                parser::check_version(&tokens(field, Mode::Version)?, field.body_start)?;
                true
            }
            None => false,
        };
        let local_constants = match layout.field(FieldKind::LocalConstants) {
            Some(field) => parser::parse_local_constants(&tokens(field, Mode::LocalConstants)?)?,
            None => Vec::new(),
        };
        let Some(authorizer_field) = layout.field(FieldKind::Authorizer) else {
            return Err(ParseError::new(
                layout.start,
                Rule::Layout,
                "the mandatory Authorizer field is missing",
            ));
        };
        let authorizer_expr = parser::parse_principal_field(
            &tokens(authorizer_field, Mode::Principal)?,
            authorizer_field.body_end,
            Rule::Authorizer,
        )?;
        let authorizer_identifier =
            resolve_static(&authorizer_expr, &local_constants).ok_or_else(|| {
                field_error(
                    authorizer_field,
                    Rule::Authorizer,
                    "the Authorizer may use only string literals and Local-Constants (it must \
                     not depend on the action)",
                )
            })?;
        let authorizer = Principal::parse(&authorizer_identifier).map_err(|e| {
            field_error(authorizer_field, Rule::Key, format!("authorizer key: {e}"))
        })?;

        let (licensees_expr, licensees) = match layout.field(FieldKind::Licensees) {
            None => (None, Licensees::Missing),
            Some(field) => {
                let parsed =
                    parser::parse_licensees(&tokens(field, Mode::Licensees)?, field.body_end)?;
                let compiled = match &parsed {
                    None => Licensees::Empty,
                    Some(expr) => {
                        Licensees::Expr(compile_licensees(expr, &local_constants, field)?)
                    }
                };
                (Some(parsed), compiled)
            }
        };
        let conditions = match layout.field(FieldKind::Conditions) {
            None => None,
            Some(field) => {
                let body = &text[field.body_start..field.body_end];
                let cache = cache.filter(|_| body.len() <= PARSE_CACHE_PROGRAM_BYTES_MAX);
                match cache {
                    Some(cache) => match cache.conditions.get(body) {
                        Some(program) => Some(Arc::clone(program)),
                        None => {
                            let program = Arc::new(parser::parse_conditions(
                                &tokens(field, Mode::Conditions)?,
                                field.body_end,
                            )?);
                            if cache.conditions.len() >= PARSE_CACHE_ENTRIES_MAX {
                                cache.conditions.clear();
                            }
                            cache.conditions.insert(body.to_vec(), Arc::clone(&program));
                            Some(program)
                        }
                    },
                    None => Some(Arc::new(parser::parse_conditions(
                        &tokens(field, Mode::Conditions)?,
                        field.body_end,
                    )?)),
                }
            }
        };
        let comment = layout
            .field(FieldKind::Comment)
            .map(|field| text[field.body_start..field.body_end].to_vec());
        let signature = match layout.field(FieldKind::Signature) {
            None => None,
            Some(field) => {
                let lexed = tokens(field, Mode::Principal)?;
                let value = if lexed.is_empty() {
                    None
                } else {
                    let expr =
                        parser::parse_principal_field(&lexed, field.body_end, Rule::Signature)?;
                    Some(resolve_static(&expr, &local_constants).ok_or_else(|| {
                        field_error(
                            field,
                            Rule::Signature,
                            "the Signature may use only string literals and Local-Constants",
                        )
                    })?)
                };
                Some(SignaturePart {
                    label_offset: field.name_offset,
                    value,
                })
            }
        };
        Ok(Self {
            text: text.to_vec(),
            hash: AssertionHash(Sha256::digest(text).into()),
            start: layout.start,
            has_version,
            comment,
            local_constants,
            authorizer_expr,
            authorizer,
            licensees_expr,
            licensees,
            conditions,
            signature,
        })
    }

    /// The exact text this assertion was parsed from.
    pub fn text(&self) -> &[u8] {
        &self.text
    }

    /// SHA-256 of [`Assertion::text`].
    pub fn hash(&self) -> AssertionHash {
        self.hash
    }

    /// The principal that issued the assertion.
    pub fn authorizer(&self) -> &Principal {
        &self.authorizer
    }

    /// The Licensees expression as written (`None`: no field; `Some(None)`: an empty field).
    pub fn licensees(&self) -> Option<Option<&LicenseeExpr>> {
        self.licensees_expr.as_ref().map(Option::as_ref)
    }

    pub(crate) fn compiled_licensees(&self) -> &Licensees {
        &self.licensees
    }

    /// The Conditions program (`None`: no field).
    pub fn conditions(&self) -> Option<&[Clause]> {
        self.conditions.as_deref().map(Vec::as_slice)
    }

    /// The Local-Constants, in order.
    pub fn local_constants(&self) -> &[(String, Vec<u8>)] {
        &self.local_constants
    }

    /// The signature string, if the assertion carries one.
    pub fn signature(&self) -> Option<&[u8]> {
        self.signature.as_ref()?.value.as_deref()
    }

    /// Whether the assertion has a Signature field (possibly empty, awaiting a signature).
    pub fn has_signature_field(&self) -> bool {
        self.signature.is_some()
    }

    /// The text a signature covers, before the algorithm name is appended: from the first
    /// non-blank byte up to the `Signature:` label (or the whole text without one).
    pub fn signed_text(&self) -> &[u8] {
        let end = self
            .signature
            .as_ref()
            .map_or(self.text.len(), |s| s.label_offset);
        &self.text[self.start..end]
    }

    /// Check the signature against the authorizer's key (uncached; see
    /// [`crate::SignatureCache`] for the cached path).
    pub fn verify_signature(&self) -> Result<()> {
        let signature = self
            .signature()
            .ok_or_else(|| Error::Signature("the assertion carries no signature".into()))?;
        keys::verify(&self.authorizer, self.signed_text(), signature)
    }

    /// Prepare for batch verification, with the signers' keys decompressed once per `keys`;
    /// `None` if it is not Ed25519-signed.
    pub(crate) fn ed25519_item_cached(
        &self,
        keys: &mut crate::FastMap<Principal, ed25519_dalek::VerifyingKey>,
    ) -> Option<keys::Ed25519Item> {
        keys::ed25519_item_cached(
            &self.authorizer,
            self.signed_text(),
            self.signature()?,
            keys,
        )
    }

    /// Compute the signature string for this assertion, which must have a (typically empty)
    /// Signature field — the reference `keynote sign` contract.
    pub fn compute_signature(
        &self,
        key: &PrivateKey,
        algorithm: SignatureAlgorithm,
    ) -> Result<String> {
        if self.signature.is_none() {
            return Err(Error::Usage(
                "the assertion needs a `Signature:` field to be signed".into(),
            ));
        }
        if self.authorizer != key.principal() {
            return Err(Error::Usage(
                "the private key does not belong to the assertion's authorizer".into(),
            ));
        }
        key.sign(self.signed_text(), algorithm)
    }
}

impl fmt::Display for Assertion {
    /// The canonical text of the assertion (parsing it gives the same fields). Signatures cover
    /// the original text, so a printed signed assertion no longer verifies unless it was
    /// already canonical.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.has_version {
            f.write_str("KeyNote-Version: 2\n")?;
        }
        if let Some(comment) = &self.comment {
            writeln!(f, "Comment:{}", String::from_utf8_lossy(comment))?;
        }
        if !self.local_constants.is_empty() {
            f.write_str("Local-Constants:")?;
            for (index, (name, value)) in self.local_constants.iter().enumerate() {
                if index > 0 {
                    f.write_str("\n   ")?;
                }
                write!(f, " {name} = {}", escape(value))?;
            }
            f.write_str("\n")?;
        }
        writeln!(f, "Authorizer: {}", self.authorizer_expr)?;
        match &self.licensees_expr {
            None => {}
            Some(None) => f.write_str("Licensees:\n")?,
            Some(Some(expr)) => writeln!(f, "Licensees: {expr}")?,
        }
        if let Some(clauses) = &self.conditions {
            f.write_str("Conditions:\n")?;
            write_program(f, clauses, 4)?;
        }
        if let Some(signature) = &self.signature {
            match &signature.value {
                None => f.write_str("Signature:\n")?,
                Some(value) => writeln!(f, "Signature: {}", escape(value))?,
            }
        }
        Ok(())
    }
}

/// Author an assertion field by field, then sign it (the payer device writes microchecks this
/// way). Field bodies are KeyNote source text; [`AssertionBuilder::build`] parses the result, so
/// a mistake is reported like any other syntax error.
#[derive(Debug, Clone, Default)]
pub struct AssertionBuilder {
    comment: Option<String>,
    local_constants: Vec<(String, Vec<u8>)>,
    authorizer: String,
    licensees: Option<String>,
    conditions: Option<String>,
}

/// Indent continuation lines so that a multi-line body stays inside its field, and drop blank
/// lines (a blank line would end the assertion).
fn field_body(body: &str) -> String {
    let mut out = String::new();
    for (index, line) in body.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        if index > 0 {
            out.push('\n');
            if !line.starts_with([' ', '\t']) {
                out.push_str("    ");
            }
        }
        out.push_str(line);
    }
    out
}

impl AssertionBuilder {
    /// Start an assertion issued by `authorizer` (a principal identifier, written as a string
    /// literal).
    pub fn new(authorizer: &[u8]) -> Self {
        Self {
            authorizer: escape(authorizer),
            ..Self::default()
        }
    }

    /// Start an assertion issued by the holder of `key`, written with the given encoding.
    pub fn for_key(key: &PrivateKey, encoding: Encoding) -> Self {
        Self::new(&key.principal().to_identifier(encoding))
    }

    /// Add a Comment.
    #[must_use]
    pub fn comment(mut self, text: &str) -> Self {
        self.comment = Some(text.to_string());
        self
    }

    /// Add a Local-Constant.
    #[must_use]
    pub fn local_constant(mut self, name: &str, value: &[u8]) -> Self {
        self.local_constants
            .push((name.to_string(), value.to_vec()));
        self
    }

    /// Set the Licensees expression (source text, e.g. `"LEE'S DELI"` with its quotes).
    #[must_use]
    pub fn licensees(mut self, expression: &str) -> Self {
        self.licensees = Some(expression.to_string());
        self
    }

    /// Set the Licensees to one principal identifier (quoted for you).
    #[must_use]
    pub fn licensee(self, principal: &[u8]) -> Self {
        let literal = escape(principal);
        self.licensees(&literal)
    }

    /// Set the Conditions program (source text, clauses ending with `;`).
    #[must_use]
    pub fn conditions(mut self, program: &str) -> Self {
        self.conditions = Some(program.to_string());
        self
    }

    /// The unsigned text, ending with a newline.
    pub fn to_text(&self) -> String {
        let mut out = String::from("KeyNote-Version: 2\n");
        if let Some(comment) = &self.comment {
            out.push_str(&format!("Comment: {}\n", field_body(comment)));
        }
        if !self.local_constants.is_empty() {
            out.push_str("Local-Constants:");
            for (index, (name, value)) in self.local_constants.iter().enumerate() {
                if index > 0 {
                    out.push_str("\n   ");
                }
                out.push_str(&format!(" {name} = {}", escape(value)));
            }
            out.push('\n');
        }
        out.push_str(&format!("Authorizer: {}\n", self.authorizer));
        if let Some(licensees) = &self.licensees {
            out.push_str(&format!("Licensees: {}\n", field_body(licensees)));
        }
        if let Some(conditions) = &self.conditions {
            out.push_str(&format!("Conditions: {}\n", field_body(conditions)));
        }
        out
    }

    /// Parse the unsigned assertion (for trusted policies).
    pub fn build(&self) -> Result<Assertion> {
        Assertion::parse(self.to_text().as_bytes())
    }

    /// Sign with `key` (which must be the authorizer's) and parse the signed assertion.
    pub fn sign(&self, key: &PrivateKey, encoding: Encoding) -> Result<Assertion> {
        let body = self.to_text();
        let unsigned = Assertion::parse(format!("{body}Signature:\n").as_bytes())?;
        let signature = unsigned.compute_signature(key, key.signature_algorithm(encoding))?;
        Assertion::parse(format!("{body}Signature: \"{signature}\"\n").as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parse_cache_stays_bounded_and_skips_long_programs() {
        let mut cache = ParseCache::new();
        for n in 0..PARSE_CACHE_ENTRIES_MAX * 2 {
            let text = format!("Authorizer: \"POLICY\"\nConditions: a == \"{n}\";\n");
            Assertion::parse_cached(text.as_bytes(), &mut cache).unwrap();
            assert!(cache.conditions.len() <= PARSE_CACHE_ENTRIES_MAX);
        }
        let mut cache = ParseCache::new();
        let long = "x".repeat(PARSE_CACHE_PROGRAM_BYTES_MAX);
        let text = format!("Authorizer: \"POLICY\"\nConditions: a == \"{long}\";\n");
        Assertion::parse_cached(text.as_bytes(), &mut cache).unwrap();
        assert!(cache.conditions.is_empty());
    }
}
