//! Test-only switches that revert a hardening fix, for the simulator to show that it finds the
//! hole (`offpay-sim`, feature `reverts`). Without the `sim-reverts` feature every switch is a
//! constant `false` and the defences compile as they are; with it a switch is set per thread, so
//! it never reaches a device or the server.

/// N_B never repeats under one key: the used-nonce bitmap (issue 17).
pub const NB_BITMAP: u32 = 1 << 0;
/// A payment missing from a payer's log flags and blocks the payer, not the payee (issue 17).
pub const RESTORE_ATTRIBUTION: u32 = 1 << 1;
/// A payee takes at most its max single payment from one payer between syncs (issue 17).
pub const RECEIVE_CAP: u32 = 1 << 2;
/// A scheme-key rotation waits the longest purse validity after the previous one (the
/// simulator's seed 1 found two rotations within one period flagging honest purses).
pub const ROTATION_GUARD: u32 = 1 << 3;
/// A debit under a scheme key two rotations old is looked at by the operator, which a phone
/// clock set back cannot undo (issue 17, attack 4): dated by the answer its payer applied, it
/// flags and blocks a payer that paid with a key that answer had dropped
/// (`payment_with_retired_key`), and names in an incident one whose payment reached the
/// operator only after that answer's validity (`retired_key_payment_unverifiable`). Reverted,
/// such a payment is posted and nothing is flagged.
pub const RETIRED_KEY_FLAG: u32 = 1 << 4;

/// A debit under a since-retired scheme key is dated by the answer its payer applied (the keys
/// and validity it held), not by the operator's epoch at upload (the simulator's seed 4: an
/// honest purse that paid in time and synced after the rotations was flagged and blocked).
/// Reverted, every such debit flags and blocks its payer (`payment_with_retired_key`).
pub const RETIRED_KEY_DATING: u32 = 1 << 5;

#[cfg(feature = "sim-reverts")]
std::thread_local! {
    static REVERTED: core::cell::Cell<u32> = const { core::cell::Cell::new(0) };
}

/// Reverts the fixes in `mask` in this thread (0 restores them all).
#[cfg(feature = "sim-reverts")]
pub fn set(mask: u32) {
    REVERTED.with(|reverted| reverted.set(mask));
}

/// True when the fix `switch` is reverted in this thread.
#[cfg(feature = "sim-reverts")]
pub fn reverted(switch: u32) -> bool {
    REVERTED.with(|reverted| reverted.get() & switch != 0)
}

/// Never: this build has no switches.
#[cfg(not(feature = "sim-reverts"))]
#[inline(always)]
pub const fn reverted(_switch: u32) -> bool {
    false
}
