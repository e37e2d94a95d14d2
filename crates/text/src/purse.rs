//! The short-code purse's menu and messages (`locales/*/purse.ftl`), as on a feature phone's
//! SIM-toolkit display of 16 characters a line: every message without variables fits 16
//! characters (the catalogue test checks).

crate::messages! {
    /// The menu's title.
    TITLE = "purse-title";
    /// `Bal $amount`.
    BALANCE = "purse-balance";
    /// Menu item 1.
    ITEM_RECEIVE = "purse-item-receive";
    /// Menu item 2.
    ITEM_SEND = "purse-item-send";
    /// Menu item 3.
    ITEM_ACCEPT = "purse-item-accept";
    /// Menu item 4.
    ITEM_SHOW = "purse-item-show";
    /// Menu item 5.
    ITEM_STATEMENT = "purse-item-statement";
    /// Menu item 6.
    ITEM_PENDING = "purse-item-pending";
    /// Menu item 7.
    ITEM_SYNC = "purse-item-sync";
    /// Menu item 8.
    ITEM_PIN = "purse-item-pin";
    /// Menu item 0.
    ITEM_EXIT = "purse-item-exit";
    /// Prompt: choose an item.
    CHOOSE = "purse-choose";
    /// Screen title: the last payment.
    LAST_PAYMENT = "purse-last-payment";
    /// `to $who`.
    TO = "purse-to";
    /// `from $who`.
    FROM = "purse-from";
    /// From the operator (a credit).
    FROM_OPERATOR = "purse-from-operator";
    /// To the operator (a settlement).
    TO_OPERATOR = "purse-to-operator";
    /// Screen title: mini statement.
    MINI_STATEMENT = "purse-mini-statement";
    /// No entries.
    NO_ENTRIES = "purse-no-entries";
    /// Screen title: pending requests.
    PENDING = "purse-pending";
    /// None pending.
    NONE = "purse-none";
    /// Screen title: synced.
    SYNCED = "purse-synced";
    /// `$count` entries sent.
    SENT = "purse-sent";
    /// `$count` credits received.
    CREDITS = "purse-credits";
    /// No such menu option: `$choice`.
    NO_OPTION = "purse-no-option";
    /// Screen title: an error.
    ERROR = "purse-error";
    /// Prompt: the payer's number.
    PAYER_NUMBER = "purse-payer-number";
    /// Prompt: the amount.
    AMOUNT = "purse-amount";
    /// Read Code 1 to the payer.
    READ_TO_PAYER = "purse-read-to-payer";
    /// Any key goes back.
    ANY_KEY = "purse-any-key";
    /// Prompt: the payee's number.
    PAYEE_NUMBER = "purse-payee-number";
    /// Prompt: a contact's key or a number.
    KEY_OR_NUMBER = "purse-key-or-number";
    /// Prompt: the payee's Code 1.
    PAYEES_CODE_1 = "purse-payees-code-1";
    /// Confirmation, line 1: `Pay $amount`.
    PAY_QUESTION = "purse-pay-question";
    /// Confirmation, line 2: `to $payee?`.
    TO_QUESTION = "purse-to-question";
    /// Prompt: the PIN.
    PIN = "purse-pin";
    /// Screen title: paid.
    PAID = "purse-paid";
    /// Read Code 2 to the payee.
    READ_TO_PAYEE = "purse-read-to-payee";
    /// Prompt: Code 1's first 4 digits (several requests pending).
    CODE_1_FIRST = "purse-code-1-first";
    /// Screen title: received.
    RECEIVED = "purse-received";
    /// Prompt: old PIN.
    OLD_PIN = "purse-old-pin";
    /// Prompt: new PIN.
    NEW_PIN = "purse-new-pin";
    /// PIN changed.
    PIN_CHANGED = "purse-pin-changed";
    /// Before the PIN prompt: type `*` if the PIN is forgotten.
    FORGOT_PIN = "purse-forgot-pin";
    /// Prompt: the operator's one-time PIN reset code.
    RESET_CODE = "purse-reset-code";
    /// The PIN was reset.
    PIN_RESET = "purse-pin-reset";
}
