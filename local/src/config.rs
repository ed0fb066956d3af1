//! The local runtime's configuration: flags, then environment variables, then defaults. The
//! `CARTEIRO_*` settings the Lambdas read are loaded by the same typed module
//! ([`carteiro_shared::config::Settings`]), so an operator can try a setting locally.

use carteiro_shared::config::Settings;
use carteiro_shared::providers::email::MailerOptions;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:3000";
pub const DEFAULT_DATA_DIR: &str = ".carteiro";

#[derive(Debug, Clone)]
pub struct Config {
    /// `--listen` / `CARTEIRO_LISTEN`.
    pub listen: SocketAddr,
    /// `--data-dir` / `CARTEIRO_DATA_DIR`: the SQLite file and generated development secrets.
    pub data_dir: PathBuf,
    /// `--secrets-file` / `CARTEIRO_SECRETS_FILE`; without it, development secrets are
    /// generated in the data directory.
    pub secrets_file: Option<PathBuf>,
    /// How often idle consumers look for new queue messages.
    pub poll_interval: Duration,
    /// Extra SMTP client options (a test's own root certificate, say).
    pub smtp_options: MailerOptions,
    /// The functions' settings (`CARTEIRO_*`), provider clients' included.
    pub settings: Settings,
}

impl Config {
    /// A configuration for tests: an ephemeral port and the given data directory.
    pub fn for_tests(data_dir: PathBuf, secrets_file: Option<PathBuf>) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir,
            secrets_file,
            poll_interval: Duration::from_millis(20),
            smtp_options: MailerOptions::default(),
            settings: Settings::default(),
        }
    }
}
