// `{{name}}`: a weir transform. Each event comes out as it came in, with
// `funnel_step` added: 1 for browsing (page views, searches, product
// views), 2 for the cart, 3 for a purchase, 0 for anything else. Events
// whose `event_type` is not a string are rejected.
import { transform } from "weir-plugin-sdk";

const STEPS = { page_view: 1, search: 1, product_viewed: 1, add_to_cart: 2, cart_viewed: 2, purchase: 3 };
const decoder = new TextDecoder();

export const transforming = transform({
  // The fields read; the host parses each event once and hands them over.
  reads: ["event_type"],

  transform(record, emit) {
    const eventType = record.string("event_type"); // rejects a non-string
    const step = Object.hasOwn(STEPS, eventType) ? STEPS[eventType] : 0;
    // The event's own text, with the member added before its closing brace.
    const body = decoder.decode(record.value).trimEnd().replace(/\}$/, "").trimEnd();
    const comma = body.endsWith("{") ? "" : ",";
    emit(`${body}${comma}"funnel_step":${step}}`, record.key);
  },
});
