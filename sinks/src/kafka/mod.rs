//! The Kafka sinks: the dead-letter topic, and delivery to the routing targets (with the
//! records awaiting their consumer groups' commits).

pub mod awaiting_commit;
pub mod dead_letter_topic;
pub mod delivery;

pub use awaiting_commit::AwaitingCommit;
pub use dead_letter_topic::{DeadLetterTopic, DlqSettings};
pub use delivery::Delivery;
