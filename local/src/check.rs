//! `carteiro check`: every integration probed once ([`carteiro_shared::health`]), as a table,
//! and an exit status a script can test — the Graph token (validity, scopes, expiry) and the
//! phone number's fields, each SMTP relay (connect, TLS, EHLO, AUTH, NOOP — no message), each
//! callback endpoint (`HEAD`: TLS and reachability — no event). A part that is not configured
//! is listed as skipped; any part that fails makes the exit status non-zero.

use carteiro_shared::adapters::embedded::EmbeddedDb;
use carteiro_shared::config::Settings;
use carteiro_shared::domain::time::Timestamp;
use carteiro_shared::health::smtp::SmtpProbeConfig;
use carteiro_shared::health::{Probe, Probes, Verdict};
use carteiro_shared::ports::SecretError;
use carteiro_shared::ports::SystemClock;
use carteiro_shared::providers::email::MailerOptions;
use carteiro_shared::providers::webhook::CallbackSender;
use carteiro_shared::providers::whatsapp::GraphClient;
use carteiro_shared::secrets::Secrets;
use std::sync::Arc;

/// One row of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub part: String,
    /// `ok`, `warning`, `FAILED` or `skipped`.
    pub result: &'static str,
    pub detail: String,
}

/// What the check found.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    pub rows: Vec<Row>,
}

impl Checked {
    /// The parts that failed.
    pub fn failed(&self) -> Vec<&str> {
        self.rows
            .iter()
            .filter(|r| r.result == "FAILED")
            .map(|r| r.part.as_str())
            .collect()
    }

    /// The table, one part a line.
    pub fn table(&self) -> String {
        let width = self
            .rows
            .iter()
            .map(|r| r.part.len())
            .max()
            .unwrap_or(4)
            .max(4);
        let mut out = format!("{:width$}  {:7}  DETAIL\n", "PART", "RESULT");
        for r in &self.rows {
            out.push_str(&format!(
                "{:width$}  {:7}  {}\n",
                r.part, r.result, r.detail
            ));
        }
        out
    }
}

fn skipped(part: &str, why: &str) -> Row {
    Row {
        part: part.to_owned(),
        result: "skipped",
        detail: why.to_owned(),
    }
}

fn row(p: &Probe) -> Row {
    Row {
        part: p.part.clone(),
        result: match p.verdict {
            Verdict::Ok => "ok",
            Verdict::Warning => "warning",
            Verdict::Failed => "FAILED",
        },
        detail: format!("{} ({} ms)", p.detail, p.latency_ms),
    }
}

/// The deployed secrets `carteiro check --aws` probes: the Secrets Manager ids in
/// `CARTEIRO_WHATSAPP_SECRET_ID`, `CARTEIRO_SMTP_SECRET_ID` and `CARTEIRO_CALLBACKS_SECRET_ID`,
/// as the functions read them.
#[cfg(feature = "aws")]
pub async fn deployed_secrets(
    sdk: &carteiro_shared::adapters::aws::SdkConfig,
    env: carteiro_shared::config::Env<'_>,
) -> Result<Secrets, String> {
    use carteiro_shared::adapters::aws::{SecretIds, SecretsManagerSource};
    let ids = SecretIds {
        whatsapp: env.optional("CARTEIRO_WHATSAPP_SECRET_ID"),
        smtp: env.optional("CARTEIRO_SMTP_SECRET_ID"),
        callbacks: env.optional("CARTEIRO_CALLBACKS_SECRET_ID"),
        ..SecretIds::default()
    };
    SecretsManagerSource::secrets_from_env(sdk, env, ids)
        .await
        .map_err(|e| e.to_string())
}

/// Probes what `secrets` configures. `allow_loopback_http`: the local runtime's development
/// allowlist for callback endpoints (never with `--aws`).
pub async fn run(
    secrets: Secrets,
    settings: &Settings,
    smtp_options: MailerOptions,
    allow_loopback_http: bool,
) -> Result<Checked, String> {
    let mut rows = Vec::new();
    match secrets.whatsapp(false).await {
        Ok(w) if w.access_token.is_some() => {}
        Ok(_) => rows.push(skipped(
            "whatsapp",
            "no access_token in the whatsapp secret (the local sandbox answers instead)",
        )),
        Err(SecretError::Missing(_)) => rows.push(skipped("whatsapp", "no whatsapp secret")),
        Err(e) => rows.push(Row {
            part: "whatsapp".to_owned(),
            result: "FAILED",
            detail: e.to_string(),
        }),
    }
    if let Err(SecretError::Missing(_)) = secrets.smtp(false).await {
        rows.push(skipped(
            "smtp",
            "no smtp secret (the local sandbox keeps emails)",
        ));
    }
    if carteiro_shared::callbacks::endpoints::configured(&secrets)
        .await
        .is_ok_and(|e| e.is_empty())
    {
        rows.push(skipped("webhook", "no callback endpoints configured"));
    }
    let graph = GraphClient::new(&settings.graph).map_err(|e| e.to_string())?;
    let db = EmbeddedDb::in_memory().map_err(|e| e.to_string())?;
    let mut callback_settings = settings.callbacks.clone();
    callback_settings.allow_loopback_http = allow_loopback_http;
    let sender = CallbackSender::new(
        secrets.clone(),
        Arc::new(db.store()),
        Arc::new(SystemClock),
        callback_settings,
    )
    .map_err(|e| e.to_string())?;
    let probes = Probes {
        secrets,
        graph: Some(graph),
        smtp: SmtpProbeConfig {
            settings: settings.smtp.clone(),
            options: smtp_options,
        },
        callbacks: Some(Arc::new(sender)),
    };
    let found = carteiro_shared::health::probe_all(&probes, Timestamp::now()).await;
    rows.extend(found.iter().map(row));
    Ok(Checked { rows })
}
