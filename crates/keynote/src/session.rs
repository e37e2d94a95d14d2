//! Queries (RFC 2704 §5): a session holds trusted policies, untrusted signed credentials, the
//! action attributes and the action authorizers, and computes the policy compliance value.
//!
//! The delegation graph is evaluated as a least fixed point: every principal starts at
//! `_MIN_TRUST` (action authorizers at `_MAX_TRUST`), and assertion values are recomputed from a
//! work list until nothing rises. Values only rise and are bounded, so this terminates, needs no
//! recursion, and a cycle contributes nothing that is not supported from outside the cycle.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::FastMap;

use crate::assertion::{Assertion, AssertionHash, Compiled, Leaf, Licensees};
use crate::error::{Error, Result};
use crate::eval::{Evaluator, Fault, Scope};
use crate::keys::KeyAlgorithm;
use crate::keys::{Ed25519Item, Principal, ed25519_verify_batch};
use crate::limits::{
    ACTION_ATTRIBUTES_MAX, ACTION_AUTHORIZERS_MAX, ATTRIBUTE_BYTES_MAX, COMPLIANCE_VALUES_MAX,
    EVALUATION_WORK_MAX, QUERY_SIGNATURE_WORK_MAX, QUERY_WORK_MAX, SESSION_ASSERTIONS_MAX,
    SIGNATURE_CACHE_ENTRIES_MAX,
};

/// What verifying a signature by `authorizer` costs against [`QUERY_SIGNATURE_WORK_MAX`], in
/// units of one Ed25519 verification, estimated from the size of the key's material (RSA: the
/// square of the modulus in 1024-bit steps; DSA: 16 times the square of the prime in 1024-bit
/// steps, its material holding about three numbers of the prime's size). Opaque and binary
/// principals cannot sign and cost one unit to refuse.
pub fn signature_work_units(authorizer: &Principal) -> u64 {
    let Principal::Key {
        algorithm,
        material,
    } = authorizer
    else {
        return 1;
    };
    let length = u64::try_from(material.len()).unwrap_or(u64::MAX);
    match algorithm {
        KeyAlgorithm::Rsa => {
            let steps = (length / 128).max(1);
            steps.saturating_mul(steps)
        }
        KeyAlgorithm::Dsa => {
            let steps = (length / 384).max(1);
            steps.saturating_mul(steps).saturating_mul(16)
        }
        _ => 1,
    }
}

/// The ordered compliance values of a query, lowest (`_MIN_TRUST`) first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComplianceValues {
    names: Vec<Vec<u8>>,
    joined: Vec<u8>,
}

impl ComplianceValues {
    /// Build from names in ascending order; at least one, at most
    /// [`COMPLIANCE_VALUES_MAX`], no duplicates.
    pub fn new<I, V>(names: I) -> Result<Self>
    where
        I: IntoIterator<Item = V>,
        V: AsRef<[u8]>,
    {
        let names: Vec<Vec<u8>> = names.into_iter().map(|v| v.as_ref().to_vec()).collect();
        if names.is_empty() {
            return Err(Error::Usage(
                "a query needs at least one compliance value".into(),
            ));
        }
        if names.len() > COMPLIANCE_VALUES_MAX {
            return Err(Error::Limit {
                what: "compliance values in a query",
                max: COMPLIANCE_VALUES_MAX,
            });
        }
        for (index, name) in names.iter().enumerate() {
            if names[..index].contains(name) {
                return Err(Error::Usage(format!(
                    "compliance value `{}` is listed twice",
                    String::from_utf8_lossy(name)
                )));
            }
        }
        let joined = names.join(&b","[..]);
        Ok(Self { names, joined })
    }

    /// The names, lowest first.
    pub fn names(&self) -> &[Vec<u8>] {
        &self.names
    }

    /// The name of value `index`.
    pub fn name(&self, index: u8) -> &[u8] {
        self.names
            .get(usize::from(index))
            .map_or(&[][..], Vec::as_slice)
    }

    /// Index of `_MAX_TRUST`.
    pub fn max_index(&self) -> u8 {
        u8::try_from(self.names.len() - 1).unwrap_or(u8::MAX)
    }
}

/// Whether an assertion is local policy or a credential that must carry a valid signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// A locally trusted assertion (policy); its signature, if any, is not checked.
    Trusted,
    /// A credential from elsewhere: used only if its signature by its authorizer verifies.
    Untrusted,
}

/// Identifies an assertion within its session (the order it was added in).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AssertionId(pub usize);

/// Remembers signature verification results by [`AssertionHash`], so that repeated queries over
/// the same credentials verify each signature once. Bounded: the oldest entries are forgotten
/// first beyond [`SIGNATURE_CACHE_ENTRIES_MAX`].
#[derive(Debug, Default)]
pub struct SignatureCache {
    results: FastMap<AssertionHash, core::result::Result<(), Error>>,
    order: VecDeque<AssertionHash>,
}

impl SignatureCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of remembered results.
    pub fn len(&self) -> usize {
        self.results.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.results.is_empty()
    }

    fn remember(&mut self, hash: AssertionHash, result: core::result::Result<(), Error>) {
        if self.results.contains_key(&hash) {
            return;
        }
        while self.results.len() >= SIGNATURE_CACHE_ENTRIES_MAX {
            match self.order.pop_front() {
                Some(old) => {
                    self.results.remove(&old);
                }
                None => break,
            }
        }
        self.order.push_back(hash);
        self.results.insert(hash, result);
    }

    /// [`SignatureCache::verify`] within a query's signature budget: a remembered result costs
    /// nothing; a new verification costs [`signature_work_units`], taken from `budget`, or is not
    /// attempted (`None`) when less than that is left.
    pub(crate) fn verify_within(
        &mut self,
        assertion: &Assertion,
        budget: &mut u64,
    ) -> Option<Result<()>> {
        if let Some(result) = self.results.get(&assertion.hash()) {
            return Some(result.clone());
        }
        let units = signature_work_units(assertion.authorizer());
        if units > *budget {
            return None;
        }
        *budget -= units;
        Some(self.verify(assertion))
    }

    /// Verify one assertion's signature, or return the remembered result.
    pub fn verify(&mut self, assertion: &Assertion) -> Result<()> {
        if let Some(result) = self.results.get(&assertion.hash()) {
            return result.clone();
        }
        let result = assertion.verify_signature();
        self.remember(assertion.hash(), result.clone());
        result
    }

    /// Verify many assertions, using Ed25519 batch verification for those signed with Ed25519.
    /// An assertion listed more than once (a credential shared by many payments) is verified
    /// once. A batch that fails is split in halves and each half tried again, so one bad
    /// signature costs a few more batches, not a one-by-one pass over all of them. Results are
    /// remembered and returned in input order.
    pub fn verify_batch(&mut self, assertions: &[&Assertion]) -> Vec<Result<()>> {
        // Sized up front: a batch's items are a few hundred bytes each, and growing the vectors
        // item by item copied them again and again.
        let mut batch = Vec::with_capacity(assertions.len());
        let mut batch_hashes = Vec::with_capacity(assertions.len());
        let mut seen = std::collections::HashSet::with_capacity_and_hasher(
            assertions.len(),
            foldhash::fast::RandomState::default(),
        );
        let mut keys = FastMap::default();
        for assertion in assertions {
            let hash = assertion.hash();
            if self.results.contains_key(&hash) || !seen.insert(hash) {
                continue;
            }
            if let Some(item) = assertion.ed25519_item_cached(&mut keys) {
                batch.push(item);
                batch_hashes.push(hash);
            }
        }
        let mut good = Vec::new();
        verified_subsets(&batch, &batch_hashes, &mut good);
        for hash in good {
            self.remember(hash, Ok(()));
        }
        assertions.iter().map(|a| self.verify(a)).collect()
    }
}

/// Below this many signatures a failed batch is not split further: the caller verifies them one
/// by one.
const BATCH_SPLIT_MIN: usize = 4;

/// Pushes to `good` the hashes of every subset of `items` that batch-verifies, splitting failed
/// batches in halves down to [`BATCH_SPLIT_MIN`].
fn verified_subsets(
    items: &[Ed25519Item],
    hashes: &[AssertionHash],
    good: &mut Vec<AssertionHash>,
) {
    if items.len() < 2 {
        return;
    }
    if ed25519_verify_batch(items) {
        good.extend_from_slice(hashes);
    } else if items.len() >= BATCH_SPLIT_MIN {
        let middle = items.len() / 2;
        verified_subsets(&items[..middle], &hashes[..middle], good);
        verified_subsets(&items[middle..], &hashes[middle..], good);
    }
}

/// The action attribute set of a query (RFC 2704 §3).
#[derive(Debug, Clone, Default)]
pub struct ActionEnvironment {
    attributes: FastMap<Vec<u8>, Vec<u8>>,
}

impl ActionEnvironment {
    /// An empty attribute set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Set an attribute. Names are `[A-Za-z0-9_]+` and may not start with `_` (reserved for the
    /// runtime, RFC 2704 §3); a later value replaces an earlier one.
    pub fn set(&mut self, name: &[u8], value: &[u8]) -> Result<()> {
        if name.is_empty() || !name.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_') {
            return Err(Error::Usage(format!(
                "attribute name `{}` must be letters, digits and `_`",
                String::from_utf8_lossy(name)
            )));
        }
        if name[0] == b'_' {
            return Err(Error::Usage(format!(
                "attribute name `{}`: names starting with `_` are reserved",
                String::from_utf8_lossy(name)
            )));
        }
        if name.len() > ATTRIBUTE_BYTES_MAX || value.len() > ATTRIBUTE_BYTES_MAX {
            return Err(Error::Limit {
                what: "attribute name or value bytes",
                max: ATTRIBUTE_BYTES_MAX,
            });
        }
        if value.contains(&0) {
            return Err(Error::Usage("attribute values may not contain NUL".into()));
        }
        if !self.attributes.contains_key(name) && self.attributes.len() >= ACTION_ATTRIBUTES_MAX {
            return Err(Error::Limit {
                what: "action attributes",
                max: ACTION_ATTRIBUTES_MAX,
            });
        }
        self.attributes.insert(name.to_vec(), value.to_vec());
        Ok(())
    }

    /// Look an attribute up.
    pub fn get(&self, name: &[u8]) -> Option<&[u8]> {
        self.attributes.get(name).map(Vec::as_slice)
    }

    /// Remove every attribute.
    pub fn clear(&mut self) {
        self.attributes.clear();
    }
}

/// Why an assertion took no part in a query's result.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Failure {
    /// An untrusted assertion whose signature is missing or does not verify.
    Signature(Error),
    /// Conditions evaluation ran out of the assertion's own work budget
    /// ([`crate::limits::EVALUATION_WORK_MAX`]).
    WorkBudget,
    /// The query's work budget for all assertions together
    /// ([`crate::limits::QUERY_WORK_MAX`]) ran out before this assertion's evaluation ended.
    QueryWorkBudget,
    /// Verifying this untrusted assertion's signature would have gone past the query's
    /// signature budget ([`crate::limits::QUERY_SIGNATURE_WORK_MAX`]); it was not verified.
    SignatureBudget,
    /// A licensee computed from the action is not a valid principal.
    Licensee(Error),
}

/// What one assertion did in a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssertionOutcome {
    /// The assertion.
    pub id: AssertionId,
    /// Whether it was added as trusted.
    pub trust: Trust,
    /// Its Assertion Compliance Value (RFC 2704 §5.3.3) at the fixed point, or `None` if the
    /// query never reached it from `POLICY`.
    pub value: Option<u8>,
    /// Why it contributed nothing, if it failed.
    pub failure: Option<Failure>,
}

/// The result of a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryResult {
    /// Index of the Policy Compliance Value in the query's [`ComplianceValues`].
    pub value: u8,
    /// Per-assertion detail, in the order the assertions were added.
    pub assertions: Vec<AssertionOutcome>,
}

struct Entry {
    assertion: Arc<Assertion>,
    trust: Trust,
}

/// A KeyNote session: assertions, action attributes and action authorizers.
#[derive(Default)]
pub struct Session {
    entries: Vec<Entry>,
    authorizers: Vec<(Vec<u8>, Principal)>,
    environment: ActionEnvironment,
}

impl core::fmt::Debug for Session {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Session")
            .field("assertions", &self.entries.len())
            .field("authorizers", &self.authorizers.len())
            .field("environment", &self.environment)
            .finish()
    }
}

enum QueryLicensees {
    Missing,
    Empty,
    Invalid,
    Expr(QueryNode),
}

enum QueryNode {
    Leaf(usize),
    And(Vec<QueryNode>),
    Or(Vec<QueryNode>),
    Threshold(usize, Vec<usize>),
}

struct Principals {
    index: FastMap<Principal, usize>,
    list: Vec<Principal>,
    dependents: Vec<Vec<usize>>,
}

impl Principals {
    fn intern(&mut self, principal: &Principal) -> (usize, bool) {
        if let Some(&index) = self.index.get(principal) {
            return (index, false);
        }
        let index = self.dependents.len();
        self.index.insert(principal.clone(), index);
        self.list.push(principal.clone());
        self.dependents.push(Vec::new());
        (index, true)
    }
}

fn evaluate_node(node: &QueryNode, values: &[u8]) -> u8 {
    match node {
        QueryNode::Leaf(p) => values[*p],
        QueryNode::And(parts) => parts
            .iter()
            .map(|p| evaluate_node(p, values))
            .min()
            .unwrap_or(0),
        QueryNode::Or(parts) => parts
            .iter()
            .map(|p| evaluate_node(p, values))
            .max()
            .unwrap_or(0),
        QueryNode::Threshold(k, list) => {
            let mut found: Vec<u8> = list.iter().map(|p| values[*p]).collect();
            found.sort_unstable_by(|a, b| b.cmp(a));
            found.get(k.saturating_sub(1)).copied().unwrap_or(0)
        }
    }
}

impl Session {
    /// An empty session.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add an assertion.
    pub fn add_assertion(
        &mut self,
        assertion: Arc<Assertion>,
        trust: Trust,
    ) -> Result<AssertionId> {
        if self.entries.len() >= SESSION_ASSERTIONS_MAX {
            return Err(Error::Limit {
                what: "assertions in a session",
                max: SESSION_ASSERTIONS_MAX,
            });
        }
        self.entries.push(Entry { assertion, trust });
        Ok(AssertionId(self.entries.len() - 1))
    }

    /// The assertion with this id.
    pub fn assertion(&self, id: AssertionId) -> Option<&Arc<Assertion>> {
        self.entries.get(id.0).map(|e| &e.assertion)
    }

    /// Add a principal that requests the action (RFC 2704 §5.1.1). Key identifiers are
    /// decoded, so any encoding of a key matches.
    pub fn add_action_authorizer(&mut self, identifier: &[u8]) -> Result<()> {
        let principal = Principal::parse(identifier)?;
        self.add_action_authorizer_principal(identifier, principal)
    }

    /// Add an action authorizer already decoded (saves decoding per query); `identifier` is
    /// the text shown in `_ACTION_AUTHORIZERS`.
    pub fn add_action_authorizer_principal(
        &mut self,
        identifier: &[u8],
        principal: Principal,
    ) -> Result<()> {
        // POLICY is the root of trust that a query asks about, never a principal requesting an
        // action: as an action authorizer it would grant itself full trust with no policy at all.
        if principal == Principal::policy() {
            return Err(Error::Usage(
                "POLICY cannot be an action authorizer: it is the root every query starts from"
                    .into(),
            ));
        }
        if self.authorizers.len() >= ACTION_AUTHORIZERS_MAX {
            return Err(Error::Limit {
                what: "action authorizers",
                max: ACTION_AUTHORIZERS_MAX,
            });
        }
        self.authorizers.push((identifier.to_vec(), principal));
        Ok(())
    }

    /// Remove every action authorizer.
    pub fn clear_action_authorizers(&mut self) {
        self.authorizers.clear();
    }

    /// Set an action attribute.
    pub fn set_attribute(&mut self, name: &[u8], value: &[u8]) -> Result<()> {
        self.environment.set(name, value)
    }

    /// The action attributes, to change or clear between queries.
    pub fn environment_mut(&mut self) -> &mut ActionEnvironment {
        &mut self.environment
    }

    /// Verify the signatures of all untrusted assertions up front, in one Ed25519 batch where
    /// possible; later queries find the results in `cache`.
    pub fn preverify(&self, cache: &mut SignatureCache) {
        let untrusted: Vec<&Assertion> = self
            .entries
            .iter()
            .filter(|e| e.trust == Trust::Untrusted)
            .map(|e| e.assertion.as_ref())
            .collect();
        cache.verify_batch(&untrusted);
    }

    /// Compute the Policy Compliance Value (RFC 2704 §5.3). Signatures of untrusted assertions
    /// reached from `POLICY` are checked through `cache`.
    pub fn query(
        &self,
        values: &ComplianceValues,
        cache: &mut SignatureCache,
    ) -> Result<QueryResult> {
        if self.authorizers.is_empty() {
            return Err(Error::Usage(
                "a query needs at least one action authorizer".into(),
            ));
        }
        let max = values.max_index();
        // `_ACTION_AUTHORIZERS` lists the most recently added first, as the reference does.
        let authorizers_joined = self
            .authorizers
            .iter()
            .rev()
            .map(|(id, _)| id.as_slice())
            .collect::<Vec<_>>()
            .join(&b","[..]);
        let scope = Scope {
            attributes: &self.environment.attributes,
            local_constants: &[],
            values: values.names(),
            values_joined: &values.joined,
            authorizers_joined: &authorizers_joined,
        };

        let mut principals = Principals {
            index: FastMap::default(),
            list: Vec::new(),
            dependents: Vec::new(),
        };
        let (policy, _) = principals.intern(&Principal::policy());
        let mut by_authorizer: FastMap<&Principal, Vec<usize>> = FastMap::default();
        for (index, entry) in self.entries.iter().enumerate() {
            by_authorizer
                .entry(entry.assertion.authorizer())
                .or_default()
                .push(index);
        }
        let mut direct: Vec<bool> = Vec::new();
        for (_, principal) in &self.authorizers {
            let (index, _) = principals.intern(principal);
            if direct.len() <= index {
                direct.resize(index + 1, false);
            }
            direct[index] = true;
        }

        let count = self.entries.len();
        let mut outcomes: Vec<AssertionOutcome> = self
            .entries
            .iter()
            .enumerate()
            .map(|(index, entry)| AssertionOutcome {
                id: AssertionId(index),
                trust: entry.trust,
                value: None,
                failure: None,
            })
            .collect();
        let mut condition_value = vec![0u8; count];
        let mut authorizer_index = vec![0usize; count];
        let mut licensees: Vec<Option<QueryLicensees>> = (0..count).map(|_| None).collect();

        // Discover what POLICY reaches, checking signatures and evaluating conditions once,
        // within the query's budgets.
        let mut work_left = QUERY_WORK_MAX;
        let mut signature_work_left = QUERY_SIGNATURE_WORK_MAX;
        let mut expanded = vec![false; 1];
        let mut queue = vec![policy];
        while let Some(principal_index) = queue.pop() {
            if expanded.len() <= principal_index {
                expanded.resize(principal_index + 1, false);
            }
            if expanded[principal_index] || direct.get(principal_index) == Some(&true) {
                continue;
            }
            expanded[principal_index] = true;
            let Some(issued) = by_authorizer.get(&principals.list[principal_index]) else {
                continue;
            };
            for &a in issued {
                let entry = &self.entries[a];
                if principal_index == policy && entry.trust == Trust::Untrusted {
                    continue;
                }
                outcomes[a].value = Some(0);
                authorizer_index[a] = principal_index;
                let assertion_scope = Scope {
                    local_constants: entry.assertion.local_constants(),
                    ..scope
                };
                // Conditions first, then the signature: an assertion whose Conditions give
                // `_MIN_TRUST` contributes nothing whether or not its signature holds, so its
                // signature is not worth checking. Evaluating unverified text is safe: it only
                // reads the action and costs work, which the query's budget bounds.
                let conditions = match entry.assertion.conditions() {
                    None => max,
                    Some(program) => {
                        let allowance = EVALUATION_WORK_MAX.min(work_left);
                        let mut evaluator = Evaluator::new(&assertion_scope, allowance);
                        let outcome = evaluator.program(program);
                        work_left -= allowance - evaluator.budget_left();
                        match outcome {
                            Ok(v) => v,
                            Err(Fault::Budget) | Err(Fault::Runtime) => {
                                outcomes[a].failure = Some(if allowance < EVALUATION_WORK_MAX {
                                    Failure::QueryWorkBudget
                                } else {
                                    Failure::WorkBudget
                                });
                                0
                            }
                        }
                    }
                };
                condition_value[a] = conditions;
                if conditions == 0 {
                    continue;
                }
                if entry.trust == Trust::Untrusted {
                    match cache.verify_within(&entry.assertion, &mut signature_work_left) {
                        Some(Ok(())) => {}
                        Some(Err(error)) => {
                            outcomes[a].failure = Some(Failure::Signature(error));
                            condition_value[a] = 0;
                            continue;
                        }
                        None => {
                            outcomes[a].failure = Some(Failure::SignatureBudget);
                            condition_value[a] = 0;
                            continue;
                        }
                    }
                }
                let allowance = EVALUATION_WORK_MAX.min(work_left);
                let mut evaluator = Evaluator::new(&assertion_scope, allowance);
                let compiled = match entry.assertion.compiled_licensees() {
                    Licensees::Missing => QueryLicensees::Missing,
                    Licensees::Empty => QueryLicensees::Empty,
                    Licensees::Expr(expr) => {
                        match build_node(expr, &mut principals, &mut evaluator, a, &mut queue) {
                            Ok(node) => QueryLicensees::Expr(node),
                            Err(error) => {
                                outcomes[a].failure = Some(Failure::Licensee(error));
                                QueryLicensees::Invalid
                            }
                        }
                    }
                };
                work_left -= allowance - evaluator.budget_left();
                licensees[a] = Some(compiled);
            }
        }

        // Least fixed point over the reached assertions.
        let mut value = vec![0u8; principals.dependents.len()];
        for (index, is_direct) in direct.iter().enumerate() {
            if *is_direct {
                value[index] = max;
            }
        }
        let mut work: VecDeque<usize> = (0..count).filter(|&a| licensees[a].is_some()).collect();
        let mut queued = vec![false; count];
        for &a in &work {
            queued[a] = true;
        }
        while let Some(a) = work.pop_front() {
            queued[a] = false;
            let licensee_value = match &licensees[a] {
                Some(QueryLicensees::Missing) => max,
                Some(QueryLicensees::Expr(node)) => evaluate_node(node, &value),
                Some(QueryLicensees::Empty | QueryLicensees::Invalid) | None => 0,
            };
            let assertion_value = condition_value[a].min(licensee_value);
            outcomes[a].value = Some(assertion_value);
            let issuer = authorizer_index[a];
            if assertion_value > value[issuer] {
                value[issuer] = assertion_value;
                for &dependent in &principals.dependents[issuer] {
                    if !queued[dependent] {
                        queued[dependent] = true;
                        work.push_back(dependent);
                    }
                }
            }
        }
        Ok(QueryResult {
            value: value[policy],
            assertions: outcomes,
        })
    }
}

fn leaf_index(
    leaf: &Leaf,
    principals: &mut Principals,
    evaluator: &mut Evaluator<'_>,
    assertion: usize,
    queue: &mut Vec<usize>,
) -> Result<usize> {
    let principal = match leaf {
        Leaf::Static(p) => {
            let (index, _) = principals.intern(p);
            principals.dependents[index].push(assertion);
            queue.push(index);
            return Ok(index);
        }
        Leaf::Dynamic(expr) => {
            let identifier = evaluator
                .string(expr)
                .map_err(|_| Error::Usage("licensee expression failed to evaluate".into()))?;
            Principal::parse(&identifier)?
        }
    };
    let (index, _) = principals.intern(&principal);
    principals.dependents[index].push(assertion);
    queue.push(index);
    Ok(index)
}

fn build_node(
    expr: &Compiled,
    principals: &mut Principals,
    evaluator: &mut Evaluator<'_>,
    assertion: usize,
    queue: &mut Vec<usize>,
) -> Result<QueryNode> {
    Ok(match expr {
        Compiled::Leaf(leaf) => {
            QueryNode::Leaf(leaf_index(leaf, principals, evaluator, assertion, queue)?)
        }
        Compiled::And(parts) => QueryNode::And(
            parts
                .iter()
                .map(|p| build_node(p, principals, evaluator, assertion, queue))
                .collect::<Result<_>>()?,
        ),
        Compiled::Or(parts) => QueryNode::Or(
            parts
                .iter()
                .map(|p| build_node(p, principals, evaluator, assertion, queue))
                .collect::<Result<_>>()?,
        ),
        Compiled::Threshold(k, list) => QueryNode::Threshold(
            usize::try_from(*k).unwrap_or(usize::MAX),
            list.iter()
                .map(|leaf| leaf_index(leaf, principals, evaluator, assertion, queue))
                .collect::<Result<_>>()?,
        ),
    })
}
