//! The Kafka sinks: the dead-letter topic, and delivery to the routing targets.

pub mod dead_letter_topic;
pub mod delivery;

pub use dead_letter_topic::{DeadLetterTopic, DlqSettings};
pub use delivery::Delivery;
