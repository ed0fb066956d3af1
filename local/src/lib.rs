//! The local runtime: the whole gateway in one process over the embedded SQLite store.
//!
//! It serves the routes API Gateway serves and feeds each request to the very handler
//! function the Lambda runs; queue consumers run in-process over the embedded queue, with the
//! same redrive-to-dead-letter rule as SQS. Local behaviour is Lambda behaviour.

pub mod check;
pub mod config;
pub mod consumer;
pub mod dev_secrets;
pub mod redrive;
pub mod replay;
pub mod routes;
pub mod sandbox;
pub mod sweeper;

use carteiro_shared::adapters::embedded::EmbeddedDb;
use carteiro_shared::adapters::file_secrets::FileSecretSource;
use carteiro_shared::callbacks::EventPublisher;
use carteiro_shared::dispatch::DispatchContext;
use carteiro_shared::domain::delivery::Channel;
use carteiro_shared::health::Probes;
use carteiro_shared::health::smtp::SmtpProbeConfig;
use carteiro_shared::inbound::InboundContext;
use carteiro_shared::intake::IntakeContext;
use carteiro_shared::ports::limits::LimitStore;
use carteiro_shared::ports::{Clock, DeliveryStore, Provider, Queue, SystemClock};
use carteiro_shared::providers::email_sandbox::EmailOutbox;
use carteiro_shared::providers::smtp_from_secrets::SmtpFromSecrets;
use carteiro_shared::providers::templates::EmailTemplates;
use carteiro_shared::providers::webhook::CallbackSender;
use carteiro_shared::providers::whatsapp::{GraphClient, SandboxOutbox, WhatsAppSender};
use carteiro_shared::secrets::Secrets;
use carteiro_shared::send_api::SendApiContext;
use carteiro_shared::status::StatusContext;
use carteiro_shared::sweeper::SweepContext;
pub use config::Config;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Queue names in the embedded database.
pub const INBOUND_QUEUE: &str = "inbound";
pub const INBOUND_DLQ: &str = "inbound-dlq";
pub const OUTBOUND_QUEUE: &str = "outbound";
pub const OUTBOUND_DLQ: &str = "outbound-dlq";

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot open the embedded store: {0}")]
    Store(String),
    #[error("secrets: {0}")]
    Secrets(String),
    #[error("cannot build the WhatsApp client: {0}")]
    Http(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Everything the routes and consumers share.
#[derive(Debug, Clone)]
pub struct Gateway {
    pub db: EmbeddedDb,
    pub intake: IntakeContext,
    pub inbound: InboundContext,
    pub send_api: SendApiContext,
    pub dispatch: DispatchContext,
    pub sweep: SweepContext,
    /// Where WhatsApp messages go when no access token is configured.
    pub whatsapp_sandbox: Option<Arc<SandboxOutbox>>,
    /// Where emails go when no `smtp` secret is configured.
    pub email_sandbox: Option<Arc<EmailOutbox>>,
    /// What `GET /v1/status` reads and the probe rounds write.
    pub status: Arc<StatusContext>,
    pub probes: Probes,
}

/// A built, listening gateway; [`Application::run`] serves it until shutdown.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    gateway: Gateway,
    config: Config,
    /// What the WhatsApp sandbox took, for [`sandbox::answer`].
    sandbox_taken: Option<
        tokio::sync::mpsc::UnboundedReceiver<carteiro_shared::providers::whatsapp::SandboxMessage>,
    >,
}

impl Application {
    /// Opens the store, loads (or generates) secrets and binds the listener.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| StartError::DataDir {
            path: config.data_dir.display().to_string(),
            source,
        })?;
        let outlets = carteiro_shared::observability::metrics::Outlets {
            prometheus: true,
            emf: config.settings.metrics.emf,
        };
        if let Err(e) = carteiro_shared::observability::metrics::install(outlets) {
            tracing::error!(error = %e, "metrics are off");
        }
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let db = EmbeddedDb::open(
            &config
                .data_dir
                .join(carteiro_shared::adapters::embedded::DEFAULT_FILE_NAME),
        )
        .map_err(|e| StartError::Store(e.to_string()))?;
        let secrets_path = match &config.secrets_file {
            Some(path) => path.clone(),
            None => dev_secrets::ensure(&config.data_dir)
                .map_err(|e| StartError::Secrets(e.to_string()))?,
        };
        let source = FileSecretSource::open(&secrets_path)
            .map_err(|e| StartError::Secrets(e.to_string()))?;
        let secrets = Secrets::new(Arc::new(source));
        let store: Arc<dyn DeliveryStore> = Arc::new(db.store());
        let outbound: Arc<dyn Queue> = Arc::new(db.queue(OUTBOUND_QUEUE));
        // Without Meta credentials, WhatsApp goes to an in-memory sandbox instead of Meta, which
        // answers with status webhooks (crate::sandbox).
        let mut sandbox_taken = None;
        let has_credentials = secrets
            .whatsapp(false)
            .await
            .is_ok_and(|w| w.access_token.is_some() && w.phone_number_id.is_some());
        let mut graph_for_probes = None;
        let (whatsapp, whatsapp_sandbox): (Arc<dyn WhatsAppSender>, _) = if has_credentials {
            let graph = GraphClient::new(&config.settings.graph)
                .map_err(|e| StartError::Http(e.to_string()))?;
            graph_for_probes = Some(graph.clone());
            (Arc::new(graph), None)
        } else {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            sandbox_taken = Some(rx);
            let sandbox = Arc::new(SandboxOutbox::with_listener(tx));
            (sandbox.clone(), Some(sandbox))
        };
        // Likewise email without an `smtp` secret goes to an in-memory sandbox.
        let (email, email_sandbox): (Arc<dyn Provider>, _) = if secrets.smtp(false).await.is_ok() {
            let smtp = SmtpFromSecrets::new(
                secrets.clone(),
                config.settings.smtp.clone(),
                config.smtp_options.clone(),
            );
            (Arc::new(smtp), None)
        } else {
            let outbox = Arc::new(
                EmailOutbox::new(config.smtp_options.clone())
                    .map_err(|e| StartError::Secrets(e.to_string()))?,
            );
            (outbox.clone(), Some(outbox))
        };
        let settings = &config.settings;
        // The development allowlist: callbacks may go to plain http on loopback (a receiver
        // on this machine). Lambda never allows it.
        let mut callbacks = settings.callbacks.clone();
        callbacks.allow_loopback_http = true;
        let sender = CallbackSender::new(
            secrets.clone(),
            store.clone(),
            clock.clone(),
            callbacks.clone(),
        )
        .map_err(|e| StartError::Http(e.to_string()))?;
        let sender = Arc::new(sender);
        let probes = Probes {
            secrets: secrets.clone(),
            graph: graph_for_probes,
            smtp: SmtpProbeConfig {
                settings: settings.smtp.clone(),
                options: config.smtp_options.clone(),
            },
            callbacks: Some(sender.clone()),
        };
        let mut modes = std::collections::BTreeMap::new();
        if whatsapp_sandbox.is_some() {
            modes.insert("whatsapp".to_owned(), "sandbox".to_owned());
        }
        if email_sandbox.is_some() {
            modes.insert("smtp:primary".to_owned(), "sandbox".to_owned());
        }
        let limits: Arc<dyn LimitStore> = Arc::new(db.limits());
        let status = Arc::new(StatusContext {
            limits: limits.clone(),
            store: store.clone(),
            secrets: secrets.clone(),
            outbound: outbound.clone(),
            dead_letters: [OUTBOUND_DLQ, INBOUND_DLQ]
                .iter()
                .map(|name| {
                    let q: Arc<dyn Queue> = Arc::new(db.queue(name));
                    ((*name).to_owned(), q)
                })
                .collect(),
            settings: settings.status.clone(),
            messaging_limit: settings.dispatch.messaging_limit,
            modes,
        });
        let providers = carteiro_shared::providers::standard(&secrets, whatsapp, email)
            .with(Channel::Webhook, sender);
        let events = EventPublisher {
            store: store.clone(),
            outbound: outbound.clone(),
            secrets: secrets.clone(),
            settings: callbacks,
        };
        let gateway = Gateway {
            intake: IntakeContext {
                queue: Arc::new(db.queue(INBOUND_QUEUE)),
                secrets: secrets.clone(),
                settings: settings.intake.clone(),
            },
            inbound: InboundContext {
                store: store.clone(),
                clock: clock.clone(),
                settings: settings.inbound.clone(),
                events: Some(events.clone()),
                outbound: Some(outbound.clone()),
                limits: Some(Arc::new(db.limits())),
                suppressions: Some(Arc::new(db.suppressions())),
            },
            sweep: SweepContext {
                store: store.clone(),
                outbound: outbound.clone(),
                clock: clock.clone(),
                dispatch: settings.dispatch.clone(),
                settings: settings.sweep.clone(),
            },
            send_api: SendApiContext {
                store: store.clone(),
                outbound: outbound.clone(),
                secrets: secrets.clone(),
                clock: clock.clone(),
                templates: Arc::new(EmailTemplates::embedded()),
                settings: settings.send_api.clone(),
                limits: Some(Arc::new(db.limits())),
                suppressions: Some(Arc::new(db.suppressions())),
                status: Some(status.clone()),
            },
            dispatch: DispatchContext {
                store,
                outbound,
                providers,
                clock,
                settings: settings.dispatch.clone(),
                events: Some(events),
                limits: Some(Arc::new(db.limits())),
                sender_gate: Default::default(),
                calls: Default::default(),
                suppressions: Some(Arc::new(db.suppressions())),
            },
            whatsapp_sandbox,
            email_sandbox,
            status,
            probes,
            db,
        };
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| StartError::Listen {
                    addr: config.listen,
                    source,
                })?;
        Ok(Self {
            listener,
            gateway,
            config,
            sandbox_taken,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    pub fn gateway(&self) -> &Gateway {
        &self.gateway
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Serves HTTP and runs the consumers until `shutdown` turns true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> std::io::Result<()> {
        let consumers: Vec<_> = [consumer::Consumer::Inbound, consumer::Consumer::Dispatch]
            .into_iter()
            .flat_map(|kind| std::iter::repeat_n(kind, kind.pollers()))
            .map(|kind| {
                tokio::spawn(consumer::run(
                    kind,
                    self.gateway.clone(),
                    self.config.poll_interval,
                    shutdown.clone(),
                ))
            })
            .collect();
        let sweeper = tokio::spawn(sweeper::run(self.gateway.sweep.clone(), shutdown.clone()));
        let probing = tokio::spawn(sweeper::probe(
            self.gateway.status.clone(),
            self.gateway.probes.clone(),
            shutdown.clone(),
        ));
        let flushing = tokio::spawn(sweeper::flush_calls(
            self.gateway.dispatch.calls.clone(),
            self.gateway.status.limits.clone(),
            shutdown.clone(),
        ));
        if self.config.settings.metrics.emf {
            tokio::spawn(emf_lines(shutdown.clone()));
        }
        if let Some(taken) = self.sandbox_taken {
            tokio::spawn(sandbox::answer(
                self.gateway.intake.clone(),
                taken,
                shutdown.clone(),
            ));
        }
        let app = routes::router(self.gateway.clone());
        let server = axum::serve(self.listener, app).with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        });
        let served = server.await;
        for consumer in consumers {
            let _ = consumer.await;
        }
        let _ = sweeper.await;
        let _ = probing.await;
        let _ = flushing.await;
        served
    }
}

/// With `CARTEIRO_METRICS_EMF=1`: the EMF lines Lambda would write, every second on stdout
/// (and once more at shutdown).
async fn emf_lines(mut shutdown: watch::Receiver<bool>) {
    loop {
        let go_on =
            sweeper::sleep_unless_stopped(std::time::Duration::from_secs(1), &mut shutdown).await;
        carteiro_shared::observability::metrics::flush_emf();
        if !go_on {
            return;
        }
    }
}
