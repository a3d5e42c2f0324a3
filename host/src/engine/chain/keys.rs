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
        Some(field) => field_key(record.value, field)?,
    };
    checked(key)
}

/// The state key a `field` whose value is the JSON text `json` (as the
/// host's parser found it: a span of length 0 when the object has none)
/// gives: what [`key_of`] gives for the whole value, without reading the
/// rest of it again.
pub(super) fn key_of_field<'a>(
    json: &'a [u8],
    field: &str,
) -> Result<Cow<'a, [u8]>, (&'static str, String)> {
    let mut reader = jiter::Jiter::new(json);
    let key = match field_value(&mut reader, field) {
        Ok(Ok(Some(key))) => key,
        Ok(Ok(None)) | Err(_) => {
            return Err((
                "missing-key",
                format!("the value has no `{field}`, the field that keys the state"),
            ));
        }
        Ok(Err(refused)) => return Err(refused),
    };
    checked(key)
}

/// `key` if it can key state and is not longer than the sinks take.
fn checked(key: Cow<'_, [u8]>) -> Result<Cow<'_, [u8]>, (&'static str, String)> {
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

/// The value of `field` in `value`, a JSON object, as a state key: a string's
/// text, or a number as `serde_json` prints it. Found with one pass of a
/// JSON reader that builds nothing but the key; the whole value must be
/// JSON, and the field's last occurrence counts (as a JSON object read
/// into a map has it).
fn field_key<'a>(value: &'a [u8], field: &str) -> Result<Cow<'a, [u8]>, (&'static str, String)> {
    let mut json = jiter::Jiter::new(value);
    let not_json = |json: &jiter::Jiter<'_>, error: jiter::JiterError| {
        let reason = format!("the value is not JSON: {}", error.description(json));
        ("not-json", reason)
    };
    let missing = || {
        (
            "missing-key",
            format!("the value has no `{field}`, the field that keys the state"),
        )
    };
    let mut found: FieldKey<'a> = Ok(None);
    let scanned = (|| -> jiter::JiterResult<()> {
        if json.peek()? != jiter::Peek::Object {
            json.next_skip()?;
            return json.finish();
        }
        let mut next = json.next_object()?.map(|name| name == field);
        while let Some(matched) = next {
            if matched {
                found = field_value(&mut json, field)?;
            } else {
                json.next_skip()?;
            }
            next = json.next_key()?.map(|name| name == field);
        }
        json.finish()
    })();
    if let Err(error) = scanned {
        return Err(not_json(&json, error));
    }
    found?.ok_or_else(missing)
}

/// What a field's value gives as a key: the key, `None` for `null`, or a
/// dead letter's code and reason for a type that cannot key state.
type FieldKey<'a> = Result<Option<Cow<'a, [u8]>>, (&'static str, String)>;

/// The field's value, the reader on it (the reader's error: not JSON).
fn field_value<'a>(json: &mut jiter::Jiter<'a>, field: &str) -> jiter::JiterResult<FieldKey<'a>> {
    let peek = json.peek()?;
    Ok(match peek {
        jiter::Peek::String => Ok(Some(Cow::Owned(json.known_str()?.as_bytes().to_vec()))),
        jiter::Peek::Null => {
            json.known_null()?;
            Ok(None)
        }
        peek if peek.is_num() => {
            let bytes = json.known_number_bytes(peek)?;
            // Printed as `serde_json` prints the number it reads.
            let number: serde_json::Number =
                serde_json::from_slice(bytes).expect("the reader checked the number");
            Ok(Some(Cow::Owned(number.to_string().into_bytes())))
        }
        _ => {
            let start = json.current_index();
            json.known_skip(peek)?;
            let text = String::from_utf8_lossy(json.slice_to_current(start)).into_owned();
            Err((
                "wrong-key-type",
                format!("`{field}` keys the state, so it must be a string or a number, not {text}"),
            ))
        }
    })
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
    fn a_field_keys_state_as_a_json_object_read_into_a_map_has_it() {
        let key = |value: &str| keyed(b"k", value.as_bytes(), Some("id"));
        let text = |key: &str| Ok(key.as_bytes().to_vec());
        assert_eq!(key(r#"{"id": "s-1", "n": [1, {"id": 2}]}"#), text("s-1"));
        assert_eq!(key(r#"{"other": {"id": "inner"}, "id": 7}"#), text("7"));
        // Numbers as serde_json prints them, whatever their spelling.
        assert_eq!(key(r#"{"id": 7.50}"#), text("7.5"));
        assert_eq!(key(r#"{"id": 1e2}"#), text("100.0"));
        assert_eq!(key(r#"{"id": -3}"#), text("-3"));
        // Escapes in names and strings are read; the last occurrence counts.
        assert_eq!(key(r#"{"i\u0064": "a\"b", "x": 1}"#), text("a\"b"));
        assert_eq!(key(r#"{"id": "first", "id": "last"}"#), text("last"));
        assert_eq!(key(r#"{"id": null}"#), Err("missing-key"));
        assert_eq!(key(r#"{"other": 1}"#), Err("missing-key"));
        assert_eq!(key(r#"["id", 1]"#), Err("missing-key"));
        assert_eq!(key(r#"{"id": true}"#), Err("wrong-key-type"));
        assert_eq!(key(r#"{"id": {"a": 1}}"#), Err("wrong-key-type"));
        assert_eq!(key(r#"{"id": "s-1"} trailing"#), Err("not-json"));
        assert_eq!(key(r#"{"id": "s-1", "n": }"#), Err("not-json"));
        assert_eq!(key("\u{ff}"), Err("not-json"));
        assert_eq!(key(r#"{"id": ""}"#), Err("missing-key"), "an empty key");
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
