//! Logging set-up shared by every binary: JSON lines on Lambda (and with the local runtime's
//! `--log-json`), human-readable text locally; email addresses and phone numbers masked on
//! every line ([`mask`]). The level comes from `AWS_LAMBDA_LOG_LEVEL`, then `RUST_LOG`, else
//! `info`.

pub mod mask;
pub mod metrics;

use tracing_subscriber::EnvFilter;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

/// The JSON lines subscriber of Lambda and `--log-json`, writing masked lines to `writer`.
/// Every span's fields are on every line ("spans": request, message, wamid, API key and
/// correlation ids), so one message's lines are found by its id alone.
pub fn json_subscriber<W>(filter: EnvFilter, writer: W) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'a> tracing_subscriber::fmt::MakeWriter<'a> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(mask::MaskedWriter(writer))
        .json()
        .with_current_span(false)
        .with_span_list(true)
        .without_time() // CloudWatch stamps every line
        .with_target(false)
        .finish()
}

/// Installs the global subscriber once; later calls are no-ops.
pub fn init_logging(format: LogFormat) {
    let filter = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .ok()
        .map(|l| EnvFilter::new(l.to_lowercase()))
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter.clone())
        .with_writer(mask::MaskedWriter(std::io::stdout));
    let _ = match format {
        LogFormat::Json => {
            tracing::subscriber::set_global_default(json_subscriber(filter, std::io::stdout))
                .map_err(|e| e.to_string())
        }
        // Colours only for a terminal: a log file or a collector gets plain text.
        LogFormat::Text => builder
            .with_target(false)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .try_init()
            .map_err(|e| e.to_string()),
    };
}

/// What every Lambda function sets up first: JSON logs, and metrics as EMF lines (flushed by
/// [`metrics::flush_emf`] after each invocation).
pub fn init_lambda() {
    init_logging(LogFormat::Json);
    let outlets = metrics::Outlets {
        emf: true,
        prometheus: false,
    };
    if let Err(e) = metrics::install(outlets) {
        tracing::error!(error = %e, "metrics are off");
    }
}
