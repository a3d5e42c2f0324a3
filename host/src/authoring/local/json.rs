//! Values and rows as the JSON lines of the output.

use std::fmt::Write as _;

use crate::plugin::Value;
use crate::sink::{DeadLetter, RowSchema};

/// A row as a JSON object, its columns in schema order.
pub fn row_json(schema: &RowSchema, row: &[Value]) -> String {
    let mut out = String::from("{");
    for (index, (column, value)) in schema.columns.iter().zip(row).enumerate() {
        if index > 0 {
            out.push(',');
        }
        out.push_str(&json_text(&column.name));
        out.push(':');
        match value {
            Value::Null => out.push_str("null"),
            Value::Boolean(flag) => out.push_str(if *flag { "true" } else { "false" }),
            Value::Long(number) => write!(out, "{number}").expect("writing to a String"),
            Value::Double(number) => out.push_str(
                &serde_json::to_string(number).expect("a double serialises (non-finite as null)"),
            ),
            Value::Text(text) => out.push_str(&json_text(text)),
            Value::Bytes(bytes) => write!(out, "\"{}\"", hex(bytes)).expect("writing to a String"),
        }
    }
    out.push('}');
    out
}

/// `text` as a JSON string.
pub(super) fn json_text(text: &str) -> String {
    serde_json::to_string(text).expect("a string serialises")
}

/// Bytes as lowercase hexadecimal: how the output shows what is not text.
pub(super) fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            write!(out, "{b:02x}").expect("writing to a String");
            out
        })
}

/// A value as one line of text (invalid UTF-8 replaced).
pub(super) fn text(value: &[u8]) -> String {
    String::from_utf8_lossy(value).into_owned()
}

/// A dead letter as one line of `--dead-letters`, with its input line.
pub(super) fn dead_letter_json(letter: &DeadLetter) -> String {
    serde_json::json!({
        "line": letter.offset + 1,
        "stage": letter.stage,
        "kind": letter.kind.name(),
        "code": letter.code,
        "reason": letter.reason,
        "value": String::from_utf8_lossy(&letter.value),
    })
    .to_string()
}
