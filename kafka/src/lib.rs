//! Every Kafka client the pipeline builds, configured in one place from [`KafkaSettings`]:
//! the consumer group the source reads with ([`consumer`]), the producers that must know
//! each record landed (the dead-letter topic, redrive: [`producer::acknowledged`]) or only
//! count them (the traffic generator: [`producer::counted`]), and the metadata lookups
//! (`check`, lag on the SRE page: [`admin`]).

pub mod admin;
pub mod consumer;
pub mod fence;
pub mod producer;
mod settings;

pub use settings::{KafkaSettings, is_topic_name};
