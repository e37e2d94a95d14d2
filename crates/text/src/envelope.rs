//! The printed envelope (`locales/*/envelope.ftl`): the outside, the rows table's header and the
//! instructions inside. Printed with the PDF's standard fonts in WinAnsi encoding: Latin-1 letters
//! (é, è, ê, ç …) print; nothing outside it may be used here.

crate::messages! {
    /// The fold line's note.
    FOLD = "envelope-fold";
    /// Title: `$operator`'s SMS payment envelope.
    TITLE = "envelope-title";
    /// Label over the EUIN.
    NUMBER_LABEL = "envelope-number-label";
    /// `$rows` rows inside; worth nothing until registered.
    ROWS_INSIDE = "envelope-rows-inside";
    /// How to register it: `$euin`.
    REGISTER = "envelope-register";
    /// Where to send it: `$number`.
    REGISTER_TO = "envelope-register-to";
    /// The seal warning.
    SEAL = "envelope-seal";
    /// Inside, at the top: `$euin`.
    SECRET = "envelope-secret";
    /// The rows table's header: monospaced, each column name must start where the English one
    /// does (row, grid, add-to-amount, TAN, minus, checksum recipe).
    ROWS_HEADER = "envelope-rows-header";
    /// How to use it, line 1 of 9 (each line one printed line).
    HOWTO_1 = "envelope-howto-1";
    /// Line 2.
    HOWTO_2 = "envelope-howto-2";
    /// Line 3.
    HOWTO_3 = "envelope-howto-3";
    /// Line 4.
    HOWTO_4 = "envelope-howto-4";
    /// Line 5.
    HOWTO_5 = "envelope-howto-5";
    /// Line 6.
    HOWTO_6 = "envelope-howto-6";
    /// Line 7.
    HOWTO_7 = "envelope-howto-7";
    /// Line 8.
    HOWTO_8 = "envelope-howto-8";
    /// Line 9.
    HOWTO_9 = "envelope-howto-9";
}

/// The instruction lines, in order.
pub const HOWTO: [crate::Id; 9] = [
    HOWTO_1, HOWTO_2, HOWTO_3, HOWTO_4, HOWTO_5, HOWTO_6, HOWTO_7, HOWTO_8, HOWTO_9,
];
