//! MIME: a validated email (its template rendered) as a lettre `Message` with a fresh
//! Message-ID, refused before any connection when it cannot be built.

use super::SmtpMailer;
use crate::domain::delivery::DeliveryError;
use crate::domain::message::{EmailBody, EmailMessage};
use crate::providers::templates::TemplateError;
use crate::providers::{FailureClass, SendFailure};
use lettre::Message;
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};

/// A message that cannot be turned into MIME (refused before any connection).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailBuildError {
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("{field}: not a valid mailbox: {reason}")]
    Address { field: String, reason: String },
    #[error("attachments[{index}].content_type: {reason}")]
    ContentType { index: usize, reason: String },
    #[error("the email has neither a text nor an HTML body")]
    NoBody,
    #[error("the message could not be built: {0}")]
    Message(String),
}

impl EmailBuildError {
    /// A message that cannot be built will never be sent: a permanent failure, before any
    /// connection.
    pub fn into_failure(self) -> SendFailure {
        SendFailure {
            class: FailureClass::Permanent,
            error: DeliveryError {
                source: "carteiro".to_owned(),
                code: self.code().to_owned(),
                message: self.to_string(),
                details: None,
            },
            retry_after: None,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::Template(e) => e.code(),
            Self::Address { .. } => "invalid_address",
            Self::ContentType { .. } => "invalid_content_type",
            Self::NoBody => "missing_content",
            Self::Message(_) => "invalid_email",
        }
    }
}

/// A built message and the Message-ID it carries (the provider id).
#[derive(Debug, Clone)]
pub struct BuiltEmail {
    pub message: Message,
    /// The `Message-ID` header value, angle brackets included: `<…@domain>`.
    pub message_id: String,
}

impl SmtpMailer {
    /// Turns a validated email into MIME: headers, body (rendering its template), attachments,
    /// and a fresh Message-ID. Bcc recipients go to the envelope only, never into a header.
    pub fn build_message(&self, email: &EmailMessage) -> Result<BuiltEmail, EmailBuildError> {
        let mailbox = |field: &str, s: &str| -> Result<Mailbox, EmailBuildError> {
            s.trim().parse().map_err(
                |e: lettre::address::AddressError| EmailBuildError::Address {
                    field: field.to_owned(),
                    reason: e.to_string(),
                },
            )
        };

        let from = match &email.from {
            Some(f) => mailbox("from", f)?,
            None => self.default_from.clone(),
        };
        // The sender's domain (deliverability checks like it), unless it is an IDN, which a
        // header cannot hold as is.
        let domain = Some(from.email.domain())
            .filter(|d| d.is_ascii())
            .unwrap_or("carteiro.invalid");
        let message_id = format!("<{}@{domain}>", uuid::Uuid::now_v7().simple());

        let (subject, text, html) = match &email.body {
            EmailBody::Content { text, html } => {
                (email.subject.clone(), text.clone(), html.clone())
            }
            EmailBody::Template { name, variables } => {
                let rendered = self.templates.render(name, variables)?;
                (
                    rendered.subject.unwrap_or_else(|| email.subject.clone()),
                    rendered.text,
                    rendered.html,
                )
            }
        };

        let mut builder = Message::builder()
            .from(from)
            .subject(subject)
            .message_id(Some(message_id.clone()));
        for (i, to) in email.to.iter().enumerate() {
            builder = builder.to(mailbox(&format!("to[{i}]"), to)?);
        }
        for (i, cc) in email.cc.iter().enumerate() {
            builder = builder.cc(mailbox(&format!("cc[{i}]"), cc)?);
        }
        for (i, bcc) in email.bcc.iter().enumerate() {
            builder = builder.bcc(mailbox(&format!("bcc[{i}]"), bcc)?);
        }
        if let Some(reply_to) = &email.reply_to {
            builder = builder.reply_to(mailbox("reply_to", reply_to)?);
        }

        enum Body {
            Single(SinglePart),
            Multi(MultiPart),
        }
        let body = match (text, html) {
            (Some(text), Some(html)) => Body::Multi(MultiPart::alternative_plain_html(text, html)),
            (Some(text), None) => Body::Single(SinglePart::plain(text)),
            (None, Some(html)) => Body::Single(SinglePart::html(html)),
            (None, None) => return Err(EmailBuildError::NoBody),
        };

        let built = if email.attachments.is_empty() {
            match body {
                Body::Single(part) => builder.singlepart(part),
                Body::Multi(part) => builder.multipart(part),
            }
        } else {
            let mut mixed = match body {
                Body::Single(part) => MultiPart::mixed().singlepart(part),
                Body::Multi(part) => MultiPart::mixed().multipart(part),
            };
            for (index, a) in email.attachments.iter().enumerate() {
                let content_type = ContentType::parse(&a.content_type).map_err(|e| {
                    EmailBuildError::ContentType {
                        index,
                        reason: e.to_string(),
                    }
                })?;
                mixed = mixed.singlepart(
                    Attachment::new(a.filename.clone()).body(a.content.clone(), content_type),
                );
            }
            builder.multipart(mixed)
        };
        let message = built.map_err(|e| EmailBuildError::Message(e.to_string()))?;
        Ok(BuiltEmail {
            message,
            message_id,
        })
    }
}
