//! `[kafka]`: the brokers, what is consumed, and how large a message may be; checked here,
//! beside the clients built from it.

use rdkafka::config::ClientConfig;
use serde::Deserialize;

use crate::security::KafkaSecurity;

/// `[kafka]`: where events come from.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct KafkaSettings {
    /// Bootstrap servers, comma-separated.
    pub brokers: String,
    /// Topics consumed.
    pub topics: Vec<String>,
    /// Consumer group id.
    pub group_id: String,
    /// Static membership id (`group.instance.id`); empty for dynamic membership.
    pub instance_id: String,
    /// Topic per event type for the generator; `{domain}` is substituted.
    pub topic_template: String,
    /// Largest message inspected.
    pub max_message_bytes: usize,
    /// Most pre-fetched data the consumer queues, in KiB (`queued.max.messages.kbytes`).
    pub prefetch_kbytes: u64,
    /// How long the group waits for a silent member before giving its partitions to others
    /// (`session.timeout.ms`).
    pub session_timeout_ms: u32,
    /// How the group shares partitions (`partition.assignment.strategy`): `cooperative-sticky`
    /// (incremental: a rebalance moves only what moves), or the eager `range` /
    /// `roundrobin` (every rebalance revokes every partition of every member).
    #[serde(default = "cooperative_sticky")]
    pub assignment_strategy: String,
    /// TLS and SASL towards the brokers (`[kafka.security]`).
    #[serde(default)]
    pub security: KafkaSecurity,
}

/// The assignors this pipeline may use (librdkafka cannot mix eager and cooperative ones in
/// one member's list, so exactly one is named).
pub const ASSIGNMENT_STRATEGIES: [&str; 3] = ["cooperative-sticky", "range", "roundrobin"];

fn cooperative_sticky() -> String {
    ASSIGNMENT_STRATEGIES[0].to_string()
}

impl KafkaSettings {
    /// The topic events of `domain` (an event type's first word) are produced to.
    pub fn topic_for(&self, domain: &str) -> String {
        self.topic_template.replace("{domain}", domain)
    }

    /// A librdkafka configuration reaching these brokers as configured (bootstrap servers,
    /// TLS, SASL): every client starts from it.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        self.security.apply(&mut config);
        config
    }

    /// Every problem with these settings, each naming its key.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = self.security.problems();
        if !(1024..=2_097_151).contains(&self.prefetch_kbytes) {
            problems.push(format!(
                "kafka.prefetch_kbytes: {} is outside 1024..=2097151",
                self.prefetch_kbytes
            ));
        }
        // Kafka's own bounds (group.min/max.session.timeout.ms defaults).
        if !(6_000..=1_800_000).contains(&self.session_timeout_ms) {
            problems.push(format!(
                "kafka.session_timeout_ms: {} is outside 6000..=1800000",
                self.session_timeout_ms
            ));
        }
        if !ASSIGNMENT_STRATEGIES.contains(&self.assignment_strategy.as_str()) {
            problems.push(format!(
                "kafka.assignment_strategy: '{}' is not one of {}",
                self.assignment_strategy,
                ASSIGNMENT_STRATEGIES.join(", ")
            ));
        }
        for entry in self.brokers.split(',').map(str::trim) {
            if !is_host_port(entry) {
                problems.push(format!("kafka.brokers: '{entry}' is not host:port"));
            }
        }
        if self.topics.is_empty() {
            problems.push("kafka.topics: at least one topic is needed".into());
        }
        for (i, topic) in self.topics.iter().enumerate() {
            if !is_topic_name(topic) {
                problems.push(format!(
                    "kafka.topics: '{topic}' is not a valid topic name ([a-zA-Z0-9._-], 1-249 characters)"
                ));
            }
            if self.topics[..i].contains(topic) {
                problems.push(format!("kafka.topics: '{topic}' is listed twice"));
            }
        }
        if self.group_id.trim().is_empty() {
            problems.push("kafka.group_id: must not be empty".into());
        }
        let sample = self.topic_for("classification");
        if !self.topic_template.contains("{domain}") || !is_topic_name(&sample) {
            problems.push(format!(
                "kafka.topic_template: '{}' must contain {{domain}} and form a valid topic name",
                self.topic_template
            ));
        }
        if !(1024..=1 << 30).contains(&self.max_message_bytes) {
            problems.push(format!(
                "kafka.max_message_bytes: {} is outside 1024..=1073741824",
                self.max_message_bytes
            ));
        }
        problems
    }
}

/// Whether `name` is a name Kafka accepts for a topic.
pub fn is_topic_name(name: &str) -> bool {
    (1..=249).contains(&name.len())
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn is_host_port(entry: &str) -> bool {
    match entry.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0),
        None => false,
    }
}
