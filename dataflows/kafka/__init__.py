"""Kafka I/O, one module per job:

- `admin`: topic partition counts and idempotent creation.
- `produce`: checked producing (`produce_records`, the long-lived `CheckedProducer`, the
  API replicas' `KafkaIngest`, the `KafkaJsonSink`).
- `pair_source`: the signals flow's ordered source (`KafkaPairSource`, `_PairMerger`,
  `PartitionClock`).
- `consume`: a plain JSON consumer (`consume_json`).
- `fanout`: the live fan-out of distributed mode (`KafkaEventPublisher`, one topic per
  stream, and the replicas' `follow_live_topics`).
"""
