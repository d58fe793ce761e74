//! The tally: what a run did, summed over its flushes. It is how `salestalk run` reports
//! itself and how tests compare runs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::flush::Flush;

/// Running counts of a stream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    /// Messages read (each offset once).
    pub messages: u64,
    /// Distinct valid events counted, by event type.
    pub valid: BTreeMap<String, u64>,
    /// Resends of events already counted.
    pub duplicates: u64,
    /// Dead-lettered messages, by reason.
    pub rejected: BTreeMap<String, u64>,
}

impl Tally {
    /// Adds what a flush made durable.
    pub fn add(&mut self, flush: &Flush) {
        self.messages += flush.messages;
        self.duplicates += flush.duplicates;
        for event in &flush.archive {
            *self
                .valid
                .entry(event.event_type.as_str().to_string())
                .or_default() += 1;
        }
        for letter in &flush.dead_letters {
            *self
                .rejected
                .entry(letter.reason.as_str().to_string())
                .or_default() += 1;
        }
    }

    /// Valid events of every type.
    pub fn valid_total(&self) -> u64 {
        self.valid.values().sum()
    }

    /// Rejected messages of every reason.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }
}
