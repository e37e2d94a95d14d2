//! Every text a customer reads — SMS replies and notices, the purse menu, the envelope's printed
//! instructions, the account holder's web pages, the device CLIs' messages — in English, Swahili
//! and French, from Fluent catalogues (`locales/<code>/<area>.ftl`) embedded in the binary.
//!
//! Call sites name a message by a typed [`Id`] constant of its area module ([`sms`], [`web`],
//! [`envelope`], [`purse`], [`wallet`], [`microcheck`]) and pass its variables already formatted:
//! amounts, references and codes are written by our own code (currency code and decimal text), so
//! they read byte for byte the same in every language; Fluent's number formatting and its Unicode
//! isolation marks (not GSM-7) are never used. A message missing in a language falls back to
//! English — the catalogue test (`tests/catalogue.rs`) forbids that in the shipped files.
//!
//! Adding an area: a module below with [`messages!`], one [`Area`] in [`AREAS`], and one file per
//! language. Adding a language: `docs/guide/languages.md`.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use fluent_bundle::concurrent::FluentBundle;
use fluent_bundle::{FluentArgs, FluentResource, FluentValue};

pub mod gsm7;

/// The languages every customer-facing text exists in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Language {
    /// English (the fallback).
    #[default]
    En,
    /// Kiswahili, as used in Kenya and Tanzania.
    Sw,
    /// French, as in West and Central African banking.
    Fr,
}

impl Language {
    /// Every language, in the order they are listed to people.
    pub const ALL: [Language; 3] = [Language::En, Language::Sw, Language::Fr];

    /// The ISO 639-1 code (`en`, `sw`, `fr`): what is stored and what `<html lang>` says.
    pub fn code(self) -> &'static str {
        match self {
            Language::En => "en",
            Language::Sw => "sw",
            Language::Fr => "fr",
        }
    }

    /// The language's own name for itself (`English`, `Kiswahili`, `Français`).
    pub fn name(self) -> &'static str {
        match self {
            Language::En => "English",
            Language::Sw => "Kiswahili",
            Language::Fr => "Français",
        }
    }

    /// The name written in GSM-7 (for SMS): `Francais` loses its cedilla.
    pub fn sms_name(self) -> &'static str {
        match self {
            Language::Fr => "Francais",
            other => other.name(),
        }
    }

    fn index(self) -> usize {
        match self {
            Language::En => 0,
            Language::Sw => 1,
            Language::Fr => 2,
        }
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A language name that is not one of ours.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownLanguage;

impl fmt::Display for UnknownLanguage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("unknown language: use en, sw or fr (English, Kiswahili, Français)")
    }
}

impl std::error::Error for UnknownLanguage {}

impl FromStr for Language {
    type Err = UnknownLanguage;

    /// Reads a code or a name in any case: `en`, `english`, `sw`, `swahili`, `kiswahili`, `fr`,
    /// `francais`, `français` (also the names people write in the other two languages:
    /// `kiingereza`, `anglais`, `kifaransa`, `français`).
    fn from_str(text: &str) -> Result<Language, UnknownLanguage> {
        match text.trim().to_lowercase().as_str() {
            "en" | "eng" | "english" | "kiingereza" | "anglais" => Ok(Language::En),
            "sw" | "swa" | "swahili" | "kiswahili" => Ok(Language::Sw),
            "fr" | "fra" | "fre" | "francais" | "français" | "french" | "kifaransa" => {
                Ok(Language::Fr)
            }
            _ => Err(UnknownLanguage),
        }
    }
}

/// A message of the catalogue, named by its Fluent id. Use the constants of the area modules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Id(&'static str);

impl Id {
    /// The Fluent message id.
    pub fn as_str(self) -> &'static str {
        self.0
    }
}

/// One area of texts: its file name and ids, and whether its texts travel by SMS (then every
/// message must fit one GSM-7 SMS).
#[derive(Clone, Copy, Debug)]
pub struct Area {
    /// File stem under `locales/<code>/`.
    pub name: &'static str,
    /// Every message id the code uses.
    pub ids: &'static [Id],
    /// Texts sent as SMS: the catalogue test holds each to one GSM-7 SMS.
    pub sms: bool,
    /// The file's text per language, in [`Language::ALL`] order.
    pub sources: [&'static str; 3],
}

/// Declares a module's message ids and its `ALL` list.
#[macro_export]
macro_rules! messages {
    ($($(#[$doc:meta])* $name:ident = $id:literal;)*) => {
        $($(#[$doc])* pub const $name: $crate::Id = $crate::Id::from_static($id);)*
        /// Every id of this area.
        pub const ALL: &[$crate::Id] = &[$($name),*];
    };
}

impl Id {
    /// For [`messages!`].
    #[doc(hidden)]
    pub const fn from_static(id: &'static str) -> Id {
        Id(id)
    }
}

macro_rules! sources {
    ($file:literal) => {
        [
            include_str!(concat!("../locales/en/", $file)),
            include_str!(concat!("../locales/sw/", $file)),
            include_str!(concat!("../locales/fr/", $file)),
        ]
    };
}

pub mod envelope;
pub mod microcheck;
pub mod purse;
pub mod sms;
pub mod ussd;
pub mod wallet;
pub mod web;

/// Every area, each with its three files.
pub const AREAS: &[Area] = &[
    Area {
        name: "sms",
        ids: sms::ALL,
        sms: true,
        sources: sources!("sms.ftl"),
    },
    Area {
        name: "ussd",
        ids: ussd::ALL,
        sms: false,
        sources: sources!("ussd.ftl"),
    },
    Area {
        name: "web",
        ids: web::ALL,
        sms: false,
        sources: sources!("web.ftl"),
    },
    Area {
        name: "envelope",
        ids: envelope::ALL,
        sms: false,
        sources: sources!("envelope.ftl"),
    },
    Area {
        name: "purse",
        ids: purse::ALL,
        sms: false,
        sources: sources!("purse.ftl"),
    },
    Area {
        name: "wallet",
        ids: wallet::ALL,
        sms: false,
        sources: sources!("wallet.ftl"),
    },
    Area {
        name: "microcheck",
        ids: microcheck::ALL,
        sms: false,
        sources: sources!("microcheck.ftl"),
    },
];

/// The loaded catalogue: one Fluent bundle per language holding every area.
pub struct Catalogue {
    bundles: [FluentBundle<FluentResource>; 3],
    /// Problems met while loading (a file that does not parse, an id defined twice): empty for
    /// the shipped files, which the catalogue test checks.
    problems: Vec<String>,
}

impl fmt::Debug for Catalogue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Catalogue")
            .field("problems", &self.problems)
            .finish_non_exhaustive()
    }
}

impl Catalogue {
    /// The catalogue of the files built into this binary (loaded once).
    pub fn get() -> &'static Catalogue {
        static CATALOGUE: OnceLock<Catalogue> = OnceLock::new();
        CATALOGUE.get_or_init(|| Catalogue::load(AREAS))
    }

    /// Loads `areas` (the shipped ones: [`Catalogue::get`]).
    pub fn load(areas: &[Area]) -> Catalogue {
        let mut problems = Vec::new();
        let bundles = Language::ALL.map(|language| {
            let locale = language
                .code()
                .parse()
                .unwrap_or_else(|_| unic_langid::LanguageIdentifier::default());
            let mut bundle = FluentBundle::new_concurrent(vec![locale]);
            // The bidi isolation marks Fluent puts around variables are not GSM-7, and none of
            // our languages is written right to left.
            bundle.set_use_isolating(false);
            for area in areas {
                let source = area.sources[language.index()];
                let resource = match FluentResource::try_new(source.to_owned()) {
                    Ok(resource) => resource,
                    Err((resource, errors)) => {
                        problems.push(format!(
                            "{}/{}.ftl does not parse: {errors:?}",
                            language.code(),
                            area.name
                        ));
                        resource
                    }
                };
                if let Err(errors) = bundle.add_resource(resource) {
                    problems.push(format!("{}/{}.ftl: {errors:?}", language.code(), area.name));
                }
            }
            bundle
        });
        Catalogue { bundles, problems }
    }

    /// Problems met while loading (empty for the shipped files).
    pub fn problems(&self) -> &[String] {
        &self.problems
    }

    /// Whether `language` has message `id` itself (no fallback).
    pub fn has(&self, language: Language, id: Id) -> bool {
        self.bundles[language.index()].has_message(id.0)
    }

    /// Message `id` in `language` with `args` (each written with its `Display`), falling back to
    /// English when the language lacks it, and to the id itself when English lacks it too.
    pub fn text(&self, language: Language, id: Id, args: &[(&str, &dyn fmt::Display)]) -> String {
        self.try_text(language, id, args)
            .or_else(|| self.try_text(Language::En, id, args))
            .unwrap_or_else(|| id.0.to_owned())
    }

    /// Message `id` in `language` exactly (no fallback), with the variables it refers to but
    /// `args` does not give reported as errors: for the catalogue test.
    pub fn text_checked(
        &self,
        language: Language,
        id: Id,
        args: &[(&str, &dyn fmt::Display)],
    ) -> Result<String, String> {
        let bundle = &self.bundles[language.index()];
        let pattern = bundle
            .get_message(id.0)
            .and_then(|message| message.value())
            .ok_or_else(|| format!("{} has no message {}", language.code(), id.0))?;
        let fluent_args = to_args(args);
        let mut errors = Vec::new();
        let text = bundle.format_pattern(pattern, Some(&fluent_args), &mut errors);
        if errors.is_empty() {
            Ok(text.into_owned())
        } else {
            Err(format!("{} {}: {errors:?}", language.code(), id.0))
        }
    }

    fn try_text(
        &self,
        language: Language,
        id: Id,
        args: &[(&str, &dyn fmt::Display)],
    ) -> Option<String> {
        let bundle = &self.bundles[language.index()];
        let pattern = bundle.get_message(id.0)?.value()?;
        let fluent_args = to_args(args);
        let mut errors = Vec::new();
        Some(
            bundle
                .format_pattern(pattern, Some(&fluent_args), &mut errors)
                .into_owned(),
        )
    }
}

fn to_args<'a>(args: &[(&'a str, &dyn fmt::Display)]) -> FluentArgs<'a> {
    let mut fluent_args = FluentArgs::with_capacity(args.len());
    for (name, value) in args {
        // Strings, never numbers: Fluent would format a number by locale rules, and an amount
        // must read the same in every language.
        fluent_args.set(*name, FluentValue::String(value.to_string().into()));
    }
    fluent_args
}

/// Message `id` in `language` from the built-in catalogue ([`Catalogue::text`]).
pub fn text(language: Language, id: Id, args: &[(&str, &dyn fmt::Display)]) -> String {
    Catalogue::get().text(language, id, args)
}

/// The variables each message refers to, per language, read from the Fluent sources: for the
/// catalogue test (the same variables in every language).
pub fn variables(area: &Area, language: Language) -> HashMap<String, Vec<String>> {
    use fluent_syntax::ast;
    let mut found = HashMap::new();
    let Ok(resource) = fluent_syntax::parser::parse(area.sources[language.index()]) else {
        return found;
    };
    for entry in resource.body {
        if let ast::Entry::Message(message) = entry {
            let mut names = Vec::new();
            if let Some(pattern) = &message.value {
                collect(pattern, &mut names);
            }
            names.sort();
            names.dedup();
            found.insert(message.id.name.to_owned(), names);
        }
    }
    found
}

fn collect(pattern: &fluent_syntax::ast::Pattern<&str>, names: &mut Vec<String>) {
    use fluent_syntax::ast::{Expression, InlineExpression, PatternElement};
    fn inline(expression: &InlineExpression<&str>, names: &mut Vec<String>) {
        match expression {
            InlineExpression::VariableReference { id } => names.push(id.name.to_owned()),
            InlineExpression::Placeable { expression } => walk(expression, names),
            _ => {}
        }
    }
    fn walk(expression: &Expression<&str>, names: &mut Vec<String>) {
        match expression {
            Expression::Inline(expression) => inline(expression, names),
            Expression::Select { selector, variants } => {
                inline(selector, names);
                for variant in variants {
                    collect(&variant.value, names);
                }
            }
        }
    }
    for element in &pattern.elements {
        if let PatternElement::Placeable { expression } = element {
            walk(expression, names);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn languages_parse_from_codes_and_names() {
        for (text, language) in [
            ("en", Language::En),
            ("English", Language::En),
            ("SW", Language::Sw),
            ("swahili", Language::Sw),
            ("Kiswahili", Language::Sw),
            ("fr", Language::Fr),
            ("francais", Language::Fr),
            ("Français", Language::Fr),
            ("FRANÇAIS", Language::Fr),
        ] {
            assert_eq!(text.parse::<Language>(), Ok(language), "{text}");
        }
        assert_eq!("de".parse::<Language>(), Err(UnknownLanguage));
        assert_eq!(Language::Fr.to_string(), "Français");
        for language in Language::ALL {
            assert_eq!(language.code().parse::<Language>(), Ok(language));
            assert_eq!(language.name().parse::<Language>(), Ok(language));
        }
    }

    #[test]
    fn amounts_pass_through_unformatted_and_without_isolation_marks() {
        let text =
            Catalogue::get().text(Language::Fr, sms::BALANCE, &[("amount", &"KES 1234567.50")]);
        assert!(text.contains("KES 1234567.50"), "{text}");
        assert!(
            !text.contains('\u{2068}') && !text.contains('\u{2069}'),
            "{text}"
        );
    }
}
