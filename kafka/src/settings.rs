//! `[kafka]`: the brokers, what is consumed, and how large a message may be.

/// `[kafka]`: where events come from.
#[derive(Debug, Clone, PartialEq)]
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
}

impl KafkaSettings {
    /// The topic events of `domain` (an event type's first word) are produced to.
    pub fn topic_for(&self, domain: &str) -> String {
        self.topic_template.replace("{domain}", domain)
    }
}
