//! How an SMTP server's answers are read: the RFC 3463 enhanced status code in a reply's
//! text, and the failure class (retry, throttle, refresh the credential, give up) of a reply
//! or of a lettre error. Separate from the mailer (`email.rs`), which only acts on the class.

use crate::domain::delivery::DeliveryError;
use crate::providers::email::ERROR_SOURCE;
use crate::providers::{FailureClass, SendFailure};
use std::error::Error as _;

/// The RFC 3463 enhanced status code a reply text starts with (`5.1.1 no such user` →
/// `(5, "5.1.1")`). lettre keeps the text but does not parse it.
pub fn enhanced_status(text: &str) -> Option<(u8, &str)> {
    let word = text.split_whitespace().next()?;
    let mut parts = word.split('.');
    let class = parts.next()?;
    let subject = parts.next()?;
    let detail = parts.next()?;
    let digits = |s: &str, max: usize| {
        !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_digit())
    };
    let class_digit = match class {
        "2" => 2,
        "4" => 4,
        "5" => 5,
        _ => return None,
    };
    (parts.next().is_none() && digits(subject, 3) && digits(detail, 3))
        .then_some((class_digit, word))
}

/// Classifies an SMTP reply by its code and text.
///
/// - 421 and 454 are [`Throttled`](FailureClass::Throttled): SES answers `454 Throttling
///   failure`, and 421 is how most servers say "too many connections, come back later".
/// - 535 (or enhanced `5.7.8`, "authentication credentials invalid") is
///   [`Token`](FailureClass::Token): refresh the secret once.
/// - Other 4xx, or an enhanced `4.x.x`, are [`Retryable`](FailureClass::Retryable). When the
///   reply code and the enhanced code disagree (`550 4.2.1`), the transient reading wins: a
///   retry is bounded, a wrongly permanent failure loses the message.
/// - Other 5xx / `5.x.x` are [`Permanent`](FailureClass::Permanent).
pub fn classify_reply(code: u16, text: &str) -> FailureClass {
    let enhanced = enhanced_status(text);
    let transient = code / 100 == 4 || enhanced.is_some_and(|(class, _)| class == 4);
    if code == 421 || code == 454 {
        FailureClass::Throttled
    } else if transient {
        FailureClass::Retryable
    } else if code == 535 || enhanced.is_some_and(|(_, e)| e == "5.7.8") {
        FailureClass::Token
    } else if code / 100 == 5 {
        FailureClass::Permanent
    } else {
        // Not a negative reply at all (lettre only reports 4xx/5xx as such): be safe.
        FailureClass::Retryable
    }
}

/// The server's words of a negative reply (`5.1.1 no such user`), empty for other errors.
fn reply_text(err: &lettre::transport::smtp::Error) -> String {
    if err.status().is_some() {
        err.source().map(ToString::to_string).unwrap_or_default()
    } else {
        String::new()
    }
}

/// How a failed SMTP send should be handled.
///
/// Without a reply code: connection refused or reset, TLS failures (including a server that
/// does not offer the required STARTTLS), timeouts and unparsable replies are
/// [`Retryable`](FailureClass::Retryable). lettre's other client-side refusals (a non-ASCII
/// address towards a server without SMTPUTF8, 8-bit content without 8BITMIME, no common AUTH
/// mechanism) will not change on retry: [`Permanent`](FailureClass::Permanent).
pub fn classify(err: &lettre::transport::smtp::Error) -> FailureClass {
    if let Some(code) = err.status() {
        let code = code.to_string().parse::<u16>().unwrap_or(0);
        return classify_reply(code, &reply_text(err));
    }
    if err.is_client() && !err.to_string().contains("STARTTLS") {
        return FailureClass::Permanent;
    }
    FailureClass::Retryable
}

/// The error kind of a failure without a reply, for `DeliveryError::code`.
fn kind_code(err: &lettre::transport::smtp::Error) -> &'static str {
    if err.is_timeout() {
        "timeout"
    } else if err.is_tls() {
        "tls"
    } else if err.is_response() {
        "bad_reply"
    } else if err.is_client() {
        "client"
    } else if err.is_transport_shutdown() {
        "shutdown"
    } else {
        // lettre's Connection and Network kinds (no public predicate): refused, reset, DNS,
        // TLS handshake.
        "connection"
    }
}

/// The [`SendFailure`] for a failed send: the class, and the reply code (`550`) with the
/// server's text, or the error kind (`timeout`, `connection`, ...) with lettre's message.
/// The enhanced status code, when the text has one, goes into `details`.
pub fn failure(err: &lettre::transport::smtp::Error) -> SendFailure {
    let class = classify(err);
    let error = match err.status() {
        Some(code) => {
            let text = reply_text(err);
            DeliveryError {
                source: ERROR_SOURCE.to_owned(),
                code: code.to_string(),
                details: enhanced_status(&text).map(|(_, e)| e.to_owned()),
                message: text,
            }
        }
        None => DeliveryError {
            source: ERROR_SOURCE.to_owned(),
            code: kind_code(err).to_owned(),
            message: err.to_string(),
            details: None,
        },
    };
    SendFailure {
        class,
        error,
        retry_after: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enhanced_codes_are_parsed_from_the_text() {
        assert_eq!(enhanced_status("5.1.1 no such user"), Some((5, "5.1.1")));
        assert_eq!(
            enhanced_status("4.7.0 Throttling failure"),
            Some((4, "4.7.0"))
        );
        assert_eq!(enhanced_status("2.0.0 Ok"), Some((2, "2.0.0")));
        assert_eq!(
            enhanced_status("Throttling failure: Maximum sending rate exceeded."),
            None
        );
        assert_eq!(enhanced_status("3.1.1 x"), None);
        assert_eq!(enhanced_status("5.1 x"), None);
        assert_eq!(enhanced_status("5.1.1.1 x"), None);
        assert_eq!(enhanced_status("5.a.1 x"), None);
        assert_eq!(enhanced_status(""), None);
    }

    #[test]
    fn replies_are_classified() {
        use FailureClass::*;
        let cases = [
            (450, "4.2.1 mailbox busy", Retryable),
            (451, "Requested action aborted: local error", Retryable),
            (452, "4.5.3 Too many recipients", Retryable),
            (421, "4.7.0 Try again later, closing connection", Throttled),
            (
                454,
                "Throttling failure: Maximum sending rate exceeded.",
                Throttled,
            ),
            (
                454,
                "4.7.0 Throttling failure: Daily message quota exceeded.",
                Throttled,
            ),
            (535, "5.7.8 Authentication credentials invalid", Token),
            (535, "Authentication Credentials Invalid", Token),
            (550, "5.1.1 no such user", Permanent),
            (
                554,
                "5.7.1 Message rejected: Email address is not verified.",
                Permanent,
            ),
            (552, "5.3.4 Message too big", Permanent),
            // The enhanced code disagrees with the reply code: the transient reading wins.
            (550, "4.2.1 try later", Retryable),
            (451, "5.1.1 whatever", Retryable),
        ];
        for (code, text, want) in cases {
            assert_eq!(classify_reply(code, text), want, "{code} {text}");
        }
    }
}
