//! Test harness for Carteiro's cross-function tests: a moto server spawned on a free loopback
//! port, the adapter conformance suite, the local runtime on an ephemeral port, and builders
//! for signed webhooks and API Gateway events.
//!
//! Test-harness code: it fails loudly (unwrap, panic) rather than returning errors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod apigw;
pub mod conformance;
pub mod cost;
pub mod counting;
pub mod local;
pub mod logs;
pub mod moto;
pub mod smtp;
pub mod webhooks;
