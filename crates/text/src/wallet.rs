//! The device wallet CLI's messages to its holder (`locales/*/wallet.ftl`).

crate::messages! {
    /// The buyer `$buyer` answered.
    BUYER_ANSWERED = "wallet-buyer-answered";
    /// Seller `$seller` asks `$amount`.
    PRICE_OFFERED = "wallet-price-offered";
    /// Paid: the seller received `$amount`.
    RECEIVED = "wallet-received";
    /// Paid: the buyer paid `$amount`.
    PAID = "wallet-paid";
    /// Cancelled; no money moved.
    CANCELLED = "wallet-cancelled";
    /// Payment `$transfer` waits for the seller.
    AWAITING = "wallet-awaiting";
    /// Payment refused: `$reason` (one of the `REASON_*`).
    REFUSED = "wallet-refused";
    /// Charged `$amount`.
    CHARGED = "wallet-charged";
    /// An event this version cannot describe.
    UNKNOWN_EVENT = "wallet-unknown-event";
    /// Reason: declined.
    REASON_DECLINED = "wallet-reason-declined";
    /// Reason: not enough value.
    REASON_INSUFFICIENT_FUNDS = "wallet-reason-insufficient-funds";
    /// Reason: a wallet limit.
    REASON_LIMIT_EXCEEDED = "wallet-reason-limit-exceeded";
    /// Reason: unknown payment.
    REASON_UNKNOWN_TRANSFER = "wallet-reason-unknown-transfer";
    /// Reason: the seller cancelled.
    REASON_SELLER_VOIDED = "wallet-reason-seller-voided";
}
