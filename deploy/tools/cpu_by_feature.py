"""Splits a `perf record --call-graph dwarf` profile of `salestalk run` by feature: reads
`perf script -F comm,ip,sym` output on standard input and charges each sample to the first
feature (in the order below) one of whose frames its stack holds, so a sample is counted once.
What docs/performance.md's per-feature table is made of. Usage:

    perf record -F 199 --call-graph dwarf,16384 -p "$(pgrep -f '^target/release/salestalk run')"
    perf script -F comm,ip,sym | python3 deploy/tools/cpu_by_feature.py
"""

import re
import sys
from collections import Counter

# Frames that name a feature; the first match wins (a delivery's librdkafka frames sit under
# the producer's broker thread, never under the consumer's).
FEATURES = [
    ("delivery: records, headers, acknowledgements",
     r"delivery::Delivery as salestalk_sinks::sink::Sink>::write|deliver_acknowledged|awaited::"),
    ("delivery: librdkafka producer (batching, sending, reports)",
     r"rd_kafka_broker_producer_serve|rd_kafka_msgset_writer|rd_kafka_ProduceRequest"
     r"|rd_kafka_handle_Produce|rd_kafka_dr_|rd_kafka_producev"),
    ("archive sink (events_raw rows, RowBinary, LZ4, HTTP)",
     r"archive::Archive as salestalk_sinks::sink::Sink>::write"),
    ("window_state sink", r"window_state::WindowState as salestalk_sinks::sink::Sink>::write"),
    ("dead-letter sinks", r"dead_letter_topic::|dead_letter_table::"),
    ("other flush work (checkpoint, claims, outcomes)", r"run::durable::|Task::flush"),
    ("decode and validate (sonic-rs, contract checks)",
     r"salestalk_contracts::decode|salestalk_contracts::envelope|salestalk_contracts::checker"),
    ("dedup", r"salestalk_operators::dedup"),
    ("windows and aggregates",
     r"salestalk_operators::aggregate|salestalk_operators::windows|LogHistogram"),
    ("rest of Task::process (routing, versions, lateness)",
     r"salestalk_operators::task::Task::process"),
    ("source: consumer (librdkafka fetch, batches)",
     r"rd_kafka_broker_consumer_serve|rd_kafka_fetch|rd_kafka_msgset_reader|KafkaSource"
     r"|salestalk_sources::"),
    ("watchers (downstream groups, lag)", r"run::downstream|consumer_group_lag"),
    ("telemetry and HTTP", r"salestalk_http|telemetry"),
]


def samples(lines):
    """Each sample's frames (leaf first)."""
    frames = None
    for line in lines:
        if not line.strip():
            continue
        if not line[0].isspace():
            if frames is not None:
                yield frames
            frames = []
            continue
        parts = line.split(None, 1)
        if len(parts) == 2 and frames is not None:
            frames.append(parts[1].strip())
    if frames is not None:
        yield frames


def main():
    counts, total = Counter(), 0
    compiled = [(name, re.compile(pattern)) for name, pattern in FEATURES]
    for frames in samples(sys.stdin):
        total += 1
        stack = "\n".join(frames)
        for name, pattern in compiled:
            if pattern.search(stack):
                counts[name] += 1
                break
        else:
            if "rd_kafka" in stack:
                counts["librdkafka, other (broker I/O, timers)"] += 1
            elif "tokio" in stack:
                counts["tokio runtime, other"] += 1
            else:
                counts["other"] += 1
    print(f"samples: {total}")
    for name, count in counts.most_common():
        print(f"{count / max(total, 1) * 100:5.1f} %  {name}")


if __name__ == "__main__":
    main()
