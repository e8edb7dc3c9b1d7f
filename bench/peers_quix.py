"""The sentiment job in Quix Streams against the real broker (one peer of `bench/peers.py`).

Idiomatic Quix Streams: an `Application` with a consumer group reading the ticks topic
(JSON values, the symbol as message key), one stateful `apply` per message whose state (the
symbol's dedup memory, pending ticks, EMA sums, last scores; `peers_job.on_tick`) lives in
Quix's RocksDB state store under the message key, `expand=True` to emit each closed bar, and
`to_topic` into a bars topic.

Why not Quix's own `tumbling_window`: its windows close on the event-time watermark plus a
grace, so a bar cannot be "ts in [b − step, b) and ingest_ts ≤ b + grace" (docs/design.md §5),
and a window never closes at the end of the input, so the last bars would be missing — it
would compute something else. A stateful `apply` is Quix's tool for such custom logic.

Timing: the consumer-group join (~25 s with tansu) is not the job; the clock starts when the
first message is processed and stops when the application has stopped after the last one
(final checkpoint: producer flush and state commit included). The process's wall time is
printed too.

    python bench/peers_quix.py --broker HOST:PORT --topic ticks --out-topic bars --count N --state-dir DIR
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers_job as job  # noqa: E402

# Topics on tansu are created with an explicit retention.ms (as the tests do); the bars topic
# gets it here, the ticks topic from bench/peers.py.
TOPIC_CONFIG = {"retention.ms": str(7 * 24 * 3600 * 1000)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--out-topic", required=True)
    parser.add_argument("--count", type=int, required=True, help="messages in the input topic")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--changelog", action="store_true", help="keep Quix's changelog topics (its default)")
    parser.add_argument("--consumer-config", default="{}", help="librdkafka consumer settings, JSON")
    parser.add_argument("--params", default=job.JobParams().to_json(), help="JobParams as JSON")
    args = parser.parse_args()
    started_process = time.perf_counter()
    from quixstreams import Application
    from quixstreams.models.topics import TopicConfig

    p = job.JobParams.from_json(args.params)
    clock: dict[str, float] = {}
    processed = [0]

    def on_processed(_topic: str, _partition: int, _offset: int) -> None:
        processed[0] += 1
        if processed[0] == args.count:
            app.stop()

    app = Application(
        broker_address=args.broker,
        consumer_group=f"peers-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        state_dir=str(args.state_dir),
        use_changelog_topics=args.changelog,
        on_message_processed=on_processed,
        loglevel="WARNING",
        consumer_extra_config=orjson.loads(args.consumer_config),
    )
    ticks = app.topic(args.topic, value_deserializer="json", key_deserializer="str")
    bars_topic = app.topic(
        args.out_topic,
        value_serializer="json",
        key_serializer="str",
        config=TopicConfig(num_partitions=1, replication_factor=1, extra_config=TOPIC_CONFIG),
    )

    def bars(tick: dict[str, Any], state: Any) -> list[dict[str, Any]]:
        if not clock:
            clock["first"] = time.perf_counter()
        symbol_state = state.get("job") or job.new_state(p)
        rows = job.on_tick(symbol_state, tick, p)
        state.set("job", symbol_state)
        return [job.json_row(tick["symbol"], r) for r in rows]

    sdf = app.dataframe(ticks)
    sdf = sdf.apply(bars, stateful=True, expand=True)
    sdf.to_topic(bars_topic)
    app.run()
    ended = time.perf_counter()
    if processed[0] != args.count:
        raise SystemExit(f"quix: processed {processed[0]} of {args.count} messages")
    result = {"seconds": ended - clock["first"], "process_seconds": ended - started_process}
    print(orjson.dumps(result).decode())


if __name__ == "__main__":
    main()
