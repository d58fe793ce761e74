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
}

impl std::fmt::Debug for KinesisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KinesisSettings")
            .field("region", &self.region)
            .field("endpoint_url", &self.endpoint_url)
            .field("streams", &self.streams)
            .field("stream_template", &self.stream_template)
            .field("access_key_id", &self.access_key_id)
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
            ..good
        };
        let problems = bad.problems().join("\n");
        for needle in [
            "kinesis.region",
            "kinesis.endpoint_url",
            "'no spaces'",
            "set both, or neither",
        ] {
            assert!(problems.contains(needle), "{needle}: {problems}");
        }
    }
}
