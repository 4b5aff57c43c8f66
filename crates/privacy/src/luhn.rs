//! Card numbers by their digits: the Luhn check and the card-number test built on it.

/// The Luhn check over a string of ASCII digits (other bytes are skipped).
pub fn luhn_valid(number: &str) -> bool {
    let digits: Vec<u32> = number
        .bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| u32::from(b - b'0'))
        .collect();
    if digits.is_empty() {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Whether a number (digits only, or with separators) is a card number: 13 to 19 digits,
/// Luhn-valid, not a single digit repeated.
pub fn is_card_number(number: &str) -> bool {
    let digits: Vec<u8> = number.bytes().filter(u8::is_ascii_digit).collect();
    (13..=19).contains(&digits.len())
        && digits.iter().any(|&d| d != digits[0])
        && luhn_valid(number)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_accepts_valid_numbers_and_rejects_one_digit_off() {
        for valid in [
            "4111111111111111",
            "5500 0000 0000 0004",
            "3400-0000-0000-009",
            "6011000000000004",
            "4222222222222",
            "79927398713",
        ] {
            assert!(luhn_valid(valid), "{valid}");
        }
        for invalid in ["4111111111111112", "79927398710", "1234567812345678", ""] {
            assert!(!luhn_valid(invalid), "{invalid}");
        }
    }
}
