"""`funnel-timing`: how long each session spends in each funnel stage.

The time from one event to the next counts toward the `session_state` of
the earlier one (the stage the visitor was in); out-of-order timestamps
count as no time. Per session: events, duration, seconds browsing,
shopping and in checkout, and the newest state. The stock pipeline has
nothing like it; pipelines/funnel-timing.toml runs it."""

from datetime import datetime

from weir_plugin import Aggregator, export_aggregator, reject

STAGES = ("browsing", "shopping", "checkout")


def _double(name):
    return {"name": name, "type": "double"}


class FunnelTiming(Aggregator):
    reads = ["session_state", "timestamp"]
    state_version = 1
    output_schema = {
        "type": "record",
        "name": "FunnelTiming",
        "fields": [
            {"name": "EVENTS", "type": "long"},
            _double("DURATION_SECONDS"),
            _double("BROWSING_SECONDS"),
            _double("SHOPPING_SECONDS"),
            _double("CHECKOUT_SECONDS"),
            {"name": "FINAL_STATE", "type": ["null", "string"], "default": None},
        ],
    }

    def initial(self, key):
        return {"events": 0, "first": None, "last": None, "stage": None,
                "seconds": {stage: 0.0 for stage in STAGES}}

    def apply(self, state, event, key):
        stage = event.string("session_state")
        text = event.string("timestamp")
        if text is None:
            reject("missing-field", "the event has no `timestamp`")
        try:
            at = datetime.fromisoformat(text).timestamp()
        except ValueError:
            reject("malformed-timestamp", f"`timestamp` is not an ISO 8601 time: {text[:40]}")
        if state["last"] is not None and state["stage"] in state["seconds"]:
            state["seconds"][state["stage"]] += max(0.0, at - state["last"])
        state["events"] += 1
        state["first"] = at if state["first"] is None else min(state["first"], at)
        state["last"] = at if state["last"] is None else max(state["last"], at)
        if stage is not None:
            state["stage"] = stage

    def row(self, key, state):
        seconds = state["seconds"]
        # A key whose every event was rejected has no times yet.
        duration = 0.0 if state["first"] is None else state["last"] - state["first"]
        return {
            "EVENTS": state["events"],
            "DURATION_SECONDS": duration,
            "BROWSING_SECONDS": seconds["browsing"],
            "SHOPPING_SECONDS": seconds["shopping"],
            "CHECKOUT_SECONDS": seconds["checkout"],
            "FINAL_STATE": state["stage"],
        }


Aggregating = export_aggregator(FunnelTiming)
