// A weir filter in JavaScript: keeps purchase events, drops the rest, and
// rejects values that are not JSON.
const decoder = new TextDecoder();

export const filtering = {
  init() {},

  filter(batch) {
    return batch.map((record) => {
      let event;
      try {
        event = JSON.parse(decoder.decode(record.value));
      } catch (error) {
        return { tag: "reject", val: { code: "malformed-json", message: String(error) } };
      }
      return event.event_type === "purchase" ? { tag: "keep" } : { tag: "drop" };
    });
  },
};
