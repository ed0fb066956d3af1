//! Carteiro's shared crate: everything the Lambda functions and the local runtime have in common.
//!
//! - [`domain`]: parse-don't-validate newtypes, the delivery record and its state machine, and
//!   the typed WhatsApp webhook model.
//! - [`ports`]: the small traits handlers depend on (queue, delivery store, secrets, clock).
//! - [`adapters`]: `aws` (SQS, DynamoDB, Secrets Manager) and `embedded` (SQLite), each behind
//!   a cargo feature.
//! - [`intake`] and [`inbound`]: the webhook intake handler and the inbound-event consumer, as
//!   plain async functions over ports, so Lambda and the local runtime run the same code.
//! - [`health`] and [`status`]: probes of each integration and the status read model.
//! - [`http`], [`config`], [`secrets`], [`observability`]: the plumbing around them.

pub mod adapters;
pub mod batch;
pub mod callbacks;
pub mod config;
pub mod dispatch;
pub mod domain;
pub mod fallback;
pub mod fuzzing;
pub mod health;
pub mod http;
pub mod inbound;
pub mod intake;
pub mod json;
#[cfg(feature = "lambda")]
pub mod lambda;
pub mod observability;
pub mod ports;
pub mod providers;
pub mod redrive;
pub mod resilience;
pub mod secrets;
pub mod send_api;
pub mod status;
pub mod suppression;
pub mod sweeper;
pub mod tls;
