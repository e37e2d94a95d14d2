//! The vending machine's screen and the payer's answers of the microcheck CLI
//! (`locales/*/microcheck.ftl`).

crate::messages! {
    /// The machine's welcome.
    WELCOME = "microcheck-welcome";
    /// A stock line: `$item`, `$product`, `$price`, `$count`.
    STOCK_LINE = "microcheck-stock-line";
    /// Deposited: `$text` (the server's summary).
    DEPOSITED = "microcheck-deposited";
    /// Offline (`$message`); microcheck `$nonce` kept.
    OFFLINE = "microcheck-offline";
    /// The link closed: `$message`.
    LINK_CLOSED = "microcheck-link-closed";
    /// Another selection, please.
    ANOTHER = "microcheck-another";
    /// Refused: `$refusal`.
    REFUSED = "microcheck-refused";
    /// Buying `$product` for `$amount` `$currency`.
    BUYING = "microcheck-buying";
    /// The payer declined.
    DECLINED_BY_PAYER = "microcheck-declined-by-payer";
    /// Dispensing `$product`.
    DISPENSING = "microcheck-dispensing";
    /// The payer's answer: paid `$amount` `$currency` for `$product` (microcheck `$nonce`).
    PAID = "microcheck-paid";
    /// The payer's answer: refused, `$reason` and `$code`.
    REFUSED_CODE = "microcheck-refused-code";
    /// The payer's answer: declined.
    DECLINED = "microcheck-declined";
}
