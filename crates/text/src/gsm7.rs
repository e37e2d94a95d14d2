//! GSM 03.38 (3GPP TS 23.038) default alphabet: what one SMS can carry without switching to
//! UCS-2. One SMS holds 160 septets; a character of the extension table takes two (escape plus
//! the character).

/// Septets in one single-part SMS.
pub const SMS_SEPTETS_MAX: usize = 160;

/// The basic set, in code order (0x00..=0x7F); 0x1B (the escape to the extension table) is
/// written as a space here and never matched.
const BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ ÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";

/// The extension table (each costs two septets).
const EXTENSION: &str = "\u{000C}^{}\\[~]|€";

/// Septets `text` takes in the GSM-7 default alphabet, or the first character outside it.
pub fn septets(text: &str) -> Result<usize, char> {
    let mut count = 0;
    for character in text.chars() {
        if character == '\u{1B}' {
            return Err(character);
        }
        if BASIC.contains(character) {
            count += 1;
        } else if EXTENSION.contains(character) {
            count += 2;
        } else {
            return Err(character);
        }
    }
    Ok(count)
}

/// Whether `character` is in the basic set or the extension table.
pub fn is_gsm7(character: char) -> bool {
    character != '\u{1B}' && (BASIC.contains(character) || EXTENSION.contains(character))
}

/// Whether `text` fits one GSM-7 SMS.
pub fn fits_one_sms(text: &str) -> bool {
    septets(text).is_ok_and(|count| count <= SMS_SEPTETS_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_basic_set_has_128_characters() {
        assert_eq!(BASIC.chars().count(), 128);
    }

    #[test]
    fn counts_basic_extension_and_refuses_the_rest() {
        assert_eq!(septets("Salio lako ni KES 10.00"), Ok(23));
        assert_eq!(septets("Relevé à jour"), Ok(13));
        assert_eq!(septets("[x]"), Ok(5));
        assert_eq!(septets("€"), Ok(2));
        for outside in ['ê', 'â', 'î', 'ô', 'û', 'ç', 'œ', 'ë', '\u{2068}'] {
            assert_eq!(septets(&format!("a{outside}")), Err(outside), "{outside}");
        }
        assert!(fits_one_sms(&"a".repeat(160)));
        assert!(!fits_one_sms(&"a".repeat(161)));
        assert!(!fits_one_sms(&"€".repeat(81)));
    }
}
