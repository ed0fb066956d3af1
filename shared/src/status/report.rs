//! The status report: each integration's state and figures, the queues, and the alerts.

use super::calls::{self, Tally, Window};
use super::{StatusContext, alerts};
use crate::callbacks::endpoints;
use crate::domain::time::Timestamp;
use crate::health::{Probe, Verdict, graph};
use crate::ports::queue::QueueDepth;
use crate::ports::secrets::SecretError;
use crate::ports::store::StoreError;
use crate::resilience::breaker::{BreakerState, Phase};
use crate::resilience::quota::{self, MessagingLimit};
use serde::Serialize;

/// How an integration is doing, worst last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    Ok,
    /// Nothing known yet: not probed and no calls in the last hour.
    Unknown,
    /// Working, with a warning: a probe warns, the circuit is half-open, the error rate is over
    /// its threshold, the quota is nearly used.
    Degraded,
    /// Not working: the circuit is open, a probe failed, or the endpoint is disabled.
    Down,
}

impl Health {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Unknown => "unknown",
            Self::Degraded => "degraded",
            Self::Down => "down",
        }
    }
}

/// Calls over a span.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figures {
    pub calls: u64,
    pub failed: u64,
    /// `failed / calls`, 0 with no calls.
    pub error_rate: f64,
    pub latency_p50_ms: Option<u64>,
    pub latency_p95_ms: Option<u64>,
    /// Calls a minute over the span.
    pub per_minute: f64,
}

impl Figures {
    /// Whether enough calls failed to judge the error rate over its threshold (what makes an
    /// integration degraded and raises `error_rate`).
    pub fn error_rate_over(&self, s: &crate::config::StatusSettings) -> bool {
        self.calls >= s.error_rate_min_calls && self.error_rate >= s.error_rate
    }

    fn of(t: &Tally, minutes: f64) -> Self {
        let calls = t.calls();
        Self {
            calls,
            failed: t.failed,
            error_rate: if calls == 0 {
                0.0
            } else {
                t.failed as f64 / calls as f64
            },
            latency_p50_ms: t.latency_quantile_ms(0.5),
            latency_p95_ms: t.latency_quantile_ms(0.95),
            per_minute: (calls as f64 / minutes * 100.0).round() / 100.0,
        }
    }
}

/// One minute of the charts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Minute {
    /// The minute's start, ms since the epoch.
    pub at: i64,
    pub ok: u64,
    pub failed: u64,
    pub latency_p95_ms: Option<u64>,
}

/// The messaging-limit quota as shown.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuotaView {
    /// Users reached in business-initiated conversations over the last 24 h.
    pub used_24h: u64,
    /// The tier in users a day; `None` when unlimited or unknown.
    pub limit: Option<u64>,
    pub unlimited: bool,
    /// `webhook`, `configured` or `unknown`.
    pub source: &'static str,
    pub used_percent: Option<f64>,
}

/// One integration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Integration {
    /// `whatsapp`, `smtp:<relay>`, `webhook:<endpoint id>`.
    pub name: String,
    /// `whatsapp`, `smtp` or `webhook`.
    pub kind: &'static str,
    /// `live`, or `sandbox` where the local runtime stands in for the provider.
    pub mode: String,
    pub state: Health,
    /// Why, in a line.
    pub reason: String,
    pub circuit: Phase,
    pub last_success_at: Option<String>,
    pub last_failure_at: Option<String>,
    /// The provider's code of the last failed call.
    pub last_error: Option<String>,
    pub last_5m: Figures,
    pub last_1h: Figures,
    /// The last 60 minutes, oldest first.
    pub per_minute: Vec<Minute>,
    /// The latest probe of each of its parts.
    pub probes: Vec<Probe>,
    /// WhatsApp: the quota against the messaging-limit tier.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota: Option<QuotaView>,
    /// Callback endpoints: whether it is called (false once disabled).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
}

/// One queue.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueView {
    pub name: String,
    pub dead_letter: bool,
    #[serde(flatten)]
    pub depth: Option<QueueDepth>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `GET /v1/status`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusReport {
    /// The worst integration's state.
    pub status: Health,
    pub generated_at: String,
    pub probe_interval_seconds: u64,
    pub integrations: Vec<Integration>,
    pub queues: Vec<QueueView>,
    pub alerts: Vec<alerts::Alert>,
}

impl StatusReport {
    /// The gauges the alarms read.
    pub fn gauges(&self) -> crate::observability::metrics::StatusGauges {
        let whatsapp = self.integrations.iter().find(|i| i.name == "whatsapp");
        let token = whatsapp.and_then(|w| w.probes.iter().find(|p| p.part == graph::TOKEN_PART));
        crate::observability::metrics::StatusGauges {
            oldest_pending_secs: self
                .queues
                .iter()
                .find(|q| !q.dead_letter)
                .and_then(|q| q.depth.and_then(|d| d.oldest_age_secs)),
            quota_used_percent: whatsapp
                .and_then(|w| w.quota.as_ref())
                .and_then(|q| q.used_percent),
            token_days_left: token.and_then(|t| match t.verdict {
                Verdict::Failed => Some(0.0),
                _ => t.facts.get("expires_in_days").and_then(|d| d.as_f64()),
            }),
            endpoints_disabled: self
                .integrations
                .iter()
                .filter(|i| i.enabled == Some(false))
                .count() as u64,
            alerts: alerts::CODES
                .iter()
                .map(|code| (*code, self.alerts.iter().any(|a| a.code == *code)))
                .collect(),
        }
    }
}

fn kind_of(name: &str) -> &'static str {
    if name.starts_with("smtp:") {
        "smtp"
    } else if name.starts_with("webhook:") {
        "webhook"
    } else {
        "whatsapp"
    }
}

/// The integrations the secrets configure, in order: WhatsApp, the SMTP relays, the endpoints.
async fn configured(ctx: &StatusContext) -> Vec<String> {
    let mut names = vec!["whatsapp".to_owned()];
    match ctx.secrets.smtp(false).await {
        Ok(smtp) => {
            names.push("smtp:primary".to_owned());
            names.extend(smtp.relays.iter().map(|r| format!("smtp:{}", r.id)));
        }
        Err(SecretError::Missing(_)) if ctx.modes.contains_key("smtp:primary") => {
            names.push("smtp:primary".to_owned());
        }
        Err(_) => {}
    }
    if let Ok(endpoints) = endpoints::configured(&ctx.secrets).await {
        names.extend(endpoints.iter().map(|e| format!("webhook:{}", e.id)));
    }
    names
}

/// Builds the report from the read model, now.
pub async fn build(ctx: &StatusContext, now: Timestamp) -> Result<StatusReport, StoreError> {
    let limits = ctx.limits.as_ref();
    let probes = super::probes(limits).await?;
    let windows = calls::window(limits, now).await?;
    let mut names = configured(ctx).await;
    for extra in probes
        .values()
        .map(|p| p.integration.clone())
        .chain(windows.keys().cloned())
    {
        if !names.contains(&extra) {
            names.push(extra);
        }
    }
    let quota = quota::report(limits, ctx.messaging_limit, now).await?;
    let mut integrations = Vec::new();
    for name in names {
        let window = windows.get(&name).cloned().unwrap_or_default();
        let circuit = match limits.get_limit(&format!("breaker:{name}")).await? {
            Some(doc) => {
                serde_json::from_value::<BreakerState>(doc.body)
                    .unwrap_or_default()
                    .phase
            }
            None => Phase::Closed,
        };
        let mine: Vec<Probe> = probes
            .values()
            .filter(|p| p.integration == name)
            .cloned()
            .collect();
        let endpoint_state = match name.strip_prefix("webhook:") {
            Some(id) => Some(endpoints::endpoint_state(ctx.store.as_ref(), id).await?),
            None => None,
        };
        let quota_view = (name == "whatsapp").then(|| QuotaView {
            used_24h: quota.used,
            limit: match quota.limit {
                Some(MessagingLimit::Users(n)) => Some(n),
                _ => None,
            },
            unlimited: quota.limit == Some(MessagingLimit::Unlimited),
            source: quota.source,
            used_percent: quota.share().map(|s| (s * 1_000.0).round() / 10.0),
        });
        integrations.push(judge(
            ctx,
            name,
            &window,
            circuit,
            mine,
            quota_view,
            endpoint_state,
        ));
    }
    let mut queues = vec![queue_view("outbound", false, ctx.outbound.as_ref()).await];
    for (name, q) in &ctx.dead_letters {
        queues.push(queue_view(name, true, q.as_ref()).await);
    }
    let alerts = alerts::raised(&ctx.settings, &integrations, &queues);
    let status = integrations
        .iter()
        .map(|i| i.state)
        .filter(|s| *s != Health::Unknown)
        .max()
        .unwrap_or(Health::Unknown);
    Ok(StatusReport {
        status,
        generated_at: now.to_rfc3339(),
        probe_interval_seconds: ctx.settings.probe_interval.as_secs(),
        integrations,
        queues,
        alerts,
    })
}

async fn queue_view(name: &str, dead_letter: bool, q: &dyn crate::ports::Queue) -> QueueView {
    let (depth, error) = match q.depth().await {
        Ok(d) => (Some(d), None),
        Err(e) => (None, Some(e.to_string())),
    };
    QueueView {
        name: name.to_owned(),
        dead_letter,
        depth,
        error,
    }
}

fn judge(
    ctx: &StatusContext,
    name: String,
    window: &Window,
    circuit: Phase,
    probes: Vec<Probe>,
    quota: Option<QuotaView>,
    endpoint: Option<endpoints::EndpointState>,
) -> Integration {
    let mode = ctx
        .modes
        .get(&name)
        .cloned()
        .unwrap_or_else(|| "live".to_owned());
    let last_5m = Figures::of(&window.last_5m, 5.0);
    let last_1h = Figures::of(&window.last_1h, 60.0);
    let s = &ctx.settings;
    let mut findings: Vec<(Health, String)> = Vec::new();
    match circuit {
        Phase::Open => findings.push((Health::Down, "circuit open".to_owned())),
        Phase::HalfOpen => findings.push((Health::Degraded, "circuit half-open".to_owned())),
        Phase::Closed => {}
    }
    for p in &probes {
        match p.verdict {
            Verdict::Failed => findings.push((Health::Down, format!("{}: {}", p.part, p.detail))),
            Verdict::Warning => {
                findings.push((Health::Degraded, format!("{}: {}", p.part, p.detail)));
            }
            Verdict::Ok => {}
        }
    }
    if let Some(disabled) = endpoint.as_ref().and_then(|e| e.disabled.as_ref()) {
        findings.push((Health::Down, format!("disabled ({})", disabled.reason)));
    }
    if last_5m.error_rate_over(s) {
        findings.push((
            Health::Degraded,
            format!(
                "{:.0} % of {} calls failed over 5 minutes",
                last_5m.error_rate * 100.0,
                last_5m.calls
            ),
        ));
    }
    if let Some(p) = quota.as_ref().and_then(|q| q.used_percent)
        && p >= s.quota_levels.0 * 100.0
    {
        findings.push((
            Health::Degraded,
            format!("{p:.1} % of the messaging tier used"),
        ));
    }
    let known = !probes.is_empty() || last_1h.calls > 0 || mode != "live";
    let (state, reason) = match findings.iter().max_by_key(|(h, _)| *h) {
        Some((h, _)) => (
            *h,
            findings
                .iter()
                .filter(|(f, _)| f == h)
                .map(|(_, r)| r.as_str())
                .collect::<Vec<_>>()
                .join("; "),
        ),
        None if known => (Health::Ok, "working".to_owned()),
        None => (
            Health::Unknown,
            "not probed yet, and no calls in the last hour".to_owned(),
        ),
    };
    Integration {
        kind: kind_of(&name),
        name,
        mode,
        state,
        reason,
        circuit,
        last_success_at: window.last_1h.last_ok.map(Timestamp::to_rfc3339),
        last_failure_at: window.last_1h.last_failed.map(Timestamp::to_rfc3339),
        last_error: window.last_1h.last_error.clone(),
        last_5m,
        last_1h,
        per_minute: window
            .per_minute
            .iter()
            .map(|(m, t)| Minute {
                at: m * 60_000,
                ok: t.ok,
                failed: t.failed,
                latency_p95_ms: t.latency_quantile_ms(0.95),
            })
            .collect(),
        probes,
        quota,
        enabled: endpoint.as_ref().map(|e| e.disabled.is_none()),
        disabled_reason: endpoint.and_then(|e| e.disabled.map(|d| d.reason)),
    }
}
