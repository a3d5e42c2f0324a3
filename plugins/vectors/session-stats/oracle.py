#!/usr/bin/env python3
"""The session_stats rule, computed independently of every plugin.

Reads events (one JSON value per line, keyed by `session_id`) and writes
what `weir plugin test --key-field session_id` must print for a correct
session_stats aggregator: each session's last row, keys sorted, columns in
the output schema's order; and the lines that must become dead letters.

    python3 oracle.py events.jsonl expected.jsonl expected-dead-letters.jsonl

The rule (reference semantics, section 3): USER_ID, USER_SEGMENT and
SESSION_STATE are the newest non-null values; EVENTS_COUNT counts every
event; PAGES_VIEWED, PRODUCTS_VIEWED and PURCHASE_COUNT count events of
their type; ITEMS_IN_CART and CART_VALUE are the largest non-null
`cart_item_count` and `cart_total`, NULL if none. An event with a field of
the wrong type is bad data: it is left out whole. A line that is not JSON,
or has no session id, never reaches the aggregator. A session none of whose
events went through has no row.
"""

import json
import math
import re
import sys

I64 = (-(2**63), 2**63 - 1)
COLUMNS = ["USER_ID", "USER_SEGMENT", "SESSION_STATE", "EVENTS_COUNT", "PAGES_VIEWED",
           "PRODUCTS_VIEWED", "ITEMS_IN_CART", "CART_VALUE", "PURCHASE_COUNT"]
COUNTED = {"page_view": "PAGES_VIEWED", "product_viewed": "PRODUCTS_VIEWED",
           "purchase": "PURCHASE_COUNT"}


class Bad(Exception):
    """Why a line becomes a dead letter."""


def key_of(line):
    """The session id, as the host finds it (a JSON string or number)."""
    try:
        event = json.loads(line)
    except ValueError as error:
        raise Bad(f"not-json: {error}") from None
    key = event.get("session_id") if isinstance(event, dict) else None
    if key is None:
        raise Bad("missing-key")
    if isinstance(key, bool) or not isinstance(key, (str, int, float)):
        raise Bad("wrong-key-type")
    return event, key if isinstance(key, str) else json.dumps(key)


def read(event):
    """The fields the rule reads, type-checked; raises Bad for the wrong types."""
    def text(name):
        value = event.get(name)
        if value is not None and not isinstance(value, str):
            raise Bad(f"malformed-json: {name}")
        return value
    count = event.get("cart_item_count")
    if count is not None and (type(count) is not int or not I64[0] <= count <= I64[1]):
        raise Bad("malformed-json: cart_item_count")
    total = event.get("cart_total")
    if total is not None:
        if isinstance(total, bool) or not isinstance(total, (int, float)):
            raise Bad("malformed-json: cart_total")
        total = float(total)
        if not math.isfinite(total):
            raise Bad("malformed-json: cart_total")
    return {"event_type": text("event_type"), "USER_ID": text("user_id"),
            "USER_SEGMENT": text("user_segment"), "SESSION_STATE": text("session_state"),
            "ITEMS_IN_CART": count, "CART_VALUE": total}


def fold(row, fields):
    for column in ("USER_ID", "USER_SEGMENT", "SESSION_STATE"):
        if fields[column] is not None:
            row[column] = fields[column]
    row["EVENTS_COUNT"] += 1
    if fields["event_type"] in COUNTED:
        row[COUNTED[fields["event_type"]]] += 1
    for column in ("ITEMS_IN_CART", "CART_VALUE"):
        if fields[column] is not None:
            row[column] = fields[column] if row[column] is None else max(row[column], fields[column])


def number(value):
    """A double as weir prints it: the shortest text that reads back the
    same, with an exponent only outside 1e-5 .. 1e16 and no `+` in it."""
    text = repr(value)
    return re.sub(r"e([+-])0*(\d)", lambda m: "e" + ("-" if m[1] == "-" else "") + m[2], text)


def dump(value):
    if isinstance(value, float):
        return number(value)
    return json.dumps(value, ensure_ascii=False)


def main(events_path, expected_path, dead_path):
    rows, dead = {}, []
    with open(events_path, encoding="utf-8") as events:
        for number_, line in enumerate(events, start=1):
            if not line.strip():
                continue
            try:
                event, key = key_of(line)
                fields = read(event)
            except Bad as why:
                dead.append({"line": number_, "why": str(why)})
                continue
            row = rows.setdefault(key, {column: None for column in COLUMNS} | {
                "EVENTS_COUNT": 0, "PAGES_VIEWED": 0, "PRODUCTS_VIEWED": 0, "PURCHASE_COUNT": 0})
            fold(row, fields)
    with open(expected_path, "w", encoding="utf-8") as out:
        for key in sorted(rows):
            columns = ",".join(f"{json.dumps(c)}:{dump(rows[key][c])}" for c in COLUMNS)
            out.write(f'{{"key":{dump(key)},"row":{{{columns}}}}}\n')
    with open(dead_path, "w", encoding="utf-8") as out:
        for letter in dead:
            out.write(json.dumps(letter, ensure_ascii=False) + "\n")
    print(f"{len(rows)} sessions, {len(dead)} dead letters", file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
