//! The domain: values that are valid by construction and the rules that move them.

pub mod delivery;
pub mod events;
pub mod ids;
pub mod message;
pub mod time;
pub mod webhook;

pub use delivery::{DeliveryRecord, DeliveryStatus};
pub use ids::{MessageId, PhoneNumber, Wamid};
pub use time::Timestamp;
