//! Metrics through one facade (the `metrics` crate), recorded where the engine acts, never
//! counted by hand in a handler: a delivery's status changes where every record write goes
//! (`ports::update`), an acceptance where the send API creates the record, a provider call where
//! dispatch records its attempt, a deferral where a limit hands the claim back, a circuit's
//! change where the breaker makes it, a webhook where intake answers it, a callback where it
//! is sent (a callback is a delivery: its outcome is a status change). The catalogue of names and labels is docs/observability.md.
//!
//! Two outlets, the same counts in both:
//! - CloudWatch Embedded Metric Format lines (`metrics_cloudwatch_embedded`) on stdout: on
//!   Lambda flushed after each invocation ([`flush_emf`]), locally with `CARTEIRO_METRICS_EMF=1`
//!   every second.
//! - Prometheus text (`metrics-exporter-prometheus`): the local runtime's `GET /metrics`.
//!
//! The EMF crate only installs itself as the process's global recorder (its recorder type is
//! not public), so the Prometheus recorder is a mirror instead: every recording in this module
//! runs once against the global recorder and once against the mirror
//! ([`metrics::with_local_recorder`]). That is why every metric is recorded here and nowhere
//! else.

use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use std::sync::OnceLock;
use std::time::Duration;

/// The CloudWatch namespace of every metric.
pub const NAMESPACE: &str = "Carteiro";

/// Messages by `channel` and `status`: `accepted` when the send API takes one, then each status
/// a record moves to (`sending`, `sent`, `delivered`, `read`, `retry_scheduled`, `failed`,
/// `dead`, `cancelled`, …). Callbacks to the app are deliveries too, on channel `webhook`: their
/// outcomes are `sent`, `retry_scheduled` and `dead` there.
pub const MESSAGES: &str = "carteiro_messages_total";
/// Provider calls by `channel`, in seconds from the request to the answer.
pub const PROVIDER_LATENCY: &str = "carteiro_provider_latency_seconds";
/// Provider calls that failed, by `channel` and `code` (Meta's error code, or the SMTP reply
/// class such as `5xx`, or `timeout`/`unknown` when nothing came back).
pub const PROVIDER_ERRORS: &str = "carteiro_provider_errors_total";
/// Retries scheduled, by `channel`.
pub const RETRIES: &str = "carteiro_retries_scheduled_total";
/// Attempts a limit or an open circuit held back, by `limit`.
pub const DEFERRALS: &str = "carteiro_rate_limit_deferrals_total";
/// Circuit breaker changes, by `endpoint` (`whatsapp`, `smtp:<relay>`, `webhook:<id>`) and `to`
/// (`opened`, `half_open`, `closed`).
pub const CIRCUITS: &str = "carteiro_circuit_transitions_total";
/// Webhooks taken by intake.
pub const WEBHOOKS_RECEIVED: &str = "carteiro_webhooks_received_total";
/// Webhooks intake refused, by `reason` (the error code of its 4xx answer).
pub const WEBHOOKS_REJECTED: &str = "carteiro_webhooks_rejected_total";

/// Age in seconds of the oldest message in the outbound queue (the local runtime's; on AWS the
/// alarm reads SQS's own `ApproximateAgeOfOldestMessage`).
pub const OLDEST_PENDING: &str = "carteiro_oldest_pending_seconds";
/// The rolling 24 h business-initiated conversations as a percentage of the messaging tier.
pub const QUOTA_USED: &str = "carteiro_quota_used_percent";
/// Days until the WhatsApp access token expires (0 when invalid; absent when it never does).
pub const TOKEN_DAYS_LEFT: &str = "carteiro_token_days_left";
/// Callback endpoints disabled now.
pub const ENDPOINTS_DISABLED: &str = "carteiro_callback_endpoints_disabled";
/// Alerts raised now, by `alert` (1 while raised, 0 once cleared).
pub const ALERTS: &str = "carteiro_alert_active";

/// Latency buckets (seconds) for the Prometheus histogram: a Graph call takes 100–500 ms, an
/// SMTP session up to seconds, a timeout 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

static PROMETHEUS: OnceLock<(PrometheusRecorder, PrometheusHandle)> = OnceLock::new();
static EMF: OnceLock<&'static metrics_cloudwatch_embedded::Collector> = OnceLock::new();

/// Where this process's metrics go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Outlets {
    /// Prometheus text, for `GET /metrics`.
    pub prometheus: bool,
    /// EMF lines, for CloudWatch (the process must call [`flush_emf`]).
    pub emf: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("metrics could not be set up: {0}")]
pub struct MetricsError(String);

/// Sets the outlets up, once per process; later calls add what is missing and change nothing
/// else.
pub fn install(outlets: Outlets) -> Result<(), MetricsError> {
    if outlets.emf && EMF.get().is_none() {
        let collector = metrics_cloudwatch_embedded::Builder::new()
            .cloudwatch_namespace(NAMESPACE)
            .init()
            .map_err(|e| MetricsError(e.to_string()))?;
        let _ = EMF.set(collector);
    }
    if outlets.prometheus && PROMETHEUS.get().is_none() {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Full(PROVIDER_LATENCY.to_owned()),
                LATENCY_BUCKETS,
            )
            .map_err(|e| MetricsError(e.to_string()))?
            .build_recorder();
        let handle = recorder.handle();
        let _ = PROMETHEUS.set((recorder, handle));
    }
    record(describe);
    Ok(())
}

fn describe() {
    describe_counter!(MESSAGES, Unit::Count, "messages by channel and status");
    describe_histogram!(PROVIDER_LATENCY, Unit::Seconds, "provider call latency");
    describe_counter!(
        PROVIDER_ERRORS,
        Unit::Count,
        "failed provider calls by code"
    );
    describe_counter!(RETRIES, Unit::Count, "retries scheduled");
    describe_counter!(DEFERRALS, Unit::Count, "attempts held back by a limit");
    describe_counter!(CIRCUITS, Unit::Count, "circuit breaker transitions");
    describe_counter!(WEBHOOKS_RECEIVED, Unit::Count, "webhooks taken");
    describe_counter!(WEBHOOKS_REJECTED, Unit::Count, "webhooks refused by reason");
    describe_gauge!(
        OLDEST_PENDING,
        Unit::Seconds,
        "age of the oldest outbound message"
    );
    describe_gauge!(QUOTA_USED, Unit::Percent, "messaging-limit quota used");
    describe_gauge!(TOKEN_DAYS_LEFT, "days until the access token expires");
    describe_gauge!(
        ENDPOINTS_DISABLED,
        Unit::Count,
        "callback endpoints disabled"
    );
    describe_gauge!(ALERTS, Unit::Count, "alerts raised by name");
}

/// What a probe round found, as gauges for the alarms (each `None` is left unset).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatusGauges {
    pub oldest_pending_secs: Option<u64>,
    pub quota_used_percent: Option<f64>,
    pub token_days_left: Option<f64>,
    pub endpoints_disabled: u64,
    /// Each alert known, and whether it is raised.
    pub alerts: Vec<(&'static str, bool)>,
}

/// Sets the status gauges after a probe round.
pub fn status(g: &StatusGauges) {
    record(|| {
        if let Some(age) = g.oldest_pending_secs {
            gauge!(OLDEST_PENDING).set(age as f64);
        }
        if let Some(p) = g.quota_used_percent {
            gauge!(QUOTA_USED).set(p);
        }
        if let Some(d) = g.token_days_left {
            gauge!(TOKEN_DAYS_LEFT).set(d);
        }
        gauge!(ENDPOINTS_DISABLED).set(g.endpoints_disabled as f64);
        for (alert, raised) in &g.alerts {
            gauge!(ALERTS, "alert" => *alert).set(if *raised { 1.0 } else { 0.0 });
        }
    });
}

/// The Prometheus text of everything recorded so far; `None` without that outlet.
pub fn render_prometheus() -> Option<String> {
    PROMETHEUS.get().map(|(_, handle)| handle.render())
}

/// Writes the EMF lines of what was recorded since the last flush to stdout (one JSON line per
/// label set, as CloudWatch Logs reads them). Without that outlet, does nothing.
pub fn flush_emf() {
    if let Some(collector) = EMF.get()
        && let Err(e) = collector.flush(std::io::stdout().lock())
    {
        tracing::warn!(error = %e, "metrics could not be written");
    }
}

/// Runs a recording against the global recorder and the Prometheus mirror.
fn record(f: impl Fn()) {
    f();
    if let Some((recorder, _)) = PROMETHEUS.get() {
        metrics::with_local_recorder(recorder, &f);
    }
}

/// The send API accepted a message.
pub fn accepted(channel: &'static str) {
    record(|| counter!(MESSAGES, "channel" => channel, "status" => "accepted").increment(1));
}

/// A record moved to `status`.
pub fn transition(channel: &'static str, status: &'static str) {
    record(|| {
        counter!(MESSAGES, "channel" => channel, "status" => status).increment(1);
        if status == "retry_scheduled" {
            counter!(RETRIES, "channel" => channel).increment(1);
        }
    });
}

/// A provider call took `latency` and, if it failed, failed with `code` (an SMTP reply code
/// is counted by its class, `5xx`, to keep the label's values few).
pub fn provider_call(channel: &'static str, latency: Duration, code: Option<&str>) {
    let code = code.map(|c| code_label(channel, c));
    record(|| {
        histogram!(PROVIDER_LATENCY, "channel" => channel).record(latency.as_secs_f64());
        if let Some(code) = &code {
            counter!(PROVIDER_ERRORS, "channel" => channel, "code" => code.clone()).increment(1);
        }
    });
}

/// An attempt was held back by `limit`.
pub fn deferred(limit: &'static str) {
    record(|| counter!(DEFERRALS, "limit" => limit).increment(1));
}

/// The circuit breaker of `endpoint` moved to `to`.
pub fn circuit(endpoint: &str, to: &'static str) {
    let endpoint = endpoint.to_owned();
    record(|| counter!(CIRCUITS, "endpoint" => endpoint.clone(), "to" => to).increment(1));
}

/// Intake took a webhook.
pub fn webhook_received() {
    record(|| counter!(WEBHOOKS_RECEIVED).increment(1));
}

/// Intake refused a webhook with `reason`.
pub fn webhook_rejected(reason: &'static str) {
    record(|| counter!(WEBHOOKS_REJECTED, "reason" => reason).increment(1));
}

fn code_label(channel: &str, code: &str) -> String {
    let reply = code.len() == 3 && code.bytes().all(|b| b.is_ascii_digit());
    match code.chars().next() {
        Some(class) if channel == "email" && reply => format!("{class}xx"),
        _ => code.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_replies_are_counted_by_class_and_meta_codes_as_they_are() {
        assert_eq!(code_label("email", "550"), "5xx");
        assert_eq!(code_label("email", "421"), "4xx");
        assert_eq!(code_label("email", "timeout"), "timeout");
        assert_eq!(code_label("whatsapp", "131026"), "131026");
        assert_eq!(code_label("whatsapp", "100"), "100");
    }
}
