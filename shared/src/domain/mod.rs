//! The domain: values that are valid by construction and the rules that move them.

pub mod app_event;
pub mod contact;
pub mod delivery;
pub mod events;
pub mod ids;
pub mod job;
pub mod message;
pub mod outcome;
pub mod payload;
pub mod suppression;
pub mod time;
pub mod webhook;

pub use delivery::{DeliveryRecord, DeliveryStatus};
pub use ids::{MessageId, PhoneNumber, Wamid};
pub use job::DispatchJob;
pub use outcome::{FailureClass, SendFailure, SendOutcome};
pub use payload::DeliveryPayload;
pub use time::Timestamp;
