//! Test-only switches that revert a hardening fix, for the simulator to show that it finds the
//! hole (`offpay-sim`, feature `reverts`). Without the `sim-reverts` feature every switch is a
//! constant `false` and the defences compile as they are; with it a switch is set per thread, so
//! it never reaches the server.

/// A settings message's SUM covers its content (protocol v3, issue 18): reverted, a settings
/// message is taken without its SUM being checked over what it says.
pub const SETTINGS_CONTENT_SUM: u32 = 1 << 0;
/// Scheduled payments and pending callbacks carry a MAC (issue 18): reverted, a row a database
/// administrator wrote is taken as the operator's.
pub const RECORD_MAC: u32 = 1 << 1;
/// Only a code checked against an unused row's secret counts towards the lockout (simulator
/// finding, seed 1): reverted, a message naming a used row (a replay under a new gateway id) or a
/// row beyond the envelope counts as the holder's wrong code again.
pub const USED_ROW_NOT_COUNTED: u32 = 1 << 2;

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
