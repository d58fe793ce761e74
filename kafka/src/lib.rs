//! Every Kafka client the pipeline builds, configured in one place from [`KafkaSettings`]:
//! the consumer group the source reads with ([`consumer`]), the producers that must know
//! each record landed (the dead-letter topic, redrive: [`producer::acknowledged`]) or only
//! count them (the traffic generator: [`producer::counted`]), and the metadata lookups
//! (`check`, lag on the SRE page: [`admin`]). Each starts from
//! [`KafkaSettings::client_config`]: the brokers, and TLS and SASL ([`security`]).

pub mod admin;
pub mod consumer;
pub mod fence;
pub mod producer;
pub mod security;
mod settings;

pub use security::KafkaSecurity;
pub use settings::{KafkaSettings, is_topic_name};
