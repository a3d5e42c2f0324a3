/*
 * `{{name}}`: a weir filter. Keeps the events whose `event_type` is the
 * configured one (`keep = "purchase"` by default), drops the others, and
 * rejects events whose `event_type` is not a string.
 */
#include <stdlib.h>
#include <string.h>

#include "weir.h"

/* The fields read; the host parses each event once and hands them over. */
enum { EVENT_TYPE };
static const char *const READS[] = {"event_type", NULL};

static char *keep = "purchase";

static bool init(weir_str config, weir_error *error) {
    weir_str raw, value;
    if (!weir_config_member(config, "keep", &raw)) return true;
    if (!weir_json_string(raw, &value)) {
        error->message = "`keep` must be an event type (a string)";
        return false;
    }
    keep = calloc(value.len + 1, 1);
    memcpy(keep, value.ptr, value.len);
    return true;
}

static weir_decision filter(const weir_record *record) {
    weir_str event_type;
    bool present;
    if (!weir_string_field(record, EVENT_TYPE, &event_type, &present)) return WEIR_REJECT;
    return present && weir_str_is(event_type, keep) ? WEIR_KEEP : WEIR_DROP;
}

const weir_filter weir_plugin = {
    .reads = READS,
    .init = init,
    .filter = filter,
};
