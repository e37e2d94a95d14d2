//! Every bound the rail enforces, in one place. Offers, microchecks and credentials arrive from a
//! peer over the local link or in a deposit, so each list and string has a named maximum.

/// Largest frame on the local link (length prefix excluded). A payment carries a microcheck and up
/// to [`PAYMENT_CREDENTIALS_MAX`] credentials of a few KiB each.
pub const FRAME_BYTES_MAX: usize = 64 * 1024;
/// Bytes of the length prefix of a frame.
pub const FRAME_PREFIX_BYTES: usize = 4;
/// Credentials a payer may present with one microcheck (payment credential, its delegation chain,
/// an adulthood credential).
pub const PAYMENT_CREDENTIALS_MAX: usize = 6;
/// Longest assertion (credential or microcheck) accepted from the link or in a deposit.
pub const ASSERTION_BYTES_MAX: usize = 8 * 1024;
/// Longest merchant id (it is also a ledger account id suffix and a record key part).
pub const MERCHANT_ID_BYTES_MAX: usize = 32;
/// Longest payer name.
pub const PAYER_NAME_BYTES_MAX: usize = 32;
/// Longest product name shown to the payer.
pub const PRODUCT_BYTES_MAX: usize = 64;
/// Longest product class, application domain or tier name.
pub const LABEL_BYTES_MAX: usize = 24;
/// Product classes one credential may name.
pub const CREDENTIAL_CLASSES_MAX: usize = 16;
/// Nonce length in bytes (128 bits, written as 32 hex digits).
pub const NONCE_BYTES: usize = 16;
/// Leading bytes of a machine's nonce that hold the time of the sale (seconds, big-endian; five
/// bytes last until the year 36812). The other 88 bits are random.
pub const NONCE_TIME_BYTES: usize = 5;
/// Credential tiers in one strategy (value traded against validity).
pub const STRATEGY_TIERS_MAX: usize = 4;
/// Longest credential validity the strategy may set, in seconds (30 days).
pub const PAYER_VALIDITY_SECONDS_MAX: u64 = 30 * 24 * 3600;
/// Longest merchant credential validity, in seconds (1 year).
pub const MERCHANT_VALIDITY_SECONDS_MAX: u64 = 366 * 24 * 3600;
/// Disputed or bounced microchecks after which a payer gets no offline credential at all.
pub const STRIKES_MAX: u32 = 3;
/// Most purchases per merchant per day any credential may allow.
pub const PER_MERCHANT_DAY_MAX: u32 = 100;
/// Largest per-purchase amount any offline credential may allow, in minor units. KeyNote integers
/// are 32-bit; this keeps `@amount_minor` far inside them.
pub const AMOUNT_MINOR_MAX: u64 = 100_000_000;
/// Microchecks in one deposit.
pub const DEPOSIT_ITEMS_MAX: usize = 4096;
/// Clock difference tolerated between a device's signed request and the server, in seconds (the
/// device asks online, so its clock was just set; also the slack before a credential's start).
pub const CLOCK_SKEW_SECONDS_MAX: u64 = 300;
/// How far ahead of the clearing center's clock a machine's microcheck may be dated and still be
/// accepted as the machine's clock running fast (seed 004 §2.4: a merchant's clock "does not
/// need to be very accurate"). Beyond it the CSC refuses the microcheck and flags the machine,
/// saying first that its clock may be wrong. A fast clock gains a dishonest merchant nothing
/// the payer's credential does not already bound: the microcheck must still fall inside the
/// credential's window.
pub const MACHINE_CLOCK_AHEAD_SECONDS_MAX: u64 = 2 * 3600;
/// Transaction-specific (online) credentials a strategy may let one payer have in a day.
pub const TRANSACTION_DAY_MAX: u32 = 100;
/// Online credentials whose amounts are held against a payer's balance at once: one per
/// credential not yet deposited (see [`TRANSACTION_HOLD_SECONDS`]).
pub const TRANSACTION_HOLDS_MAX: usize = 64;
/// How long the amount of an online credential stays held against the payer's balance after
/// the credential expires, waiting for the machine to deposit its microcheck (7 days). The hold
/// ends earlier when the CSC has cleared that microcheck.
pub const TRANSACTION_HOLD_SECONDS: u64 = 7 * 24 * 3600;
/// How long after a payer reports a device lost the machines may still deposit microchecks the
/// old key signed (60 days): every credential the old key holds was issued before the report and
/// expires within [`PAYER_VALIDITY_SECONDS_MAX`] of it, and the machines then have 30 more days.
pub const LOST_KEY_DEPOSIT_WINDOW_SECONDS: u64 = 60 * 24 * 3600;
/// Recent purchases kept per payer for the impossible-travel check.
pub const PAYER_RECENT_MAX: usize = 16;
/// Items a vending machine's stock list may hold.
pub const STOCK_ITEMS_MAX: usize = 64;
/// Entries a statement page returns.
pub const STATEMENT_PAGE_MAX: usize = 500;
/// Depth of a PA → sub-PA delegation chain (the PA itself is depth 0).
pub const DELEGATION_DEPTH_MAX: usize = 3;

const _: () = assert!(AMOUNT_MINOR_MAX < i32::MAX as u64);
const _: () = assert!(MACHINE_CLOCK_AHEAD_SECONDS_MAX >= CLOCK_SKEW_SECONDS_MAX);
const _: () = assert!(LOST_KEY_DEPOSIT_WINDOW_SECONDS > PAYER_VALIDITY_SECONDS_MAX);
const _: () = assert!(TRANSACTION_HOLDS_MAX >= 1);
const _: () = assert!(PER_MERCHANT_DAY_MAX < i32::MAX as u32);
const _: () =
    assert!(PAYMENT_CREDENTIALS_MAX * ASSERTION_BYTES_MAX * 2 < FRAME_BYTES_MAX + 64 * 1024);
const _: () = assert!(DELEGATION_DEPTH_MAX + 2 <= PAYMENT_CREDENTIALS_MAX);
const _: () = assert!(FRAME_BYTES_MAX <= u32::MAX as usize);
