"""`{{name}}`: a weir aggregator. Per key (the pipeline's `key_field`, for
example `session_id`): how many events, how many purchases, and the type of
the newest event."""

from weir_plugin import Aggregator, export_aggregator


class Plugin(Aggregator):
    # The fields read; the host parses each event once and hands them over.
    reads = ["event_type"]
    state_version = 1
    # The row's Avro schema: the Kafka sink registers it, the PostgreSQL sink
    # makes a column of each field.
    output_schema = {
        "type": "record",
        "name": "Activity",
        "fields": [
            {"name": "EVENTS", "type": "long"},
            {"name": "PURCHASES", "type": "long"},
            {"name": "LAST_EVENT", "type": ["null", "string"], "default": None},
        ],
    }

    def initial(self, key):
        return {"events": 0, "purchases": 0, "last_event": None}

    def apply(self, state, event, key):
        # Read (and type-check) first: a rejected event must leave the state as it was.
        event_type = event.string("event_type")
        state["events"] += 1
        if event_type == "purchase":
            state["purchases"] += 1
        if event_type is not None:
            state["last_event"] = event_type

    def row(self, key, state):
        return {
            "EVENTS": state["events"],
            "PURCHASES": state["purchases"],
            "LAST_EVENT": state["last_event"],
        }


# componentize-py exports the class of this name.
Aggregating = export_aggregator(Plugin)
