//! Finding personal data in text: the patterns, the card-number search over digit groups,
//! the rules a match must pass (standing on its own, an SSN that can be issued), and a
//! quick check that lets most strings skip the regexes.

use std::sync::OnceLock;

use regex::Regex;

use crate::kind::{Match, PiiKind};
use crate::luhn::is_card_number;

struct Patterns {
    email: Regex,
    digit_run: Regex,
    ssn: Regex,
    phone: Regex,
}

fn patterns() -> &'static Patterns {
    static P: OnceLock<Patterns> = OnceLock::new();
    P.get_or_init(|| Patterns {
        email: Regex::new(r"[a-zA-Z0-9._%+-]+@[a-zA-Z0-9.-]+\.[a-zA-Z]{2,}").expect("valid"),
        // Digit groups separated by single spaces or hyphens: card numbers are windows of it.
        digit_run: Regex::new(r"\d+(?:[ -]\d+)*").expect("valid"),
        ssn: Regex::new(r"(\d{3})-(\d{2})-(\d{4})").expect("valid"),
        phone: Regex::new(
            r"(?:\+\d{1,3}[ .-]?|\d{1,3}[ .-])?(?:\(\d{3}\)[ .-]?|\d{3}[ .-]?)\d{3}[ .-]?\d{4}",
        )
        .expect("valid"),
    })
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// No letter, digit or `_` right before `start` or right after `end`.
fn stands_alone(text: &str, start: usize, end: usize) -> bool {
    let bytes = text.as_bytes();
    let before_ok = start == 0 || !is_word_byte(bytes[start - 1]);
    let after_ok = end >= bytes.len() || !is_word_byte(bytes[end]);
    before_ok && after_ok
}

fn ssn_issued(area: &str, group: &str, serial: &str) -> bool {
    let area: u32 = area.parse().unwrap_or(0);
    area != 0 && area != 666 && area < 900 && group != "00" && serial != "0000"
}

/// Cards are printed as one run of digits, or in groups of 3 to 6 digits with one kind of
/// separator (`4111 1111 1111 1111`, `3782-822463-10005`); anything else is several numbers
/// side by side.
fn card_shaped(text: &str, groups: &[(usize, usize)]) -> bool {
    if groups.len() == 1 {
        return true;
    }
    let separator = text.as_bytes()[groups[0].1];
    groups.iter().all(|&(s, e)| (3..=6).contains(&(e - s)))
        && groups[..groups.len() - 1]
            .iter()
            .all(|&(_, e)| text.as_bytes()[e] == separator)
}

/// Card numbers in a text: inside each run of digit groups, the first window of whole
/// consecutive groups that is a card number, then the next after it.
fn find_cards(text: &str, out: &mut Vec<Match>) {
    for run in patterns().digit_run.find_iter(text) {
        // Group boundaries (byte ranges) inside the run.
        let mut groups: Vec<(usize, usize)> = Vec::new();
        let mut start = None;
        for (i, b) in run.as_str().bytes().enumerate() {
            match (b.is_ascii_digit(), start) {
                (true, None) => start = Some(i),
                (false, Some(s)) => {
                    groups.push((run.start() + s, run.start() + i));
                    start = None;
                }
                _ => {}
            }
        }
        if let Some(s) = start {
            groups.push((run.start() + s, run.end()));
        }
        let mut first = 0;
        while first < groups.len() {
            let mut found = None;
            let mut digits = 0;
            for last in first..groups.len() {
                digits += groups[last].1 - groups[last].0;
                if digits > 19 {
                    break;
                }
                let (s, e) = (groups[first].0, groups[last].1);
                if digits >= 13
                    && card_shaped(text, &groups[first..=last])
                    && is_card_number(&text[s..e])
                    && stands_alone(text, s, e)
                {
                    found = Some((last, s, e));
                    break;
                }
            }
            match found {
                Some((last, start, end)) => {
                    out.push(Match {
                        kind: PiiKind::CreditCard,
                        start,
                        end,
                    });
                    first = last + 1;
                }
                None => first += 1,
            }
        }
    }
}

/// Whether `text` could hold personal data of any kind, in one pass and without the
/// regexes: an e-mail address needs an `@`; a card number, an SSN or a phone number is a
/// stretch of digits, spaces, `.`, `-`, `(`, `)` and `+` holding at least 9 digits. Most
/// strings (ids, names, ISO timestamps, whose `:` and `T` split the digits) fail it, and
/// for those [`find_pii_kinds`] finds nothing without running a regex. `\d` in the
/// patterns is Unicode-aware, so every numeric character counts as a digit here.
fn could_hold_pii(text: &str) -> bool {
    let mut digits = 0usize;
    for c in text.chars() {
        if c.is_ascii_digit() || (!c.is_ascii() && c.is_numeric()) {
            digits += 1;
            if digits >= 9 {
                return true;
            }
        } else if c == '@' {
            return true;
        } else if !matches!(c, ' ' | '.' | '-' | '(' | ')' | '+') {
            digits = 0;
        }
    }
    false
}

/// Every piece of personal data of the given kinds in `text`, sorted by position and
/// never overlapping (see the module docs for the rules).
pub fn find_pii_kinds(text: &str, kinds: &[PiiKind]) -> Vec<Match> {
    if !could_hold_pii(text) {
        return Vec::new();
    }
    find_pii_kinds_with_regexes(text, kinds)
}

fn find_pii_kinds_with_regexes(text: &str, kinds: &[PiiKind]) -> Vec<Match> {
    let p = patterns();
    let mut found: Vec<Match> = Vec::new();
    let free =
        |found: &[Match], s: usize, e: usize| found.iter().all(|m| e <= m.start || s >= m.end);
    for kind in PiiKind::ALL {
        if !kinds.contains(&kind) {
            continue;
        }
        let mut new = Vec::new();
        match kind {
            PiiKind::Email => {
                for m in p.email.find_iter(text) {
                    new.push((m.start(), m.end()));
                }
            }
            PiiKind::CreditCard => {
                let mut cards = Vec::new();
                find_cards(text, &mut cards);
                new.extend(cards.iter().map(|m| (m.start, m.end)));
            }
            PiiKind::Ssn => {
                for c in p.ssn.captures_iter(text) {
                    let m = c.get(0).expect("group 0");
                    if ssn_issued(&c[1], &c[2], &c[3]) && stands_alone(text, m.start(), m.end()) {
                        new.push((m.start(), m.end()));
                    }
                }
            }
            PiiKind::Phone => {
                for m in p.phone.find_iter(text) {
                    if stands_alone(text, m.start(), m.end()) {
                        new.push((m.start(), m.end()));
                    }
                }
            }
        }
        for (start, end) in new {
            if free(&found, start, end) {
                found.push(Match { kind, start, end });
            }
        }
    }
    found.sort_by_key(|m| m.start);
    found
}

/// Every piece of personal data of every kind in `text`.
pub fn find_pii(text: &str) -> Vec<Match> {
    find_pii_kinds(text, &PiiKind::ALL)
}

/// Whether a JSON number is masked as a card number: an integer (never a float) whose
/// digits are one. Below 13 digits it cannot be, and is not formatted to find out.
pub(crate) fn number_is_card(n: &serde_json::Number) -> bool {
    const SMALLEST_13_DIGITS: u64 = 1_000_000_000_000;
    let long_enough = match (n.as_u64(), n.as_i64()) {
        (Some(u), _) => u >= SMALLEST_13_DIGITS,
        (None, Some(i)) => i.unsigned_abs() >= SMALLEST_13_DIGITS,
        (None, None) => return false,
    };
    long_enough && is_card_number(&n.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<(PiiKind, &str)> {
        find_pii(text)
            .into_iter()
            .map(|m| (m.kind, &text[m.start..m.end]))
            .collect()
    }

    #[test]
    fn card_numbers_need_luhn_a_card_length_and_standing_alone() {
        assert_eq!(
            kinds("card 4111 1111 1111 1111 exp 12/29"),
            vec![(PiiKind::CreditCard, "4111 1111 1111 1111")]
        );
        assert_eq!(
            kinds("4111-1111-1111-1111"),
            vec![(PiiKind::CreditCard, "4111-1111-1111-1111")]
        );
        // 16 digits, wrong check digit: not a card (and not a phone either).
        assert_eq!(kinds("4111111111111112"), vec![]);
        assert_eq!(kinds("1234 5678 1234 5678"), vec![]);
        // Luhn-valid but too short, or one digit repeated: not a card.
        assert_eq!(kinds("79927398713"), vec![]);
        assert_eq!(kinds("0000 0000 0000 0000"), vec![]);
        // Glued to letters: not on its own.
        assert_eq!(kinds("id4111111111111111x"), vec![]);
        // A card followed by another number in the same run of groups.
        assert_eq!(
            kinds("4111 1111 1111 1111 55"),
            vec![(PiiKind::CreditCard, "4111 1111 1111 1111")]
        );
    }

    #[test]
    fn ssns_phones_and_emails_are_found_and_told_apart() {
        assert_eq!(
            kinds("SSN 123-45-6789, mail Jane.Doe+x@Example.co.uk, tel (555) 123-4567"),
            vec![
                (PiiKind::Ssn, "123-45-6789"),
                (PiiKind::Email, "Jane.Doe+x@Example.co.uk"),
                (PiiKind::Phone, "(555) 123-4567"),
            ]
        );
        // Numbers the SSA never issues.
        assert_eq!(
            kinds("000-12-3456 666-12-3456 912-12-3456 123-00-4567"),
            vec![]
        );
        // Amex grouping 4-6-5 is a card shape.
        assert_eq!(
            kinds("3782-822463-10005"),
            vec![(PiiKind::CreditCard, "3782-822463-10005")]
        );
        assert_eq!(
            kinds("+44 555 123 4567"),
            vec![(PiiKind::Phone, "+44 555 123 4567")]
        );
        assert_eq!(
            kinds("1-555-123-4567"),
            vec![(PiiKind::Phone, "1-555-123-4567")]
        );
        assert_eq!(kinds("5551234567"), vec![(PiiKind::Phone, "5551234567")]);
        // Inside a longer number: not a phone.
        assert_eq!(kinds("order 12345551234567"), vec![]);
        assert_eq!(kinds("nothing here: 3.14159, 2026-11-26"), vec![]);
    }

    #[test]
    fn the_quick_check_lets_through_every_string_the_regexes_match() {
        let mut texts: Vec<String> = [
            "card 4111 1111 1111 1111 exp 12/29",
            "3782-822463-10005",
            "SSN 123-45-6789, mail Jane.Doe+x@Example.co.uk, tel (555) 123-4567",
            "+44 555 123 4567",
            "1-555-123-4567",
            "5551234567",
            "(555)123-4567",
            "555.123.4567",
            "a@b.io",
            // Arabic-Indic digits: `\d` is Unicode-aware.
            "\u{663}\u{663}\u{663}-\u{663}\u{663}-\u{663}\u{663}\u{663}\u{663}",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // Random strings over the characters the patterns care about, and some they don't.
        let alphabet: Vec<char> = "0123456789 .-()+@x:T_\u{663}".chars().collect();
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..50_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = 6 + (state % 20) as usize;
            let mut s = String::new();
            let mut r = state;
            for _ in 0..len {
                r = r.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                // Mostly digits, so that numbers of every shape turn up.
                let i = (r >> 33) as usize % (alphabet.len() + 12);
                s.push(if i >= alphabet.len() {
                    char::from(b'0' + (i - alphabet.len()) as u8 % 10)
                } else {
                    alphabet[i]
                });
            }
            texts.push(s);
        }
        let mut matched = 0;
        for text in &texts {
            let found = find_pii_kinds_with_regexes(text, &PiiKind::ALL);
            if !found.is_empty() {
                matched += 1;
                assert!(could_hold_pii(text), "{text:?}: {found:?}");
            }
            assert_eq!(find_pii(text), found, "{text:?}");
        }
        assert!(matched > 100, "the random strings hold matches ({matched})");
        for clean in ["2026-11-26T12:00:00Z", "ev-123456", "plant-3", "12345678"] {
            assert!(!could_hold_pii(clean), "{clean}");
        }
    }
}
