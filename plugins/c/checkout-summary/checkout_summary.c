/*
 * `checkout-summary`: how far each session's cart went. Per session: items
 * added to the cart, the cart's peak value, the order's total and payment
 * method once it is bought, and whether it was. The stock pipeline has
 * nothing like it; pipelines/checkout-summary.toml runs it.
 */
#include "weir.h"

typedef struct {
    int64_t adds_to_cart;
    weir_opt_double cart_peak;
    weir_opt_double order_total;
    weir_text payment_method;
} checkout;

static const weir_state_field STATE[] = {
    WEIR_STATE_LONG(checkout, adds_to_cart),
    WEIR_STATE_OPT_DOUBLE(checkout, cart_peak),
    WEIR_STATE_OPT_DOUBLE(checkout, order_total),
    WEIR_STATE_TEXT(checkout, payment_method),
};

enum { EVENT_TYPE, CART_TOTAL, TOTAL, PAYMENT_METHOD };
static const char *const READS[] = {"event_type", "cart_total", "total", "payment_method", NULL};

static bool apply(void *state, const weir_record *event, weir_str key) {
    (void)key;
    checkout *c = state;
    weir_str event_type, payment;
    double cart_total, total;
    bool has_type, has_cart, has_total, has_payment;
    if (!weir_string_field(event, EVENT_TYPE, &event_type, &has_type) ||
        !weir_double_field(event, CART_TOTAL, &cart_total, &has_cart) ||
        !weir_double_field(event, TOTAL, &total, &has_total) ||
        !weir_string_field(event, PAYMENT_METHOD, &payment, &has_payment))
        return false;
    if (!has_type) return true;
    if (weir_str_is(event_type, "add_to_cart")) {
        c->adds_to_cart += 1;
        if (has_cart && (!c->cart_peak.set || cart_total > c->cart_peak.value)) {
            c->cart_peak.set = true;
            c->cart_peak.value = cart_total;
        }
    } else if (weir_str_is(event_type, "purchase")) {
        if (!has_total) return weir_reject(event, "missing-field", "a purchase without `total`");
        c->order_total.set = true;
        c->order_total.value = total;
        if (has_payment) weir_text_set(&c->payment_method, payment);
    }
    return true;
}

static void row(const void *state, weir_str key, weir_row *row) {
    (void)key;
    const checkout *c = state;
    weir_row_long(row, c->adds_to_cart);
    weir_row_opt_double(row, c->cart_peak);
    weir_row_opt_double(row, c->order_total);
    weir_row_text(row, c->payment_method);
    weir_row_bool(row, c->order_total.set);
}

const weir_aggregator weir_plugin = {
    .reads = READS,
    .state_version = 1,
    .output_schema = "{\"type\":\"record\",\"name\":\"CheckoutSummary\",\"fields\":["
                     "{\"name\":\"ADDS_TO_CART\",\"type\":\"long\"},"
                     "{\"name\":\"CART_PEAK\",\"type\":[\"null\",\"double\"],\"default\":null},"
                     "{\"name\":\"ORDER_TOTAL\",\"type\":[\"null\",\"double\"],\"default\":null},"
                     "{\"name\":\"PAYMENT_METHOD\",\"type\":[\"null\",\"string\"],\"default\":null},"
                     "{\"name\":\"CONVERTED\",\"type\":\"boolean\"}]}",
    .state_size = sizeof(checkout),
    .state_fields = STATE,
    .state_field_count = sizeof STATE / sizeof STATE[0],
    .apply = apply,
    .row = row,
};
