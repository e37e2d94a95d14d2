//! The USSD menu as pure code: the aggregator's `text` (every input of the session so far, joined
//! by `*`) read into what the holder asked ([`Ask`]), and what was read for it rendered into one
//! screen ([`Screen`]) in a language. Nothing here reads a clock, the ledger or a socket; the
//! route (`rails/ussd.rs`) loads what an [`Ask`] needs and calls the renderers.
//!
//! The menu moves no money: balances, statements, the language and help. Payments stay by SMS
//! with a TAN envelope row (the help screen says so), so the TAN rules live in one place.

use offpay_sms_tan::Euin;
use offpay_text::{Language, text, ussd};

/// The most characters of one USSD screen, `CON `/`END ` included (the common aggregators' page).
pub const SCREEN_CHARS_MAX: usize = 182;
/// The most inputs one session reads; the deepest path (language, choice, envelope) has three.
pub const STEPS_MAX: usize = 3;
/// The most bytes of `text` read at all.
pub const TEXT_BYTES_MAX: usize = 64;
/// Lines of a purse statement (the newest).
pub const STATEMENT_LINES_MAX: usize = 5;

/// What the holder asked, read from the session's inputs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ask {
    /// The first screen.
    Main,
    /// 1: the purse's balance as last synced.
    PurseBalance,
    /// 2: the purse's last payments.
    PurseStatement,
    /// 3 or 4 without the envelope number yet.
    EnvelopeFor(SmsQuery),
    /// 3 or 4 with the envelope number.
    Sms(SmsQuery, Euin),
    /// 5: the languages.
    Languages,
    /// 5 and a language, without the envelope number yet.
    EnvelopeForLanguage(Language),
    /// 5, a language and the envelope number.
    SetLanguage(Language, Euin),
    /// 6.
    Help,
    /// An envelope number that is not 11 digits.
    BadEnvelope,
    /// A choice not on the screen.
    WrongChoice,
    /// More inputs than any path has, or more text than any path needs.
    Ended,
}

/// A question to the SMS account: the same as the SMS messages `BAL` and `STMT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmsQuery {
    /// `BAL`.
    Balance,
    /// `STMT`.
    Statement,
}

impl SmsQuery {
    /// The SMS keyword it stands for.
    pub fn keyword(self) -> &'static str {
        match self {
            SmsQuery::Balance => "BAL",
            SmsQuery::Statement => "STMT",
        }
    }
}

/// Reads the session's inputs.
pub fn ask(session_text: &str) -> Ask {
    if session_text.len() > TEXT_BYTES_MAX {
        return Ask::Ended;
    }
    let inputs: Vec<&str> = if session_text.trim().is_empty() {
        Vec::new()
    } else {
        session_text.split('*').map(str::trim).collect()
    };
    if inputs.len() > STEPS_MAX {
        return Ask::Ended;
    }
    let envelope = |text: &str| {
        let digits: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        Euin::parse(&digits).ok()
    };
    let language = |text: &str| match text {
        "1" => Some(Language::En),
        "2" => Some(Language::Sw),
        "3" => Some(Language::Fr),
        _ => None,
    };
    match inputs.as_slice() {
        [] => Ask::Main,
        ["1"] => Ask::PurseBalance,
        ["2"] => Ask::PurseStatement,
        [choice @ ("3" | "4")] => Ask::EnvelopeFor(query(choice)),
        [choice @ ("3" | "4"), number] => match envelope(number) {
            Some(euin) => Ask::Sms(query(choice), euin),
            None => Ask::BadEnvelope,
        },
        ["5"] => Ask::Languages,
        ["5", choice] => language(choice).map_or(Ask::WrongChoice, Ask::EnvelopeForLanguage),
        ["5", choice, number] => match (language(choice), envelope(number)) {
            (Some(language), Some(euin)) => Ask::SetLanguage(language, euin),
            (None, _) => Ask::WrongChoice,
            (Some(_), None) => Ask::BadEnvelope,
        },
        ["6"] => Ask::Help,
        _ => Ask::WrongChoice,
    }
}

fn query(choice: &str) -> SmsQuery {
    if choice == "3" {
        SmsQuery::Balance
    } else {
        SmsQuery::Statement
    }
}

/// One screen: continue (the phone waits for an input) or end the session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Screen {
    /// More input is expected.
    pub more: bool,
    /// The words shown.
    pub text: String,
}

impl Screen {
    fn more(text: String) -> Screen {
        Screen { more: true, text }
    }

    fn end(text: String) -> Screen {
        Screen { more: false, text }
    }

    /// The aggregator's body: `CON ` or `END `, then the text, cut to [`SCREEN_CHARS_MAX`]
    /// characters (the renderers keep within it; the cut only guards a text from elsewhere).
    pub fn body(&self) -> String {
        let prefix = if self.more { "CON " } else { "END " };
        let room = SCREEN_CHARS_MAX - prefix.len();
        let mut body = String::from(prefix);
        body.extend(self.text.chars().take(room));
        body
    }
}

/// The screen of an [`Ask`] that needs nothing read.
pub fn fixed(ask: &Ask, language: Language) -> Option<Screen> {
    let say = |id| text(language, id, &[]);
    Some(match ask {
        Ask::Main => Screen::more(say(ussd::MAIN)),
        Ask::EnvelopeFor(_) | Ask::EnvelopeForLanguage(_) => {
            Screen::more(say(ussd::ENTER_ENVELOPE))
        }
        Ask::Languages => Screen::more(say(ussd::CHOOSE_LANGUAGE)),
        Ask::Help => Screen::end(say(ussd::HELP)),
        Ask::BadEnvelope => Screen::end(say(ussd::BAD_ENVELOPE)),
        Ask::WrongChoice => Screen::end(say(ussd::WRONG_CHOICE)),
        Ask::Ended => Screen::end(say(ussd::SESSION_ENDED)),
        Ask::PurseBalance | Ask::PurseStatement | Ask::Sms(..) | Ask::SetLanguage(..) => {
            return None;
        }
    })
}

/// A purse as the operator last saw it, written for people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PurseView {
    /// The balance with its currency, e.g. `KES 1250.00`.
    pub balance: String,
    /// When it last synced, local time (`2026-12-07 09:30`); `None`: never.
    pub synced: Option<String>,
    /// Blocked by the operator.
    pub blocked: bool,
    /// The newest payments first: (date, money in, amount with currency).
    pub lines: Vec<(String, bool, String)>,
}

/// Choice 1.
pub fn purse_balance(purse: Option<&PurseView>, language: Language) -> Screen {
    let Some(purse) = purse else {
        return Screen::end(text(language, ussd::NO_PURSE, &[]));
    };
    if purse.blocked {
        return Screen::end(text(language, ussd::PURSE_BLOCKED, &[]));
    }
    Screen::end(match &purse.synced {
        Some(synced) => text(
            language,
            ussd::PURSE_BALANCE,
            &[("amount", &purse.balance), ("synced", synced)],
        ),
        None => text(
            language,
            ussd::PURSE_BALANCE_NEVER,
            &[("amount", &purse.balance)],
        ),
    })
}

/// Choice 2: the newest lines that fit the screen.
pub fn purse_statement(purse: Option<&PurseView>, language: Language) -> Screen {
    let Some(purse) = purse else {
        return Screen::end(text(language, ussd::NO_PURSE, &[]));
    };
    if purse.lines.is_empty() {
        return Screen::end(text(language, ussd::PURSE_STATEMENT_EMPTY, &[]));
    }
    let lines: Vec<String> = purse
        .lines
        .iter()
        .take(STATEMENT_LINES_MAX)
        .map(|(date, money_in, amount)| {
            let id = if *money_in {
                ussd::LINE_IN
            } else {
                ussd::LINE_OUT
            };
            text(language, id, &[("date", date), ("amount", amount)])
        })
        .collect();
    // Drop the oldest lines until the screen fits.
    for count in (1..=lines.len()).rev() {
        let joined = lines[..count].join("\n");
        let screen = Screen::end(text(language, ussd::PURSE_STATEMENT, &[("lines", &joined)]));
        let full = screen.text.chars().count() + 4;
        if full <= SCREEN_CHARS_MAX || count == 1 {
            return screen;
        }
    }
    Screen::end(text(language, ussd::PURSE_STATEMENT_EMPTY, &[]))
}

/// Choices 3 and 4: the SMS account's own reply (one SMS, so it fits), or why there is none.
pub fn sms_answer(reply: Option<&str>, language: Language) -> Screen {
    match reply {
        Some(reply) => Screen::end(reply.to_owned()),
        None => Screen::end(text(language, ussd::NOT_BOUND, &[])),
    }
}

/// Choice 5, done: said in the new language.
pub fn language_set(language: Language) -> Screen {
    Screen::end(text(
        language,
        ussd::LANGUAGE_SET,
        &[("language", &language.sms_name())],
    ))
}

/// The phone is not bound to the envelope's account.
pub fn not_bound(language: Language) -> Screen {
    Screen::end(text(language, ussd::NOT_BOUND, &[]))
}

/// The envelope's or the account's record failed its MAC: nothing on it is offered.
pub fn account_held(language: Language) -> Screen {
    Screen::end(text(language, ussd::ACCOUNT_HELD, &[]))
}

/// The ledger cannot be read now.
pub fn unavailable(language: Language) -> Screen {
    Screen::end(text(language, ussd::UNAVAILABLE, &[]))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EUIN: &str = "26399912345";

    #[test]
    fn the_session_text_is_read_into_what_was_asked() {
        let euin = Euin::parse(EUIN).unwrap();
        assert_eq!(ask(""), Ask::Main);
        assert_eq!(ask("1"), Ask::PurseBalance);
        assert_eq!(ask("2"), Ask::PurseStatement);
        assert_eq!(ask("3"), Ask::EnvelopeFor(SmsQuery::Balance));
        assert_eq!(ask("4*263 999 12345"), Ask::Sms(SmsQuery::Statement, euin));
        assert_eq!(ask("3*2639991234"), Ask::BadEnvelope);
        assert_eq!(ask("5"), Ask::Languages);
        assert_eq!(ask("5*2"), Ask::EnvelopeForLanguage(Language::Sw));
        assert_eq!(
            ask(&format!("5*3*{EUIN}")),
            Ask::SetLanguage(Language::Fr, euin)
        );
        assert_eq!(ask("5*9"), Ask::WrongChoice);
        assert_eq!(ask("6"), Ask::Help);
        assert_eq!(ask("7"), Ask::WrongChoice);
        assert_eq!(ask("1*1"), Ask::WrongChoice);
        assert_eq!(ask("5*1*1*1"), Ask::Ended);
        assert_eq!(ask(&"1".repeat(TEXT_BYTES_MAX + 1)), Ask::Ended);
    }

    fn longest_purse() -> PurseView {
        PurseView {
            balance: "KES 1250000.00".into(),
            synced: Some("2026-12-07 09:30".into()),
            blocked: false,
            lines: (0..STATEMENT_LINES_MAX)
                .map(|index| {
                    (
                        "2026-12-07".to_owned(),
                        index % 2 == 0,
                        "KES 1250000.00".to_owned(),
                    )
                })
                .collect(),
        }
    }

    /// Every screen in every language, with the longest realistic values, fits one page.
    #[test]
    fn every_screen_fits_182_characters_in_every_language() {
        let purse = longest_purse();
        let never = PurseView {
            synced: None,
            ..longest_purse()
        };
        let blocked = PurseView {
            blocked: true,
            ..longest_purse()
        };
        let euin = Euin::parse(EUIN).unwrap();
        // The longest SMS-TAN reply is one SMS (the catalogue test holds it to 160).
        let reply = "x".repeat(160);
        for language in Language::ALL {
            let mut screens = Vec::new();
            for asked in [
                Ask::Main,
                Ask::EnvelopeFor(SmsQuery::Balance),
                Ask::EnvelopeForLanguage(language),
                Ask::Languages,
                Ask::Help,
                Ask::BadEnvelope,
                Ask::WrongChoice,
                Ask::Ended,
            ] {
                screens.push(fixed(&asked, language).unwrap());
            }
            assert!(fixed(&Ask::Sms(SmsQuery::Balance, euin), language).is_none());
            for view in [Some(&purse), Some(&never), Some(&blocked), None] {
                screens.push(purse_balance(view, language));
                screens.push(purse_statement(view, language));
            }
            screens.push(sms_answer(Some(&reply), language));
            screens.push(sms_answer(None, language));
            screens.push(language_set(language));
            screens.push(not_bound(language));
            screens.push(account_held(language));
            screens.push(unavailable(language));
            for screen in screens {
                let body = screen.body();
                let full = format!(
                    "{}{}",
                    if screen.more { "CON " } else { "END " },
                    screen.text
                );
                assert!(
                    full.chars().count() <= SCREEN_CHARS_MAX,
                    "{} characters in {}: {full}",
                    full.chars().count(),
                    language.code()
                );
                assert_eq!(body, full, "nothing was cut");
                assert!(!screen.text.contains('{'), "a variable was left: {full}");
            }
        }
    }

    #[test]
    fn a_statement_keeps_the_newest_lines_that_fit() {
        let purse = longest_purse();
        let screen = purse_statement(Some(&purse), Language::Fr);
        assert!(!screen.more);
        let lines = screen.text.lines().count() - 1;
        assert!(
            (1..=STATEMENT_LINES_MAX).contains(&lines),
            "{}",
            screen.text
        );
        assert!(
            screen.text.contains("entrée KES 1250000.00"),
            "{}",
            screen.text
        );
    }
}
