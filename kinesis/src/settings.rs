//! `[kinesis]`: the region, the endpoint, the streams and the credentials; checked here,
//! beside the client built from it.

use aws_sdk_kinesis::config::Credentials;
use serde::Deserialize;

/// `[kinesis]`: where events come from when they are on Kinesis Data Streams.
#[derive(Clone, PartialEq, Eq, Deserialize)]
pub struct KinesisSettings {
    /// The AWS region.
    pub region: String,
    /// An endpoint URL instead of the region's (an emulator); empty for AWS.
    pub endpoint_url: String,
    /// Streams consumed.
    pub streams: Vec<String>,
    /// Stream per event domain for the generator; `{domain}` is substituted.
    pub stream_template: String,
    /// Static credentials: the access key id; empty for the standard AWS chain.
    pub access_key_id: String,
    /// Static credentials: the secret (never logged).
    pub secret_access_key: String,
    /// How many instances share the shards.
    pub instances: u32,
    /// Which of them this one is (0-based).
    pub instance_index: u32,
    /// Most records per GetRecords call.
    pub records_per_read: i32,
    /// Pause after an empty read, per shard (ms).
    pub idle_poll_ms: u64,
    /// How often the shard lists are read again (ms).
    pub shard_refresh_ms: u64,
}

impl std::fmt::Debug for KinesisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KinesisSettings")
            .field("region", &self.region)
            .field("endpoint_url", &self.endpoint_url)
            .field("streams", &self.streams)
            .field("stream_template", &self.stream_template)
            .field("access_key_id", &self.access_key_id)
            .field("instances", &self.instances)
            .field("instance_index", &self.instance_index)
            .field("records_per_read", &self.records_per_read)
            .field("idle_poll_ms", &self.idle_poll_ms)
            .field("shard_refresh_ms", &self.shard_refresh_ms)
            .field(
                "secret_access_key",
                &if self.secret_access_key.is_empty() {
                    ""
                } else {
                    "(redacted)"
                },
            )
            .finish()
    }
}

impl KinesisSettings {
    /// Whether this instance reads shard `shard_number` of the stream at `stream_position`
    /// in `streams` (the static assignment).
    pub fn owns(&self, stream_position: usize, shard_number: i32) -> bool {
        let instances = u64::from(self.instances.max(1));
        (stream_position as u64 + u64::from(shard_number.unsigned_abs())) % instances
            == u64::from(self.instance_index)
    }

    /// The stream events of `domain` (an event type's first word) are put to.
    pub fn stream_for(&self, domain: &str) -> String {
        self.stream_template.replace("{domain}", domain)
    }

    /// The endpoint override, if any.
    pub fn endpoint(&self) -> Option<&str> {
        Some(self.endpoint_url.trim()).filter(|url| !url.is_empty())
    }

    /// The static credentials, when both halves are set.
    pub fn static_credentials(&self) -> Option<Credentials> {
        (!self.access_key_id.is_empty() && !self.secret_access_key.is_empty()).then(|| {
            Credentials::new(
                &self.access_key_id,
                &self.secret_access_key,
                None,
                None,
                "salestalk-settings",
            )
        })
    }

    /// Every problem with these settings, each naming its key.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.region.trim().is_empty() {
            problems.push("kinesis.region: must not be empty".into());
        }
        if let Some(url) = self.endpoint()
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            problems.push(format!(
                "kinesis.endpoint_url: '{url}' is not an http:// or https:// URL"
            ));
        }
        for stream in self.streams.iter().chain([&self.stream_template]) {
            let name = stream.replace("{domain}", "d");
            if !is_stream_name(&name) {
                problems.push(format!(
                    "kinesis: '{stream}' is not a stream name ([a-zA-Z0-9_.-], 1 to 128 characters)"
                ));
            }
        }
        if self.instances == 0 || self.instance_index >= self.instances {
            problems.push(format!(
                "kinesis.instance_index: {} must be below kinesis.instances ({}, at least 1)",
                self.instance_index, self.instances
            ));
        }
        if !(1..=10_000).contains(&self.records_per_read) {
            problems.push(format!(
                "kinesis.records_per_read: {} is outside 1..=10000",
                self.records_per_read
            ));
        }
        for (key, value, range) in [
            ("idle_poll_ms", self.idle_poll_ms, 10..=60_000),
            ("shard_refresh_ms", self.shard_refresh_ms, 100..=3_600_000),
        ] {
            if !range.contains(&value) {
                problems.push(format!(
                    "kinesis.{key}: {value} is outside {}..={}",
                    range.start(),
                    range.end()
                ));
            }
        }
        if self.access_key_id.is_empty() != self.secret_access_key.is_empty() {
            problems.push(
                "kinesis.access_key_id and kinesis.secret_access_key: set both, or neither (the \
                 standard AWS chain)"
                    .into(),
            );
        }
        problems
    }
}

/// Whether `name` can be a Kinesis stream name.
pub fn is_stream_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> KinesisSettings {
        KinesisSettings {
            region: "us-east-1".into(),
            endpoint_url: "http://127.0.0.1:4567".into(),
            streams: vec!["salestalk-classification".into()],
            stream_template: "salestalk-{domain}".into(),
            access_key_id: "local".into(),
            secret_access_key: "s3cret".into(),
            instances: 1,
            instance_index: 0,
            records_per_read: 1000,
            idle_poll_ms: 250,
            shard_refresh_ms: 5000,
        }
    }

    #[test]
    fn the_secret_never_shows_and_every_problem_is_named() {
        let good = settings();
        assert!(good.problems().is_empty(), "{:?}", good.problems());
        assert!(!format!("{good:?}").contains("s3cret"));
        let bad = KinesisSettings {
            region: " ".into(),
            endpoint_url: "127.0.0.1:4567".into(),
            streams: vec!["no spaces".into()],
            secret_access_key: String::new(),
            instances: 2,
            instance_index: 2,
            records_per_read: 0,
            ..good
        };
        let problems = bad.problems().join("\n");
        for needle in [
            "kinesis.region",
            "kinesis.endpoint_url",
            "'no spaces'",
            "set both, or neither",
            "kinesis.instance_index",
            "kinesis.records_per_read",
        ] {
            assert!(problems.contains(needle), "{needle}: {problems}");
        }
    }

    #[test]
    fn instances_share_every_shard_once() {
        let streams = 3;
        for instances in 1..=4u32 {
            for shard in 0..7 {
                for stream in 0..streams {
                    let owners = (0..instances)
                        .filter(|index| {
                            KinesisSettings {
                                instances,
                                instance_index: *index,
                                ..settings()
                            }
                            .owns(stream, shard)
                        })
                        .count();
                    assert_eq!(
                        owners, 1,
                        "{instances} instances, stream {stream}, shard {shard}"
                    );
                }
            }
        }
    }
}
