//! SMS-TAN replies and notices (`locales/*/sms.ftl`): each must fit one GSM-7 SMS. Amounts,
//! references, rows, TANs and checksums are passed in already written and read the same in every
//! language; so do the keywords a payer types back (PAY, OK, REF, SUM, ROW in a proof).

crate::messages! {
    /// An empty message.
    EMPTY = "sms-empty";
    /// A message longer than one instruction.
    TOO_LONG = "sms-too-long";
    /// A printable sign the grammar does not read: `$sign`.
    BAD_SIGN = "sms-bad-sign";
    /// A sign that cannot be shown back.
    BAD_SIGN_HIDDEN = "sms-bad-sign-hidden";
    /// No keyword we know.
    UNKNOWN_KEYWORD = "sms-unknown-keyword";
    /// The message stops before `$field`; `$example`.
    MISSING_PART = "sms-missing-part";
    /// `$field` unreadable; `$example`.
    UNREADABLE_PART = "sms-unreadable-part";
    /// Too many parts; `$example`.
    TOO_MANY_PARTS = "sms-too-many-parts";
    /// Parts could be read two ways.
    AMBIGUOUS = "sms-ambiguous";
    /// `$field` unreadable (no example).
    BAD_PART = "sms-bad-part";
    /// The phone number unreadable.
    BAD_PHONE = "sms-bad-phone";
    /// A date or time that does not exist.
    BAD_DATE_TIME = "sms-bad-date-time";
    /// More decimals than `$currency` has (`$decimals`).
    TOO_MANY_DECIMALS = "sms-too-many-decimals";
    /// The example shown when the kind of message is unknown.
    EXAMPLE_PAY = "sms-example-pay";
    /// The example of a middle-level payment.
    EXAMPLE_PAYG = "sms-example-payg";
    /// The example of a high-level payment.
    EXAMPLE_PAYC = "sms-example-payc";
    /// The example of an envelope registration.
    EXAMPLE_REG = "sms-example-reg";

    /// Field names, used in the messages above as `$field`.
    FIELD_PAYER = "sms-field-payer";
    /// The new envelope's number.
    FIELD_NEW_ENVELOPE = "sms-field-new-envelope";
    /// The payee's account number.
    FIELD_PAYEE = "sms-field-payee";
    /// The grid-coded payee.
    FIELD_CODED_PAYEE = "sms-field-coded-payee";
    /// An amount.
    FIELD_AMOUNT = "sms-field-amount";
    /// An amount plus column 2.
    FIELD_CODED_AMOUNT = "sms-field-coded-amount";
    /// A currency.
    FIELD_CURRENCY = "sms-field-currency";
    /// A row number.
    FIELD_ROW = "sms-field-row";
    /// A TAN.
    FIELD_TAN = "sms-field-tan";
    /// A checksum.
    FIELD_CHECKSUM = "sms-field-checksum";
    /// The amount size code.
    FIELD_SIZE_CODE = "sms-field-size-code";
    /// A payment reference.
    FIELD_REFERENCE = "sms-field-reference";
    /// DAY, WEEK, EACH or TO.
    FIELD_LIMIT_KIND = "sms-field-limit-kind";
    /// ON or OFF.
    FIELD_SWITCH = "sms-field-switch";
    /// The web password.
    FIELD_PASSWORD = "sms-field-password";
    /// A date.
    FIELD_DATE = "sms-field-date";
    /// A time.
    FIELD_TIME = "sms-field-time";
    /// The payment a LATER message schedules.
    FIELD_SCHEDULED_PAYMENT = "sms-field-scheduled-payment";
    /// A language.
    FIELD_LANGUAGE = "sms-field-language";

    /// Refused: envelope, row or code wrong.
    REFUSED_NOT_AUTHENTICATED = "sms-refused-not-authenticated";
    /// Refused: `$row` used before.
    REFUSED_ROW_USED = "sms-refused-row-used";
    /// Refused: no row `$row`.
    REFUSED_ROW_OUT_OF_RANGE = "sms-refused-row-out-of-range";
    /// Refused: envelope locked.
    REFUSED_ENVELOPE_LOCKED = "sms-refused-envelope-locked";
    /// Refused: envelope not in use.
    REFUSED_ENVELOPE_NOT_ACTIVE = "sms-refused-envelope-not-active";
    /// Refused: too few rows left.
    REFUSED_ROWS_EXHAUSTED = "sms-refused-rows-exhausted";
    /// Refused: phone not registered.
    REFUSED_PHONE_NOT_BOUND = "sms-refused-phone-not-bound";
    /// Refused: pay number required.
    REFUSED_PAY_NUMBER_REQUIRED = "sms-refused-pay-number-required";
    /// Refused: last row kept for REG.
    REFUSED_LAST_ROW_RESERVED = "sms-refused-last-row-reserved";
    /// Refused: SUM does not match the text.
    REFUSED_CONTENT_MISMATCH = "sms-refused-content-mismatch";
    /// Refused: codes do not match the row.
    REFUSED_CODES_DO_NOT_MATCH = "sms-refused-codes-do-not-match";
    /// Refused: unknown payee.
    REFUSED_UNKNOWN_PAYEE = "sms-refused-unknown-payee";
    /// Refused: paying oneself.
    REFUSED_SAME_PAYER_AND_PAYEE = "sms-refused-same-payer-and-payee";
    /// Refused: zero amount.
    REFUSED_ZERO_AMOUNT = "sms-refused-zero-amount";
    /// Refused: too large for a coded payment.
    REFUSED_AMOUNT_TOO_LARGE = "sms-refused-amount-too-large";
    /// Refused: per-payment limit.
    REFUSED_PER_PAYMENT_LIMIT = "sms-refused-per-payment-limit";
    /// Refused: daily limit.
    REFUSED_DAILY_LIMIT = "sms-refused-daily-limit";
    /// Refused: weekly limit.
    REFUSED_WEEKLY_LIMIT = "sms-refused-weekly-limit";
    /// Refused: per-payee limit.
    REFUSED_PAYEE_LIMIT = "sms-refused-payee-limit";
    /// Refused: not enough money.
    REFUSED_INSUFFICIENT_FUNDS = "sms-refused-insufficient-funds";
    /// Refused: currency not accepted.
    REFUSED_CURRENCY_NOT_ACCEPTED = "sms-refused-currency-not-accepted";
    /// Refused: soft currency cannot be converted.
    REFUSED_SOFT_CURRENCY = "sms-refused-soft-currency";
    /// Refused: no payment waits for that OK.
    REFUSED_NO_PENDING_CALLBACK = "sms-refused-no-pending-callback";
    /// Refused: the callback waited `$minutes` minutes.
    REFUSED_CALLBACK_EXPIRED = "sms-refused-callback-expired";
    /// Refused: new envelope cannot be registered.
    REFUSED_ENVELOPE_NOT_REGISTRABLE = "sms-refused-envelope-not-registrable";
    /// Refused: bad schedule time.
    REFUSED_BAD_SCHEDULE_TIME = "sms-refused-bad-schedule-time";
    /// Refused: impossible setting.
    REFUSED_BAD_SETTING = "sms-refused-bad-setting";
    /// Refused: account closed or frozen.
    REFUSED_ACCOUNT_NOT_ACTIVE = "sms-refused-account-not-active";
    /// Refused: no payment with that reference.
    REFUSED_UNKNOWN_REFERENCE = "sms-refused-unknown-reference";
    /// Refused: the OK does not match the callback.
    REFUSED_CONFIRMATION_MISMATCH = "sms-refused-confirmation-mismatch";
    /// Refused: this amount needs a callback.
    REFUSED_CALLBACK_REQUIRED = "sms-refused-callback-required";
    /// Refused: above the cap for rows with a printed (seed-format) checksum recipe.
    REFUSED_PRINTED_RECIPE_LIMIT = "sms-refused-printed-recipe-limit";
    /// Appended: the envelope is now locked after `$failures` wrong codes.
    LOCKED_NOW = "sms-locked-now";
    /// Appended: cross out `$row`.
    CROSS_OUT = "sms-cross-out";

    /// The list of messages.
    HELP = "sms-help";
    /// Low-level confirmation: `$instruction` (the seed's starred form), `$reference`, `$fee`.
    PAID_LOW = "sms-paid-low";
    /// Middle/high confirmation: `$instruction`, `$proof`, `$reference`.
    PAID_GRID = "sms-paid-grid";
    /// Confirmation with no row to spare: `$amount`, `$payee`, `$reference`.
    PAID_PLAIN = "sms-paid-plain";
    /// A scheduled payment made: `$amount`, `$payee`, `$reference`, `$proof`.
    PAID_SCHEDULED = "sms-paid-scheduled";
    /// A terminal payment confirmed to the payer's phone: `$amount`, `$payee`, `$reference`,
    /// `$proof`.
    PAID_AT_TERMINAL = "sms-paid-at-terminal";
    /// A payment from the web page confirmed to the holder's phone (no row, no TAN): `$amount`,
    /// `$payee`, `$reference`.
    PAID_ON_WEB = "sms-paid-on-web";
    /// The callback: `$instruction`, `$proof`, `$sum`, `$payer`, `$row`, `$tan`.
    CALLBACK = "sms-callback";
    /// Payee's coded notice: `$amount`, `$payer`, `$row`, `$tan`, `$reference`.
    RECEIVED_CODED = "sms-received-coded";
    /// Payee's plain notice: `$amount`, `$payer`, `$reference`.
    RECEIVED_PLAIN = "sms-received-plain";
    /// Payee's plain notice when its rows ran out: `$amount`, `$payer`, `$reference`.
    RECEIVED_PLAIN_ROWS_OUT = "sms-received-plain-rows-out";
    /// A scheduled payment accepted: `$amount`, `$payee`, `$due`, `$reference`, `$proof`.
    SCHEDULED = "sms-scheduled";
    /// Balance: `$amount`.
    BALANCE = "sms-balance";
    /// Envelope registered: `$new`, `$old`, `$proof`.
    REGISTERED = "sms-registered";
    /// A setting changed: `$what` (one of the `DONE_*` texts), `$proof`.
    SETTING_CHANGED = "sms-setting-changed";
    /// A dispute filed: `$reference`, `$proof`.
    DISPUTE_FILED = "sms-dispute-filed";

    /// Setting: daily limit `$amount`.
    DONE_DAILY_LIMIT = "sms-done-daily-limit";
    /// Setting: daily limit removed.
    DONE_DAILY_LIMIT_REMOVED = "sms-done-daily-limit-removed";
    /// Setting: weekly limit `$amount`.
    DONE_WEEKLY_LIMIT = "sms-done-weekly-limit";
    /// Setting: weekly limit removed.
    DONE_WEEKLY_LIMIT_REMOVED = "sms-done-weekly-limit-removed";
    /// Setting: limit per payment `$amount`.
    DONE_PAYMENT_LIMIT = "sms-done-payment-limit";
    /// Setting: limit per payment removed.
    DONE_PAYMENT_LIMIT_REMOVED = "sms-done-payment-limit-removed";
    /// Setting: daily limit to `$payee` of `$amount`.
    DONE_PAYEE_LIMIT = "sms-done-payee-limit";
    /// Setting: daily limit to `$payee` removed.
    DONE_PAYEE_LIMIT_REMOVED = "sms-done-payee-limit-removed";
    /// Setting: callback from `$amount` up.
    DONE_CALLBACK_FROM = "sms-done-callback-from";
    /// Setting: callback for every payment.
    DONE_CALLBACK_ALWAYS = "sms-done-callback-always";
    /// Setting: callback only above the threshold.
    DONE_CALLBACK_THRESHOLD = "sms-done-callback-threshold";
    /// Setting: web password set.
    DONE_WEB_PASSWORD = "sms-done-web-password";
    /// Setting: language `$language` (its own name).
    DONE_LANGUAGE = "sms-done-language";

    /// Statement: the word that starts each part.
    STATEMENT_HEAD = "sms-statement-head";
    /// Statement line, money out: `$date`, `$counterparty`, `$amount`, `$fee`, `$reference`.
    STATEMENT_PAID_TO = "sms-statement-paid-to";
    /// Statement line, money in: `$date`, `$counterparty`, `$amount`, `$fee`, `$reference`.
    STATEMENT_RECEIVED_FROM = "sms-statement-received-from";
    /// Statement: a fee, `$fee` (decimal in the entry's currency), put in `$fee` above.
    STATEMENT_FEE = "sms-statement-fee";
    /// Statement: the closing balance, `$amount`.
    STATEMENT_BALANCE = "sms-statement-balance";
    /// Statement counterparty: money loaded by the operator.
    STATEMENT_CASH = "sms-statement-cash";
    /// Statement counterparty: the operator's exchange float.
    STATEMENT_EXCHANGE = "sms-statement-exchange";

    /// Purse statement (sent to the purse's phone): the balance, `$amount` with its currency.
    PURSE_STATEMENT_HEAD = "sms-purse-statement-head";
    /// Purse statement line, money in: `$date`, `$counterparty`, `$amount` with its currency.
    PURSE_STATEMENT_IN = "sms-purse-statement-in";
    /// Purse statement line, money out: `$date`, `$counterparty`, `$amount` with its currency.
    PURSE_STATEMENT_OUT = "sms-purse-statement-out";
    /// Purse statement: nothing posted yet.
    PURSE_STATEMENT_EMPTY = "sms-purse-statement-empty";
    /// Purse statement counterparty: the operator (float, settlement, moves).
    PURSE_STATEMENT_OPERATOR = "sms-purse-statement-operator";
}
