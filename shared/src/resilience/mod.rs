//! Resilience policies as data: the retry policy, and token-bucket rate limits whose state
//! lives behind the limits port so every Lambda instance takes from the same bucket.

pub mod breaker;
pub mod quota;
pub mod rate;
pub mod retry;

pub use retry::RetryPolicy;
