// `{{name}}`: a weir filter. Keeps the events whose `event_type` is one of
// the configured ones (`keep = ["purchase"]` by default), drops the others,
// and rejects events whose `event_type` is not a string.
import { filter, reject } from "weir-plugin-sdk";

let keep = new Set(["purchase"]);

export const filtering = filter({
  // The fields read; the host parses each event once and hands them over.
  reads: ["event_type"],

  init(config) {
    if (config.keep !== undefined) {
      if (!Array.isArray(config.keep)) reject("bad-config", "`keep` must be a list of event types");
      keep = new Set(config.keep);
    }
  },

  filter: (record) => keep.has(record.string("event_type")),
});
