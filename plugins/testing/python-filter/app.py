"""A weir filter in Python: keeps purchase events, drops the rest, and
rejects values that are not JSON objects. A batch carries every value in one
buffer (`batch.data`); each record says where its value lies. The filter
reads one field, `event_type`: the host parses each value and hands over
that field's JSON text (`fields`), so nothing else is parsed here."""

import json

from wit_world import exports
from wit_world.exports.filtering import Decision_Drop, Decision_Keep, Decision_Reject
from wit_world.imports.types import PluginError


class Filtering(exports.Filtering):
    def init(self) -> None:
        pass

    def reads(self):
        return ["event_type"]

    def filter(self, batch, fields):
        data = memoryview(batch.data)
        decisions = []
        for record, first in zip(batch.records, fields.first):
            if first is None:
                decisions.append(
                    Decision_Reject(PluginError("malformed-json", "value is not a JSON object"))
                )
                continue
            span = fields.spans[first]
            start = record.value.start + span.start
            keep = span.len > 0 and json.loads(bytes(data[start : start + span.len])) == "purchase"
            decisions.append(Decision_Keep() if keep else Decision_Drop())
        return decisions
