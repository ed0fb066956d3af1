//! Masking of personal data in log lines: every line the subscriber writes passes through
//! [`mask_line`] on its way out, so an email address or a phone number is masked wherever it
//! appears — a field, a provider's error text, a webhook quote — not only where someone
//! remembered to mask it.
//!
//! - Email addresses keep their first character and the domain: `a***@example.com`.
//! - Phone numbers written `+` and 8–15 digits (E.164, as Carteiro normalises recipients),
//!   and WhatsApp ids (digits only) in the JSON fields that carry them (`to`, `from`, `wa_id`,
//!   `recipient`, `contact`), keep their first four digits and their last two:
//!   `+5511*******01`.
//!
//! Hand-written rather than a `regex`: two patterns, one pass over the line, and no
//! dependency in every function for it.

use std::borrow::Cow;

/// JSON fields whose value is a WhatsApp id (digits without `+`).
const ID_FIELDS: &[&str] = &["to", "from", "wa_id", "recipient", "contact"];

fn is_local_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"._%+-".contains(&c)
}

fn is_domain_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'.' || c == b'-'
}

fn mask_digits(digits: &str) -> String {
    let n = digits.len();
    let keep_head = 4.min(n);
    let keep_tail = 2.min(n.saturating_sub(keep_head));
    format!(
        "{}{}{}",
        &digits[..keep_head],
        "*".repeat(n - keep_head - keep_tail),
        &digits[n - keep_tail..]
    )
}

/// `line` with email addresses and phone numbers masked (borrowed when there was none).
pub fn mask_line(line: &str) -> Cow<'_, str> {
    let b = line.as_bytes();
    if !b.iter().any(|c| *c == b'@' || *c == b'+' || *c == b'"') {
        return Cow::Borrowed(line);
    }
    let mut out = String::with_capacity(line.len());
    let mut changed = false;
    let mut i = 0;
    let mut copied = 0;
    while i < b.len() {
        match b[i] {
            b'@' => {
                let mut start = i;
                while start > copied && is_local_char(b[start - 1]) {
                    start -= 1;
                }
                let mut end = i + 1;
                while end < b.len() && is_domain_char(b[end]) {
                    end += 1;
                }
                let domain = line[i + 1..end].trim_end_matches(['.', '-']);
                let end = i + 1 + domain.len();
                if start < i && domain.contains('.') {
                    out.push_str(&line[copied..start]);
                    out.push_str(&line[start..=start]);
                    out.push_str("***@");
                    out.push_str(domain);
                    copied = end;
                    changed = true;
                    i = end;
                    continue;
                }
                i += 1;
            }
            b'+' => {
                let mut end = i + 1;
                while end < b.len() && b[end].is_ascii_digit() {
                    end += 1;
                }
                let n = end - i - 1;
                let bounded = end == b.len() || !b[end].is_ascii_alphanumeric();
                if (8..=15).contains(&n) && bounded {
                    out.push_str(&line[copied..=i]);
                    out.push_str(&mask_digits(&line[i + 1..end]));
                    copied = end;
                    changed = true;
                }
                i = end.max(i + 1);
            }
            b'"' => {
                // A JSON field `"to":"5511..."` among ID_FIELDS: its digits are a WhatsApp id.
                let key_end = line[i + 1..].find('"').map(|k| i + 1 + k);
                if let Some(key_end) = key_end {
                    let key = &line[i + 1..key_end];
                    let rest = &line[key_end + 1..];
                    if ID_FIELDS.contains(&key)
                        && let Some(value) = rest.strip_prefix(":\"")
                    {
                        let digits = value.bytes().take_while(u8::is_ascii_digit).count();
                        let value_start = key_end + 3;
                        if (8..=15).contains(&digits) && value.as_bytes().get(digits) == Some(&b'"')
                        {
                            out.push_str(&line[copied..value_start]);
                            out.push_str(&mask_digits(&value[..digits]));
                            copied = value_start + digits;
                            changed = true;
                            i = copied;
                            continue;
                        }
                    }
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    if !changed {
        return Cow::Borrowed(line);
    }
    out.push_str(&line[copied..]);
    Cow::Owned(out)
}

/// A writer that masks what passes through it (the subscriber writes one event a call).
#[derive(Debug)]
pub struct Masked<W>(pub W);

impl<W: std::io::Write> std::io::Write for Masked<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match std::str::from_utf8(buf) {
            Ok(text) => self.0.write_all(mask_line(text).as_bytes())?,
            Err(_) => self.0.write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// [`Masked`] around each writer a `MakeWriter` makes.
#[derive(Debug, Clone)]
pub struct MaskedWriter<M>(pub M);

impl<'a, M: tracing_subscriber::fmt::MakeWriter<'a>> tracing_subscriber::fmt::MakeWriter<'a>
    for MaskedWriter<M>
{
    type Writer = Masked<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        Masked(self.0.make_writer())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn emails_and_phone_numbers_are_masked() {
        assert_eq!(
            mask_line("550 5.1.1 <bob.smith@mail.example.com>: unknown"),
            "550 5.1.1 <b***@mail.example.com>: unknown"
        );
        assert_eq!(mask_line("to +5511999990001 now"), "to +5511*******01 now");
        assert_eq!(
            mask_line(r#"{"to":"5511999990001","wa_id":"16505551234","id":"1234567890123"}"#),
            r#"{"to":"5511*******01","wa_id":"1650*****34","id":"1234567890123"}"#
        );
    }

    #[test]
    fn other_text_is_left_alone() {
        for line in [
            "no personal data here",
            r#"{"timestamp":1764600000000,"wamid":"wamid.HBgNNTUxMTk5OTk5MDAwMRUCABEYEjA="}"#,
            "a+b=c, 1+1=2, +12345 is short, @handle, user@localhost",
            r#"{"to":"notanumber","from":"+"}"#,
        ] {
            assert_eq!(mask_line(line), line);
        }
    }
}
