#!/usr/bin/env python3
"""Checks the Kafka Streams peer's output against the session_stats rule.

Reads the whole input topic (partition by partition, in offset order),
computes every session's row independently, reads the whole output topic
(read_committed) and compares, per session id, the LAST output record with
the computed row. Prints the number of keys compared and every difference
(the first 20 in full). Exit status 0 when there are none, 1 otherwise.

Needs confluent-kafka (the Python under ~/.cache/weir/python has it).
"""

import argparse
import json
import math
import sys
import time

from confluent_kafka import Consumer, KafkaError, TopicPartition

COLUMNS = [
    "SESSION_ID", "USER_ID", "USER_SEGMENT", "SESSION_STATE", "EVENTS_COUNT",
    "PAGES_VIEWED", "PRODUCTS_VIEWED", "ITEMS_IN_CART", "CART_VALUE", "PURCHASE_COUNT",
]
READ_FIELDS = {"event_type", "user_id", "user_segment", "session_state", "cart_item_count", "cart_total"}
I64_MIN, I64_MAX = -(2**63), 2**63 - 1


class Malformed(Exception):
    pass


class _Object(dict):
    duplicate = None


def _object(pairs):
    obj = _Object()
    for key, value in pairs:
        if key in obj and key in READ_FIELDS:
            obj.duplicate = key
        obj[key] = value
    return obj


def _reject_constant(name):
    raise Malformed(f"non-standard constant {name}")


def parse_event(value):
    """The same acceptance rule as the peer (and weir's session-stats)."""
    if value is None:
        raise Malformed("null value")
    try:
        event = json.loads(value.decode("utf-8"), object_pairs_hook=_object,
                           parse_constant=_reject_constant)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise Malformed(f"invalid JSON: {error}") from None
    if not isinstance(event, dict):
        raise Malformed("not a JSON object")
    if event.duplicate is not None:
        raise Malformed(f"duplicate field {event.duplicate}")
    for name in ("event_type", "user_id", "user_segment", "session_state"):
        if event.get(name) is not None and not isinstance(event[name], str):
            raise Malformed(f"{name} has the wrong type")
    count = event.get("cart_item_count")
    if count is not None and (isinstance(count, bool) or not isinstance(count, int)
                              or not I64_MIN <= count <= I64_MAX):
        raise Malformed("cart_item_count has the wrong type")
    total = event.get("cart_total")
    if total is not None:
        if isinstance(total, bool) or not isinstance(total, (int, float)):
            raise Malformed("cart_total has the wrong type")
        total = float(total)
        if not math.isfinite(total):
            raise Malformed("cart_total out of range")
    return event, count, total


def fold(row, event, count, total):
    for column, field in (("USER_ID", "user_id"), ("USER_SEGMENT", "user_segment"),
                          ("SESSION_STATE", "session_state")):
        if event.get(field) is not None:
            row[column] = event[field]
    row["EVENTS_COUNT"] += 1
    kind = event.get("event_type")
    if kind == "page_view":
        row["PAGES_VIEWED"] += 1
    elif kind == "product_viewed":
        row["PRODUCTS_VIEWED"] += 1
    elif kind == "purchase":
        row["PURCHASE_COUNT"] += 1
    if count is not None:
        row["ITEMS_IN_CART"] = count if row["ITEMS_IN_CART"] is None else max(row["ITEMS_IN_CART"], count)
    if total is not None:
        row["CART_VALUE"] = total if row["CART_VALUE"] is None else max(row["CART_VALUE"], total)


def new_row(session_id):
    return {"SESSION_ID": session_id, "USER_ID": None, "USER_SEGMENT": None, "SESSION_STATE": None,
            "EVENTS_COUNT": 0, "PAGES_VIEWED": 0, "PRODUCTS_VIEWED": 0, "ITEMS_IN_CART": None,
            "CART_VALUE": None, "PURCHASE_COUNT": 0}


def read_topic(bootstrap, topic, on_message, timeout):
    """Calls on_message for every committed record of topic, each partition in offset order."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"peer-check-{time.time_ns()}",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "isolation.level": "read_committed",
        "auto.offset.reset": "earliest",
    })
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        if topic not in metadata.topics or metadata.topics[topic].error is not None:
            sys.exit(f"topic {topic} not found")
        partitions = sorted(metadata.topics[topic].partitions)
        pending = set()
        assignment = []
        for partition in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            if high > low:
                pending.add(partition)
                assignment.append(TopicPartition(topic, partition, low))
        consumer.assign(assignment)
        deadline = time.monotonic() + timeout
        count = 0
        while pending:
            if time.monotonic() > deadline:
                sys.exit(f"timed out reading {topic}; partitions not at the end: {sorted(pending)}")
            for message in consumer.consume(10000, timeout=1.0):
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        pending.discard(message.partition())
                        continue
                    sys.exit(f"reading {topic}: {error}")
                on_message(message)
                count += 1
        return count
    finally:
        consumer.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--timeout", type=float, default=300, help="seconds allowed per topic")
    args = parser.parse_args()

    expected = {}
    skipped = 0

    def on_input(message):
        nonlocal skipped
        key = message.key()
        if key is None:
            skipped += 1
            return
        try:
            event, count, total = parse_event(message.value())
        except Malformed:
            skipped += 1
            return
        session_id = key.decode("utf-8", errors="replace")
        row = expected.get(session_id)
        if row is None:
            row = expected[session_id] = new_row(session_id)
        fold(row, event, count, total)

    input_count = read_topic(args.bootstrap, args.input, on_input, args.timeout)

    last = {}
    bad_output = []

    def on_output(message):
        key = message.key()
        session_id = None if key is None else key.decode("utf-8", errors="replace")
        try:
            row = json.loads(message.value())
        except (TypeError, ValueError) as error:
            bad_output.append(f"output offset {message.partition()}/{message.offset()}: not JSON ({error})")
            return
        last[session_id] = row

    output_count = read_topic(args.bootstrap, args.output, on_output, args.timeout)

    differences = list(bad_output)
    for session_id, want in expected.items():
        got = last.get(session_id)
        if got is None:
            differences.append(f"{session_id}: no output record")
            continue
        if not isinstance(got, dict) or list(got) != COLUMNS:
            differences.append(f"{session_id}: columns {list(got) if isinstance(got, dict) else got!r}, "
                               f"expected {COLUMNS}")
            continue
        for column in COLUMNS:
            if got[column] != want[column] or type(got[column]) is not type(want[column]):
                differences.append(f"{session_id}: {column} is {got[column]!r}, expected {want[column]!r}")
    for session_id in last.keys() - expected.keys():
        differences.append(f"{session_id}: output record for a session with no valid input event")

    print(f"input records: {input_count} ({skipped} skipped as not session events)")
    print(f"output records: {output_count}")
    print(f"keys compared: {len(expected)}")
    print(f"differences: {len(differences)}")
    for line in differences[:20]:
        print(f"  {line}")
    if len(differences) > 20:
        print(f"  ... and {len(differences) - 20} more")
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main())

