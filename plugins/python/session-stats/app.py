"""`session-stats` in Python: the reference system's session_stats
aggregation, one row per session, the same rule (and the same state
encoding) as the Rust plugin in plugins/session-stats."""

from weir_plugin import Aggregator, export_aggregator

COUNTED = {"page_view": "pages_viewed", "product_viewed": "products_viewed", "purchase": "purchase_count"}


def _nullable(name, kind):
    return {"name": name, "type": ["null", kind], "default": None}


class SessionStats(Aggregator):
    reads = ["event_type", "user_id", "user_segment", "session_state", "cart_item_count", "cart_total"]
    state_version = 1
    # Record name and namespace as ksqlDB gave them, so existing readers resolve it unchanged.
    output_schema = {
        "type": "record",
        "name": "KsqlDataSourceSchema",
        "namespace": "io.confluent.ksql.avro_schemas",
        "fields": [
            _nullable("USER_ID", "string"),
            _nullable("USER_SEGMENT", "string"),
            _nullable("SESSION_STATE", "string"),
            _nullable("EVENTS_COUNT", "long"),
            _nullable("PAGES_VIEWED", "long"),
            _nullable("PRODUCTS_VIEWED", "long"),
            _nullable("ITEMS_IN_CART", "long"),
            _nullable("CART_VALUE", "double"),
            _nullable("PURCHASE_COUNT", "long"),
        ],
    }

    def initial(self, key):
        return {
            "user_id": None,
            "user_segment": None,
            "session_state": None,
            "events_count": 0,
            "pages_viewed": 0,
            "products_viewed": 0,
            "items_in_cart": None,
            "cart_value": None,
            "purchase_count": 0,
        }

    def apply(self, state, event, key):
        # Every field is read (and type-checked) first: a rejected event
        # leaves the state as it was.
        event_type = event.string("event_type")
        latest = {
            "user_id": event.string("user_id"),
            "user_segment": event.string("user_segment"),
            "session_state": event.string("session_state"),
        }
        item_count = event.long("cart_item_count")
        cart_total = event.double("cart_total")

        for name, value in latest.items():
            if value is not None:
                state[name] = value
        state["events_count"] += 1
        if event_type in COUNTED:
            state[COUNTED[event_type]] += 1
        if item_count is not None and (state["items_in_cart"] is None or item_count > state["items_in_cart"]):
            state["items_in_cart"] = item_count
        if cart_total is not None and (state["cart_value"] is None or cart_total > state["cart_value"]):
            state["cart_value"] = cart_total

    def row(self, key, state):
        return {
            "USER_ID": state["user_id"],
            "USER_SEGMENT": state["user_segment"],
            "SESSION_STATE": state["session_state"],
            "EVENTS_COUNT": state["events_count"],
            "PAGES_VIEWED": state["pages_viewed"],
            "PRODUCTS_VIEWED": state["products_viewed"],
            "ITEMS_IN_CART": state["items_in_cart"],
            "CART_VALUE": state["cart_value"],
            "PURCHASE_COUNT": state["purchase_count"],
        }


Aggregating = export_aggregator(SessionStats)
