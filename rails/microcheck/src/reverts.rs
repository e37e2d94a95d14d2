//! Test-only switches that revert a hardening fix, for the simulator to show that it finds the
//! hole (`offpay-sim`, feature `reverts`). Without the `sim-reverts` feature every switch is a
//! constant `false` and the defences compile as they are; with it a switch is set per thread, so
//! it never reaches a device or the server.

/// Microchecks of a key reported lost are paid when deposited within a window after the report
/// (issue 20): reverted, they are refused as soon as the key is retired.
pub const LOST_KEY_DEPOSIT_WINDOW: u32 = 1 << 0;
/// A machine's clock may run ahead of the CSC's by a tolerance (issue 20): reverted, any
/// microcheck dated after its arrival is refused as post-dated and flagged.
pub const CLOCK_TOLERANCE: u32 = 1 << 1;
/// An online credential keeps the payer's product classes and the adulthood rule (issue 20):
/// reverted, the PA issues one for any class.
pub const ONLINE_CLASSES: u32 = 1 << 2;
/// An online credential is covered by the payer's funds less what earlier ones hold (issue 20):
/// reverted, the PA issues one whatever the balance (its microcheck would be paid from
/// suspense).
pub const ONLINE_FUNDS: u32 = 1 << 3;
/// At most the strategy's count of online credentials per payer per UTC day (issue 20):
/// reverted, there is no daily count.
pub const ONLINE_RATE: u32 = 1 << 4;

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
