//! Test-only switches that revert a hardening fix, for the simulator to show that it finds the
//! hole (`offpay-sim`, feature `reverts`). Without the `sim-reverts` feature every switch is a
//! constant `false` and the defences compile as they are; with it a switch is set per thread, so
//! it never reaches a device or the server.

/// The first evidence blocks a cheat before its credential could be renewed in the same
/// reconciliation (issue 19): reverted, the block is looked at before the evidence is applied.
pub const BLOCK_BEFORE_RENEWAL: u32 = 1 << 0;
/// An `overspent` flag only where it is evidence: the wallet's own upload, or beyond its offline
/// spending limit (simulator seed 3 flagged an honest wallet spending what it received offline).
pub const OVERSPENT_FLAG_BEYOND_HONEST: u32 = 1 << 1;
/// A charge voucher is applied even when it takes the wallet over its balance maximum (the
/// office checked its view; simulator seed 17 stranded a posted charge the wallet refused).
pub const CHARGE_OVER_MAXIMUM_APPLIED: u32 = 1 << 2;
/// A buyer's posted record, which holds the seller's signed commit, posts the transfer even when
/// the office recorded a void for it before (simulator seed 208: a seller rolled its log back to
/// before its commit and voided the sale; the buyer's payment was never posted).
pub const BUYER_COMMIT_POSTS_OVER_VOID: u32 = 1 << 3;
/// A seller whose log voids a sale whose commit it signed is contained (blocked, no renewal,
/// a case), like a buyer's cheat; reverted, it is only flagged as a conflicting outcome.
pub const SELLER_VOID_CONTAINED: u32 = 1 << 4;
/// A payment number used on a transfer that settled and was pruned counts as used: a second
/// agreement with it is a double spend. Reverted, the pruned number looks new.
pub const SETTLED_DIGEST_CHECKED: u32 = 1 << 5;

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
