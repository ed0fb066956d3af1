//! Alerts: conditions an operator must hear of before customers do. The report works out which
//! are raised now ([`raised`]); each probe round compares them with the last round's
//! (`status:alerts`) and logs every alert raised and every alert cleared once, as a `warn`
//! event with `alert` and `subject` fields, so the local log carries them as CloudWatch alarms
//! do on AWS (template.yaml watches the gauges [`super::StatusReport::gauges`] sets).

use super::report::{Integration, QueueView};
use crate::config::StatusSettings;
use crate::domain::time::Timestamp;
use crate::health::{Verdict, graph};
use crate::ports::limits::{LimitStore, update_limit};
use crate::ports::update::{Change, UpdateError};
use crate::resilience::breaker::Phase;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// Every alert, by code.
pub const CODES: &[&str] = &[
    "quota_80",
    "quota_95",
    "token_expiring",
    "token_invalid",
    "circuit_open",
    "dead_letters",
    "callback_endpoint_disabled",
    "error_rate",
    "oldest_pending",
];

const ALERTS_KEY: &str = "status:alerts";

/// One alert raised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// One of [`CODES`].
    pub code: String,
    /// `warning` or `critical`.
    pub severity: String,
    /// What it is about: an integration or a queue.
    pub subject: String,
    pub message: String,
}

impl Alert {
    fn new(code: &str, critical: bool, subject: &str, message: String) -> Self {
        Self {
            code: code.to_owned(),
            severity: if critical { "critical" } else { "warning" }.to_owned(),
            subject: subject.to_owned(),
            message,
        }
    }

    fn key(&self) -> String {
        format!("{}|{}", self.code, self.subject)
    }
}

/// The alerts the figures raise now.
pub fn raised(
    s: &StatusSettings,
    integrations: &[Integration],
    queues: &[QueueView],
) -> Vec<Alert> {
    let mut out = Vec::new();
    for i in integrations {
        if i.circuit == Phase::Open {
            out.push(Alert::new(
                "circuit_open",
                true,
                &i.name,
                format!("{}'s circuit is open: calls to it are held back", i.name),
            ));
        }
        if i.last_5m.error_rate_over(s) {
            out.push(Alert::new(
                "error_rate",
                false,
                &i.name,
                format!(
                    "{:.0} % of {}'s {} calls failed over 5 minutes (threshold {:.0} %)",
                    i.last_5m.error_rate * 100.0,
                    i.name,
                    i.last_5m.calls,
                    s.error_rate * 100.0
                ),
            ));
        }
        if i.enabled == Some(false) {
            out.push(Alert::new(
                "callback_endpoint_disabled",
                false,
                &i.name,
                format!(
                    "callback endpoint {} is disabled ({}); POST /v1/endpoints/{{id}}/enable once it is fixed",
                    i.name.trim_start_matches("webhook:"),
                    i.disabled_reason.as_deref().unwrap_or("unknown")
                ),
            ));
        }
        if let Some(p) = i.quota.as_ref().and_then(|q| q.used_percent) {
            let (low, high) = (s.quota_levels.0 * 100.0, s.quota_levels.1 * 100.0);
            if p >= high {
                out.push(Alert::new(
                    "quota_95",
                    true,
                    &i.name,
                    format!("{p:.1} % of the messaging-limit tier used over 24 h"),
                ));
            } else if p >= low {
                out.push(Alert::new(
                    "quota_80",
                    false,
                    &i.name,
                    format!("{p:.1} % of the messaging-limit tier used over 24 h"),
                ));
            }
        }
        for p in i.probes.iter().filter(|p| p.part == graph::TOKEN_PART) {
            match p.verdict {
                Verdict::Warning => out.push(Alert::new(
                    "token_expiring",
                    false,
                    &i.name,
                    format!(
                        "the WhatsApp access token {}",
                        p.detail.trim_start_matches("valid, but ")
                    ),
                )),
                Verdict::Failed => {
                    out.push(Alert::new("token_invalid", true, &i.name, p.detail.clone()))
                }
                Verdict::Ok => {}
            }
        }
    }
    for q in queues {
        let Some(depth) = q.depth else { continue };
        if q.dead_letter && depth.messages > 0 {
            out.push(Alert::new(
                "dead_letters",
                true,
                &q.name,
                format!(
                    "{} message(s) in {}; `carteiro redrive` moves them back once the cause is fixed",
                    depth.messages, q.name
                ),
            ));
        }
        if !q.dead_letter
            && depth
                .oldest_age_secs
                .is_some_and(|age| Duration::from_secs(age) >= s.oldest_pending)
        {
            out.push(Alert::new(
                "oldest_pending",
                false,
                &q.name,
                format!(
                    "the oldest message in {} has waited {} s (threshold {} s)",
                    q.name,
                    depth.oldest_age_secs.unwrap_or(0),
                    s.oldest_pending.as_secs()
                ),
            ));
        }
    }
    out
}

/// Logs each alert raised since the last round and each one cleared, and keeps `now_raised`.
pub async fn note_transitions(
    limits: &dyn LimitStore,
    now_raised: &[Alert],
    now: Timestamp,
) -> Result<(), UpdateError> {
    let current: BTreeMap<String, Alert> =
        now_raised.iter().map(|a| (a.key(), a.clone())).collect();
    let (raised, cleared) = update_limit(
        limits,
        ALERTS_KEY,
        now,
        |known: &mut BTreeMap<String, Alert>| {
            let raised: Vec<Alert> = current
                .iter()
                .filter(|(k, _)| !known.contains_key(*k))
                .map(|(_, a)| a.clone())
                .collect();
            let cleared: Vec<Alert> = known
                .iter()
                .filter(|(k, _)| !current.contains_key(*k))
                .map(|(_, a)| a.clone())
                .collect();
            let change = if raised.is_empty() && cleared.is_empty() {
                Change::Keep((raised, cleared))
            } else {
                known.clone_from(&current);
                Change::Write((raised, cleared))
            };
            (change, now.plus(Duration::from_secs(30 * 86_400)))
        },
    )
    .await?;
    for a in &raised {
        tracing::warn!(
            alert = %a.code,
            severity = %a.severity,
            subject = %a.subject,
            "alert raised: {}",
            a.message
        );
    }
    for a in &cleared {
        tracing::info!(alert = %a.code, subject = %a.subject, "alert cleared: {}", a.message);
    }
    Ok(())
}
