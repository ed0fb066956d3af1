//! `carteiro`: the whole gateway as one local process.

use carteiro_local::config::{Config, DEFAULT_DATA_DIR, DEFAULT_LISTEN};
use carteiro_local::{Application, dev_secrets, redrive};
use carteiro_shared::config::{Env, Settings, process_env};
use carteiro_shared::observability::{LogFormat, init_logging};
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "carteiro",
    version,
    about = "WhatsApp Cloud API and SMTP gateway, running locally"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API and run the queue consumers (the default).
    Serve(ServeArgs),
    /// Move dead letters back to the queue they came from, and print what moved.
    Redrive(RedriveArgs),
    /// Send an event to its callback endpoints again (a new attempt, the same webhook-id).
    Replay(ReplayArgs),
    /// Test every integration once (Graph token and phone number, SMTP relays, callback
    /// endpoints) without sending anything; exits non-zero when any part fails.
    Check(CheckArgs),
}

#[derive(Debug, Clone, clap::Args)]
struct CheckArgs {
    /// JSON secrets file (the Secrets Manager documents, one member each); default: the data
    /// directory's development secrets.
    #[arg(long, env = "CARTEIRO_SECRETS_FILE", conflicts_with = "aws")]
    secrets_file: Option<PathBuf>,
    /// Directory of the development secrets.
    #[arg(long, env = "CARTEIRO_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// Check the deployed secrets instead: Secrets Manager ids from CARTEIRO_WHATSAPP_SECRET_ID,
    /// CARTEIRO_SMTP_SECRET_ID and CARTEIRO_CALLBACKS_SECRET_ID (needs a build with
    /// `--features aws`; credentials and region as for the AWS CLI's environment).
    #[arg(long)]
    aws: bool,
}

async fn run_check(args: CheckArgs) -> ExitCode {
    let settings = match Settings::from_env(Env::new(&process_env)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("carteiro check: {e}");
            return ExitCode::FAILURE;
        }
    };
    let secrets = if args.aws {
        aws_secrets().await
    } else {
        let path = args
            .secrets_file
            .clone()
            .unwrap_or_else(|| args.data_dir.join(dev_secrets::FILE_NAME));
        carteiro_shared::adapters::file_secrets::FileSecretSource::open(&path)
            .map(|s| carteiro_shared::secrets::Secrets::new(std::sync::Arc::new(s)))
            .map_err(|e| format!("{}: {e}", path.display()))
    };
    let secrets = match secrets {
        Ok(s) => s,
        Err(e) => {
            eprintln!("carteiro check: {e}");
            return ExitCode::FAILURE;
        }
    };
    let checked =
        match carteiro_local::check::run(secrets, &settings, Default::default(), !args.aws).await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("carteiro check: {e}");
                return ExitCode::FAILURE;
            }
        };
    print!("{}", checked.table());
    let failed = checked.failed();
    let probed = checked
        .rows
        .iter()
        .filter(|r| r.result != "skipped")
        .count();
    let warned = checked
        .rows
        .iter()
        .filter(|r| r.result == "warning")
        .count();
    if failed.is_empty() {
        match (probed, warned) {
            (0, _) => println!("nothing configured to probe"),
            (_, 0) => println!("every configured part is healthy"),
            (_, n) => println!("no part failed; {n} warning(s) above"),
        }
        ExitCode::SUCCESS
    } else {
        eprintln!("carteiro check: failed: {}", failed.join(", "));
        ExitCode::FAILURE
    }
}

#[cfg(feature = "aws")]
async fn aws_secrets() -> Result<carteiro_shared::secrets::Secrets, String> {
    let sdk = carteiro_shared::adapters::aws::load_sdk_config().await;
    carteiro_local::check::deployed_secrets(&sdk, Env::new(&process_env)).await
}

#[cfg(not(feature = "aws"))]
async fn aws_secrets() -> Result<carteiro_shared::secrets::Secrets, String> {
    Err("this carteiro was built without AWS support; build it with `cargo build --release --features aws`".to_owned())
}

#[derive(Debug, Clone, clap::Args)]
struct ReplayArgs {
    /// The event's id (`evt_…`, the `webhook-id` the endpoint received).
    event_id: String,
    /// Directory of the embedded store.
    #[arg(long, env = "CARTEIRO_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
}

async fn run_replay(args: ReplayArgs) -> ExitCode {
    match carteiro_local::replay::run(&args.data_dir, &args.event_id).await {
        Ok(deliveries) => {
            for d in &deliveries {
                let state = match (&d.record, d.queued) {
                    (None, _) => "gone (not replayed)".to_owned(),
                    (Some(_), true) => "queued again".to_owned(),
                    (Some(r), false) => format!("left alone: still {}", r.status.as_str()),
                };
                println!("{} → {}: {state}", args.event_id, d.delivery.endpoint_id);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("carteiro replay: {e}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Debug, Clone, clap::Args)]
struct RedriveArgs {
    /// Which queue's dead letters: `outbound` (dispatch jobs) or `inbound` (webhook events).
    #[arg(long, value_parser = ["outbound", "inbound"], required_unless_present = "dlq_url")]
    queue: Option<String>,
    /// On AWS: the SQS dead-letter queue's URL (with --queue-url; needs a build with
    /// `--features aws`; credentials and region as for the AWS CLI's environment).
    #[arg(long, requires = "queue_url", conflicts_with = "queue")]
    dlq_url: Option<String>,
    /// On AWS: the URL of the queue the dead letters go back to.
    #[arg(long, requires = "dlq_url")]
    queue_url: Option<String>,
    /// Only dead letters first queued at most this long ago (`90m`, `2h`, `7d`).
    #[arg(long, value_parser = parse_ago)]
    since: Option<Duration>,
    /// Only dead letters first queued at least this long ago.
    #[arg(long, value_parser = parse_ago)]
    until: Option<Duration>,
    /// Print what would move; move nothing.
    #[arg(long)]
    dry_run: bool,
    /// Directory of the embedded store.
    #[arg(long, env = "CARTEIRO_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
}

fn parse_ago(s: &str) -> Result<Duration, String> {
    carteiro_shared::config::parse_duration(s)
}

#[derive(Debug, Clone, clap::Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "CARTEIRO_LISTEN", default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Directory for the embedded store and generated development secrets.
    #[arg(long, env = "CARTEIRO_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// JSON secrets file (the Secrets Manager documents, one member each).
    #[arg(long, env = "CARTEIRO_SECRETS_FILE")]
    secrets_file: Option<PathBuf>,
    /// Log as JSON lines instead of text.
    #[arg(long, env = "CARTEIRO_LOG_JSON")]
    log_json: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let args = match cli.command {
        Some(Command::Serve(args)) => args,
        Some(Command::Redrive(args)) => return run_redrive(args).await,
        Some(Command::Replay(args)) => return run_replay(args).await,
        Some(Command::Check(args)) => return run_check(args).await,
        None => cli.serve,
    };
    let settings = match Settings::from_env(Env::new(&process_env)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("carteiro: {e}");
            return ExitCode::FAILURE;
        }
    };
    init_logging(if args.log_json {
        LogFormat::Json
    } else {
        LogFormat::Text
    });
    let config = Config {
        listen: args.listen,
        data_dir: args.data_dir,
        secrets_file: args.secrets_file,
        poll_interval: Duration::from_millis(100),
        smtp_options: Default::default(),
        settings,
    };
    let app = match Application::build(config).await {
        Ok(app) => app,
        Err(e) => {
            eprintln!("carteiro: {e}");
            return ExitCode::FAILURE;
        }
    };
    // With --log-json stdout carries JSON lines only; the banner goes to stderr.
    let banner = banner(&app);
    if args.log_json {
        eprint!("{banner}");
    } else {
        print!("{banner}");
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        let _ = stop.send(true);
    });
    match app.run(stopped).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("carteiro: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run_redrive(args: RedriveArgs) -> ExitCode {
    let now = carteiro_shared::domain::time::Timestamp::now();
    let ago = |d: Duration| {
        carteiro_shared::domain::time::Timestamp::from_millis(
            now.as_millis() - i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        )
    };
    let filter = carteiro_shared::redrive::RedriveFilter {
        since: args.since.map(ago),
        until: args.until.map(ago),
        dry_run: args.dry_run,
    };
    let (moved, label) = match (&args.dlq_url, &args.queue_url, &args.queue) {
        (Some(dlq), Some(queue), _) => (redrive_sqs(dlq, queue, filter).await, queue.clone()),
        (_, _, Some(queue)) => (
            redrive::run(&args.data_dir, queue, filter).await,
            queue.clone(),
        ),
        _ => (
            Err("give --queue, or --dlq-url and --queue-url".to_owned()),
            String::new(),
        ),
    };
    match moved {
        Ok(report) => {
            let verb = if report.dry_run {
                "would move"
            } else {
                "moved"
            };
            for item in &report.moved {
                println!("{verb} {} {}", item.message_id, item.body);
            }
            println!(
                "{verb} {} message(s) from {label}'s dead-letter queue to {label}; {} left by the time filter",
                report.moved.len(),
                report.skipped
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("carteiro redrive: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(feature = "aws")]
async fn redrive_sqs(
    dlq: &str,
    queue: &str,
    filter: carteiro_shared::redrive::RedriveFilter,
) -> Result<carteiro_shared::redrive::RedriveReport, String> {
    let sdk = carteiro_shared::adapters::aws::load_sdk_config().await;
    redrive::run_sqs(&sdk, dlq, queue, filter).await
}

#[cfg(not(feature = "aws"))]
async fn redrive_sqs(
    _dlq: &str,
    _queue: &str,
    _filter: carteiro_shared::redrive::RedriveFilter,
) -> Result<carteiro_shared::redrive::RedriveReport, String> {
    Err("this carteiro was built without AWS support; build it with `cargo build --release --features aws`".to_owned())
}

/// What `carteiro` says at start: where it listens, and what stands in for what.
fn banner(app: &Application) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let addr = app
        .local_addr()
        .map_or_else(|| "?".to_owned(), |a| a.to_string());
    let config = app.config();
    let _ = writeln!(out, "carteiro listening on http://{addr}");
    let _ = writeln!(out, "  data directory: {}", config.data_dir.display());
    match &config.secrets_file {
        Some(path) => {
            let _ = writeln!(out, "  secrets file:   {}", path.display());
        }
        None => {
            let path = config.data_dir.join(dev_secrets::FILE_NAME);
            let _ = writeln!(
                out,
                "  development secrets (generated, kept in {}):",
                path.display()
            );
            if let Ok(text) = std::fs::read_to_string(&path)
                && let Ok(doc) = serde_json::from_str::<serde_json::Value>(&text)
            {
                let show = |p: &str| {
                    doc.pointer(p)
                        .and_then(|v| v.as_str())
                        .unwrap_or("?")
                        .to_owned()
                };
                let _ = writeln!(out, "    verify token: {}", show("/whatsapp/verify_token"));
                let _ = writeln!(out, "    app secret:   {}", show("/whatsapp/app_secret"));
                let _ = writeln!(out, "    API key:      {}", show("/api_keys/keys/0/key"));
            }
        }
    }
    if app.gateway().whatsapp_sandbox.is_some() {
        let _ = writeln!(
            out,
            "  WhatsApp:       SANDBOX — no access_token configured; messages are kept at http://{addr}/sandbox/outbox, not sent to Meta,\n                  and answered with sent/delivered/read status webhooks; POST http://{addr}/sandbox/inbound {{\"from\",\"text\"}} plays a customer"
        );
    } else {
        let _ = writeln!(
            out,
            "  WhatsApp:       Graph API (credentials from the secrets file)"
        );
    }
    if app.gateway().email_sandbox.is_some() {
        let _ = writeln!(
            out,
            "  Email:          SANDBOX — no smtp secret configured; emails are kept at http://{addr}/sandbox/outbox, not sent"
        );
    } else {
        let _ = writeln!(out, "  Email:          SMTP (server from the secrets file)");
    }
    let _ = writeln!(
        out,
        "  send API:       POST http://{addr}/v1/messages (Authorization: Bearer <API key>)"
    );
    let _ = writeln!(
        out,
        "  callbacks:      to the endpoints of the secrets file's \"callbacks\"; development allowlist: plain http to loopback (127.0.0.1, ::1) is allowed here, never on Lambda"
    );
    let _ = writeln!(
        out,
        "  webhook URL:    http://{addr}/webhooks/whatsapp   health: http://{addr}/health"
    );
    out
}
