/*
 * weir's C SDK: write a filter, a transform or a keyed aggregator in C; the SDK speaks
 * the WIT contract (weir:plugin@0.2.0). A plugin defines one descriptor,
 * `weir_plugin`, and the functions it names:
 *
 *     #include "weir.h"
 *
 *     typedef struct { int64_t events; } counts;
 *     static const weir_state_field COUNTS[] = { WEIR_STATE_LONG(counts, events) };
 *     static const char *const READS[] = { "event_type", NULL };
 *
 *     static bool apply(void *state, const weir_record *event) {
 *         ((counts *)state)->events += 1;
 *         return true;
 *     }
 *     static void row(const void *state, weir_row *row) {
 *         weir_row_long(row, ((const counts *)state)->events);
 *     }
 *     const weir_aggregator weir_plugin = {
 *         .reads = READS, .state_version = 1,
 *         .output_schema = "{\"type\":\"record\",\"name\":\"Counts\","
 *                          "\"fields\":[{\"name\":\"EVENTS\",\"type\":\"long\"}]}",
 *         .state_size = sizeof(counts), .state_fields = COUNTS,
 *         .state_field_count = 1, .apply = apply, .row = row,
 *     };
 *
 * `weir plugin build` compiles it with clang for wasm32-wasi, with this SDK
 * and bindings generated from the contract for the plugin's world.
 *
 * Records: `weir_string_field` and its siblings read a field of the
 * plugin's `reads` list (by index), found by the host's one parse of the
 * record, and check its type; on a wrong type they reject the record
 * (dead letter, code `malformed-json`) and return false.
 *
 * State: a plain struct whose fields are described by a table of
 * `weir_state_field`s. The SDK stores it as a JSON object with those names:
 * the encoding weir's Rust, JavaScript and Python SDKs write, so versions of
 * a plugin in different languages can take over each other's state.
 * Supported field types: int64_t, double, bool, weir_text (a string or
 * null), weir_opt_long and weir_opt_double (a number or null).
 */
#ifndef WEIR_H
#define WEIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Borrowed bytes (not NUL-terminated). */
typedef struct {
    const char *ptr;
    size_t len;
} weir_str;

/* An owned string of a state (NULL: the JSON null). Set it with weir_text_set. */
typedef struct {
    char *ptr;
    size_t len;
} weir_text;

/* A number of a state that may be null. */
typedef struct {
    bool set;
    int64_t value;
} weir_opt_long;

typedef struct {
    bool set;
    double value;
} weir_opt_double;

/* One record being processed (an event, for an aggregator). */
typedef struct weir_record weir_record;

/* The record's value and key (key.ptr is NULL when it has none). */
weir_str weir_record_value(const weir_record *record);
weir_str weir_record_key(const weir_record *record);

/*
 * Field `field` (an index into `reads`). Each returns true with *present set
 * when the field is absent or JSON null (false) or holds a value of the type
 * (true); it returns false after rejecting the record when the value has
 * another type, or when the record's value is not a JSON object. A string is
 * decoded (escapes and all) into memory that lives until the next record.
 */
bool weir_string_field(const weir_record *record, size_t field, weir_str *out, bool *present);
bool weir_long_field(const weir_record *record, size_t field, int64_t *out, bool *present);
bool weir_double_field(const weir_record *record, size_t field, double *out, bool *present);
bool weir_bool_field(const weir_record *record, size_t field, bool *out, bool *present);

/* Refuses the record as bad data; returns false, for `return weir_reject(...)`. */
bool weir_reject(const weir_record *record, const char *code, const char *message);

/* A state's string: copies `value` in (value.ptr NULL: null). */
void weir_text_set(weir_text *text, weir_str value);
/* True when the text equals the C string `other`. */
bool weir_text_is(weir_text text, const char *other);
/* True when the borrowed string equals the C string `other`. */
bool weir_str_is(weir_str text, const char *other);

/* A field of the state struct, for the SDK's JSON encoding. */
typedef enum {
    WEIR_STATE_KIND_LONG,
    WEIR_STATE_KIND_DOUBLE,
    WEIR_STATE_KIND_BOOL,
    WEIR_STATE_KIND_TEXT,
    WEIR_STATE_KIND_OPT_LONG,
    WEIR_STATE_KIND_OPT_DOUBLE,
} weir_state_kind;

typedef struct {
    const char *name;
    weir_state_kind kind;
    size_t offset;
} weir_state_field;

#define WEIR_STATE_FIELD_(type, member, kind) {#member, kind, offsetof(type, member)}
#define WEIR_STATE_LONG(type, member) WEIR_STATE_FIELD_(type, member, WEIR_STATE_KIND_LONG)
#define WEIR_STATE_DOUBLE(type, member) WEIR_STATE_FIELD_(type, member, WEIR_STATE_KIND_DOUBLE)
#define WEIR_STATE_BOOL(type, member) WEIR_STATE_FIELD_(type, member, WEIR_STATE_KIND_BOOL)
#define WEIR_STATE_TEXT(type, member) WEIR_STATE_FIELD_(type, member, WEIR_STATE_KIND_TEXT)
#define WEIR_STATE_OPT_LONG(type, member) WEIR_STATE_FIELD_(type, member, WEIR_STATE_KIND_OPT_LONG)
#define WEIR_STATE_OPT_DOUBLE(type, member) \
    WEIR_STATE_FIELD_(type, member, WEIR_STATE_KIND_OPT_DOUBLE)

/* An output row being built: one call per output-schema field, in order. */
typedef struct weir_row weir_row;
void weir_row_null(weir_row *row);
void weir_row_long(weir_row *row, int64_t value);
void weir_row_double(weir_row *row, double value);
void weir_row_bool(weir_row *row, bool value);
void weir_row_text(weir_row *row, weir_text value); /* null when value.ptr is NULL */
void weir_row_opt_long(weir_row *row, weir_opt_long value);
void weir_row_opt_double(weir_row *row, weir_opt_double value);

/* Why `init` refused the configuration. */
typedef struct {
    const char *code;
    const char *message;
} weir_error;

/*
 * The configuration (a JSON object): the JSON text of its top-level member
 * `name`, if it has one; and that text decoded as a string. Both point into
 * memory that lives only during `init`: copy what the plugin keeps.
 */
bool weir_config_member(weir_str config, const char *name, weir_str *raw);
bool weir_json_string(weir_str raw, weir_str *out);

/* Logs through the host (info level). */
void weir_log(const char *message);

/* A keyed aggregator (world `aggregator`). */
typedef struct {
    /* The fields it reads, NULL-terminated. */
    const char *const *reads;
    /* The version of its state encoding. */
    uint32_t state_version;
    /* The output row's Avro record schema, as JSON text. */
    const char *output_schema;
    /* The state struct and its fields (the SDK zeroes a new key's state). */
    size_t state_size;
    const weir_state_field *state_fields;
    size_t state_field_count;
    /* Optional: checks the configuration; false refuses it (fill `error`). */
    bool (*init)(weir_str config, weir_error *error);
    /* Optional: a new key's state beyond zeroes. */
    void (*initial)(void *state, weir_str key);
    /* Folds an event in; false (after weir_reject) leaves it out: reject
       before changing the state. */
    bool (*apply)(void *state, const weir_record *event, weir_str key);
    /* The key's row. */
    void (*row)(const void *state, weir_str key, weir_row *row);
} weir_aggregator;

/* A filter's verdict. */
typedef enum {
    WEIR_KEEP,
    WEIR_DROP,
    /* After weir_reject. */
    WEIR_REJECT,
} weir_decision;

/* A filter (world `filter`). */
typedef struct {
    const char *const *reads;
    bool (*init)(weir_str config, weir_error *error);
    weir_decision (*filter)(const weir_record *record);
} weir_filter;

/* Where a transform's outputs go. */
typedef struct weir_emitter weir_emitter;

/* Emits one record (key.ptr NULL: no key); bytes are copied. */
void weir_emit(weir_emitter *out, weir_str key, weir_str value);

/* A transform (world `transform`): each record becomes zero or more. */
typedef struct {
    const char *const *reads;
    bool (*init)(weir_str config, weir_error *error);
    /* Emits what the record becomes; false (after weir_reject) refuses it,
       and what it emitted is discarded. */
    bool (*transform)(const weir_record *record, weir_emitter *out);
} weir_transform;

/* The plugin: define exactly one, of the type of its world. */
#if defined(WEIR_WORLD_AGGREGATOR)
extern const weir_aggregator weir_plugin;
#elif defined(WEIR_WORLD_FILTER)
extern const weir_filter weir_plugin;
#elif defined(WEIR_WORLD_TRANSFORM)
extern const weir_transform weir_plugin;
#endif

#endif
