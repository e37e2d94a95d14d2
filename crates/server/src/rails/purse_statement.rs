//! The purse holder's statement by SMS, in the holder's language: the balance, then the newest
//! postings, each with its date, the counterparty and the amount with its currency, packed into
//! as few texts as fit. Pure: the caller reads the ledger and picks the language (the purse's own
//! setting, else the operator's default).

use offpay_ledger::Currency;
use offpay_text::{Language, sms, text};

/// Fewest digits of a phone number read from a memo.
const PHONE_DIGITS_MIN: usize = 7;

/// Lines of a statement, at most this many characters each.
pub const LINE_CHARS_MAX: usize = 72;

/// Who was on the other side of a posting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Counterparty {
    /// Another purse, by its phone number.
    Purse(String),
    /// The operator (float, agent settlement, a balance moved after a loss).
    Operator,
}

/// One posting on the purse's account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatementLine {
    /// When it was posted, `YYYY-MM-DD`.
    pub date: String,
    /// Minor units; negative: money out of the purse.
    pub minor: i64,
    /// The other side.
    pub counterparty: Counterparty,
}

/// The counterparty of a posting on a purse's account: the other account when it is a purse,
/// else the purse named in the posting's memo (offline payments pass through suspense, and their
/// memos say `… to +254…` or `… from +254…`), else the operator.
pub fn counterparty(other_account: &str, memo: &str) -> Counterparty {
    if let Some(phone) = other_account.strip_prefix(offpay_purse::book::ACCOUNT_PREFIX) {
        return Counterparty::Purse(phone.to_owned());
    }
    for marker in [" to +", " from +"] {
        if let Some(index) = memo.find(marker) {
            let digits: String = memo[index + marker.len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            if digits.len() >= PHONE_DIGITS_MIN {
                return Counterparty::Purse(format!("+{digits}"));
            }
        }
    }
    Counterparty::Operator
}

/// `KES 1250.00`: the same in every language.
pub fn amount_text(minor: i64, currency: Currency) -> String {
    let decimal = offpay_ledger::Decimal::new(i128::from(minor), currency);
    format!("{} {decimal}", currency.code())
}

/// The statement's texts (each at most one SMS of 160 characters).
pub fn statement_texts(
    language: Language,
    currency: Currency,
    balance_minor: i64,
    postings: &[StatementLine],
) -> Vec<String> {
    let mut lines = vec![text(
        language,
        sms::PURSE_STATEMENT_HEAD,
        &[("amount", &amount_text(balance_minor, currency))],
    )];
    for posting in postings {
        let counterparty = match &posting.counterparty {
            Counterparty::Purse(phone) => phone.clone(),
            Counterparty::Operator => text(language, sms::PURSE_STATEMENT_OPERATOR, &[]),
        };
        let id = if posting.minor < 0 {
            sms::PURSE_STATEMENT_OUT
        } else {
            sms::PURSE_STATEMENT_IN
        };
        let amount = amount_text(posting.minor.saturating_abs(), currency);
        let line = text(
            language,
            id,
            &[
                ("date", &posting.date),
                ("counterparty", &counterparty),
                ("amount", &amount),
            ],
        );
        lines.push(line.chars().take(LINE_CHARS_MAX).collect());
    }
    if postings.is_empty() {
        lines.push(text(language, sms::PURSE_STATEMENT_EMPTY, &[]));
    }
    let mut texts: Vec<String> = Vec::new();
    for line in lines {
        match texts.last_mut() {
            Some(text)
                if text.chars().count() + 1 + line.chars().count()
                    <= offpay_purse::params::SMS_CHARS_MAX =>
            {
                text.push('\n');
                text.push_str(&line);
            }
            _ => texts.push(line),
        }
    }
    texts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn postings() -> Vec<StatementLine> {
        vec![
            StatementLine {
                date: "2026-12-01".into(),
                minor: -45_000,
                counterparty: Counterparty::Purse("+254700000002".into()),
            },
            StatementLine {
                date: "2026-11-30".into(),
                minor: 100_000,
                counterparty: Counterparty::Operator,
            },
        ]
    }

    #[test]
    fn the_counterparty_is_the_other_purse_even_through_suspense() {
        assert_eq!(
            counterparty("purse:+254700000002", ""),
            Counterparty::Purse("+254700000002".into())
        );
        assert_eq!(
            counterparty("operator:suspense", "offline payment #3 from +254700000009"),
            Counterparty::Purse("+254700000009".into())
        );
        assert_eq!(
            counterparty("operator:suspense", "offline payment #4 to +254700000001"),
            Counterparty::Purse("+254700000001".into())
        );
        assert_eq!(
            counterparty("operator:suspense", "operator credit 1 for purse 3: float"),
            Counterparty::Operator
        );
        assert_eq!(
            counterparty("settlement:+254700000009", ""),
            Counterparty::Operator
        );
    }

    #[test]
    fn english() {
        let texts = statement_texts(Language::En, Currency::KES, 55_000, &postings());
        assert_eq!(
            texts,
            [
                "PURSE BALANCE KES 550.00\n2026-12-01 TO +254700000002 KES 450.00\n2026-11-30 FROM operator KES 1000.00"
            ]
        );
    }

    #[test]
    fn swahili() {
        let texts = statement_texts(Language::Sw, Currency::KES, 55_000, &postings());
        assert_eq!(
            texts,
            [
                "SALIO LA POCHI KES 550.00\n2026-12-01 KWA +254700000002 KES 450.00\n2026-11-30 KUTOKA mwendeshaji KES 1000.00"
            ]
        );
    }

    #[test]
    fn french() {
        let xof = Currency::from_code("XOF").unwrap();
        let texts = statement_texts(Language::Fr, xof, 55_000, &postings());
        assert_eq!(
            texts,
            [
                "SOLDE PORTE-MONNAIE XOF 55000\n2026-12-01 VERS +254700000002 XOF 45000\n2026-11-30 DE opérateur XOF 100000"
            ]
        );
    }

    #[test]
    fn an_empty_statement_says_so_in_each_language() {
        let said: Vec<String> = Language::ALL
            .iter()
            .map(|language| statement_texts(*language, Currency::KES, 0, &[]).join("|"))
            .collect();
        assert_eq!(
            said,
            [
                "PURSE BALANCE KES 0.00\nno payments yet",
                "SALIO LA POCHI KES 0.00\nhakuna malipo bado",
                "SOLDE PORTE-MONNAIE KES 0.00\naucun paiement pour le moment",
            ]
        );
    }

    #[test]
    fn a_long_statement_is_split_into_texts_of_one_sms_each() {
        let many: Vec<StatementLine> = (0..6).flat_map(|_| postings()).collect();
        for language in Language::ALL {
            let texts = statement_texts(language, Currency::KES, 55_000, &many);
            assert!(texts.len() > 1, "{texts:?}");
            assert!(texts.iter().all(|text| text.chars().count() <= 160));
            assert_eq!(
                texts.iter().map(|text| text.lines().count()).sum::<usize>(),
                13
            );
        }
    }
}
