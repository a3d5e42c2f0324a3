// `session-stats` in JavaScript: the reference system's session_stats
// aggregation, one row per session, the same rule (and the same state
// encoding) as the Rust plugin in plugins/session-stats.
import { aggregator } from "weir-plugin-sdk";

const counted = { page_view: "pages_viewed", product_viewed: "products_viewed", purchase: "purchase_count" };

export const aggregating = aggregator({
  reads: ["event_type", "user_id", "user_segment", "session_state", "cart_item_count", "cart_total"],
  stateVersion: 1,
  // Record name and namespace as ksqlDB gave them, so existing readers resolve it unchanged.
  outputSchema: {
    type: "record",
    name: "KsqlDataSourceSchema",
    namespace: "io.confluent.ksql.avro_schemas",
    fields: [
      { name: "USER_ID", type: ["null", "string"], default: null },
      { name: "USER_SEGMENT", type: ["null", "string"], default: null },
      { name: "SESSION_STATE", type: ["null", "string"], default: null },
      { name: "EVENTS_COUNT", type: ["null", "long"], default: null },
      { name: "PAGES_VIEWED", type: ["null", "long"], default: null },
      { name: "PRODUCTS_VIEWED", type: ["null", "long"], default: null },
      { name: "ITEMS_IN_CART", type: ["null", "long"], default: null },
      { name: "CART_VALUE", type: ["null", "double"], default: null },
      { name: "PURCHASE_COUNT", type: ["null", "long"], default: null },
    ],
  },

  initial: () => ({
    user_id: null,
    user_segment: null,
    session_state: null,
    events_count: 0,
    pages_viewed: 0,
    products_viewed: 0,
    items_in_cart: null,
    cart_value: null,
    purchase_count: 0,
  }),

  apply(state, event) {
    // Every field is read (and type-checked) first: a rejected event leaves the state as it was.
    const eventType = event.string("event_type");
    const userId = event.string("user_id");
    const userSegment = event.string("user_segment");
    const sessionState = event.string("session_state");
    const itemCount = event.long("cart_item_count");
    const cartTotal = event.double("cart_total");

    state.user_id = userId ?? state.user_id;
    state.user_segment = userSegment ?? state.user_segment;
    state.session_state = sessionState ?? state.session_state;
    state.events_count += 1;
    if (Object.hasOwn(counted, eventType)) state[counted[eventType]] += 1;
    if (itemCount !== null && (state.items_in_cart === null || itemCount > state.items_in_cart)) {
      state.items_in_cart = itemCount;
    }
    if (cartTotal !== null && (state.cart_value === null || cartTotal > state.cart_value)) {
      state.cart_value = cartTotal;
    }
  },

  row: (_key, state) => ({
    USER_ID: state.user_id,
    USER_SEGMENT: state.user_segment,
    SESSION_STATE: state.session_state,
    EVENTS_COUNT: state.events_count,
    PAGES_VIEWED: state.pages_viewed,
    PRODUCTS_VIEWED: state.products_viewed,
    ITEMS_IN_CART: state.items_in_cart,
    CART_VALUE: state.cart_value,
    PURCHASE_COUNT: state.purchase_count,
  }),
});
