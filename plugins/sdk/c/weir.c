/*
 * weir's C SDK: the contract's exports for the plugin's descriptor
 * (`weir_plugin`), the fields of records, the state's JSON encoding and
 * the rows. Compiled with the bindings of the plugin's world and
 * -DWEIR_WORLD_AGGREGATOR or -DWEIR_WORLD_FILTER (`weir plugin build` does).
 *
 * Ownership follows the generated bindings: the exports' arguments belong
 * to the plugin (freed here when done), and everything returned is
 * malloc'ed (the generated post-return functions free it).
 */
#include "weir.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(WEIR_WORLD_AGGREGATOR)
#include "aggregator.h"
#define WORLD(name) aggregator_##name
#define EXPORT(name) exports_weir_plugin_aggregating_##name
#elif defined(WEIR_WORLD_FILTER)
#include "filter.h"
#define WORLD(name) filter_##name
#define EXPORT(name) exports_weir_plugin_filtering_##name
#elif defined(WEIR_WORLD_TRANSFORM)
#include "transform.h"
#define WORLD(name) transform_##name
#define EXPORT(name) exports_weir_plugin_transforming_##name
#else
#error "compile with -DWEIR_WORLD_AGGREGATOR, _FILTER or _TRANSFORM (weir plugin build does)"
#endif

typedef weir_plugin_types_plugin_error_t plugin_error;
typedef WORLD(string_t) wit_string;

/* ---------------------------------------------------------------- memory */

static void *must_alloc(size_t size) {
    void *block = malloc(size ? size : 1);
    if (!block) {
        fputs("weir: out of memory\n", stderr);
        abort();
    }
    return block;
}

static void *must_realloc(void *block, size_t size) {
    block = realloc(block, size ? size : 1);
    if (!block) {
        fputs("weir: out of memory\n", stderr);
        abort();
    }
    return block;
}

static wit_string wit_copy(const char *bytes, size_t len) {
    wit_string out = {must_alloc(len), len};
    memcpy(out.ptr, bytes, len);
    return out;
}

static wit_string wit_cstr(const char *text) { return wit_copy(text, strlen(text)); }

static plugin_error make_error(const char *code, const char *message) {
    plugin_error error = {wit_cstr(code), wit_cstr(message)};
    return error;
}

/* Decoded strings of the current record, freed when the next one starts. */
static char **scratch;
static size_t scratch_len, scratch_cap;

static char *scratch_alloc(size_t size) {
    if (scratch_len == scratch_cap) {
        scratch_cap = scratch_cap ? scratch_cap * 2 : 8;
        scratch = must_realloc(scratch, scratch_cap * sizeof *scratch);
    }
    return scratch[scratch_len++] = must_alloc(size);
}

static void scratch_reset(void) {
    for (size_t i = 0; i < scratch_len; i++) free(scratch[i]);
    scratch_len = 0;
}

/* A growable byte buffer. */
typedef struct {
    char *ptr;
    size_t len, cap;
} buffer;

static void put(buffer *out, const char *bytes, size_t len) {
    if (out->len + len > out->cap) {
        out->cap = (out->len + len) * 2 + 64;
        out->ptr = must_realloc(out->ptr, out->cap);
    }
    memcpy(out->ptr + out->len, bytes, len);
    out->len += len;
}

static void puts_(buffer *out, const char *text) { put(out, text, strlen(text)); }

/* ------------------------------------------------------------------ JSON */

static bool str_eq(weir_str text, const char *other) {
    size_t len = strlen(other);
    return text.len == len && memcmp(text.ptr, other, len) == 0;
}

bool weir_str_is(weir_str text, const char *other) { return text.ptr && str_eq(text, other); }

static void put_utf8(char **out, uint32_t code) {
    char *o = *out;
    if (code < 0x80) {
        *o++ = (char)code;
    } else if (code < 0x800) {
        *o++ = (char)(0xC0 | (code >> 6));
        *o++ = (char)(0x80 | (code & 0x3F));
    } else if (code < 0x10000) {
        *o++ = (char)(0xE0 | (code >> 12));
        *o++ = (char)(0x80 | ((code >> 6) & 0x3F));
        *o++ = (char)(0x80 | (code & 0x3F));
    } else {
        *o++ = (char)(0xF0 | (code >> 18));
        *o++ = (char)(0x80 | ((code >> 12) & 0x3F));
        *o++ = (char)(0x80 | ((code >> 6) & 0x3F));
        *o++ = (char)(0x80 | (code & 0x3F));
    }
    *out = o;
}

static int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static bool hex4(const char *p, const char *end, uint32_t *out) {
    if (end - p < 4) return false;
    uint32_t value = 0;
    for (int i = 0; i < 4; i++) {
        int digit = hex_value(p[i]);
        if (digit < 0) return false;
        value = value * 16 + (uint32_t)digit;
    }
    *out = value;
    return true;
}

/* The string a JSON string literal (quotes included) holds: borrowed when it
   has no escapes, else decoded into the record's scratch memory. */
bool weir_json_string(weir_str raw, weir_str *out) {
    if (raw.len < 2 || raw.ptr[0] != '"' || raw.ptr[raw.len - 1] != '"') return false;
    const char *p = raw.ptr + 1, *end = raw.ptr + raw.len - 1;
    if (!memchr(p, '\\', (size_t)(end - p))) {
        out->ptr = p;
        out->len = (size_t)(end - p);
        return true;
    }
    char *decoded = scratch_alloc((size_t)(end - p)), *o = decoded;
    while (p < end) {
        if (*p != '\\') {
            *o++ = *p++;
            continue;
        }
        if (++p == end) return false;
        char escape = *p++;
        switch (escape) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '/': *o++ = '/'; break;
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'u': {
            uint32_t code, low;
            if (!hex4(p, end, &code)) return false;
            p += 4;
            if (code >= 0xD800 && code < 0xDC00 && end - p >= 6 && p[0] == '\\' && p[1] == 'u' &&
                hex4(p + 2, end, &low) && low >= 0xDC00 && low < 0xE000) {
                code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
                p += 6;
            } else if (code >= 0xD800 && code < 0xE000) {
                code = 0xFFFD; /* a lone surrogate */
            }
            put_utf8(&o, code);
            break;
        }
        default: return false;
        }
    }
    out->ptr = decoded;
    out->len = (size_t)(o - decoded);
    return true;
}

/* A cursor over JSON text (the SDK's own state, or the configuration). */
typedef struct {
    const char *p, *end;
} cursor;

static void skip_ws(cursor *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static bool take(cursor *c, char expected) {
    skip_ws(c);
    if (c->p < c->end && *c->p == expected) {
        c->p++;
        return true;
    }
    return false;
}

/* Moves past one JSON value, returning its text. */
static bool skip_value(cursor *c, weir_str *raw, int depth) {
    skip_ws(c);
    if (c->p >= c->end || depth > 64) return false;
    const char *start = c->p;
    char first = *c->p;
    if (first == '"') {
        for (c->p++; c->p < c->end && *c->p != '"'; c->p++)
            if (*c->p == '\\') c->p++;
        if (c->p >= c->end) return false;
        c->p++;
    } else if (first == '{' || first == '[') {
        char close = first == '{' ? '}' : ']';
        c->p++;
        if (!take(c, close)) {
            do {
                weir_str ignored;
                if (first == '{' && (!skip_value(c, &ignored, depth + 1) || !take(c, ':')))
                    return false;
                if (!skip_value(c, &ignored, depth + 1)) return false;
            } while (take(c, ','));
            if (!take(c, close)) return false;
        }
    } else {
        while (c->p < c->end && !strchr(",}] \t\n\r", *c->p)) c->p++;
        if (c->p == start) return false;
    }
    raw->ptr = start;
    raw->len = (size_t)(c->p - start);
    return true;
}

/* Calls `member` for each member of a JSON object; false when not one. */
static bool each_member(weir_str json, bool (*member)(void *, weir_str, weir_str), void *context) {
    cursor c = {json.ptr, json.ptr + json.len};
    if (!take(&c, '{')) return false;
    if (take(&c, '}')) return true;
    do {
        weir_str raw_name, name, value;
        if (!skip_value(&c, &raw_name, 0) || !weir_json_string(raw_name, &name)) return false;
        if (!take(&c, ':') || !skip_value(&c, &value, 0)) return false;
        if (!member(context, name, value)) return false;
    } while (take(&c, ','));
    return take(&c, '}');
}

typedef struct {
    const char *name;
    weir_str *raw;
    bool found;
} member_search;

static bool find_member(void *context, weir_str name, weir_str value) {
    member_search *search = context;
    if (str_eq(name, search->name)) {
        *search->raw = value;
        search->found = true;
    }
    return true;
}

bool weir_config_member(weir_str config, const char *name, weir_str *raw) {
    member_search search = {name, raw, false};
    return each_member(config, find_member, &search) && search.found;
}

/* A JSON integer's value; false when it is not one or does not fit. */
static bool parse_long(weir_str raw, int64_t *out, bool *too_big) {
    *too_big = false;
    size_t start = raw.len > 0 && raw.ptr[0] == '-' ? 1 : 0;
    if (start == raw.len || (raw.ptr[start] == '0' && raw.len > start + 1)) return false;
    for (size_t i = start; i < raw.len; i++)
        if (raw.ptr[i] < '0' || raw.ptr[i] > '9') return false;
    char digits[32];
    if (raw.len >= sizeof digits) {
        *too_big = true;
        return false;
    }
    memcpy(digits, raw.ptr, raw.len);
    digits[raw.len] = 0;
    char *end;
    errno = 0;
    long long value = strtoll(digits, &end, 10);
    if (*end != 0) return false;
    if (errno == ERANGE) {
        *too_big = true;
        return false;
    }
    *out = value;
    return true;
}

/* A JSON number as a double; false when it is not one or is out of range. */
static bool parse_double(weir_str raw, double *out) {
    if (raw.len == 0 || !(raw.ptr[0] == '-' || (raw.ptr[0] >= '0' && raw.ptr[0] <= '9')))
        return false;
    char small[64];
    char *text = raw.len < sizeof small ? small : must_alloc(raw.len + 1);
    memcpy(text, raw.ptr, raw.len);
    text[raw.len] = 0;
    char *end;
    double value = strtod(text, &end);
    bool ok = *end == 0 && isfinite(value);
    if (text != small) free(text);
    *out = value;
    return ok;
}

/* ---------------------------------------------------------------- records */

struct weir_record {
    const weir_plugin_types_batch_t *batch;
    const weir_plugin_types_fields_t *fields;
    size_t index;
    /* Where the record's spans start; -1: the plugin reads no fields; -2:
       the value is not a JSON object. */
    int64_t first;
    bool rejected;
    plugin_error error;
};

static size_t reads_count(void) {
    size_t count = 0;
    while (weir_plugin.reads && weir_plugin.reads[count]) count++;
    return count;
}

static weir_record record_at(const weir_plugin_types_batch_t *batch,
                             const weir_plugin_types_fields_t *fields, size_t index) {
    weir_record record = {batch, fields, index, -1, false, {{0}, {0}}};
    if (fields->first.len > 0) {
        WORLD(option_u32_t) first = fields->first.ptr[index];
        record.first = first.is_some ? (int64_t)first.val : -2;
    }
    return record;
}

weir_str weir_record_value(const weir_record *record) {
    weir_plugin_types_span_t span = record->batch->records.ptr[record->index].value;
    weir_str value = {(const char *)record->batch->data.ptr + span.start, span.len};
    return value;
}

weir_str weir_record_key(const weir_record *record) {
    weir_plugin_types_option_span_t key = record->batch->records.ptr[record->index].key;
    weir_str out = {NULL, 0};
    if (key.is_some) {
        out.ptr = (const char *)record->batch->data.ptr + key.val.start;
        out.len = key.val.len;
    }
    return out;
}

bool weir_reject(const weir_record *record, const char *code, const char *message) {
    weir_record *mutable = (weir_record *)record;
    if (!mutable->rejected) {
        mutable->rejected = true;
        mutable->error = make_error(code, message);
    }
    return false;
}

/* The JSON text of field `field`: ptr NULL when absent. False after
   rejecting a value that is not a JSON object. */
static bool field_text(const weir_record *record, size_t field, weir_str *text) {
    if (field >= reads_count()) {
        fprintf(stderr, "weir: field %zu is not in the plugin's reads list\n", field);
        abort();
    }
    if (record->first == -2) return weir_reject(record, "malformed-json", "value is not a JSON object");
    text->ptr = NULL;
    text->len = 0;
    if (record->first < 0) return true;
    weir_plugin_types_span_t span = record->fields->spans.ptr[record->first + (int64_t)field];
    if (span.len == 0) return true;
    weir_str value = weir_record_value(record);
    text->ptr = value.ptr + span.start;
    text->len = span.len;
    return true;
}

static bool wrong_type(const weir_record *record, size_t field, weir_str text, const char *expected) {
    char message[256];
    int shown = text.len > 60 ? 60 : (int)text.len;
    snprintf(message, sizeof message, "field `%s`: expected %s, found %.*s%s",
             weir_plugin.reads[field], expected, shown, text.ptr, text.len > 60 ? "..." : "");
    return weir_reject(record, "malformed-json", message);
}

/* The field's text when present and not null. */
static bool present_text(const weir_record *record, size_t field, weir_str *text, bool *present) {
    if (!field_text(record, field, text)) return false;
    *present = text->ptr && !str_eq(*text, "null");
    return true;
}

bool weir_string_field(const weir_record *record, size_t field, weir_str *out, bool *present) {
    weir_str text;
    if (!present_text(record, field, &text, present)) return false;
    if (!*present) return true;
    if (text.ptr[0] != '"' || !weir_json_string(text, out)) return wrong_type(record, field, text, "a string");
    return true;
}

bool weir_long_field(const weir_record *record, size_t field, int64_t *out, bool *present) {
    weir_str text;
    if (!present_text(record, field, &text, present)) return false;
    if (!*present) return true;
    bool too_big;
    if (parse_long(text, out, &too_big)) return true;
    if (too_big) {
        char message[160];
        snprintf(message, sizeof message, "field `%s`: %.*s does not fit in 64 bits",
                 weir_plugin.reads[field], (int)(text.len > 60 ? 60 : text.len), text.ptr);
        return weir_reject(record, "malformed-json", message);
    }
    return wrong_type(record, field, text, "an integer");
}

bool weir_double_field(const weir_record *record, size_t field, double *out, bool *present) {
    weir_str text;
    if (!present_text(record, field, &text, present)) return false;
    if (!*present) return true;
    if (!parse_double(text, out)) return wrong_type(record, field, text, "a number");
    return true;
}

bool weir_bool_field(const weir_record *record, size_t field, bool *out, bool *present) {
    weir_str text;
    if (!present_text(record, field, &text, present)) return false;
    if (!*present) return true;
    if (str_eq(text, "true") || str_eq(text, "false")) {
        *out = text.ptr[0] == 't';
        return true;
    }
    return wrong_type(record, field, text, "a boolean");
}

/* ------------------------------------------------------------ strings */

void weir_text_set(weir_text *text, weir_str value) {
    /* Copied before the old text goes: `value` may be the text itself. */
    char *copy = NULL;
    if (value.ptr) {
        copy = must_alloc(value.len);
        memcpy(copy, value.ptr, value.len);
    }
    free(text->ptr);
    text->ptr = copy;
    text->len = value.ptr ? value.len : 0;
}

bool weir_text_is(weir_text text, const char *other) {
    weir_str view = {text.ptr, text.len};
    return text.ptr && str_eq(view, other);
}

void weir_log(const char *message) {
    wit_string text = wit_cstr(message);
    WORLD(list_tuple2_string_string_t) fields = {NULL, 0};
    weir_plugin_logging_log(WEIR_PLUGIN_LOGGING_LEVEL_INFO, &text, &fields);
    WORLD(string_free)(&text);
}

/* ----------------------------------------------------- init and reads */

static bool init_plugin(bool (*init)(weir_str, weir_error *), plugin_error *err) {
    if (!init) return true;
    wit_string config;
    weir_plugin_config_get(&config);
    weir_str text = {(const char *)config.ptr, config.len};
    weir_error error = {"bad-config", "the configuration was refused"};
    bool ok = init(text, &error);
    /* The message may point into the configuration: copied before it goes. */
    if (!ok) *err = make_error(error.code, error.message);
    scratch_reset();
    WORLD(string_free)(&config);
    return ok;
}

static void reads_list(WORLD(list_string_t) *ret) {
    size_t count = reads_count();
    ret->len = count;
    ret->ptr = must_alloc(count * sizeof *ret->ptr);
    for (size_t i = 0; i < count; i++) ret->ptr[i] = wit_cstr(weir_plugin.reads[i]);
}

#if defined(WEIR_WORLD_FILTER)

bool EXPORT(init)(plugin_error *err) { return init_plugin(weir_plugin.init, err); }

void EXPORT(reads)(WORLD(list_string_t) *ret) { reads_list(ret); }

void EXPORT(filter)(EXPORT(batch_t) *batch, EXPORT(fields_t) *fields, EXPORT(list_decision_t) *ret) {
    size_t count = batch->records.len;
    ret->len = count;
    ret->ptr = must_alloc(count * sizeof *ret->ptr);
    for (size_t i = 0; i < count; i++) {
        weir_record record = record_at(batch, fields, i);
        weir_decision decision = weir_plugin.filter(&record);
        if (record.rejected || decision == WEIR_REJECT) {
            if (!record.rejected) weir_reject(&record, "rejected", "the filter refused the record");
            ret->ptr[i].tag = EXPORTS_WEIR_PLUGIN_FILTERING_DECISION_REJECT;
            ret->ptr[i].val.reject = record.error;
        } else {
            ret->ptr[i].tag = decision == WEIR_KEEP ? EXPORTS_WEIR_PLUGIN_FILTERING_DECISION_KEEP
                                                    : EXPORTS_WEIR_PLUGIN_FILTERING_DECISION_DROP;
        }
        scratch_reset();
    }
    EXPORT(batch_free)(batch);
    EXPORT(fields_free)(fields);
}

#endif

#if defined(WEIR_WORLD_TRANSFORM)

struct weir_emitter {
    buffer data;
    EXPORT(list_emitted_t) records;
    size_t capacity;
    uint32_t source;
};

static EXPORT(span_t) emit_bytes(weir_emitter *out, weir_str bytes) {
    EXPORT(span_t) span = {(uint32_t)out->data.len, (uint32_t)bytes.len};
    put(&out->data, bytes.ptr, bytes.len);
    return span;
}

void weir_emit(weir_emitter *out, weir_str key, weir_str value) {
    if (out->records.len == out->capacity) {
        out->capacity = out->capacity ? out->capacity * 2 : 64;
        out->records.ptr = must_realloc(out->records.ptr, out->capacity * sizeof *out->records.ptr);
    }
    EXPORT(emitted_t) *emitted = &out->records.ptr[out->records.len++];
    emitted->source = out->source;
    emitted->key.is_some = key.ptr != NULL;
    if (key.ptr) emitted->key.val = emit_bytes(out, key);
    emitted->value = emit_bytes(out, value);
}

bool EXPORT(init)(plugin_error *err) { return init_plugin(weir_plugin.init, err); }

void EXPORT(reads)(WORLD(list_string_t) *ret) { reads_list(ret); }

void EXPORT(transform)(EXPORT(batch_t) *batch, EXPORT(fields_t) *fields, EXPORT(transformed_t) *ret) {
    weir_emitter out = {{0}, {NULL, 0}, 0, 0};
    EXPORT(list_rejection_t) rejected = {NULL, 0};
    size_t rejected_cap = 0;
    for (size_t i = 0; i < batch->records.len; i++) {
        weir_record record = record_at(batch, fields, i);
        size_t records_before = out.records.len, data_before = out.data.len;
        out.source = (uint32_t)i;
        bool ok = weir_plugin.transform(&record, &out);
        if (!ok || record.rejected) {
            if (!record.rejected) weir_reject(&record, "rejected", "the transform refused the record");
            out.records.len = records_before; /* what it emitted is discarded */
            out.data.len = data_before;
            if (rejected.len == rejected_cap) {
                rejected_cap = rejected_cap ? rejected_cap * 2 : 4;
                rejected.ptr = must_realloc(rejected.ptr, rejected_cap * sizeof *rejected.ptr);
            }
            rejected.ptr[rejected.len].index = (uint32_t)i;
            rejected.ptr[rejected.len].error = record.error;
            rejected.len++;
        }
        scratch_reset();
    }
    ret->data.ptr = (uint8_t *)out.data.ptr;
    ret->data.len = out.data.len;
    ret->records = out.records;
    ret->headers.ptr = NULL;
    ret->headers.len = 0;
    ret->rejected = rejected;
    EXPORT(batch_free)(batch);
    EXPORT(fields_free)(fields);
}

#endif

#if defined(WEIR_WORLD_AGGREGATOR)

/* ------------------------------------------------------------- state */

static void free_state(void *state) {
    for (size_t i = 0; i < weir_plugin.state_field_count; i++) {
        const weir_state_field *field = &weir_plugin.state_fields[i];
        if (field->kind == WEIR_STATE_KIND_TEXT) {
            weir_text *text = (weir_text *)((char *)state + field->offset);
            free(text->ptr);
            text->ptr = NULL;
        }
    }
}

static void put_json_string(buffer *out, const char *bytes, size_t len) {
    put(out, "\"", 1);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)bytes[i];
        char escaped[8];
        switch (c) {
        case '"': puts_(out, "\\\""); break;
        case '\\': puts_(out, "\\\\"); break;
        case '\n': puts_(out, "\\n"); break;
        case '\r': puts_(out, "\\r"); break;
        case '\t': puts_(out, "\\t"); break;
        case '\b': puts_(out, "\\b"); break;
        case '\f': puts_(out, "\\f"); break;
        default:
            if (c < 0x20) {
                snprintf(escaped, sizeof escaped, "\\u%04x", c);
                puts_(out, escaped);
            } else {
                put(out, (const char *)&bytes[i], 1);
            }
        }
    }
    put(out, "\"", 1);
}

static void put_long(buffer *out, int64_t value) {
    char text[24];
    snprintf(text, sizeof text, "%lld", (long long)value);
    puts_(out, text);
}

/* The shortest of 15, 16 or 17 significant digits that reads back as the
   same double (what the other SDKs write for most values); JSON has no
   NaN or infinity: those are written as null, as serde_json does. */
static void put_double(buffer *out, double value) {
    if (!isfinite(value)) {
        puts_(out, "null");
        return;
    }
    char text[32];
    for (int digits = 15; digits <= 17; digits++) {
        snprintf(text, sizeof text, "%.*g", digits, value);
        if (strtod(text, NULL) == value) break;
    }
    puts_(out, text);
}

static buffer encode_state(const void *state) {
    buffer out = {0};
    put(&out, "{", 1);
    for (size_t i = 0; i < weir_plugin.state_field_count; i++) {
        const weir_state_field *field = &weir_plugin.state_fields[i];
        const char *at = (const char *)state + field->offset;
        if (i > 0) put(&out, ",", 1);
        put_json_string(&out, field->name, strlen(field->name));
        put(&out, ":", 1);
        switch (field->kind) {
        case WEIR_STATE_KIND_LONG: put_long(&out, *(const int64_t *)at); break;
        case WEIR_STATE_KIND_DOUBLE: put_double(&out, *(const double *)at); break;
        case WEIR_STATE_KIND_BOOL: puts_(&out, *(const bool *)at ? "true" : "false"); break;
        case WEIR_STATE_KIND_TEXT: {
            const weir_text *text = (const weir_text *)at;
            if (text->ptr) put_json_string(&out, text->ptr, text->len);
            else puts_(&out, "null");
            break;
        }
        case WEIR_STATE_KIND_OPT_LONG: {
            const weir_opt_long *number = (const weir_opt_long *)at;
            if (number->set) put_long(&out, number->value);
            else puts_(&out, "null");
            break;
        }
        case WEIR_STATE_KIND_OPT_DOUBLE: {
            const weir_opt_double *number = (const weir_opt_double *)at;
            if (number->set) put_double(&out, number->value);
            else puts_(&out, "null");
            break;
        }
        }
    }
    put(&out, "}", 1);
    return out;
}

/* Sets the state field `name` from its JSON text; fields this version does
   not know are ignored (a newer version's state reads as it is). */
static bool decode_member(void *state, weir_str name, weir_str raw) {
    for (size_t i = 0; i < weir_plugin.state_field_count; i++) {
        const weir_state_field *field = &weir_plugin.state_fields[i];
        if (!str_eq(name, field->name)) continue;
        char *at = (char *)state + field->offset;
        bool null = str_eq(raw, "null"), too_big;
        switch (field->kind) {
        case WEIR_STATE_KIND_LONG: return null || parse_long(raw, (int64_t *)at, &too_big);
        case WEIR_STATE_KIND_DOUBLE: return null || parse_double(raw, (double *)at);
        case WEIR_STATE_KIND_BOOL:
            if (null) return true;
            if (!str_eq(raw, "true") && !str_eq(raw, "false")) return false;
            *(bool *)at = raw.ptr[0] == 't';
            return true;
        case WEIR_STATE_KIND_TEXT: {
            weir_str text = {NULL, 0};
            if (!null && !weir_json_string(raw, &text)) return false;
            weir_text_set((weir_text *)at, text);
            return true;
        }
        case WEIR_STATE_KIND_OPT_LONG: {
            weir_opt_long *number = (weir_opt_long *)at;
            number->set = !null;
            return null || parse_long(raw, &number->value, &too_big);
        }
        case WEIR_STATE_KIND_OPT_DOUBLE: {
            weir_opt_double *number = (weir_opt_double *)at;
            number->set = !null;
            return null || parse_double(raw, &number->value);
        }
        }
    }
    return true;
}

static bool decode_state(const uint8_t *bytes, size_t len, void *state) {
    weir_str json = {(const char *)bytes, len};
    bool ok = each_member(json, decode_member, state);
    scratch_reset();
    return ok;
}

/* --------------------------------------------------------------- rows */

struct weir_row {
    weir_plugin_types_value_t *values;
    size_t len, cap;
};

static weir_plugin_types_value_t *next_value(weir_row *row) {
    if (row->len == row->cap) {
        row->cap = row->cap ? row->cap * 2 : 16;
        row->values = must_realloc(row->values, row->cap * sizeof *row->values);
    }
    weir_plugin_types_value_t *value = &row->values[row->len++];
    memset(value, 0, sizeof *value);
    return value;
}

void weir_row_null(weir_row *row) { next_value(row)->tag = WEIR_PLUGIN_TYPES_VALUE_NULL; }

void weir_row_long(weir_row *row, int64_t number) {
    weir_plugin_types_value_t *value = next_value(row);
    value->tag = WEIR_PLUGIN_TYPES_VALUE_LONG;
    value->val.long_ = number;
}

void weir_row_double(weir_row *row, double number) {
    weir_plugin_types_value_t *value = next_value(row);
    value->tag = WEIR_PLUGIN_TYPES_VALUE_DOUBLE;
    value->val.double_ = number;
}

void weir_row_bool(weir_row *row, bool flag) {
    weir_plugin_types_value_t *value = next_value(row);
    value->tag = WEIR_PLUGIN_TYPES_VALUE_BOOLEAN;
    value->val.boolean = flag;
}

void weir_row_text(weir_row *row, weir_text text) {
    if (!text.ptr) {
        weir_row_null(row);
        return;
    }
    weir_plugin_types_value_t *value = next_value(row);
    value->tag = WEIR_PLUGIN_TYPES_VALUE_TEXT;
    value->val.text = wit_copy(text.ptr, text.len);
}

void weir_row_opt_long(weir_row *row, weir_opt_long number) {
    if (number.set) weir_row_long(row, number.value);
    else weir_row_null(row);
}

void weir_row_opt_double(weir_row *row, weir_opt_double number) {
    if (number.set) weir_row_double(row, number.value);
    else weir_row_null(row);
}

/* ---------------------------------------------------------- exports */

bool EXPORT(init)(plugin_error *err) { return init_plugin(weir_plugin.init, err); }

void EXPORT(reads)(WORLD(list_string_t) *ret) { reads_list(ret); }

uint32_t EXPORT(state_version)(void) { return weir_plugin.state_version; }

void EXPORT(output_schema)(wit_string *ret) { *ret = wit_cstr(weir_plugin.output_schema); }

void EXPORT(aggregate)(EXPORT(batch_t) *batch, EXPORT(fields_t) *fields, EXPORT(list_group_t) *groups,
                       EXPORT(list_result_outcome_plugin_error_t) *ret) {
    ret->len = groups->len;
    ret->ptr = must_alloc(groups->len * sizeof *ret->ptr);
    void *state = must_alloc(weir_plugin.state_size);
    for (size_t g = 0; g < groups->len; g++) {
        EXPORT(group_t) *group = &groups->ptr[g];
        EXPORT(result_outcome_plugin_error_t) *result = &ret->ptr[g];
        weir_str key = {(const char *)group->key.ptr, group->key.len};
        memset(state, 0, weir_plugin.state_size);
        if (group->state.is_some) {
            if (!decode_state(group->state.val.ptr, group->state.val.len, state)) {
                free_state(state);
                result->is_err = true;
                result->val.err = make_error("bad-state", "the key's state is not this plugin's JSON");
                continue;
            }
        } else if (weir_plugin.initial) {
            weir_plugin.initial(state, key);
        }
        EXPORT(list_rejection_t) rejected = {NULL, 0};
        size_t rejected_cap = 0;
        for (uint32_t i = group->first; i < group->first + group->count; i++) {
            weir_record event = record_at(batch, fields, i);
            bool applied = weir_plugin.apply(state, &event, key);
            if (!applied || event.rejected) {
                if (!event.rejected) weir_reject(&event, "rejected", "the aggregator refused the event");
                if (rejected.len == rejected_cap) {
                    rejected_cap = rejected_cap ? rejected_cap * 2 : 4;
                    rejected.ptr = must_realloc(rejected.ptr, rejected_cap * sizeof *rejected.ptr);
                }
                rejected.ptr[rejected.len].index = i;
                rejected.ptr[rejected.len].error = event.error;
                rejected.len++;
            }
            scratch_reset();
        }
        buffer encoded = encode_state(state);
        bool changed = !group->state.is_some || group->state.val.len != encoded.len ||
                       memcmp(group->state.val.ptr, encoded.ptr, encoded.len) != 0;
        EXPORT(outcome_t) *outcome = &result->val.ok;
        result->is_err = false;
        outcome->state.ptr = (uint8_t *)encoded.ptr;
        outcome->state.len = encoded.len;
        outcome->row.is_some = changed || group->count == 0;
        outcome->row.val.ptr = NULL;
        outcome->row.val.len = 0;
        if (outcome->row.is_some) {
            weir_row row = {NULL, 0, 0};
            weir_plugin.row(state, key, &row);
            outcome->row.val.ptr = row.values;
            outcome->row.val.len = row.len;
        }
        outcome->rejected = rejected;
        free_state(state);
        scratch_reset();
    }
    free(state);
    EXPORT(batch_free)(batch);
    EXPORT(fields_free)(fields);
    EXPORT(list_group_free)(groups);
}

/* State of this version is used as it is; a newer version's state is read
   as it is (fields this version does not know are dropped); an older one's
   is refused. */
bool EXPORT(migrate)(uint32_t from_version, WORLD(list_u8_t) *state, WORLD(list_u8_t) *ret,
                     plugin_error *err) {
    if (from_version == weir_plugin.state_version) {
        *ret = *state;
        return true;
    }
    bool ok = false;
    if (from_version > weir_plugin.state_version) {
        void *decoded = must_alloc(weir_plugin.state_size);
        memset(decoded, 0, weir_plugin.state_size);
        if (decode_state(state->ptr, state->len, decoded)) {
            buffer encoded = encode_state(decoded);
            ret->ptr = (uint8_t *)encoded.ptr;
            ret->len = encoded.len;
            ok = true;
        } else {
            *err = make_error("bad-state", "the state is not JSON this plugin reads");
        }
        free_state(decoded);
        free(decoded);
    } else {
        char message[160];
        snprintf(message, sizeof message,
                 "cannot read state version %u: this plugin writes version %u and has no migration "
                 "from older versions",
                 from_version, weir_plugin.state_version);
        *err = make_error("unsupported-state-version", message);
    }
    WORLD(list_u8_free)(state);
    return ok;
}

#endif
