//! Health probes: one look at each integration, proving it would take a message without
//! sending one — the Graph API token and phone number, each SMTP relay, each callback endpoint.
//! `carteiro check` runs them once and prints the table; the retry sweeper runs them every
//! `CARTEIRO_PROBE_INTERVAL` and records them for `GET /v1/status` ([`crate::status`]).
//!
//! A probe never fails loudly: whatever went wrong becomes a [`Verdict::Failed`] with the
//! reason in `detail`, so one broken part never hides the others.

pub mod callbacks;
pub mod graph;
pub mod smtp;

use crate::domain::time::Timestamp;
use serde::{Deserialize, Serialize};

/// How a part is doing. Ordered: the worst of several is their `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Ok,
    /// Working now, but it will not stay so (a token about to expire, a quality rating
    /// falling).
    Warning,
    Failed,
}

impl Verdict {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Warning => "warning",
            Self::Failed => "failed",
        }
    }
}

/// One probe's finding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Probe {
    /// What was probed: `whatsapp token`, `whatsapp phone number`, `smtp:primary`,
    /// `webhook:<endpoint id>`.
    pub part: String,
    /// The integration it belongs to, named as its circuit breaker is (`whatsapp`,
    /// `smtp:<relay>`, `webhook:<endpoint id>`).
    pub integration: String,
    pub verdict: Verdict,
    /// One line for a person.
    pub detail: String,
    pub at: Timestamp,
    pub latency_ms: u64,
    /// What the probe learnt, by name (`expires_at`, `quality_rating`, `messaging_limit_tier`,
    /// `security`...).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub facts: serde_json::Map<String, serde_json::Value>,
}

impl Probe {
    pub fn new(
        part: impl Into<String>,
        integration: impl Into<String>,
        verdict: Verdict,
        detail: impl Into<String>,
        at: Timestamp,
    ) -> Self {
        Self {
            part: part.into(),
            integration: integration.into(),
            verdict,
            detail: detail.into(),
            at,
            latency_ms: 0,
            facts: serde_json::Map::new(),
        }
    }

    pub fn took(mut self, started: std::time::Instant) -> Self {
        self.latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self
    }

    pub fn fact(mut self, name: &str, value: impl Into<serde_json::Value>) -> Self {
        self.facts.insert(name.to_owned(), value.into());
        self
    }
}

/// Every probe of the configured integrations, in a stable order. Parts that are not
/// configured (no access token, no `smtp` secret, no callbacks) are left out.
pub async fn probe_all(probes: &Probes, now: Timestamp) -> Vec<Probe> {
    let mut found = Vec::new();
    if let Some(graph) = &probes.graph {
        match probes.secrets.whatsapp(false).await {
            Ok(secret) if secret.access_token.is_some() => {
                found.extend(graph::probe(graph, &secret, now).await);
            }
            Ok(_) => {}
            Err(crate::ports::secrets::SecretError::Missing(_)) => {}
            Err(e) => found.push(Probe::new(
                "whatsapp token",
                "whatsapp",
                Verdict::Failed,
                format!("the whatsapp secret cannot be read: {e}"),
                now,
            )),
        }
    }
    match probes.secrets.smtp(false).await {
        Ok(secret) => found.extend(smtp::probe(&secret, &probes.smtp, now).await),
        Err(crate::ports::secrets::SecretError::Missing(_)) => {}
        Err(e) => found.push(Probe::new(
            "smtp:primary",
            "smtp:primary",
            Verdict::Failed,
            format!("the smtp secret cannot be read: {e}"),
            now,
        )),
    }
    if let Some(sender) = &probes.callbacks {
        match crate::callbacks::endpoints::configured(&probes.secrets).await {
            Ok(endpoints) => {
                for endpoint in &endpoints {
                    found.push(callbacks::probe(sender, endpoint, now).await);
                }
            }
            Err(e) => found.push(Probe::new(
                "webhook",
                "webhook",
                Verdict::Failed,
                format!("the callbacks secret cannot be read: {e}"),
                now,
            )),
        }
    }
    found
}

/// What the probes need; built once per process.
#[derive(Debug, Clone)]
pub struct Probes {
    pub secrets: crate::secrets::Secrets,
    /// `None`: WhatsApp is not probed (the local sandbox).
    pub graph: Option<crate::providers::whatsapp::GraphClient>,
    pub smtp: smtp::SmtpProbeConfig,
    /// `None`: callback endpoints are not probed.
    pub callbacks: Option<std::sync::Arc<crate::providers::webhook::CallbackSender>>,
}
