// A weir filter in JavaScript: keeps purchase events, drops the rest, and
// rejects values that are not JSON. A batch carries every value in one
// buffer (`batch.data`); each record says where its value lies.
const decoder = new TextDecoder();

export const filtering = {
  init() {},

  filter(batch) {
    return batch.records.map((record) => {
      const { start, len } = record.value;
      let event;
      try {
        event = JSON.parse(decoder.decode(batch.data.subarray(start, start + len)));
      } catch (error) {
        return { tag: "reject", val: { code: "malformed-json", message: String(error) } };
      }
      return event.event_type === "purchase" ? { tag: "keep" } : { tag: "drop" };
    });
  },
};
