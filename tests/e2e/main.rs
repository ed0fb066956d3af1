//! Carteiro's end-to-end tests: one binary, one module per capability.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod breaker;
mod callbacks_aws;
mod callbacks_local;
mod config_contract;
mod conformance_aws;
mod conformance_embedded;
mod cost;
mod engine;
mod fallbacks;
mod faults;
mod hostile;
mod intake_aws;
mod intake_local;
mod ledger;
mod limits_aws;
mod listings;
mod observability_contract;
mod operator;
mod quota;
mod relays;
mod send_aws;
mod send_email_local;
mod send_hostile;
mod send_limits;
mod send_local;
mod send_rate_limit;
mod service_window;
mod status_aws;
mod status_ordering;
mod suppressions;
