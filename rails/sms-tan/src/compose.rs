//! The payer's side: the text a holder writes with one row of their envelope. A phone app, the
//! CLI's demo and the tests all write instructions with these, so they are the forms the
//! operator's parser reads (`docs/protocols/sms-tan.md`, "Writing an instruction").

use alloc::format;
use alloc::string::String;
use core::fmt::Write as _;

use offpay_money::{Amount, Currency};

use crate::envelope::Envelope;
use crate::grammar::{Checksum, EncryptedEuin, Message, PayerRef, RowChecksum, SecurityLevel};
use crate::limits::{
    ENCRYPTED_ACCOUNT_DIGITS, GRID_CODE_DIGITS, MAGNITUDE_CLASSES, PLAIN_PAYEE_DIGITS,
};
use crate::numbers::{AccountNumber, Euin};
use crate::recipe::AmountDigits;

/// `amount` in hundredths (grid instructions count in hundredths whatever the currency's
/// exponent); `None` when it has digits below a hundredth. The payer composes with it and the
/// operator's engine checks with it.
pub(crate) fn hundredths(amount: &Amount) -> Option<u64> {
    let exponent = amount.currency().exponent();
    if exponent <= 2 {
        amount
            .minor()
            .checked_mul(10u64.pow(u32::from(2 - exponent)))
    } else {
        let scale = 10u64.pow(u32::from(exponent - 2));
        amount
            .minor()
            .is_multiple_of(scale)
            .then(|| amount.minor() / scale)
    }
}

/// The middle (`PAYG`) or high (`PAYC`) instruction a holder writes with `row` of `envelope`:
/// the payee's first digits in clear and the rest grid-coded, the amount plus the row's offset,
/// the magnitude code and the row's checksum over the payee and amount. `payer` is what names the payer (envelope number or pay
/// number, as the holder types it). `None` for the low level, for a row or grid the envelope does
/// not have, or for an amount a grid instruction cannot carry.
pub fn grid_text(
    envelope: &Envelope,
    level: SecurityLevel,
    payer: &str,
    payee: &AccountNumber,
    amount: &Amount,
    row: u8,
) -> Option<String> {
    if level == SecurityLevel::Low {
        return None;
    }
    let secret = envelope.row(row)?;
    let grid = envelope.grid(secret.grid_number())?;
    let class = AmountDigits::of(amount).whole_length();
    if !(1..=MAGNITUDE_CLASSES).contains(&class) {
        return None;
    }
    let plus = hundredths(amount)?.checked_add(secret.amount_offset_hundredths())?;
    let mut coded = String::new();
    for digit in &payee.digits()[..PLAIN_PAYEE_DIGITS] {
        coded.push(char::from(b'0' + digit));
    }
    for (index, digit) in payee.digits()[PLAIN_PAYEE_DIGITS..].iter().enumerate() {
        let _ = write!(
            coded,
            " {:0width$}",
            grid.code(*digit, index + 1),
            width = GRID_CODE_DIGITS
        );
    }
    let sum: String = secret
        .recipe()
        .checksum(payee, amount)
        .iter()
        .map(|digit| char::from(b'0' + digit))
        .collect();
    Some(format!(
        "{} {payer} {row} {coded} {}.{:02} {:03} {sum}",
        level.keyword(),
        plus / 100,
        plus % 100,
        grid.magnitude_code(class),
    ))
}

/// The low-level (`PAY`) instruction a holder writes with `row` of `envelope`: payee and amount
/// in clear, then the six digits the row's recipe gives over them. `None` for a row the envelope
/// does not have.
pub fn low_text(
    envelope: &Envelope,
    payer: &str,
    payee: &AccountNumber,
    amount: &Amount,
    row: u8,
) -> Option<String> {
    let checksum = envelope.row(row)?.recipe().checksum(payee, amount);
    let digits: String = checksum
        .iter()
        .map(|digit| char::from(b'0' + digit))
        .collect();
    Some(format!(
        "PAY {payer} {payee} {} {row} {digits}",
        amount.decimal()
    ))
}

/// A settings message (`LIMIT`, `DIALBACK`, `HIGH`, `PASSWORD`, `DISPUTE`) as the holder writes
/// it: `text` is the message with any six digits where the SUM goes; the result carries its row's
/// SUM over the message's content ([`crate::content`]) for an account in `currency`. `None` when
/// the text is not such a message or its row is not on the envelope.
pub fn setting_text(envelope: &Envelope, currency: Currency, text: &str) -> Option<String> {
    let mut message = crate::grammar::parse(text).ok()?;
    let (subject, digits) = crate::content::signed_content(&message, currency, None).ok()?;
    let auth = match &mut message {
        Message::Limit { auth, .. }
        | Message::Dialback { auth, .. }
        | Message::ForceHigh { auth, .. }
        | Message::SetPassword { auth, .. }
        | Message::SetLanguage { auth, .. }
        | Message::Dispute { auth, .. } => auth,
        _ => return None,
    };
    let row = envelope.row(auth.row)?;
    auth.checksum = Checksum::new(row.recipe().checksum_of_digits(&subject, &digits))?;
    Some(message.format())
}

/// The `REG` a holder writes with `row` of their current `envelope` to register `new_envelope`:
/// the new number's first digit in clear and the rest coded with the row's grid, then the row's
/// SUM over the new number. `payer` names the payer as the holder types it.
pub fn register_text(
    envelope: &Envelope,
    payer: &str,
    new_envelope: &Euin,
    row: u8,
) -> Option<String> {
    let secret = envelope.row(row)?;
    let grid = envelope.grid(secret.grid_number())?;
    let digits = new_envelope.digits();
    let codes: [u16; ENCRYPTED_ACCOUNT_DIGITS] =
        core::array::from_fn(|index| grid.code(digits[index + 1], index + 1));
    let mut message = Message::Register {
        new_envelope: EncryptedEuin {
            plain: digits[0],
            codes,
        },
        payer: match payer.len() {
            crate::limits::EUIN_DIGITS => PayerRef::Envelope(Euin::parse(payer).ok()?),
            _ => PayerRef::PayNumber(AccountNumber::parse(payer).ok()?),
        },
        auth: RowChecksum {
            row,
            checksum: Checksum::new([0; crate::limits::CHECKSUM_DIGITS])?,
        },
    };
    // The currency plays no part in a registration's content.
    let (subject, content) =
        crate::content::signed_content(&message, Currency::KES, Some(new_envelope)).ok()?;
    let sum = Checksum::new(secret.recipe().checksum_of_digits(&subject, &content))?;
    if let Message::Register { auth, .. } = &mut message {
        auth.checksum = sum;
    }
    Some(message.format())
}

#[cfg(test)]
mod tests {
    use offpay_money::Currency;

    use super::*;
    use crate::envelope::RowCount;
    use crate::grammar::{Message, PaymentBody, parse};
    use crate::keys::MasterKey;
    use crate::numbers::Euin;

    fn envelope() -> Envelope {
        Envelope::derive(
            &MasterKey::from_bytes([9; 32]),
            Euin::issued(263, 77).unwrap(),
            RowCount::Twenty,
        )
    }

    #[test]
    fn a_grid_instruction_parses_and_decodes_with_its_row() {
        let envelope = envelope();
        let payee = AccountNumber::parse("901020377865").unwrap();
        let amount = Amount::parse("1500", Currency::KES).unwrap();
        let text = grid_text(
            &envelope,
            SecurityLevel::Middle,
            "26300000772",
            &payee,
            &amount,
            2,
        )
        .unwrap();
        let Ok(Message::Payment(payment)) = parse(&text) else {
            panic!("{text} does not parse as a payment")
        };
        assert_eq!(payment.level, SecurityLevel::Middle);
        let PaymentBody::Grid {
            payee: coded,
            amount_plus_offset,
            ..
        } = payment.body
        else {
            panic!("not a grid instruction")
        };
        let row = envelope.row(2).unwrap();
        let grid = envelope.grid(row.grid_number()).unwrap();
        assert_eq!(coded.plain, [9, 0]);
        for (position, code) in coded.codes.iter().enumerate() {
            assert_eq!(
                grid.decode(position + 1, *code),
                Some(payee.digits()[PLAIN_PAYEE_DIGITS + position])
            );
        }
        assert_eq!(amount_plus_offset - row.amount_offset_hundredths(), 150_000);
        assert!(grid_text(&envelope, SecurityLevel::Low, "x", &payee, &amount, 2).is_none());
        assert!(grid_text(&envelope, SecurityLevel::High, "x", &payee, &amount, 21).is_none());
    }

    #[test]
    fn a_low_instruction_carries_its_rows_checksum() {
        let envelope = envelope();
        let payee = AccountNumber::parse("901020377865").unwrap();
        let amount = Amount::parse("1500.50", Currency::KES).unwrap();
        let text = low_text(&envelope, "26300000772", &payee, &amount, 1).unwrap();
        let Ok(Message::Payment(payment)) = parse(&text) else {
            panic!("{text} does not parse as a payment")
        };
        let PaymentBody::Plain { checksum, .. } = payment.body else {
            panic!("not a low instruction")
        };
        let recipe = envelope.row(1).unwrap().recipe();
        assert!(recipe.verify(&payee, &amount, checksum.digits()));
    }
}
