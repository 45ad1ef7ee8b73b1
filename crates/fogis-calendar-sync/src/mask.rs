//! Keeps personal data out of logs: phone numbers and e-mail addresses are masked in every line
//! the logger writes, whatever code produced it.

use std::io::Write;

/// Masks e-mail addresses (`***@***`) and phone numbers (`+46…` or a Swedish `0[1-9]…` number of
/// seven digits or more, spaces and dashes allowed) in `text`. Match ids (no leading zero) and
/// match numbers (`000…`) are left alone.
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

/// End index of a phone number starting at `i`, if one does.
fn phone_at(chars: &[char], i: usize) -> Option<usize> {
    if i > 0 && !is_boundary(chars.get(i - 1)) {
        return None;
    }
    let plus = chars[i] == '+';
    let mut j = if plus { i + 1 } else { i };
    let first = *chars.get(j)?;
    let second = chars.get(j + 1).copied();
    if !first.is_ascii_digit() {
        return None;
    }
    let swedish_national = first == '0' && second.is_some_and(|c| ('1'..='9').contains(&c));
    if !(plus || swedish_national) {
        return None;
    }
    let mut digits = 0;
    let mut last_digit_end = j;
    while let Some(&c) = chars.get(j) {
        if c.is_ascii_digit() {
            digits += 1;
            j += 1;
            last_digit_end = j;
        } else if (c == ' ' || c == '-') && chars.get(j + 1).is_some_and(char::is_ascii_digit) {
            j += 1;
        } else {
            break;
        }
    }
    (digits >= 7 && is_boundary(chars.get(last_digit_end))).then_some(last_digit_end)
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
    fn ids_and_match_numbers_stay() {
        assert_eq!(
            mask_pii("match 6186203 nr 000402010"),
            "match 6186203 nr 000402010"
        );
        assert_eq!(mask_pii("2025-05-06T18:30:00Z"), "2025-05-06T18:30:00Z");
        assert_eq!(mask_pii("user@localhost"), "user@localhost");
        assert_eq!(mask_pii("åäö 0701234567åäö"), "åäö 0701234567åäö");
    }

    #[test]
    fn the_writer_masks() {
        let mut w = MaskingWriter(Vec::new());
        w.write_all(b"x 0701234567 y").unwrap_or_default();
        assert_eq!(String::from_utf8_lossy(&w.0), "x *** y");
    }
}
