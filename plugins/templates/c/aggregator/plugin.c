/*
 * `{{name}}`: a weir aggregator. Per key (the pipeline's `key_field`, for
 * example `session_id`): how many events, how many purchases, and the type
 * of the newest event.
 */
#include "weir.h"

/* One key's state, stored by the SDK as JSON with these field names. */
typedef struct {
    int64_t events;
    int64_t purchases;
    weir_text last_event;
} activity;

static const weir_state_field STATE[] = {
    WEIR_STATE_LONG(activity, events),
    WEIR_STATE_LONG(activity, purchases),
    WEIR_STATE_TEXT(activity, last_event),
};

/* The fields read; the host parses each event once and hands them over. */
enum { EVENT_TYPE };
static const char *const READS[] = {"event_type", NULL};

static bool apply(void *state, const weir_record *event, weir_str key) {
    (void)key;
    activity *a = state;
    /* Read (and type-check) first: a rejected event must leave the state as it was. */
    weir_str event_type;
    bool present;
    if (!weir_string_field(event, EVENT_TYPE, &event_type, &present)) return false;
    a->events += 1;
    if (present && weir_str_is(event_type, "purchase")) a->purchases += 1;
    if (present) weir_text_set(&a->last_event, event_type);
    return true;
}

static void row(const void *state, weir_str key, weir_row *row) {
    (void)key;
    const activity *a = state;
    weir_row_long(row, a->events);
    weir_row_long(row, a->purchases);
    weir_row_text(row, a->last_event);
}

const weir_aggregator weir_plugin = {
    .reads = READS,
    .state_version = 1,
    /* The row's Avro schema: the Kafka sink registers it, the PostgreSQL sink
       makes a column of each field. */
    .output_schema = "{\"type\":\"record\",\"name\":\"Activity\",\"fields\":["
                     "{\"name\":\"EVENTS\",\"type\":\"long\"},"
                     "{\"name\":\"PURCHASES\",\"type\":\"long\"},"
                     "{\"name\":\"LAST_EVENT\",\"type\":[\"null\",\"string\"],\"default\":null}]}",
    .state_size = sizeof(activity),
    .state_fields = STATE,
    .state_field_count = sizeof STATE / sizeof STATE[0],
    .apply = apply,
    .row = row,
};
