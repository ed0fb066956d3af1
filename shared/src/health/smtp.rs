//! The SMTP probe: for the primary relay and each further one, a fresh connection with the
//! configured TLS and credentials, NOOP and QUIT — a wrong password, a certificate that does
//! not verify or a relay that is down shows here, and no message is sent.

use super::{Probe, Verdict};
use crate::config::SmtpSettings;
use crate::domain::time::Timestamp;
use crate::providers::email::{MailerOptions, SmtpMailer, SmtpSecurity};
use crate::secrets::{PRIMARY_RELAY, SmtpSecret};
use std::time::Instant;

/// How the probe connects: the dispatcher's timeouts and TLS extras.
#[derive(Debug, Clone, Default)]
pub struct SmtpProbeConfig {
    pub settings: SmtpSettings,
    pub options: MailerOptions,
}

/// One probe per relay of the `smtp` secret, the primary first.
pub async fn probe(secret: &SmtpSecret, config: &SmtpProbeConfig, now: Timestamp) -> Vec<Probe> {
    let ids =
        std::iter::once(PRIMARY_RELAY.to_owned()).chain(secret.relays.iter().map(|r| r.id.clone()));
    let mut found = Vec::new();
    for id in ids {
        let integration = format!("smtp:{id}");
        let Some(relay) = secret.relay(Some(&id)) else {
            continue;
        };
        found.push(relay_probe(&relay, &integration, config, now).await);
    }
    found
}

async fn relay_probe(
    relay: &SmtpSecret,
    integration: &str,
    config: &SmtpProbeConfig,
    now: Timestamp,
) -> Probe {
    let started = Instant::now();
    let at = format!("{}:{}", relay.smtp_host, relay.smtp_port);
    let mailer = match SmtpMailer::new(relay, &config.settings, config.options.clone()) {
        Ok(m) => m,
        Err(e) => {
            return Probe::new(
                integration,
                integration,
                Verdict::Failed,
                e.to_string(),
                now,
            )
            .fact("server", at);
        }
    };
    let security = match mailer.security() {
        SmtpSecurity::ImplicitTls => "implicit TLS",
        SmtpSecurity::StartTls => "STARTTLS",
        SmtpSecurity::Plain => "plain (loopback)",
    };
    let auth = if mailer.authenticates() {
        "AUTH accepted"
    } else {
        "no AUTH configured"
    };
    let probe = match mailer.probe().await {
        Ok(()) => Probe::new(
            integration,
            integration,
            Verdict::Ok,
            format!("{at}: connected ({security}), EHLO, {auth}, NOOP; nothing sent"),
            now,
        ),
        Err(f) => Probe::new(
            integration,
            integration,
            Verdict::Failed,
            format!("{at}: {} ({})", f.error.message, f.error.code),
            now,
        )
        .fact("code", f.error.code),
    };
    probe
        .fact("server", at)
        .fact("security", security)
        .fact("authenticates", mailer.authenticates())
        .took(started)
}
