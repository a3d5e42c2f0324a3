"""Reads an Avro topic the way a downstream consumer of weir does: with
confluent-kafka's consumer and its Schema Registry Avro deserializer (the
schema fetched by the id each message carries). Prints one JSON object:
the latest value of every key.

    python read_avro.py BOOTSTRAP REGISTRY_URL TOPIC EXPECTED_KEYS

Against a secured stack it reads weir's own settings from the environment
(`cargo xtask stack env --secure` prints them): the Kafka properties file
WEIR_KAFKA_CONFIG, and WEIR_REGISTRY_USER, WEIR_REGISTRY_PASSWORD_FILE and
WEIR_REGISTRY_CA.
"""

import json
import os
import sys
import time
import uuid

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext


def first_line(path: str) -> str:
    with open(path, encoding="utf-8") as file:
        return file.read().splitlines()[0]


def kafka_settings() -> dict:
    """The properties of WEIR_KAFKA_CONFIG, `${file:PATH}` values read."""
    settings = {}
    path = os.environ.get("WEIR_KAFKA_CONFIG")
    if not path:
        return settings
    with open(path, encoding="utf-8") as file:
        for line in file:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name, value = (part.strip() for part in line.split("=", 1))
            if value.startswith("${file:") and value.endswith("}"):
                value = first_line(value[len("${file:") : -1])
            settings[name] = value
    settings.pop("bootstrap.servers", None)
    return settings


def registry_settings(url: str) -> dict:
    settings = {"url": url}
    user = os.environ.get("WEIR_REGISTRY_USER")
    if user:
        password = first_line(os.environ["WEIR_REGISTRY_PASSWORD_FILE"])
        settings["basic.auth.user.info"] = f"{user}:{password}"
    if os.environ.get("WEIR_REGISTRY_CA"):
        settings["ssl.ca.location"] = os.environ["WEIR_REGISTRY_CA"]
    return settings


def main() -> None:
    bootstrap, registry_url, topic, expected = sys.argv[1:5]
    registry = SchemaRegistryClient(registry_settings(registry_url))
    deserialize = AvroDeserializer(registry)
    consumer = Consumer(
        {
            **kafka_settings(),
            "bootstrap.servers": bootstrap,
            "group.id": f"avro-reader-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    # Read up to the end offsets as they are now.
    metadata = consumer.list_topics(topic, timeout=30)
    partitions = sorted(metadata.topics[topic].partitions)
    ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in partitions}
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    latest = {}
    schema_ids = set()
    done = {p for p, end in ends.items() if end == 0}
    deadline = time.monotonic() + 300
    while len(done) < len(partitions):
        if time.monotonic() > deadline:
            sys.exit(f"timed out: read {len(latest)} keys, partitions done {sorted(done)}")
        message = consumer.poll(1.0)
        if message is None:
            continue
        if message.error():
            sys.exit(f"consumer error: {message.error()}")
        value = message.value()
        schema_ids.add(int.from_bytes(value[1:5], "big"))
        row = deserialize(value, SerializationContext(topic, MessageField.VALUE))
        latest[message.key().decode("utf-8")] = row
        if message.offset() + 1 >= ends[message.partition()]:
            done.add(message.partition())
    consumer.close()
    if len(latest) != int(expected):
        print(f"note: {len(latest)} keys read, {expected} expected", file=sys.stderr)
    json.dump({"schema_ids": sorted(schema_ids), "rows": latest}, sys.stdout)


if __name__ == "__main__":
    main()
