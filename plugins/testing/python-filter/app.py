"""A weir filter in Python: keeps purchase events, drops the rest, and
rejects values that are not JSON. A batch carries every value in one buffer
(`batch.data`); each record says where its value lies."""

import json

from wit_world import exports
from wit_world.exports.filtering import Decision_Drop, Decision_Keep, Decision_Reject
from wit_world.imports.types import PluginError


class Filtering(exports.Filtering):
    def init(self) -> None:
        pass

    def filter(self, batch):
        data = memoryview(batch.data)
        decisions = []
        for record in batch.records:
            span = record.value
            try:
                event = json.loads(bytes(data[span.start : span.start + span.len]))
            except ValueError as error:
                decisions.append(Decision_Reject(PluginError("malformed-json", str(error))))
                continue
            keep = isinstance(event, dict) and event.get("event_type") == "purchase"
            decisions.append(Decision_Keep() if keep else Decision_Drop())
        return decisions
