/*
 * `session-stats` in C: the reference system's session_stats aggregation,
 * one row per session, the same rule (and the same state encoding) as the
 * Rust plugin in plugins/session-stats.
 */
#include "weir.h"

/* One session's state (stored by the SDK as JSON, as the other languages do). */
typedef struct {
    weir_text user_id;
    weir_text user_segment;
    weir_text session_state;
    int64_t events_count;
    int64_t pages_viewed;
    int64_t products_viewed;
    weir_opt_long items_in_cart;
    weir_opt_double cart_value;
    int64_t purchase_count;
} session;

static const weir_state_field SESSION[] = {
    WEIR_STATE_TEXT(session, user_id),
    WEIR_STATE_TEXT(session, user_segment),
    WEIR_STATE_TEXT(session, session_state),
    WEIR_STATE_LONG(session, events_count),
    WEIR_STATE_LONG(session, pages_viewed),
    WEIR_STATE_LONG(session, products_viewed),
    WEIR_STATE_OPT_LONG(session, items_in_cart),
    WEIR_STATE_OPT_DOUBLE(session, cart_value),
    WEIR_STATE_LONG(session, purchase_count),
};

enum { EVENT_TYPE, USER_ID, USER_SEGMENT, SESSION_STATE, CART_ITEM_COUNT, CART_TOTAL };

static const char *const READS[] = {
    "event_type", "user_id", "user_segment", "session_state", "cart_item_count", "cart_total", NULL,
};

/* Record name and namespace as ksqlDB gave them, so existing readers resolve it unchanged. */
static const char SCHEMA[] =
    "{\"type\":\"record\",\"name\":\"KsqlDataSourceSchema\","
    "\"namespace\":\"io.confluent.ksql.avro_schemas\",\"fields\":["
    "{\"name\":\"USER_ID\",\"type\":[\"null\",\"string\"],\"default\":null},"
    "{\"name\":\"USER_SEGMENT\",\"type\":[\"null\",\"string\"],\"default\":null},"
    "{\"name\":\"SESSION_STATE\",\"type\":[\"null\",\"string\"],\"default\":null},"
    "{\"name\":\"EVENTS_COUNT\",\"type\":[\"null\",\"long\"],\"default\":null},"
    "{\"name\":\"PAGES_VIEWED\",\"type\":[\"null\",\"long\"],\"default\":null},"
    "{\"name\":\"PRODUCTS_VIEWED\",\"type\":[\"null\",\"long\"],\"default\":null},"
    "{\"name\":\"ITEMS_IN_CART\",\"type\":[\"null\",\"long\"],\"default\":null},"
    "{\"name\":\"CART_VALUE\",\"type\":[\"null\",\"double\"],\"default\":null},"
    "{\"name\":\"PURCHASE_COUNT\",\"type\":[\"null\",\"long\"],\"default\":null}]}";

static bool apply(void *state, const weir_record *event, weir_str key) {
    (void)key;
    session *s = state;
    /* Every field is read (and type-checked) first: a rejected event leaves the state as it was. */
    weir_str event_type, user_id, user_segment, session_state;
    bool has_type, has_user, has_segment, has_state, has_count, has_total;
    int64_t item_count;
    double cart_total;
    if (!weir_string_field(event, EVENT_TYPE, &event_type, &has_type) ||
        !weir_string_field(event, USER_ID, &user_id, &has_user) ||
        !weir_string_field(event, USER_SEGMENT, &user_segment, &has_segment) ||
        !weir_string_field(event, SESSION_STATE, &session_state, &has_state) ||
        !weir_long_field(event, CART_ITEM_COUNT, &item_count, &has_count) ||
        !weir_double_field(event, CART_TOTAL, &cart_total, &has_total))
        return false;

    if (has_user) weir_text_set(&s->user_id, user_id);
    if (has_segment) weir_text_set(&s->user_segment, user_segment);
    if (has_state) weir_text_set(&s->session_state, session_state);
    s->events_count += 1;
    if (has_type) {
        if (weir_str_is(event_type, "page_view")) s->pages_viewed += 1;
        else if (weir_str_is(event_type, "product_viewed")) s->products_viewed += 1;
        else if (weir_str_is(event_type, "purchase")) s->purchase_count += 1;
    }
    if (has_count && (!s->items_in_cart.set || item_count > s->items_in_cart.value)) {
        s->items_in_cart.set = true;
        s->items_in_cart.value = item_count;
    }
    if (has_total && (!s->cart_value.set || cart_total > s->cart_value.value)) {
        s->cart_value.set = true;
        s->cart_value.value = cart_total;
    }
    return true;
}

static void row(const void *state, weir_str key, weir_row *row) {
    (void)key;
    const session *s = state;
    weir_row_text(row, s->user_id);
    weir_row_text(row, s->user_segment);
    weir_row_text(row, s->session_state);
    weir_row_long(row, s->events_count);
    weir_row_long(row, s->pages_viewed);
    weir_row_long(row, s->products_viewed);
    weir_row_opt_long(row, s->items_in_cart);
    weir_row_opt_double(row, s->cart_value);
    weir_row_long(row, s->purchase_count);
}

const weir_aggregator weir_plugin = {
    .reads = READS,
    .state_version = 1,
    .output_schema = SCHEMA,
    .state_size = sizeof(session),
    .state_fields = SESSION,
    .state_field_count = sizeof SESSION / sizeof SESSION[0],
    .apply = apply,
    .row = row,
};
