//! Checksum recipes, e.g. `A4+1, S2+7, LS+6, T+3, A9+2, S1+5` (derived envelopes) or the seed's
//! `9, LS+6, 7, A2+3, A7+2, S1+5` (imported ones): six positions, each a constant digit or a
//! digit of the payment plus an offset, keeping the last digit of the sum.
//!
//! A derived recipe covers every digit of the amount: `LS` (how many whole digits), `S1` and `S2`
//! (the two leading digits) and `T` (the last digit of the sum of all the amount's digits, so a
//! change of any one digit changes it). An amount the checksum does not tell apart from another
//! has the same number of whole digits, the same two leading digits and a digit sum congruent
//! modulo 10: at most 1.1 times as large (`docs/protocols/sms-tan.md` §6, measured by
//! `recipe::tests::worst_undetected_inflation_of_a_derived_recipe_is_measured`).

use alloc::string::String;
use core::fmt::{self, Write as _};

use offpay_money::Amount;
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

use crate::limits::{ACCOUNT_NUMBER_DIGITS, CHECKSUM_DIGITS};
use crate::numbers::AccountNumber;

/// Amount-digit indices a derived recipe uses: the two leading digits.
pub const DERIVED_AMOUNT_DIGITS: [u8; 2] = [1, 2];
/// Longest amount written out in digits (15 whole digits of `Amount::MAX_MINOR` plus decimals).
const AMOUNT_DIGITS_MAX: usize = 40;

/// One position of a recipe.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Term {
    /// A printed digit.
    Constant(u8),
    /// `LS+c`: number of digits of the amount before the point, plus c.
    WholeLength {
        /// c, 0–9.
        add: u8,
    },
    /// `Ak+c`: k-th digit of the payee account counted from the right, plus c.
    AccountDigit {
        /// k, 1–12.
        index: u8,
        /// c, 0–9.
        add: u8,
    },
    /// `Sk+c`: k-th digit of the amount counted from the left (decimals included), plus c;
    /// a k beyond the last digit reads as 0.
    AmountDigit {
        /// k, from 1.
        index: u8,
        /// c, 0–9.
        add: u8,
    },
    /// `T+c`: the last digit of the sum of all the amount's digits (decimals included), plus c.
    DigitSum {
        /// c, 0–9.
        add: u8,
    },
}

/// The digits of an amount as written with its currency's decimals: `200000.00` → 2,0,0,0,0,0,0,0
/// with 6 whole digits.
#[derive(Clone, Copy, Debug)]
pub struct AmountDigits {
    digits: [u8; AMOUNT_DIGITS_MAX],
    length: usize,
    whole: usize,
}

impl AmountDigits {
    /// Digits of `amount` written as its currency writes it.
    pub fn of(amount: &Amount) -> AmountDigits {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = write!(text, "{}", amount.decimal());
        let mut digits = [0u8; AMOUNT_DIGITS_MAX];
        let mut length = 0;
        let mut whole = 0;
        let mut seen_point = false;
        for byte in text.bytes() {
            if byte == b'.' {
                seen_point = true;
                continue;
            }
            assert!(byte.is_ascii_digit(), "Decimal writes digits and one point");
            assert!(
                length < AMOUNT_DIGITS_MAX,
                "Amount::MAX_MINOR bounds the digit count"
            );
            digits[length] = byte - b'0';
            length += 1;
            if !seen_point {
                whole += 1;
            }
        }
        AmountDigits {
            digits,
            length,
            whole,
        }
    }

    /// A number written as `whole` digits, a point and `fraction` digits (what a settings
    /// message's SUM covers: [`crate::content`]); `None` past 40 digits or for a non-digit.
    pub fn from_parts(whole: &[u8], fraction: &[u8]) -> Option<AmountDigits> {
        let length = whole.len() + fraction.len();
        if length > AMOUNT_DIGITS_MAX || whole.iter().chain(fraction).any(|digit| *digit > 9) {
            return None;
        }
        let mut digits = [0u8; AMOUNT_DIGITS_MAX];
        digits[..whole.len()].copy_from_slice(whole);
        digits[whole.len()..length].copy_from_slice(fraction);
        Some(AmountDigits {
            digits,
            length,
            whole: whole.len(),
        })
    }

    /// The whole digits, then the decimals.
    pub fn as_slice(&self) -> &[u8] {
        &self.digits[..self.length]
    }

    /// The seed's LS.
    pub fn whole_length(&self) -> usize {
        self.whole
    }

    /// The sum of all digits, modulo 10 (the `T` term).
    pub fn digit_sum(&self) -> u8 {
        (self.digits[..self.length]
            .iter()
            .map(|digit| u32::from(*digit))
            .sum::<u32>()
            % 10) as u8
    }

    /// The seed's Sk (k from 1); 0 past the end.
    pub fn digit(&self, k: usize) -> u8 {
        if k == 0 || k > self.length {
            return 0;
        }
        self.digits[k - 1]
    }
}

impl Term {
    /// The digit this term contributes for a payment to `payee` of `amount`.
    pub fn evaluate(&self, payee: &AccountNumber, amount: &AmountDigits) -> u8 {
        let (base, add) = match *self {
            Term::Constant(digit) => (0, digit),
            Term::WholeLength { add } => ((amount.whole_length() % 10) as u8, add),
            Term::AccountDigit { index, add } => {
                (payee.digit_from_right(usize::from(index)).unwrap_or(0), add)
            }
            Term::AmountDigit { index, add } => (amount.digit(usize::from(index)), add),
            Term::DigitSum { add } => (amount.digit_sum(), add),
        };
        (base + add) % 10
    }

    fn is_valid(&self) -> bool {
        match *self {
            Term::Constant(digit) => digit <= 9,
            Term::WholeLength { add } | Term::DigitSum { add } => add <= 9,
            Term::AccountDigit { index, add } => {
                (1..=ACCOUNT_NUMBER_DIGITS as u8).contains(&index) && add <= 9
            }
            Term::AmountDigit { index, add } => {
                (1..=AMOUNT_DIGITS_MAX as u8).contains(&index) && add <= 9
            }
        }
    }

    /// Parses `9`, `LS+6`, `A2+3`, `S1+5` (case and spaces ignored; `+0` may be left out).
    pub fn parse(text: &str) -> Option<Term> {
        let compact: String = text
            .chars()
            .filter(|character| !character.is_whitespace())
            .map(|character| character.to_ascii_uppercase())
            .collect();
        let (head, add) = match compact.split_once('+') {
            Some((head, add)) => (head, single_digit(add)?),
            None => (compact.as_str(), 0),
        };
        let term = if let Some(rest) = head.strip_prefix("LS") {
            if !rest.is_empty() {
                return None;
            }
            Term::WholeLength { add }
        } else if head == "T" {
            Term::DigitSum { add }
        } else if let Some(rest) = head.strip_prefix('A') {
            Term::AccountDigit {
                index: small_number(rest)?,
                add,
            }
        } else if let Some(rest) = head.strip_prefix('S') {
            Term::AmountDigit {
                index: small_number(rest)?,
                add,
            }
        } else {
            if compact.contains('+') {
                return None;
            }
            Term::Constant(single_digit(head)?)
        };
        term.is_valid().then_some(term)
    }
}

fn single_digit(text: &str) -> Option<u8> {
    let bytes = text.as_bytes();
    (bytes.len() == 1 && bytes[0].is_ascii_digit()).then(|| bytes[0] - b'0')
}

fn small_number(text: &str) -> Option<u8> {
    if text.is_empty() || text.len() > 2 || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

impl fmt::Debug for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Term(***)")
    }
}

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Term::Constant(digit) => write!(f, "{digit}"),
            Term::WholeLength { add } => write!(f, "LS+{add}"),
            Term::AccountDigit { index, add } => write!(f, "A{index}+{add}"),
            Term::AmountDigit { index, add } => write!(f, "S{index}+{add}"),
            Term::DigitSum { add } => write!(f, "T+{add}"),
        }
    }
}

/// Six terms, in the order printed on the row. Secret: redacted in `Debug`, zeroized on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct Recipe(pub(crate) [Term; CHECKSUM_DIGITS]);

impl Recipe {
    /// From six valid terms.
    pub fn new(terms: [Term; CHECKSUM_DIGITS]) -> Option<Recipe> {
        terms.iter().all(Term::is_valid).then_some(Recipe(terms))
    }

    /// The terms.
    pub fn terms(&self) -> &[Term; CHECKSUM_DIGITS] {
        &self.0
    }

    /// Whether the recipe sees every digit of the amount the way a derived (v3) recipe does: it
    /// has `LS`, `S1`, `S2` and `T`, so an amount it cannot tell apart is at most 1.1 times as
    /// large (§6.1). The seed's printed recipes (one `Sk` and `LS`) do not: an amount may grow
    /// within its size class unseen (up to 10x when `Sk` is not `S1`), so the engine lets their
    /// rows pay only up to the operator's cap ([`crate::engine::EngineConfig::printed_recipe_max`]).
    pub fn sees_whole_amount(&self) -> bool {
        let has = |wanted: &dyn Fn(&Term) -> bool| self.0.iter().any(wanted);
        has(&|term| matches!(term, Term::WholeLength { .. }))
            && has(&|term| matches!(term, Term::AmountDigit { index: 1, .. }))
            && has(&|term| matches!(term, Term::AmountDigit { index: 2, .. }))
            && has(&|term| matches!(term, Term::DigitSum { .. }))
    }

    /// The six checksum digits for a payment to `payee` of `amount`.
    pub fn checksum(&self, payee: &AccountNumber, amount: &Amount) -> [u8; CHECKSUM_DIGITS] {
        let digits = AmountDigits::of(amount);
        let mut out = [0u8; CHECKSUM_DIGITS];
        for (slot, term) in out.iter_mut().zip(&self.0) {
            *slot = term.evaluate(payee, &digits);
        }
        out
    }

    /// The six checksum digits over `payee` and a number written as `digits` (a settings
    /// message's content, [`crate::content`]).
    pub fn checksum_of_digits(
        &self,
        payee: &AccountNumber,
        digits: &AmountDigits,
    ) -> [u8; CHECKSUM_DIGITS] {
        let mut out = [0u8; CHECKSUM_DIGITS];
        for (slot, term) in out.iter_mut().zip(&self.0) {
            *slot = term.evaluate(payee, digits);
        }
        out
    }

    /// Constant-time check of a typed checksum over `payee` and `digits`.
    pub fn verify_digits(
        &self,
        payee: &AccountNumber,
        digits: &AmountDigits,
        typed: &[u8; CHECKSUM_DIGITS],
    ) -> bool {
        let mut expected = self.checksum_of_digits(payee, digits);
        let equal: bool = expected.ct_eq(typed).into();
        expected.zeroize();
        equal
    }

    /// Constant-time check of a typed checksum.
    pub fn verify(
        &self,
        payee: &AccountNumber,
        amount: &Amount,
        typed: &[u8; CHECKSUM_DIGITS],
    ) -> bool {
        let mut expected = self.checksum(payee, amount);
        let equal: bool = expected.ct_eq(typed).into();
        expected.zeroize();
        equal
    }

    /// In how many of the six positions a typed checksum agrees with this recipe over `payee` and
    /// `amount` (each position compared in constant time). Six: the checksum verifies.
    pub fn agreeing_positions(
        &self,
        payee: &AccountNumber,
        amount: &Amount,
        typed: &[u8; CHECKSUM_DIGITS],
    ) -> usize {
        let mut expected = self.checksum(payee, amount);
        let agreeing = expected
            .iter()
            .zip(typed)
            .map(|(expected, typed)| usize::from(bool::from(expected.ct_eq(typed))))
            .sum();
        expected.zeroize();
        agreeing
    }

    /// Parses `9, LS+6, 7, A2+3, A7+2, S1+5`.
    pub fn parse(text: &str) -> Option<Recipe> {
        let mut terms = [Term::Constant(0); CHECKSUM_DIGITS];
        let mut count = 0;
        for piece in text.split(',') {
            if count == CHECKSUM_DIGITS {
                return None;
            }
            terms[count] = Term::parse(piece)?;
            count += 1;
        }
        (count == CHECKSUM_DIGITS).then_some(Recipe(terms))
    }

    /// As printed: `9, LS+6, 7, A2+3, A7+2, S1+5`.
    pub fn printed(&self) -> String {
        let mut out = String::new();
        for (index, term) in self.0.iter().enumerate() {
            if index > 0 {
                out.push_str(", ");
            }
            let _ = write!(out, "{term}");
        }
        out
    }
}

impl Drop for Recipe {
    fn drop(&mut self) {
        for term in self.0.iter_mut() {
            *term = Term::Constant(0);
        }
        // Keeps the overwrite from being optimised away, as `zeroize` does for its own types.
        core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
    }
}

impl fmt::Debug for Recipe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Recipe(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The share of blind checksums the lockout does not count (docs §6.2): over all 10^6
    /// typed checksums for one row and payment, those agreeing in 4 or 5 of 6 positions are
    /// exactly C(6,4)·9² + C(6,5)·9 = 1,269 (1.269·10^-3), one verifies.
    #[test]
    fn blind_checksums_taken_for_changed_ones_are_measured() {
        let recipe = Recipe::parse("A9+8, S1+7, T+2, A2+6, LS+8, S2+3").unwrap();
        let payee = AccountNumber::parse("901020377865").unwrap();
        let amount = Amount::parse("200000.00", offpay_money::Currency::KES).unwrap();
        let (mut near, mut exact) = (0u32, 0u32);
        for value in 0..1_000_000u32 {
            let mut typed = [0u8; CHECKSUM_DIGITS];
            let mut rest = value;
            for slot in typed.iter_mut().rev() {
                *slot = u8::try_from(rest % 10).unwrap();
                rest /= 10;
            }
            match recipe.agreeing_positions(&payee, &amount, &typed) {
                CHECKSUM_DIGITS => exact += 1,
                agreeing if agreeing >= crate::limits::CHANGED_IN_TRANSIT_MATCHES_MIN => near += 1,
                _ => {}
            }
        }
        assert_eq!((near, exact), (1_269, 1));
    }
    use offpay_money::Currency;

    fn worked_example() -> (AccountNumber, Amount) {
        (
            AccountNumber::parse("901020377865").unwrap(),
            Amount::parse("200000.00", Currency::KES).unwrap(),
        )
    }

    #[test]
    fn seed_row_1_gives_927927() {
        let (payee, amount) = worked_example();
        let recipe = Recipe::parse("9, LS + 6, 7, A2+3, A7+2, S1+5").unwrap();
        assert_eq!(recipe.checksum(&payee, &amount), [9, 2, 7, 9, 2, 7]);
    }

    #[test]
    fn seed_row_20_gives_338421() {
        let (payee, amount) = worked_example();
        let recipe = Recipe::parse("A8+1, 3, LS+2, 4, A1+7, S1+9").unwrap();
        assert_eq!(recipe.checksum(&payee, &amount), [3, 3, 8, 4, 2, 1]);
        assert!(recipe.verify(&payee, &amount, &[3, 3, 8, 4, 2, 1]));
        assert!(!recipe.verify(&payee, &amount, &[3, 3, 8, 4, 2, 2]));
    }

    #[test]
    fn printed_form_round_trips() {
        let recipe = Recipe::parse("9, LS+6, 7, A2+3, A7+2, S1+5").unwrap();
        assert_eq!(recipe.printed(), "9, LS+6, 7, A2+3, A7+2, S1+5");
        assert_eq!(Recipe::parse(&recipe.printed()), Some(recipe));
    }

    #[test]
    fn bad_terms_are_refused() {
        for bad in [
            "", "10", "A0+1", "A13+1", "LS+10", "X1+2", "9+1", "S+1", "A1+",
        ] {
            assert_eq!(Term::parse(bad), None, "{bad}");
        }
        assert_eq!(Recipe::parse("1,2,3,4,5"), None);
        assert_eq!(Recipe::parse("1,2,3,4,5,6,7"), None);
    }

    /// For each magnitude class 1..=`classes`, the largest ratio between two amounts (KES,
    /// hundredths) that `recipe` gives the same checksum for a payment to `payee`: how far an
    /// amount can be inflated without the checksum telling. Exhaustive over every amount.
    fn worst_undetected_factor(recipe: &Recipe, payee: &AccountNumber, classes: u32) -> Vec<f64> {
        let mut groups: std::collections::HashMap<[u8; CHECKSUM_DIGITS], (u64, u64)> =
            std::collections::HashMap::new();
        for minor in 1..10u64.pow(classes + 2) {
            let amount = Amount::from_minor(minor, Currency::KES).unwrap();
            let group = groups
                .entry(recipe.checksum(payee, &amount))
                .or_insert((minor, minor));
            group.0 = group.0.min(minor);
            group.1 = group.1.max(minor);
        }
        let mut worst = vec![1.0f64; classes as usize];
        for (low, high) in groups.values() {
            let class =
                AmountDigits::of(&Amount::from_minor(*low, Currency::KES).unwrap()).whole_length();
            let factor = *high as f64 / *low as f64;
            worst[class - 1] = worst[class - 1].max(factor);
        }
        worst
    }

    /// Issue 18, attack 3: a derived recipe covers every digit of the amount, so the worst
    /// inflation its checksum cannot see is 1.0 (none) in class 1 and below 1.1 in every other
    /// class, at each level (low: the instruction's checksum; middle: the same over the decoded
    /// payment; high: the callback's SUM and the OK). The seed's recipes (imported envelopes)
    /// cover LS and S1 only: up to 2x.
    #[test]
    fn worst_undetected_inflation_of_a_derived_recipe_is_measured() {
        let master = crate::keys::MasterKey::from_bytes([0x5a; 32]);
        let euin = crate::numbers::Euin::issued(263, 1).unwrap();
        let envelope =
            crate::envelope::Envelope::derive(&master, euin, crate::envelope::RowCount::Twenty);
        let (payee, _) = worked_example();
        for row in [1u8, 20] {
            let worst = worst_undetected_factor(envelope.row(row).unwrap().recipe(), &payee, 4);
            assert_eq!(worst[0], 1.0, "class 1 is exact: {worst:?}");
            for factor in &worst[1..] {
                assert!(*factor < 1.1, "row {row}: {worst:?}");
            }
            // The bound is nearly reached (10.00 and 10.91 share LS, S1, S2 and the digit sum).
            assert!(worst[1] > 1.09, "row {row}: {worst:?}");
            eprintln!("row {row}: worst undetected factor per class 1-4: {worst:?}");
        }
        let seed = Recipe::parse("9, LS+6, 7, A2+3, A7+2, S1+5").unwrap();
        let worst = worst_undetected_factor(&seed, &payee, 4);
        eprintln!("seed recipe: worst undetected factor per class 1-4: {worst:?}");
        assert!(
            worst[1..]
                .iter()
                .all(|factor| *factor > 1.9 && *factor < 2.0)
        );
    }

    /// Issue 18, gap 1: the rows of an imported envelope keep their printed (seed-format)
    /// recipes, which see LS and one amount digit only. Measured exhaustively over every amount
    /// below 10,000.00 and every row of the seed's envelope: the worst inflation their checksums
    /// let through unseen, per size class, among amounts the engine still accepts on such a row
    /// (at most the default cap, `EngineConfig::printed_recipe_max`: 999.99). Classes 4 and up
    /// accept nothing, so nothing is inflated into them; below, a change stays under the cap.
    /// (The cap is the operator engine's: the test needs the `operator` feature.)
    #[cfg(feature = "operator")]
    #[test]
    fn worst_undetected_inflation_of_imported_rows_is_measured_under_the_cap() {
        let envelope = crate::import::parse_envelope(include_str!(
            "../tests/vectors/seed-002-worked-example.envelope"
        ))
        .unwrap();
        let (payee, _) = worked_example();
        let cap = crate::engine::EngineConfig::default()
            .printed_recipe_max(Currency::KES)
            .minor();
        assert_eq!(cap, 99_999);
        let classes = 4u32;
        let mut worst = vec![1.0f64; classes as usize];
        let mut worst_uncapped = vec![1.0f64; classes as usize];
        for number in 1..=20u8 {
            let recipe = envelope.row(number).unwrap().recipe();
            assert!(!recipe.sees_whole_amount(), "row {number}");
            let mut groups: std::collections::HashMap<[u8; CHECKSUM_DIGITS], (u64, u64, u64)> =
                std::collections::HashMap::new();
            for minor in 1..10u64.pow(classes + 2) {
                let amount = Amount::from_minor(minor, Currency::KES).unwrap();
                let group = groups
                    .entry(recipe.checksum(&payee, &amount))
                    .or_insert((minor, 0, minor));
                group.0 = group.0.min(minor);
                group.2 = group.2.max(minor);
                // The largest amount of the group the engine still pays on this row.
                if minor <= cap {
                    group.1 = group.1.max(minor);
                }
            }
            for (low, high_paid, high) in groups.values() {
                let class = AmountDigits::of(&Amount::from_minor(*low, Currency::KES).unwrap())
                    .whole_length();
                worst_uncapped[class - 1] =
                    worst_uncapped[class - 1].max(*high as f64 / *low as f64);
                if *high_paid >= *low {
                    worst[class - 1] = worst[class - 1].max(*high_paid as f64 / *low as f64);
                }
            }
        }
        eprintln!("imported rows, capped: worst undetected factor per class 1-4: {worst:?}");
        eprintln!(
            "imported rows, no cap: worst undetected factor per class 1-4: {worst_uncapped:?}"
        );
        // Without the cap, a row that sees S2 or S3 only lets an amount grow almost tenfold in
        // classes 2-4; with it, class 4 pays nothing at all.
        assert!(worst_uncapped[3] > 9.0, "{worst_uncapped:?}");
        assert_eq!(
            worst[3], 1.0,
            "nothing at or above 1,000.00 is paid: {worst:?}"
        );
        assert!(worst[1..3].iter().all(|factor| *factor < 10.0), "{worst:?}");
        // The derived recipes are not capped.
        let master = crate::keys::MasterKey::from_bytes([0x5a; 32]);
        let derived = crate::envelope::Envelope::derive(
            &master,
            crate::numbers::Euin::issued(263, 1).unwrap(),
            crate::envelope::RowCount::Fifty,
        );
        for number in 1..=50u8 {
            assert!(derived.row(number).unwrap().recipe().sees_whole_amount());
        }
    }

    /// Doc §6.1: an interceptor who knows the amount and also rewrites checksum digits must
    /// guess where the shuffled terms his change moves are. Measured over every row of an
    /// envelope by trying every guess: a change only the digit sum sees (100.00 → 100.50) passes
    /// with 1 guess in 6; one that moves S2 and the digit sum (100.00 → 190.00) with 1 in 30
    /// ordered pairs.
    #[test]
    fn rewriting_the_checksum_too_succeeds_at_the_measured_guess_rates() {
        let master = crate::keys::MasterKey::from_bytes([0x5a; 32]);
        let euin = crate::numbers::Euin::issued(263, 3).unwrap();
        let envelope =
            crate::envelope::Envelope::derive(&master, euin, crate::envelope::RowCount::Fifty);
        let (payee, _) = worked_example();
        let kes = |text: &str| Amount::parse(text, Currency::KES).unwrap();
        let (meant, only_t, s2_and_t) = (kes("100.00"), kes("100.50"), kes("190.00"));
        let (mut single_hits, mut single_tries, mut pair_hits, mut pair_tries) = (0, 0, 0, 0);
        for row in 1..=50u8 {
            let recipe = envelope.row(row).unwrap().recipe();
            let sent = recipe.checksum(&payee, &meant);
            for position in 0..CHECKSUM_DIGITS {
                let mut forged = sent;
                forged[position] = (forged[position] + 5) % 10;
                single_tries += 1;
                if recipe.verify(&payee, &only_t, &forged) {
                    single_hits += 1;
                }
            }
            for first in 0..CHECKSUM_DIGITS {
                for second in 0..CHECKSUM_DIGITS {
                    if first == second {
                        continue;
                    }
                    let mut forged = sent;
                    forged[first] = (forged[first] + 9) % 10;
                    forged[second] = (forged[second] + 9) % 10;
                    pair_tries += 1;
                    if recipe.verify(&payee, &s2_and_t, &forged) {
                        pair_hits += 1;
                    }
                }
            }
        }
        // Each row has exactly one right guess: the rates are 1/6 and 2/30 (the two moved
        // terms may be guessed in either order, both adding 9).
        assert_eq!((single_hits, single_tries), (50, 300));
        assert_eq!((pair_hits, pair_tries), (100, 1500));
    }

    #[test]
    fn amount_digits_follow_the_currency_decimals() {
        let digits = AmountDigits::of(&Amount::parse("5.5", Currency::KES).unwrap());
        assert_eq!(digits.whole_length(), 1);
        assert_eq!(
            (digits.digit(1), digits.digit(2), digits.digit(3)),
            (5, 5, 0)
        );
        assert_eq!(digits.digit(4), 0);
        let digits = AmountDigits::of(&Amount::parse("450", Currency::UGX).unwrap());
        assert_eq!(digits.whole_length(), 3);
    }
}
