//! The status read model: what `GET /v1/status`, the status page and the alerts are made of.
//!
//! Three kinds of small documents behind the limits port, so both stores hold them and the
//! report reads a handful of items, never scans:
//! - the latest probe of each part (`status:probes`), written by the sweeper's probe round;
//! - provider calls by integration and minute ([`calls`]), flushed from each process;
//! - the alerts raised (`status:alerts`), so a raise and a clear are each logged once.
//!
//! Circuit states, the messaging-limit quota and callback endpoint states are read where they
//! already live; queue depths from the queue's approximate counts.

pub mod alerts;
pub mod calls;
pub mod page;
pub mod report;

use crate::config::StatusSettings;
use crate::domain::time::Timestamp;
use crate::health::Probe;
use crate::ports::limits::{LimitStore, update_limit};
use crate::ports::queue::Queue;
use crate::ports::store::{DeliveryStore, StoreError};
use crate::ports::update::{Change, UpdateError};
use crate::resilience::quota::MessagingLimit;
use crate::secrets::Secrets;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

pub use alerts::Alert;
pub use report::StatusReport;

const PROBES_KEY: &str = "status:probes";
/// Probes are kept this long after the last round (a probe older than its interval shows stale).
const PROBES_KEPT: Duration = Duration::from_secs(7 * 86_400);

/// What the report reads. Built once per process.
#[derive(Debug, Clone)]
pub struct StatusContext {
    pub limits: Arc<dyn LimitStore>,
    pub store: Arc<dyn DeliveryStore>,
    pub secrets: Secrets,
    pub outbound: Arc<dyn Queue>,
    /// The dead-letter queues, by name (`outbound-dlq`, `inbound-dlq`).
    pub dead_letters: crate::ports::queue::NamedQueues,
    pub settings: StatusSettings,
    /// The messaging-limit tier until a webhook states one.
    pub messaging_limit: Option<MessagingLimit>,
    /// Integrations that are not the real provider here (the local sandboxes): name → mode.
    pub modes: BTreeMap<String, String>,
}

/// The latest probe of each part, by part.
pub async fn probes(limits: &dyn LimitStore) -> Result<BTreeMap<String, Probe>, StoreError> {
    Ok(match limits.get_limit(PROBES_KEY).await? {
        Some(doc) => serde_json::from_value(doc.body).unwrap_or_default(),
        None => BTreeMap::new(),
    })
}

/// Keeps `found` as the latest probes. A part configured no more drops out when it was last
/// probed over a day ago.
pub async fn record_probes(
    limits: &dyn LimitStore,
    found: &[Probe],
    now: Timestamp,
) -> Result<(), UpdateError> {
    update_limit(
        limits,
        PROBES_KEY,
        now,
        |doc: &mut BTreeMap<String, Probe>| {
            doc.retain(|_, p| now.as_millis() - p.at.as_millis() < 86_400_000);
            for p in found {
                doc.insert(p.part.clone(), p.clone());
            }
            (Change::Write(()), now.plus(PROBES_KEPT))
        },
    )
    .await
}

/// Whether a probe round is due: none was recorded within `interval` (across every instance,
/// so the sweeper Lambda probes once an interval whatever its schedule).
pub async fn probe_due(
    limits: &dyn LimitStore,
    interval: Duration,
    now: Timestamp,
) -> Result<bool, StoreError> {
    if interval.is_zero() {
        return Ok(false);
    }
    let latest = probes(limits).await?.values().map(|p| p.at).max();
    // A little slack, so a round on a timer of exactly `interval` is not skipped for jitter.
    let slack = (interval / 10).min(Duration::from_secs(5));
    Ok(latest.is_none_or(|at| now >= at.plus(interval.saturating_sub(slack))))
}

/// One probe round: probes every integration, records the findings, works out the alerts
/// (logging each one raised or cleared since the last round) and sets the status gauges.
pub async fn probe_round(
    ctx: &StatusContext,
    probes: &crate::health::Probes,
    now: Timestamp,
) -> Result<StatusReport, UpdateError> {
    let found = crate::health::probe_all(probes, now).await;
    for p in &found {
        tracing::info!(
            part = %p.part,
            verdict = p.verdict.as_str(),
            latency_ms = p.latency_ms,
            detail = %p.detail,
            "probe"
        );
    }
    record_probes(ctx.limits.as_ref(), &found, now).await?;
    let report = report::build(ctx, now).await?;
    alerts::note_transitions(ctx.limits.as_ref(), &report.alerts, now).await?;
    crate::observability::metrics::status(&report.gauges());
    Ok(report)
}
