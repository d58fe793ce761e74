//! Processing on every core: a partition's task is single-threaded and deterministic and
//! tasks share nothing, so the partitions of one batch (and the flushes of all tasks) are
//! spread over scoped threads. Reading, the sinks and committing stay in the driver loop, one
//! step after another, so ADR 0004's argument is unchanged: which thread processed a
//! partition changes nothing it computes.

use std::num::NonZeroUsize;

use salestalk_operators::RawMessage;
use salestalk_operators::flush::Flush;
use salestalk_operators::task::Task;

/// How many threads process a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Workers {
    count: usize,
}

impl Workers {
    /// `count` workers; 0 means one per core.
    pub fn new(count: usize) -> Self {
        let count = if count == 0 {
            std::thread::available_parallelism().map_or(1, NonZeroUsize::get)
        } else {
            count
        };
        Self { count }
    }

    /// How many there are.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Hands each task its partition's messages, in order; partitions run side by side.
    pub fn process(&self, work: Vec<(&mut Task, Vec<RawMessage<'_>>)>) {
        let weights: Vec<usize> = work.iter().map(|(_, messages)| messages.len()).collect();
        self.run(work, &weights, |(task, messages)| task.process(&messages));
    }

    /// Every task's flush as of `durable_at_ms`, for the tasks with something pending.
    pub fn flush(&self, tasks: Vec<&mut Task>, durable_at_ms: i64) -> Vec<Flush> {
        let pending: Vec<&mut Task> = tasks.into_iter().filter(|t| t.has_pending()).collect();
        let weights: Vec<usize> = pending.iter().map(|t| t.pending_bytes() + 1).collect();
        let mut slots: Vec<(&mut Task, Option<Flush>)> =
            pending.into_iter().map(|task| (task, None)).collect();
        let work: Vec<&mut (&mut Task, Option<Flush>)> = slots.iter_mut().collect();
        self.run(work, &weights, |(task, flush)| {
            *flush = Some(task.flush(durable_at_ms));
        });
        slots.into_iter().filter_map(|(_, flush)| flush).collect()
    }

    /// Runs `job` on every item, the items spread over the workers so that each gets about
    /// the same weight (heaviest first onto the lightest worker).
    fn run<T: Send>(&self, items: Vec<T>, weights: &[usize], job: impl Fn(T) + Sync) {
        if self.count <= 1 || items.len() <= 1 {
            items.into_iter().for_each(job);
            return;
        }
        let mut order: Vec<usize> = (0..items.len()).collect();
        order.sort_by_key(|i| std::cmp::Reverse(weights[*i]));
        let lanes = self.count.min(items.len());
        let mut groups: Vec<(usize, Vec<usize>)> = vec![(0, Vec::new()); lanes];
        for i in order {
            if let Some(lightest) = groups.iter_mut().min_by_key(|(load, _)| *load) {
                lightest.0 += weights[i];
                lightest.1.push(i);
            }
        }
        let mut items: Vec<Option<T>> = items.into_iter().map(Some).collect();
        let mut lanes: Vec<Vec<T>> = groups
            .into_iter()
            .map(|(_, members)| {
                members
                    .into_iter()
                    .filter_map(|i| items[i].take())
                    .collect()
            })
            .collect();
        let here = lanes.pop().unwrap_or_default();
        let job = &job;
        std::thread::scope(|scope| {
            for lane in lanes {
                scope.spawn(move || lane.into_iter().for_each(job));
            }
            here.into_iter().for_each(job);
        });
    }
}

#[cfg(test)]
mod tests {
    use salestalk_operators::task::TaskSettings;

    use super::*;
    use crate::settings::Settings;

    const T0: i64 = 1_762_646_400_000;

    /// The time rules of the documented defaults (config/salestalk.toml).
    fn settings() -> TaskSettings {
        let defaults = Settings::load_from(None, Some(Vec::new())).expect("the defaults load");
        defaults.task_settings()
    }

    fn event(id: u32, partition: i32) -> Vec<u8> {
        format!(
            r#"{{"eventId":"00000000-0000-4000-8000-{id:012}","eventType":"tenant.provisioned.v1","eventVersion":"1.0","source":"tenant-onboard","timestamp":"2025-11-09T00:00:0{}.000Z","tenantId":"t{partition}","metadata":{{"correlationId":"c"}},"data":{{"tenantId":"t{partition}","organizationName":"Acme","ownerEmail":"a@acme.com","plan":"standard","region":"us-east-1","resources":{{"messagesTableName":"m","metricsTableName":"t","s3Prefix":"p/"}},"provisioningTimeMs":1200,"sampleDataSeeded":true}}}}"#,
            id % 10
        )
        .into_bytes()
    }

    /// Four partitions processed and flushed by `workers`.
    fn flushes(workers: usize) -> Vec<Flush> {
        let bytes: Vec<Vec<Vec<u8>>> = (0..4)
            .map(|p| {
                (0..50)
                    .map(|i| event(p as u32 * 1000 + i % 40, p))
                    .collect()
            })
            .collect();
        let mut tasks: Vec<Task> = (0..4)
            .map(|p| Task::new("t", p, settings(), Default::default()))
            .collect();
        let work = tasks
            .iter_mut()
            .zip(&bytes)
            .enumerate()
            .map(|(p, (task, events))| {
                let messages = events
                    .iter()
                    .enumerate()
                    .map(|(offset, b)| RawMessage {
                        topic: "t",
                        partition: p as i32,
                        offset: offset as i64,
                        timestamp_ms: Some(T0),
                        payload: Some(b),
                        path: salestalk_operators::PublishPath::Direct,
                        sequence: None,
                    })
                    .collect();
                (task, messages)
            })
            .collect();
        let workers = Workers::new(workers);
        workers.process(work);
        let mut out = workers.flush(tasks.iter_mut().collect(), T0 + 1_000);
        out.sort_by_key(|f| f.partition);
        out
    }

    #[test]
    fn any_number_of_workers_computes_the_same_flushes() {
        let one = flushes(1);
        assert_eq!(one.len(), 4);
        assert_eq!(
            one[2].archive.len(),
            40,
            "resends are recognised per partition"
        );
        assert_eq!(flushes(2), one);
        assert_eq!(flushes(3), one);
        assert_eq!(flushes(8), one);
    }

    #[test]
    fn zero_means_one_per_core() {
        assert!(Workers::new(0).count() >= 1);
        assert_eq!(Workers::new(3).count(), 3);
    }
}
