//! Protocol parameters and bounds. Every limit of the purse is one of these constants; the
//! compile-time assertions at the bottom tie them together. The protocol document
//! (docs/protocols/short-code-purse.md) quotes these values.

/// Digits of a Code 1 or a Code 2, shown as two groups of four.
pub const CODE_DIGITS: usize = 8;
/// Digits of the payee's nonce N_B at the start of Code 1.
pub const REQUEST_NONCE_DIGITS: u32 = 4;
/// Digits of the request tag T1 at the end of Code 1.
pub const REQUEST_TAG_DIGITS: u32 = 4;
/// Digits of the payer's nonce N_A at the start of Code 2.
pub const RESPONSE_NONCE_DIGITS: u32 = 2;
/// Digits of the response tag R at the end of Code 2: a guess is right with probability 10^-6.
pub const RESPONSE_TAG_DIGITS: u32 = 6;
/// Bits of the CMAC that the decimal truncation reduces modulo 10^k (the first 8 bytes, big-endian).
pub const TRUNCATION_BITS: u32 = 64;
/// Largest k the truncation is used with (ticket tags and response tags).
pub const TRUNCATION_DIGITS_MAX: u32 = 7;
/// Number of request nonce values, 10^4. Half of them carry each scheme-key epoch parity.
pub const REQUEST_NONCE_SPACE: u32 = 10u32.pow(REQUEST_NONCE_DIGITS);
/// Number of response nonce values, 10^2.
pub const RESPONSE_NONCE_SPACE: u32 = 10u32.pow(RESPONSE_NONCE_DIGITS);

/// AES block encryptions allowed for one code generation or one code check (a SIM does ~3 ms each).
pub const AES_BLOCKS_PER_CODE_MAX: u64 = 4;
/// AES block encryptions one code MAC actually costs: one for the CMAC subkey, two for the 30- or
/// 32-byte message. The purse never tries a second key: the parity of N_B names the epoch.
pub const AES_BLOCKS_PER_CODE: u64 = 3;
/// Bytes of the MAC input of a request (Code 1), see `codes::request_mac_input`.
pub const REQUEST_MAC_INPUT_BYTES: usize = 30;
/// Bytes of the MAC input of a response (Code 2), see `codes::response_mac_input`.
pub const RESPONSE_MAC_INPUT_BYTES: usize = 32;

/// Shortest PIN.
pub const PIN_DIGITS_MIN: usize = 4;
/// Longest PIN.
pub const PIN_DIGITS_MAX: usize = 6;
/// Wrong PIN entries before the purse blocks payments until the operator unblocks it at a sync.
pub const PIN_TRIES_MAX: u8 = 3;

/// Requests (Code 1 shown, Code 2 not yet entered) a payee purse keeps; a new one beyond this voids
/// the oldest.
pub const PENDING_REQUESTS_MAX: usize = 8;
/// Wrong Code 2 entries against one pending request before the request is voided.
pub const CODE2_FAILURES_PER_REQUEST_MAX: u8 = 3;
/// Wrong Code 2 entries per sync period, over all payers, before the purse refuses every Code 2
/// until it syncs: the guessing budget of a payee inventing payments. One payer can use at most
/// [`CODE2_FAILURES_PER_PAYER_PER_SYNC_PERIOD_MAX`] of it, so one third party cannot spend it.
pub const CODE2_FAILURES_PER_SYNC_PERIOD_MAX: u16 = 30;
/// Wrong Code 2 entries for requests naming one payer, per sync period, before the purse refuses
/// to ask that payer or take its codes until it syncs (other payers are not affected).
pub const CODE2_FAILURES_PER_PAYER_PER_SYNC_PERIOD_MAX: u8 = 5;
/// Failed Code 2 entries in one upload at or above which the operator's fraud queue gets a flag
/// on the purse that typed them (more than one payer can cause).
pub const FAILED_CODE_ENTRIES_FLAG_THRESHOLD: u16 =
    CODE2_FAILURES_PER_PAYER_PER_SYNC_PERIOD_MAX as u16 + 1;
/// Failed Code 2 entries naming one payer at or above which that payer is flagged as having
/// attempted wrong codes (a whole request's worth).
pub const FAILED_CODES_PER_PAYER_FLAG_THRESHOLD: u8 = CODE2_FAILURES_PER_REQUEST_MAX;
/// Bytes of one used-nonce bitmap: one bit per N_B value. A payee purse keeps one per key it
/// holds (scheme epoch, or pairwise key with a peer) and never draws an N_B twice under one key,
/// with any payer: a recorded Code 2 can never be made to verify again by asking again.
pub const NONCE_BITMAP_BYTES: usize = (REQUEST_NONCE_SPACE as usize).div_ceil(8);
/// Requests a payee purse can make under one scheme epoch (the N_B values of its parity).
pub const REQUESTS_PER_SCHEME_EPOCH_MAX: u32 = REQUEST_NONCE_SPACE / 2;

/// Entries the purse keeps until the operator acknowledges them; a full log refuses new payments
/// (it never overwrites), so the operator never sees a gap from an honest purse. Sized for an agent
/// on a busy market day; a SIM build would lower it.
pub const LOG_UNACKNOWLEDGED_MAX: usize = 10_000;
/// Most recent entries kept for display after they are acknowledged.
pub const LOG_RECENT_MAX: usize = 32;
/// Scheme-key epochs a purse holds: the current one and the one before.
pub const SCHEME_EPOCHS_HELD: usize = 2;
/// Pairwise keys a purse holds (the oldest is dropped beyond this).
pub const PAIRWISE_KEYS_MAX: usize = 16;
/// Ticket codes (for a peer to type in) a purse holds.
pub const PEER_TICKETS_MAX: usize = 8;
/// Pairwise-key requests a purse queues for its next upload.
pub const PAIRWISE_REQUESTS_MAX: usize = 4;
/// Largest pairwise-key version (carried as three digits in a ticket code).
pub const PAIRWISE_VERSION_MAX: u16 = 999;
/// Blocked purses an answer lists (and a purse remembers).
pub const BLOCKED_PURSES_MAX: usize = 512;
/// Credits one answer carries.
pub const ANSWER_CREDITS_MAX: usize = 64;
/// Pairwise-key tickets one answer carries.
pub const ANSWER_TICKETS_MAX: usize = 16;
/// Entries one upload carries (the whole unacknowledged log).
pub const UPLOAD_ENTRIES_MAX: usize = LOG_UNACKNOWLEDGED_MAX;
/// Longest memo on an operator credit, in bytes.
pub const MEMO_BYTES_MAX: usize = 64;

/// Format version written first in every persisted or transmitted structure of this crate.
pub const FORMAT_VERSION: u8 = 1;

/// Characters in one SMS (GSM 7-bit default alphabet).
pub const SMS_CHARS_MAX: usize = 160;
/// SMS one packed message may take.
pub const SMS_PARTS_MAX: usize = 64;
/// Largest SMS message id (three digits in the part header).
pub const SMS_MESSAGE_ID_MAX: u16 = 999;
/// Entries one sync round carries over SMS: the worst-case upload of this many entries packs
/// into at most [`SMS_PARTS_MAX`] SMS (a test checks it). A longer log syncs over several rounds;
/// each answer acknowledges what it took, and the purse drops only that.
pub const SMS_ROUND_ENTRIES_MAX: usize = 100;
/// Credits an answer sent by SMS carries (the rest are offered at the next sync): with every
/// other field at its bound (512 blocked purses, 16 tickets, 8 ticket codes) and each credit an
/// operator credit with a 64-byte memo, the answer still packs into [`SMS_PARTS_MAX`] texts (a
/// test checks it).
pub const SMS_ANSWER_CREDITS_MAX: usize = 24;
/// Entries one sync round carries over HTTP.
pub const HTTP_ROUND_ENTRIES_MAX: usize = 1_000;
/// Fewest entries a partial upload (one that stops before the purse's counter) carries. The
/// operator waits with the "missing from the payer's log" check until the payer's log is
/// complete, but only while each round brings at least this many entries, so a payer cannot
/// postpone the check with empty rounds.
pub const SYNC_ROUND_ENTRIES_MIN: usize = 16;
/// How long the operator keeps the parts of an SMS message that has not completed, and the
/// marker of one that did (a replayed part within this time is ignored), in seconds.
pub const SMS_ASSEMBLY_SECONDS_MAX: u64 = 24 * 3600;
/// Messages one sender may have half-received at once; a new one beyond this drops the oldest.
pub const SMS_ASSEMBLIES_PER_SENDER_MAX: usize = 4;
/// Digits of the code that authenticates a statement request.
pub const STATEMENT_CODE_DIGITS: u32 = 7;
/// Wrong statement codes per purse before statement requests are refused for
/// [`SMS_ASSEMBLY_SECONDS_MAX`].
pub const STATEMENT_FAILURES_MAX: u8 = 5;
/// Lines on a statement sent by SMS.
pub const STATEMENT_SMS_LINES_MAX: usize = 6;

/// Digits of a ticket code: 39 for the wrapped key, 3 for the version, 6 for the tag.
pub const TICKET_CODE_DIGITS: usize = 48;
/// Digits of the tag that ends a ticket code.
pub const TICKET_TAG_DIGITS: u32 = 6;

/// Days a purse may pay offline after a sync unless the operator says otherwise.
pub const VALIDITY_DAYS_DEFAULT: u64 = 30;
/// Seconds per day.
pub const SECONDS_PER_DAY: u64 = 86_400;
/// Longest validity an operator may grant (a purse that never syncs is a risk).
pub const VALIDITY_DAYS_MAX: u64 = 365;

const _: () = assert!(REQUEST_NONCE_DIGITS + REQUEST_TAG_DIGITS == CODE_DIGITS as u32);
const _: () = assert!(RESPONSE_NONCE_DIGITS + RESPONSE_TAG_DIGITS == CODE_DIGITS as u32);
// Unbiased truncation: 10^k / 2^64 <= 2^-40 for every k we use.
const _: () = assert!(TRUNCATION_BITS >= 64);
const _: () = assert!(RESPONSE_TAG_DIGITS <= TRUNCATION_DIGITS_MAX);
const _: () = assert!(REQUEST_TAG_DIGITS <= TRUNCATION_DIGITS_MAX);
const _: () = assert!(TICKET_TAG_DIGITS <= TRUNCATION_DIGITS_MAX);
const _: () = assert!((10u128.pow(TRUNCATION_DIGITS_MAX) << 40) <= (1u128 << 64));
// Two blocks of message plus one for the subkey; within the SIM budget.
const _: () = assert!(REQUEST_MAC_INPUT_BYTES <= 32 && RESPONSE_MAC_INPUT_BYTES <= 32);
const _: () = assert!(AES_BLOCKS_PER_CODE <= AES_BLOCKS_PER_CODE_MAX);
// Nonces fit the u16 fields of the MAC inputs.
const _: () = assert!(REQUEST_NONCE_SPACE <= u16::MAX as u32 + 1);
const _: () = assert!(RESPONSE_NONCE_SPACE <= u16::MAX as u32 + 1);
const _: () = assert!(NONCE_BITMAP_BYTES * 8 >= REQUEST_NONCE_SPACE as usize);
const _: () =
    assert!(CODE2_FAILURES_PER_REQUEST_MAX <= CODE2_FAILURES_PER_PAYER_PER_SYNC_PERIOD_MAX);
// One payer cannot spend the whole period budget: locking a merchant out needs more payers
// than this many.
const _: () = assert!(
    (CODE2_FAILURES_PER_PAYER_PER_SYNC_PERIOD_MAX as u16) * 5 < CODE2_FAILURES_PER_SYNC_PERIOD_MAX
);
const _: () = assert!(CODE2_FAILURES_PER_SYNC_PERIOD_MAX <= u8::MAX as u16);
const _: () = assert!(FAILED_CODE_ENTRIES_FLAG_THRESHOLD >= 1);
const _: () = assert!(PIN_DIGITS_MIN >= 4 && PIN_DIGITS_MAX >= PIN_DIGITS_MIN);
const _: () = assert!(PIN_TRIES_MAX >= 1);
const _: () = assert!(SCHEME_EPOCHS_HELD == 2); // one bit of N_B names the epoch
const _: () = assert!(UPLOAD_ENTRIES_MAX >= LOG_UNACKNOWLEDGED_MAX);
const _: () = assert!(LOG_UNACKNOWLEDGED_MAX <= u16::MAX as usize);
const _: () = assert!(BLOCKED_PURSES_MAX <= u16::MAX as usize);
const _: () = assert!(ANSWER_CREDITS_MAX <= u8::MAX as usize);
const _: () = assert!(ANSWER_TICKETS_MAX <= u8::MAX as usize);
const _: () = assert!(PENDING_REQUESTS_MAX <= u8::MAX as usize);
const _: () = assert!(PAIRWISE_KEYS_MAX <= u8::MAX as usize);
const _: () = assert!(PEER_TICKETS_MAX <= u8::MAX as usize);
const _: () = assert!(PAIRWISE_REQUESTS_MAX <= u8::MAX as usize);
const _: () = assert!(LOG_RECENT_MAX <= u8::MAX as usize);
const _: () = assert!(MEMO_BYTES_MAX <= u8::MAX as usize);
// 128-bit wrapped key in 39 digits + 3 version digits + tag.
const _: () = assert!(TICKET_CODE_DIGITS == 39 + 3 + TICKET_TAG_DIGITS as usize);
const _: () = assert!(PAIRWISE_VERSION_MAX < 1000);
const _: () = assert!(SMS_CHARS_MAX == 160);
const _: () = assert!(SMS_MESSAGE_ID_MAX < 1000);
const _: () = assert!(SYNC_ROUND_ENTRIES_MIN >= 1);
const _: () = assert!(SYNC_ROUND_ENTRIES_MIN <= SMS_ROUND_ENTRIES_MAX);
const _: () = assert!(SMS_ROUND_ENTRIES_MAX <= HTTP_ROUND_ENTRIES_MAX);
const _: () = assert!(HTTP_ROUND_ENTRIES_MAX <= UPLOAD_ENTRIES_MAX);
const _: () = assert!(SMS_ASSEMBLIES_PER_SENDER_MAX >= 1);
const _: () = assert!(SMS_ANSWER_CREDITS_MAX >= 1 && SMS_ANSWER_CREDITS_MAX <= ANSWER_CREDITS_MAX);
const _: () = assert!(STATEMENT_CODE_DIGITS <= TRUNCATION_DIGITS_MAX);
const _: () = assert!(STATEMENT_FAILURES_MAX >= 1);
