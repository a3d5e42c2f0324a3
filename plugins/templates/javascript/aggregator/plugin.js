// `{{name}}`: a weir aggregator. Per key (the pipeline's `key_field`, for
// example `session_id`): how many events, how many purchases, and the type
// of the newest event.
import { aggregator } from "weir-plugin-sdk";

export const aggregating = aggregator({
  // The fields read; the host parses each event once and hands them over.
  reads: ["event_type"],
  stateVersion: 1,
  // The row's Avro schema: the Kafka sink registers it, the PostgreSQL sink
  // makes a column of each field.
  outputSchema: {
    type: "record",
    name: "Activity",
    fields: [
      { name: "EVENTS", type: "long" },
      { name: "PURCHASES", type: "long" },
      { name: "LAST_EVENT", type: ["null", "string"], default: null },
    ],
  },

  initial: () => ({ events: 0, purchases: 0, last_event: null }),

  apply(state, event) {
    // Read (and type-check) first: a rejected event must leave the state as it was.
    const eventType = event.string("event_type");
    state.events += 1;
    if (eventType === "purchase") state.purchases += 1;
    if (eventType !== null) state.last_event = eventType;
  },

  row: (_key, state) => ({
    EVENTS: state.events,
    PURCHASES: state.purchases,
    LAST_EVENT: state.last_event,
  }),
});
