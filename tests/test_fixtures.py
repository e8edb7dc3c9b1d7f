import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def test_broker_round_trip(kafka_broker: str) -> None:
    admin = AdminClient({"bootstrap.servers": kafka_broker})
    admin.create_topics([NewTopic("fixture.check", num_partitions=1, replication_factor=1)])["fixture.check"].result(10)
    producer = Producer({"bootstrap.servers": kafka_broker})
    for i in range(100):
        producer.produce("fixture.check", value=str(i).encode())
    assert producer.flush(10) == 0
    consumer = Consumer({"bootstrap.servers": kafka_broker, "group.id": "x", "enable.auto.commit": False})
    consumer.assign([TopicPartition("fixture.check", 0, 0)])
    got: list[int] = []
    deadline = time.monotonic() + 10
    while len(got) < 100 and time.monotonic() < deadline:
        msg = consumer.poll(0.2)
        if msg is not None and not msg.error():
            got.append(int(msg.value()))
    consumer.close()
    assert got == list(range(100))


def test_store_isolated_database(store) -> None:
    assert store.count("candles") == 0
    assert {"sentiment_ticks", "features", "rejected_records", "jobs"} <= {
        r["name"]
        for r in store.rows("SELECT name FROM system.tables WHERE database = {d:String}", {"d": store.database})
    }
