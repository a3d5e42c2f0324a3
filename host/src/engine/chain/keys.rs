//! What a record's key and value must be for the chain: a `json` source's
//! values are JSON objects, and state keys are text the sinks can write.
//! Each check's error is a dead letter's code and reason.

use std::borrow::Cow;

use crate::plugin::RecordRef;
use crate::sink::limits;

/// Why `value` is not a JSON object, for its dead letter (the source's
/// format is `json`; the parse found it is not).
pub(super) fn not_a_json_object(value: &[u8]) -> String {
    if value.iter().all(u8::is_ascii_whitespace) {
        return "the value is empty; the source's format is `json`".to_owned();
    }
    if let Err(error) = std::str::from_utf8(value) {
        return format!("the value is not UTF-8, so not JSON: {error}");
    }
    let mut json = jiter::Jiter::new(value);
    match json.next_skip().and_then(|()| json.finish()) {
        Err(error) => format!("the value is not valid JSON: {}", error.description(&json)),
        Ok(()) => "the value is JSON but not an object; the source's format is `json`".to_owned(),
    }
}

/// The state key of `record`: its Kafka key, or the value's `field` (a
/// JSON string or number). Keys must be UTF-8: the sinks write them as text.
pub(super) fn key_of<'a>(
    record: RecordRef<'a>,
    field: Option<&str>,
) -> Result<Cow<'a, [u8]>, (&'static str, String)> {
    let key = match field {
        None => Cow::Borrowed(record.key.ok_or_else(|| {
            (
                "missing-key",
                "the record has no key, and the aggregator groups by the record key".to_owned(),
            )
        })?),
        Some(field) => {
            let value: serde_json::Value = serde_json::from_slice(record.value)
                .map_err(|error| ("not-json", format!("the value is not JSON: {error}")))?;
            match value.get(field) {
                Some(serde_json::Value::String(text)) => Cow::Owned(text.clone().into_bytes()),
                Some(serde_json::Value::Number(number)) => {
                    Cow::Owned(number.to_string().into_bytes())
                }
                Some(serde_json::Value::Null) | None => {
                    return Err((
                        "missing-key",
                        format!("the value has no `{field}`, the field that keys the state"),
                    ));
                }
                Some(other) => {
                    return Err((
                        "wrong-key-type",
                        format!(
                            "`{field}` keys the state, so it must be a string or a number, not {other}"
                        ),
                    ));
                }
            }
        }
    };
    check_key(&key)?;
    if key.len() > limits::MAX_KEY_BYTES {
        return Err((
            "key-too-long",
            format!(
                "the key is {} bytes; keys are at most {} (they are the sinks' primary keys)",
                key.len(),
                limits::MAX_KEY_BYTES
            ),
        ));
    }
    Ok(key)
}

/// Whether `key` can key state: the sinks write keys as text, so it must be
/// non-empty UTF-8 without NUL (PostgreSQL text cannot hold it). The error
/// is a dead letter's code and reason.
pub fn check_key(key: &[u8]) -> Result<(), (&'static str, String)> {
    if key.is_empty() {
        return Err(("missing-key", "the key is empty".to_owned()));
    }
    if std::str::from_utf8(key).is_err() {
        return Err((
            "key-not-utf8",
            "the key is not UTF-8 text, which the sinks need".to_owned(),
        ));
    }
    if key.contains(&0) {
        return Err((
            "key-not-text",
            "the key holds a NUL character, which PostgreSQL text cannot store".to_owned(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyed(key: &[u8], value: &[u8], field: Option<&str>) -> Result<Vec<u8>, &'static str> {
        let record = RecordRef {
            key: Some(key),
            value,
            timestamp: 0,
            partition: 0,
            offset: 0,
        };
        key_of(record, field)
            .map(Cow::into_owned)
            .map_err(|(code, _)| code)
    }

    #[test]
    fn a_key_longer_than_the_sinks_take_is_refused_from_the_record_key_and_from_a_field() {
        let longest = "k".repeat(limits::MAX_KEY_BYTES);
        assert!(keyed(longest.as_bytes(), b"{}", None).is_ok());
        let long = "k".repeat(limits::MAX_KEY_BYTES + 1);
        assert_eq!(keyed(long.as_bytes(), b"{}", None), Err("key-too-long"));
        let value = format!(r#"{{"session_id": "{long}"}}"#);
        assert_eq!(
            keyed(b"k", value.as_bytes(), Some("session_id")),
            Err("key-too-long")
        );
        assert_eq!(keyed(b"", b"{}", None), Err("missing-key"));
        assert_eq!(keyed(b"\xff", b"{}", None), Err("key-not-utf8"));
    }

    #[test]
    fn says_why_a_value_is_not_a_json_object() {
        assert_eq!(
            not_a_json_object(b" "),
            "the value is empty; the source's format is `json`"
        );
        assert_eq!(
            not_a_json_object(b"[1, 2]"),
            "the value is JSON but not an object; the source's format is `json`"
        );
        assert!(
            not_a_json_object(b"{\"a\": \"\xff\"}").starts_with("the value is not UTF-8"),
            "{}",
            not_a_json_object(b"{\"a\": \"\xff\"}")
        );
        let truncated = not_a_json_object(br#"{"a": "#);
        assert!(
            truncated.starts_with("the value is not valid JSON: EOF while parsing a value"),
            "{truncated}"
        );
    }
}
