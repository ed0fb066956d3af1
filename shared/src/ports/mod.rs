//! Ports: the small traits handlers depend on. Handlers never see an SDK client; the `aws` and
//! `embedded` adapters implement these, and one conformance suite holds both to the same
//! behaviour.

pub mod clock;
pub mod limits;
pub mod provider;
pub mod queue;
pub mod secrets;
pub mod store;
pub mod suppressions;
pub mod update;

pub use clock::{Clock, SystemClock};
pub use provider::{Provider, Providers, send_refreshing_credentials};
pub use queue::{OutgoingMessage, Queue, QueueError, ReceivedMessage};
pub use secrets::{SecretError, SecretName, SecretSource};
pub use store::{
    CreateOutcome, DeliveryStore, DueRecord, InsertOutcome, KeptKind, KeptRecord, ReplaceOutcome,
    StoreError,
};
pub use update::{Change, UpdateError, update_record};
