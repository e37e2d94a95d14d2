//! Every bound the engine enforces, in one place.
//!
//! Assertions arrive from the network (a payer's credential, a microcheck), so nothing an
//! assertion says may make the engine use unbounded memory, time or stack. Each limit is a named
//! constant; the compile-time assertions at the bottom tie the ones that depend on each other.

/// Largest assertion accepted, in bytes. A 4096-bit RSA key in hex is about 1.1 KiB; real
/// credentials are a few KiB, so 64 KiB leaves room without letting one assertion cost much.
pub const ASSERTION_BYTES_MAX: usize = 64 * 1024;

/// Largest input file the command line reads (policy files hold several assertions).
pub const FILE_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Most assertions (trusted and untrusted together) in one session.
pub const SESSION_ASSERTIONS_MAX: usize = 1024;

/// Deepest nesting of parentheses, unary operators, `$`/`@`/`&` chains and `{}` clause blocks
/// in one field. The parser recurses once per level, so this also bounds its stack use.
pub const NESTING_DEPTH_MAX: usize = 64;

/// Most work units one assertion's Conditions evaluation may spend. One unit is one expression
/// node, one regular-expression step or 64 bytes of string built; running out is a runtime
/// error that makes the whole assertion contribute `_MIN_TRUST`.
pub const EVALUATION_WORK_MAX: u64 = 4_000_000;

/// Most work units one query may spend on Conditions and Licensees evaluation, all assertions
/// together (four assertions' worth of [`EVALUATION_WORK_MAX`]). A thousand assertions each just
/// under the per-assertion budget would otherwise cost a thousand times that budget; past this
/// one, each further assertion gets only what is left and contributes `_MIN_TRUST` when that
/// runs out (reported as [`crate::Failure::QueryWorkBudget`]).
pub const QUERY_WORK_MAX: u64 = 4 * EVALUATION_WORK_MAX;

/// Most signature-verification work one query may spend on untrusted assertions that are not
/// in the cache, in units of one Ed25519 verification (about 50 µs). An RSA key costs the
/// square of its modulus in 1024-bit steps; a DSA key costs 16 times the square of its prime in
/// 1024-bit steps (two exponentiations with a 160-to-256-bit exponent), so this allows 4096
/// Ed25519, 4096 RSA-1024, 256 DSA-1024 or 16 DSA-4096 verifications per query. An assertion
/// whose verification would exceed what is left contributes `_MIN_TRUST` (reported as
/// [`crate::Failure::SignatureBudget`]).
pub const QUERY_SIGNATURE_WORK_MAX: u64 = 4096;

/// Longest string an expression may build (concatenation), in bytes.
pub const STRING_BYTES_MAX: usize = 256 * 1024;

/// Most action attributes in one query.
pub const ACTION_ATTRIBUTES_MAX: usize = 4096;

/// Longest action attribute name or value, in bytes.
pub const ATTRIBUTE_BYTES_MAX: usize = 64 * 1024;

/// Most action authorizers in one query.
pub const ACTION_AUTHORIZERS_MAX: usize = 256;

/// Most ordered compliance values in one query; values are stored as `u8` indexes.
pub const COMPLIANCE_VALUES_MAX: usize = 256;

/// Largest instruction count of a compiled regular expression (after `{m,n}` expansion).
pub const REGEX_PROGRAM_MAX: usize = 4096;

/// Largest `{m,n}` bound, as POSIX `RE_DUP_MAX`.
pub const REGEX_REPEAT_MAX: u32 = 255;

/// Largest bit set (instructions x subject positions) the capture pass of a regular expression
/// may allocate; beyond it the match is a runtime error rather than a large allocation.
pub const REGEX_MEMO_BITS_MAX: usize = 1 << 24;

/// Groups the reference exposes as `_1` .. `_31` (its match array has 32 slots).
pub const REGEX_GROUPS_EXPOSED_MAX: usize = 31;

/// Smallest RSA modulus whose signatures are checked or made. Keys below this are still
/// compared as principals, but signatures by them are refused.
pub const RSA_MODULUS_BITS_MIN: usize = 1024;

/// Largest RSA modulus whose signatures are checked (bounds verification time).
pub const RSA_MODULUS_BITS_MAX: usize = 8192;

/// Largest DSA prime `p` whose signatures are checked.
pub const DSA_PRIME_BITS_MAX: usize = 4096;

/// Smallest DSA prime `p` whose signatures are checked or made.
pub const DSA_PRIME_BITS_MIN: usize = 1024;

/// Entries the signature-verification cache keeps before it starts evicting.
pub const SIGNATURE_CACHE_ENTRIES_MAX: usize = 65_536;

/// Most integers in a DER key or signature sequence (an OpenSSL DSA private key has six).
pub const DER_INTEGERS_MAX: usize = 9;

const _: () = assert!(ASSERTION_BYTES_MAX <= FILE_BYTES_MAX);
const _: () = assert!(QUERY_WORK_MAX >= EVALUATION_WORK_MAX);
// The costliest single key allowed must still fit one query.
const _: () = assert!(
    16 * (DSA_PRIME_BITS_MAX as u64 / 1024) * (DSA_PRIME_BITS_MAX as u64 / 1024)
        <= QUERY_SIGNATURE_WORK_MAX
);
const _: () = assert!(
    (RSA_MODULUS_BITS_MAX as u64 / 1024) * (RSA_MODULUS_BITS_MAX as u64 / 1024)
        <= QUERY_SIGNATURE_WORK_MAX
);
const _: () = assert!(COMPLIANCE_VALUES_MAX <= u8::MAX as usize + 1);
const _: () = assert!(ATTRIBUTE_BYTES_MAX <= STRING_BYTES_MAX);
const _: () = assert!(RSA_MODULUS_BITS_MIN <= RSA_MODULUS_BITS_MAX);
const _: () = assert!(DSA_PRIME_BITS_MIN <= DSA_PRIME_BITS_MAX);
const _: () = assert!(REGEX_GROUPS_EXPOSED_MAX < 100);
