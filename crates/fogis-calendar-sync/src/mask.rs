//! Keeps personal data out of logs: phone numbers and e-mail addresses are masked in every line
//! the logger writes, whatever code produced it.

use std::io::Write;

/// Masks e-mail addresses (`***@***`) and phone numbers in `text`: `+46…`, `0046…` (any `00`
/// international prefix), `46…` without the plus (10 to 12 digits), and Swedish national `0[1-9]…`
/// numbers of seven digits or more; spaces, dashes, dots, slashes and brackets between the
/// digits, a bracketed start (`(08) …`, `+46 (0)70 …`). Match ids (no leading zero, seven digits)
/// and match numbers (`000…`) are left alone.
pub fn mask_pii(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        if let Some(end) = phone_at(&chars, i) {
            out.push_str("***");
            i = end;
            continue;
        }
        out.push(chars[i]);
        i += 1;
    }
    mask_emails(&out)
}

fn is_boundary(c: Option<&char>) -> bool {
    c.is_none_or(|c| !c.is_alphanumeric())
}

/// Whether `chars[..i]` ends with an ANSI colour sequence (`ESC [ 0 ; 1 m`): the pretty log
/// format puts one between `field=` and the value, and its `m` is no part of a word.
fn after_ansi_escape(chars: &[char], i: usize) -> bool {
    if i == 0 || chars[i - 1] != 'm' {
        return false;
    }
    let mut k = i - 1;
    while k > 0 && (chars[k - 1].is_ascii_digit() || chars[k - 1] == ';') {
        k -= 1;
    }
    k >= 2 && chars[k - 1] == '[' && chars[k - 2] == '\u{1b}'
}

/// Characters that may stand between the digits of a phone number.
fn is_phone_separator(c: char) -> bool {
    matches!(c, ' ' | '-' | '.' | '/' | '(' | ')')
}

/// End index of a phone number starting at `i`, if one does.
fn phone_at(chars: &[char], i: usize) -> Option<usize> {
    if i > 0 && !is_boundary(chars.get(i - 1)) && !after_ansi_escape(chars, i) {
        return None;
    }
    let mut j = i;
    if chars.get(j) == Some(&'(') {
        j += 1;
    }
    let plus = chars.get(j) == Some(&'+');
    if plus {
        j += 1;
    }
    if !chars.get(j)?.is_ascii_digit() {
        return None;
    }
    let mut digits = String::new();
    let mut last_digit_end = j;
    while j < chars.len() {
        let c = chars[j];
        if c.is_ascii_digit() {
            digits.push(c);
            j += 1;
            last_digit_end = j;
            continue;
        }
        // One or two separators (`") "`, `" ("`), then a digit again.
        let run = chars[j..]
            .iter()
            .take(3)
            .take_while(|c| is_phone_separator(**c))
            .count();
        if (1..=2).contains(&run) && chars.get(j + run).is_some_and(char::is_ascii_digit) {
            j += run;
        } else {
            break;
        }
    }
    let d = digits.as_bytes();
    let nonzero = |k: usize| d.get(k).is_some_and(|b| (b'1'..=b'9').contains(b));
    let phone = if plus {
        d.len() >= 7
    } else if d.starts_with(b"00") {
        nonzero(2) && d.len() >= 9
    } else if d.starts_with(b"0") {
        nonzero(1) && d.len() >= 7
    } else if d.starts_with(b"46") {
        nonzero(2) && (10..=12).contains(&d.len())
    } else {
        false
    };
    (phone && is_boundary(chars.get(last_digit_end))).then_some(last_digit_end)
}

fn mask_emails(text: &str) -> String {
    if !text.contains('@') {
        return text.to_string();
    }
    let local = |c: char| c.is_alphanumeric() || "._%+-".contains(c);
    let domain = |c: char| c.is_alphanumeric() || ".-".contains(c);
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '@' {
            let mut start = out.chars().count();
            let taken: Vec<char> = out.chars().collect();
            while start > 0 && local(taken[start - 1]) {
                start -= 1;
            }
            let mut end = i + 1;
            while end < chars.len() && domain(chars[end]) {
                end += 1;
            }
            let dom: String = chars[i + 1..end].iter().collect();
            if start < taken.len() && dom.contains('.') {
                out = taken[..start].iter().collect();
                out.push_str("***@***");
                i = end;
                continue;
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

/// A log writer that masks personal data in what it writes.
#[derive(Debug)]
pub struct MaskingWriter<W>(pub W);

impl<W: Write> Write for MaskingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.0.write_all(mask_pii(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// Phone numbers in every form the masker knows, for tests here and elsewhere.
pub const PHONE_FORMS: [&str; 20] = [
    "0701234567",
    "070-123 45 67",
    "070 123 45 67",
    "070-1234567",
    "070.123.45.67",
    "070/123 45 67",
    "(070) 123 45 67",
    "08-123 456 78",
    "(08) 123 456 78",
    "031-12 34 56",
    "+46701234567",
    "+46 70 123 45 67",
    "+46 (0)70-123 45 67",
    "+46(0)8-123 456 78",
    "0046701234567",
    "0046 70 123 45 67",
    "46701234567",
    "46 70 123 45 67",
    "+47 22 12 34 56",
    "0045 12 34 56 78",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_and_emails_are_masked() {
        assert_eq!(mask_pii("call 0700000000 now"), "call *** now");
        assert_eq!(mask_pii("tel: +46 70-123 45 67."), "tel: ***.");
        assert_eq!(mask_pii("08-123 456 78"), "***");
        assert_eq!(mask_pii("mail john.doe@example.com!"), "mail ***@***!");
        assert_eq!(
            mask_pii("{\"epost\":\"a@b.se\"}"),
            "{\"epost\":\"***@***\"}"
        );
    }

    #[test]
    fn every_swedish_and_international_phone_form_is_masked() {
        for phone in PHONE_FORMS {
            let line = format!("ring {phone}, tack");
            assert_eq!(mask_pii(&line), "ring ***, tack", "{phone}");
            assert_eq!(mask_pii(phone), "***", "{phone}");
            let json = format!("{{\"mobil\":\"{phone}\"}}");
            assert_eq!(mask_pii(&json), "{\"mobil\":\"***\"}", "{phone}");
        }
    }

    #[test]
    fn ids_and_match_numbers_stay() {
        assert_eq!(
            mask_pii("match 6186203 nr 000402010"),
            "match 6186203 nr 000402010"
        );
        assert_eq!(mask_pii("2025-05-06T18:30:00Z"), "2025-05-06T18:30:00Z");
        assert_eq!(mask_pii("user@localhost"), "user@localhost");
        assert_eq!(mask_pii("åäö 0701234567åäö"), "åäö 0701234567åäö");
        for text in [
            "6186203",
            "ids 6186203, 6186204 and 7000001",
            "listening on 0.0.0.0:9083 and 127.0.0.1:9083",
            "withdraw share 0.5 of 12 matches in 250 ms",
            "match 000402010 at 16:30",
            "generation 4611686018427387904",
        ] {
            assert_eq!(mask_pii(text), text);
        }
    }

    #[test]
    fn values_after_ansi_colour_codes_are_masked() {
        let line = "\u{1b}[3mphone\u{1b}[0m\u{1b}[2m=\u{1b}[0m0701234567 \u{1b}[1m+46 70 123 45 67";
        assert_eq!(
            mask_pii(line),
            "\u{1b}[3mphone\u{1b}[0m\u{1b}[2m=\u{1b}[0m*** \u{1b}[1m***"
        );
        assert_eq!(mask_pii("room0701234567"), "room0701234567");
    }

    #[test]
    fn the_writer_masks() {
        let mut w = MaskingWriter(Vec::new());
        w.write_all(b"x 0701234567 y").unwrap_or_default();
        assert_eq!(String::from_utf8_lossy(&w.0), "x *** y");
    }
}
