// A weir filter in JavaScript: keeps purchase events, drops the rest, and
// rejects values that are not JSON objects. A batch carries every value in
// one buffer (`batch.data`); each record says where its value lies. The
// filter reads one field, `event_type`: the host parses each value and hands
// over that field's JSON text (`fields`), so nothing else is parsed here.
const decoder = new TextDecoder();

export const filtering = {
  init() {},

  reads() {
    return ["event_type"];
  },

  filter(batch, fields) {
    return batch.records.map((record, index) => {
      const first = fields.first[index];
      if (first === undefined || first === null) {
        return {
          tag: "reject",
          val: { code: "malformed-json", message: "value is not a JSON object" },
        };
      }
      const span = fields.spans[first];
      if (span.len === 0) {
        return { tag: "drop" };
      }
      const start = record.value.start + span.start;
      const eventType = JSON.parse(decoder.decode(batch.data.subarray(start, start + span.len)));
      return eventType === "purchase" ? { tag: "keep" } : { tag: "drop" };
    });
  },
};
