//! The Kafka sinks: the dead-letter topic.

pub mod dead_letter_topic;

pub use dead_letter_topic::{DeadLetterTopic, DlqSettings};
