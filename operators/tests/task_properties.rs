//! Property tests of the task operator, the fuzz target of the decode -> validate -> dedup ->
//! window path: whatever a partition carries (garbage, truncated or mutated events, resends,
//! events out of order, tombstones), processing never panics, and every message read is
//! accounted for exactly once, as an archived event, a dead letter or a recognised duplicate.
//! Bounded (a fixed number of cases) so it runs in every CI build.

use proptest::prelude::*;
use salestalk_operators::RawMessage;
use salestalk_operators::flush::Checkpoint;
use salestalk_operators::task::{Task, TaskSettings};

const T0: i64 = 1_762_646_400_000;

fn event(id: u16, at_ms: i64, tenant: u8) -> Vec<u8> {
    let at = chrono::DateTime::from_timestamp_millis(at_ms).expect("valid time");
    format!(
        r#"{{"eventId":"00000000-0000-4000-8000-{id:012}","eventType":"tenant.provisioned.v1","eventVersion":"1.0","source":"tenant-onboard","timestamp":"{}","tenantId":"t{tenant}","metadata":{{"correlationId":"c"}},"data":{{"tenantId":"t{tenant}","organizationName":"Acme","ownerEmail":"a@acme.com","plan":"standard","region":"us-east-1","resources":{{"messagesTableName":"m","metricsTableName":"t","s3Prefix":"p/"}},"provisioningTimeMs":1200,"sampleDataSeeded":true}}}}"#,
        at.format("%Y-%m-%dT%H:%M:%S%.3fZ")
    )
    .into_bytes()
}

/// One message of a hostile partition.
fn message() -> impl Strategy<Value = Option<Vec<u8>>> {
    let valid = (0u16..40, -600_000i64..600_000, 0u8..4)
        .prop_map(|(id, offset, tenant)| event(id, T0 + offset, tenant));
    prop_oneof![
        4 => valid.clone().prop_map(Some),
        1 => prop::collection::vec(any::<u8>(), 0..300).prop_map(Some),
        1 => (valid.clone(), any::<prop::sample::Index>())
            .prop_map(|(bytes, at)| Some(bytes[..at.index(bytes.len())].to_vec())),
        1 => (valid, any::<prop::sample::Index>(), any::<u8>()).prop_map(|(mut bytes, at, b)| {
            let i = at.index(bytes.len());
            bytes[i] = b;
            Some(bytes)
        }),
        1 => Just(None),
    ]
}

fn settings() -> TaskSettings {
    TaskSettings {
        allowed_lateness_ms: 120_000,
        correction_horizon_ms: 7 * 86_400_000,
        max_future_skew_ms: 60_000,
        dedup_horizon_ms: 3_600_000,
        dedup_max_ids: 10_000_000,
        dedup_max_ids_per_tenant: 10_000_000,
        max_message_bytes: 4096,
        max_new_enum_values: 1_000,
        max_sources_per_day: 1_000,
        version_ends: Default::default(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn every_message_is_accounted_for_once_and_nothing_panics(
        messages in prop::collection::vec((message(), -30_000i64..30_000), 1..120),
        flush_every in 1usize..40,
    ) {
        let mut task = Task::new("t", 0, settings(), Checkpoint::default());
        let (mut archived, mut dead, mut duplicates, mut read) = (0u64, 0u64, 0u64, 0u64);
        for (chunk_index, chunk) in messages.chunks(flush_every).enumerate() {
            let base = (chunk_index * flush_every) as i64;
            let raw: Vec<RawMessage<'_>> = chunk
                .iter()
                .enumerate()
                .map(|(i, (payload, skew))| RawMessage {
                    topic: "t",
                    partition: 0,
                    offset: base + i as i64,
                    timestamp_ms: Some(T0 + skew),
                    payload: payload.as_deref(),
                    path: salestalk_operators::PublishPath::Direct,
                    sequence: None,
                })
                .collect();
            task.process(&raw);
            let flush = task.flush(T0 + 1_000);
            archived += flush.archive.len() as u64;
            dead += flush.dead_letters.len() as u64;
            duplicates += flush.duplicates;
            read += flush.messages;
        }
        prop_assert_eq!(read, messages.len() as u64);
        prop_assert_eq!(archived + dead + duplicates, read);
        prop_assert_eq!(task.checkpoint().next_offset, messages.len() as i64);
    }
}
