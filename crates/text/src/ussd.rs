//! USSD menu screens (`locales/*/ussd.ftl`): each screen, with the longest realistic values,
//! fits the 182 characters of one USSD page (the server's `rails/ussd` tests check every screen
//! in every language). Amounts and dates are passed in already written.

crate::messages! {
    /// The first screen: what the holder can ask.
    MAIN = "ussd-main";
    /// No purse is registered to the calling phone.
    NO_PURSE = "ussd-no-purse";
    /// A purse's balance as the operator last saw it: `$amount`, `$synced`.
    PURSE_BALANCE = "ussd-purse-balance";
    /// A purse that never synced: `$amount`.
    PURSE_BALANCE_NEVER = "ussd-purse-balance-never";
    /// A blocked purse.
    PURSE_BLOCKED = "ussd-purse-blocked";
    /// The purse statement's heading; `$lines` follow, one per line.
    PURSE_STATEMENT = "ussd-purse-statement";
    /// No lines in a purse statement.
    PURSE_STATEMENT_EMPTY = "ussd-purse-statement-empty";
    /// Money in: `$date`, `$amount`.
    LINE_IN = "ussd-line-in";
    /// Money out: `$date`, `$amount`.
    LINE_OUT = "ussd-line-out";
    /// Asks for the envelope number of the SMS account.
    ENTER_ENVELOPE = "ussd-enter-envelope";
    /// The envelope number typed is not 11 digits.
    BAD_ENVELOPE = "ussd-bad-envelope";
    /// The phone is not bound to the envelope's account (or there is no such envelope).
    NOT_BOUND = "ussd-not-bound";
    /// The envelope's or the account's stored record failed its MAC (changed in the database):
    /// nothing on it is offered until the operator settles it.
    ACCOUNT_HELD = "ussd-account-held";
    /// The language choices.
    CHOOSE_LANGUAGE = "ussd-choose-language";
    /// The language was set: `$language`.
    LANGUAGE_SET = "ussd-language-set";
    /// Help: what each item does, and that payments are by SMS.
    HELP = "ussd-help";
    /// A choice not on the screen.
    WRONG_CHOICE = "ussd-wrong-choice";
    /// The session ran out (too many steps, or the aggregator's time).
    SESSION_ENDED = "ussd-session-ended";
    /// The service is not available now; try again later.
    UNAVAILABLE = "ussd-unavailable";
}
