//! Resilience policies as data: the retry policy now; rate limits and circuit breakers (kept
//! in the delivery store so every Lambda instance sees the same state) join it later.

pub mod retry;

pub use retry::RetryPolicy;
