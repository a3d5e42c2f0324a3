// weir's JavaScript SDK: write a filter, a transform or a keyed aggregator
// as plain JavaScript; the SDK speaks the WIT contract (weir:plugin@0.2.0).
//
//   import { aggregator, reject } from "weir-plugin-sdk";
//   export const aggregating = aggregator({
//     reads: ["event_type"],
//     stateVersion: 1,
//     outputSchema: { type: "record", name: "Counts", fields: [{ name: "EVENTS", type: "long" }] },
//     initial: () => ({ events: 0 }),
//     apply(state, event) { state.events += 1; },
//     row: (key, state) => ({ EVENTS: state.events }),
//   });
//
// Records: `record.get(name)` is the JSON value of a field the plugin reads
// (`undefined` when absent), found by the host's one parse of the record;
// `record.string/long/double/boolean(name)` check the type as well and
// reject the record (dead letter, code `malformed-json`) when it does not
// fit. A long beyond 2^53 comes back as a BigInt, so no digit is lost.
//
// State is a plain object, stored by the SDK as JSON text: the same
// encoding weir's Rust SDK writes, so a JavaScript version of a plugin can
// take over the state of a Rust one (and back) in a hot swap.

// The host imports, bound by componentize-js at build time.
import { get as configGet } from "weir:plugin/config@0.2.0";
export { log } from "weir:plugin/logging@0.2.0";
export { get as lookup } from "weir:plugin/lookup@0.2.0";
export { counterAdd, gaugeSet } from "weir:plugin/metrics@0.2.0";

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/** A record refused as bad data: it goes to the dead-letter topic with this code and message. */
export class Rejection extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

/** Refuses the record being processed as bad data (throws a Rejection). */
export function reject(code, message) {
  throw new Rejection(code, message);
}

const pluginError = (error) => ({ code: error.code, message: error.message });

/** The stage's configuration from the pipeline file, parsed. */
function configuration() {
  return JSON.parse(configGet());
}

// `init` and `reads`, shared by the three kinds. A Rejection thrown by the
// plugin's init becomes the contract's error; anything else is a bug.
function lifecycle(plugin) {
  return {
    init() {
      try {
        plugin.init?.(configuration());
      } catch (error) {
        if (error instanceof Rejection) throw pluginError(error);
        throw { code: "bad-config", message: String(error?.message ?? error) };
      }
    },
    reads() {
      return plugin.reads ?? [];
    },
  };
}

/** One record of a batch, with lazy access to the fields the plugin reads. */
class Record {
  constructor(batch, fields, index, columns) {
    const info = batch.records[index];
    this._data = batch.data;
    this._info = info;
    this._columns = columns;
    // -1: the plugin reads no fields; null: the value is not a JSON object.
    this._first = fields.first.length === 0 ? -1 : (fields.first[index] ?? null);
    this._spans = fields.spans;
  }

  /** The value's bytes. */
  get value() {
    const { start, len } = this._info.value;
    return this._data.subarray(start, start + len);
  }

  /** The key's bytes, or undefined. */
  get key() {
    const key = this._info.key;
    return key ? this._data.subarray(key.start, key.start + key.len) : undefined;
  }

  /** The key as text, or undefined. */
  get keyText() {
    const key = this.key;
    return key ? decoder.decode(key) : undefined;
  }

  get timestamp() { return this._info.timestamp; }
  get partition() { return this._info.partition; }
  get offset() { return this._info.offset; }

  /** The whole value parsed as JSON (the plugin parses it itself). */
  json() {
    try {
      return JSON.parse(decoder.decode(this.value));
    } catch (error) {
      reject("malformed-json", `value is not JSON: ${error.message}`);
    }
  }

  /** The JSON text of field `name`, or undefined when the object has no such field. */
  text(name) {
    const column = this._columns.get(name);
    if (column === undefined) {
      throw new Error(`field \`${name}\` is not in the plugin's reads list`);
    }
    if (this._first === null) reject("malformed-json", "value is not a JSON object");
    if (this._first < 0) return undefined;
    const span = this._spans[this._first + column];
    if (span.len === 0) return undefined;
    const start = this._info.value.start + span.start;
    return decoder.decode(this._data.subarray(start, start + span.len));
  }

  /** Field `name`'s value (numbers as numbers), or undefined when absent. */
  get(name) {
    const text = this.text(name);
    return text === undefined ? undefined : JSON.parse(text);
  }

  /** A string field: the string, or null when absent or null; rejects other types. */
  string(name) {
    return this._typed(name, "string", "a string");
  }

  /** A boolean field, or null; rejects other types. */
  boolean(name) {
    return this._typed(name, "boolean", "a boolean");
  }

  _typed(name, type, expected) {
    const text = this.text(name);
    if (text === undefined) return null;
    const value = JSON.parse(text);
    if (value === null) return null;
    if (typeof value !== type) wrongType(name, text, expected);
    return value;
  }

  /** A 64-bit integer field, exact: a number, or a BigInt beyond 2^53; null when absent or null. */
  long(name) {
    const text = this.text(name);
    if (text === undefined || text === "null") return null;
    if (!/^-?(0|[1-9][0-9]*)$/.test(text)) wrongType(name, text, "an integer");
    const value = BigInt(text);
    if (value < -(2n ** 63n) || value >= 2n ** 63n) {
      reject("malformed-json", `field \`${name}\`: ${text} does not fit in 64 bits`);
    }
    return Number.isSafeInteger(Number(value)) ? Number(value) : value;
  }

  /** A number field as a double, or null; rejects other types. */
  double(name) {
    const text = this.text(name);
    if (text === undefined) return null;
    const value = JSON.parse(text);
    if (value === null) return null;
    if (typeof value !== "number" || !Number.isFinite(value)) wrongType(name, text, "a number");
    return value;
  }
}

function wrongType(name, text, expected) {
  const shown = text.length > 60 ? `${text.slice(0, 60)}...` : text;
  reject("malformed-json", `field \`${name}\`: expected ${expected}, found ${shown}`);
}

function columnsOf(reads) {
  return new Map((reads ?? []).map((name, index) => [name, index]));
}

function rejection(error) {
  if (error instanceof Rejection) return pluginError(error);
  throw error; // a bug, not bad data: the plugin traps and the host isolates the record
}

/** A filter: `filter(record)` returns true to keep the record, false to drop it. */
export function filter(plugin) {
  const columns = columnsOf(plugin.reads);
  return {
    ...lifecycle(plugin),
    filter(batch, fields) {
      return batch.records.map((_, index) => {
        try {
          const record = new Record(batch, fields, index, columns);
          return plugin.filter(record) ? { tag: "keep" } : { tag: "drop" };
        } catch (error) {
          return { tag: "reject", val: rejection(error) };
        }
      });
    },
  };
}

/** Bytes of an emitted value: a string, bytes, or any other value as JSON. */
function bytesOf(value) {
  if (value instanceof Uint8Array) return value;
  return encoder.encode(typeof value === "string" ? value : stringify(value));
}

/** A transform: `transform(record, emit)` calls `emit(value, key?)` zero or more times. */
export function transform(plugin) {
  const columns = columnsOf(plugin.reads);
  return {
    ...lifecycle(plugin),
    transform(batch, fields) {
      const chunks = [];
      const records = [];
      const rejected = [];
      let length = 0;
      const span = (bytes) => {
        chunks.push(bytes);
        const start = length;
        length += bytes.length;
        return { start, len: bytes.length };
      };
      batch.records.forEach((_, index) => {
        const emitted = [];
        try {
          const record = new Record(batch, fields, index, columns);
          plugin.transform(record, (value, key) => emitted.push([value, key]));
        } catch (error) {
          rejected.push({ index, error: rejection(error) });
          return;
        }
        for (const [value, key] of emitted) {
          const keySpan = key === undefined || key === null ? undefined : span(bytesOf(key));
          records.push({ source: index, key: keySpan, value: span(bytesOf(value)) });
        }
      });
      const data = new Uint8Array(length);
      let offset = 0;
      for (const chunk of chunks) {
        data.set(chunk, offset);
        offset += chunk.length;
      }
      return { data, records, headers: [], rejected };
    },
  };
}

// JSON with exact 64-bit integers: BigInts are written as plain JSON
// numbers, and integers too long for a double are read back as BigInts.
// The marker as a string value, and as JSON text (escaped).
const BIG = "\u0000weir-bigint:";
const BIG_MARK = "\\u0000weir-bigint:";
const BIG_WRITTEN = /"\\u0000weir-bigint:(-?\d+)"/g;
const LONG_DIGITS = /\d{16}/;
// A string (skipped), or a whole integer of 16 digits or more: not the
// digits of a fraction or an exponent, nor the tail of another number.
const TOKENS = /"(?:[^"\\]|\\.)*"|(?<![\w.+-])-?\d{16,}(?![.eE\d])/g;

function stringify(value) {
  try {
    return JSON.stringify(value);
  } catch {
    // A BigInt (JSON.stringify refuses them): written as a plain number below.
  }
  const text = JSON.stringify(value, (_, v) => (typeof v === "bigint" ? BIG + v : v));
  return text.includes(BIG_MARK) ? text.replace(BIG_WRITTEN, "$1") : text;
}

function parse(text) {
  if (!LONG_DIGITS.test(text)) return JSON.parse(text);
  const marked = text.replace(TOKENS, (token) => (token[0] === '"' ? token : `"${BIG_MARK}${token}"`));
  if (marked === text) return JSON.parse(text);
  return JSON.parse(marked, (_, v) => {
    if (typeof v !== "string" || !v.startsWith(BIG)) return v;
    const big = BigInt(v.slice(BIG.length));
    return Number.isSafeInteger(Number(big)) ? Number(big) : big;
  });
}

/** The columns of an Avro record schema: [name, type] with unions with null unwrapped. */
function schemaColumns(schema) {
  return schema.fields.map((field) => {
    const types = Array.isArray(field.type) ? field.type : [field.type];
    const type = types.find((t) => t !== "null");
    return [field.name, typeof type === "string" ? type : type?.type];
  });
}

function cell(column, type, value) {
  if (value === undefined || value === null) return { tag: "null" };
  switch (type) {
    case "long":
    case "int":
      if (typeof value === "bigint") return { tag: "long", val: value };
      if (!Number.isInteger(value)) throw new Error(`column ${column} is ${type}, but the row gave ${value}`);
      return { tag: "long", val: BigInt(value) };
    case "double":
    case "float":
      return { tag: "double", val: Number(value) };
    case "string":
      return { tag: "text", val: String(value) };
    case "boolean":
      return { tag: "boolean", val: Boolean(value) };
    case "bytes":
      return { tag: "bytes", val: value };
    default:
      throw new Error(`column ${column} has type ${type}, which weir's rows cannot carry`);
  }
}

/**
 * A keyed aggregator. The host keeps each key's state; the plugin says how
 * an event folds into it and what the key's row is.
 *
 * - `reads`: the fields it reads; `stateVersion`: the version of its state encoding;
 * - `outputSchema`: the row's Avro record schema (an object or its JSON text);
 * - `initial(key)`: a new key's state; `apply(state, event, key)`: folds an
 *   event in (change `state`, or return the new state); `reject(...)` refuses
 *   it, and must come before any change to the state;
 * - `row(key, state)`: the row, an object by column name;
 * - `migrate(fromVersion, state)` (optional): state of an older version in this one's.
 */
export function aggregator(plugin) {
  const columns = columnsOf(plugin.reads);
  const schemaText =
    typeof plugin.outputSchema === "string" ? plugin.outputSchema : JSON.stringify(plugin.outputSchema);
  const rowColumns = schemaColumns(JSON.parse(schemaText));
  const toRow = (key, state) => {
    const row = plugin.row(key, state);
    return rowColumns.map(([name, type]) => cell(name, type, row[name]));
  };
  return {
    ...lifecycle(plugin),
    stateVersion() {
      return plugin.stateVersion ?? 1;
    },
    outputSchema() {
      return schemaText;
    },
    aggregate(batch, fields, groups) {
      return groups.map((group) => {
        const key = decoder.decode(group.key);
        let before;
        let state;
        if (group.state === undefined || group.state === null) {
          state = plugin.initial(key);
        } else {
          try {
            before = decoder.decode(group.state);
            state = parse(before);
          } catch (error) {
            return { tag: "err", val: { code: "bad-state", message: `the key's state is not JSON: ${error.message}` } };
          }
        }
        const rejected = [];
        for (let index = group.first; index < group.first + group.count; index++) {
          // A rejected event must leave the state as it was: `apply` reads
          // (and checks) every field before it changes anything.
          try {
            const record = new Record(batch, fields, index, columns);
            const next = plugin.apply(state, record, key);
            if (next !== undefined) state = next;
          } catch (error) {
            rejected.push({ index, error: rejection(error) });
          }
        }
        const after = stringify(state);
        const changed = after !== before;
        return {
          tag: "ok",
          val: {
            state: encoder.encode(after),
            row: changed || group.count === 0 ? toRow(key, state) : undefined,
            rejected,
          },
        };
      });
    },
    // State of this version is used as it is; a newer version's state is
    // read as it is (the forward-compatibility rule); an older one's goes
    // through the plugin's `migrate`, or is refused without one.
    migrate(fromVersion, state) {
      const version = plugin.stateVersion ?? 1;
      if (fromVersion === version) return state;
      let value;
      try {
        value = parse(decoder.decode(state));
      } catch (error) {
        throw { code: "bad-state", message: `the state is not JSON: ${error.message}` };
      }
      if (fromVersion > version) return state;
      if (!plugin.migrate) {
        throw {
          code: "unsupported-state-version",
          message: `cannot read state version ${fromVersion}: this plugin writes version ${version} and has no migration from older versions`,
        };
      }
      return encoder.encode(stringify(plugin.migrate(fromVersion, value)));
    },
  };
}
