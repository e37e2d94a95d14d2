//! The account holder's web pages (`locales/*/web.ftl`): HTML text, escaped by the page code.

crate::messages! {
    /// Title of the login page.
    TITLE_LOGIN = "web-title-login";
    /// Title of the statement page.
    TITLE_STATEMENT = "web-title-statement";
    /// Title of the payment result page.
    TITLE_PAYMENT = "web-title-payment";
    /// Heading of the login page.
    YOUR_ACCOUNT = "web-your-account";
    /// Label: account number.
    ACCOUNT_NUMBER = "web-account-number";
    /// Label: the web password, and how it is set.
    PASSWORD = "web-password";
    /// Label: an unused row.
    UNUSED_ROW = "web-unused-row";
    /// Label: the row's TAN.
    ITS_TAN = "web-its-tan";
    /// Button: log in.
    LOG_IN = "web-log-in";
    /// Note: logging in uses the row up.
    LOGIN_USES_ROW = "web-login-uses-row";
    /// Error: login failed.
    LOGIN_FAILED = "web-login-failed";
    /// Error: the login form expired.
    FORM_EXPIRED = "web-form-expired";
    /// Error: the envelope was busy.
    ENVELOPE_BUSY = "web-envelope-busy";
    /// Error: web login blocked.
    LOGIN_BLOCKED = "web-login-blocked";
    /// Error: the envelope is locked.
    ENVELOPE_LOCKED = "web-envelope-locked";
    /// Error: the row was used.
    ROW_USED = "web-row-used";
    /// Heading: account `$number`.
    ACCOUNT_HEADING = "web-account-heading";
    /// Label before the balance.
    BALANCE = "web-balance";
    /// Column: date.
    COLUMN_DATE = "web-column-date";
    /// Column: counterparty.
    COLUMN_COUNTERPARTY = "web-column-counterparty";
    /// Column: what.
    COLUMN_WHAT = "web-column-what";
    /// Column: reference.
    COLUMN_REFERENCE = "web-column-reference";
    /// Column: amount.
    COLUMN_AMOUNT = "web-column-amount";
    /// Column: fee.
    COLUMN_FEE = "web-column-fee";
    /// Counterparty: cash loaded by the operator.
    COUNTERPARTY_CASH = "web-counterparty-cash";
    /// Counterparty: the exchange float.
    COUNTERPARTY_EXCHANGE = "web-counterparty-exchange";
    /// Counterparty: a fee.
    COUNTERPARTY_FEE = "web-counterparty-fee";
    /// Link: older entries.
    OLDER = "web-older";
    /// Heading: pay.
    PAY_HEADING = "web-pay-heading";
    /// Label: payee account number.
    PAYEE = "web-payee";
    /// Label: amount.
    AMOUNT = "web-amount";
    /// Button: pay.
    PAY = "web-pay";
    /// Note: paying uses the row up.
    PAY_USES_ROW = "web-pay-uses-row";
    /// Button: log out.
    LOG_OUT = "web-log-out";
    /// Heading of the payment result.
    PAYMENT_HEADING = "web-payment-heading";
    /// Link back to the statement.
    BACK = "web-back";
    /// A payment made from the web page or a terminal: `$amount`, `$reference`.
    PAID = "web-paid";
    /// Label before the language links.
    LANGUAGE = "web-language";
}
