/*
 * `{{name}}`: a weir transform. Each event comes out as it came in, with
 * `funnel_step` added: 1 for browsing (page views, searches, product
 * views), 2 for the cart, 3 for a purchase, 0 for anything else. Events
 * whose `event_type` is not a string are rejected.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weir.h"

/* The fields read; the host parses each event once and hands them over. */
enum { EVENT_TYPE };
static const char *const READS[] = {"event_type", NULL};

static int funnel_step(weir_str event_type) {
    if (weir_str_is(event_type, "page_view") || weir_str_is(event_type, "search") ||
        weir_str_is(event_type, "product_viewed"))
        return 1;
    if (weir_str_is(event_type, "add_to_cart") || weir_str_is(event_type, "cart_viewed")) return 2;
    if (weir_str_is(event_type, "purchase")) return 3;
    return 0;
}

static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static bool transform(const weir_record *record, weir_emitter *out) {
    weir_str event_type;
    bool present;
    if (!weir_string_field(record, EVENT_TYPE, &event_type, &present)) return false;
    int step = present ? funnel_step(event_type) : 0;
    /* The event's own text, with the member added before its closing brace. */
    weir_str value = weir_record_value(record);
    size_t end = value.len;
    while (end > 0 && is_space(value.ptr[end - 1])) end--;
    if (end > 0 && value.ptr[end - 1] == '}') end--;
    while (end > 0 && is_space(value.ptr[end - 1])) end--;
    const char *comma = end > 0 && value.ptr[end - 1] == '{' ? "" : ",";
    char member[40];
    int added = snprintf(member, sizeof member, "%s\"funnel_step\":%d}", comma, step);
    char *text = malloc(end + (size_t)added);
    memcpy(text, value.ptr, end);
    memcpy(text + end, member, (size_t)added);
    weir_str output = {text, end + (size_t)added};
    weir_emit(out, weir_record_key(record), output);
    free(text);
    return true;
}

const weir_transform weir_plugin = {
    .reads = READS,
    .transform = transform,
};
