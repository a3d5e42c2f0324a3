//! Names a pipeline file gives that must be valid identifiers somewhere
//! else (Kafka, PostgreSQL, metrics labels), as newtypes: a value of one of
//! these types passed its check, so code that holds one need not check again.
//!
//! Each type is made by `parse`, which says what is wrong and how to fix it;
//! the pipeline checker calls them all and reports every failure at once.

use std::fmt;

/// Why a name was refused: what is wrong, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameError {
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub help: &'static str,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.help)
    }
}

impl std::error::Error for NameError {}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// The name as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl From<$name> for String {
            fn from(name: $name) -> String {
                name.0
            }
        }
    };
}

name_type! {
    /// A name weir gives things of its own (a pipeline, a stage, a lookup
    /// table): lowercase letters, digits, `-` and `_`, starting with a
    /// letter, at most 64. Such names label metrics and name topics.
    Name
}

name_type! {
    /// A Kafka topic: letters, digits, `.`, `_` and `-`, at most 249, and
    /// neither `.` nor `..`.
    TopicName
}

name_type! {
    /// A PostgreSQL table weir writes: letters, digits and `_`, at most 63,
    /// not starting with a digit (so it never needs care to be safe, though
    /// weir quotes it anyway).
    TableName
}

name_type! {
    /// A PostgreSQL column: any text PostgreSQL takes as a quoted identifier
    /// (not empty, at most 63 bytes, no NUL); weir always quotes it.
    ColumnName
}

impl Name {
    /// The name of the part of this pipeline that runs `stage` (the second
    /// hop of a re-keyed pipeline): `<pipeline>.<stage>`, which no pipeline
    /// file can name.
    pub fn part(&self, stage: &Name) -> Name {
        Self(format!("{}.{}", self.0, stage.0))
    }

    /// `value` as a name of a `what` (for the message: "pipeline", "stage").
    pub fn parse(value: &str, what: &str) -> Result<Self, NameError> {
        let valid = !value.is_empty()
            && value.len() <= 64
            && value.starts_with(|c: char| c.is_ascii_lowercase())
            && value
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if valid {
            Ok(Self(value.to_owned()))
        } else {
            Err(NameError {
                message: format!("`{value}` is not a valid {what} name"),
                help: "start with a lowercase letter; use lowercase letters, digits, `-` and `_`; at most 64",
            })
        }
    }
}

impl TopicName {
    /// A topic weir names itself from checked names (a repartition topic).
    pub(super) fn internal(value: String) -> Self {
        Self(value)
    }

    /// `value` as a topic, the `what` of the pipeline ("source topic").
    pub fn parse(value: &str, what: &str) -> Result<Self, NameError> {
        let valid = !value.is_empty()
            && value.len() <= 249
            && value != "."
            && value != ".."
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if valid {
            Ok(Self(value.to_owned()))
        } else {
            Err(NameError {
                message: format!("`{value}` is not a valid Kafka topic name ({what})"),
                help: "Kafka topics use letters, digits, `.`, `_` and `-`, at most 249",
            })
        }
    }
}

impl TableName {
    /// `value` as a table name.
    pub fn parse(value: &str) -> Result<Self, NameError> {
        let valid = !value.is_empty()
            && value.len() <= 63
            && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !value.starts_with(|c: char| c.is_ascii_digit());
        if valid {
            Ok(Self(value.to_owned()))
        } else {
            Err(NameError {
                message: format!("`{value}` is not a table name weir accepts"),
                help: "use letters, digits and `_`, at most 63, not starting with a digit",
            })
        }
    }
}

impl ColumnName {
    /// `value` as a column name.
    pub fn parse(value: &str) -> Result<Self, NameError> {
        if !value.is_empty() && value.len() <= 63 && !value.contains('\0') {
            Ok(Self(value.to_owned()))
        } else {
            Err(NameError {
                message: format!(
                    "`{}` is not a column name PostgreSQL accepts",
                    value.escape_debug()
                ),
                help: "name a column of 1 to 63 bytes, without NUL",
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_take_what_labels_and_topics_can_hold() {
        for good in ["demo", "session-stats", "a", "x_1", &"a".repeat(64)] {
            assert_eq!(Name::parse(good, "stage").unwrap().as_str(), good);
        }
        for bad in ["", "Demo", "1st", "-x", "has space", "é", &"a".repeat(65)] {
            let error = Name::parse(bad, "stage").unwrap_err();
            assert_eq!(error.message, format!("`{bad}` is not a valid stage name"));
        }
    }

    #[test]
    fn topics_follow_kafkas_rule() {
        for good in ["ecommerce.events", "a-b_c", "T1", &"t".repeat(249)] {
            assert!(TopicName::parse(good, "sink topic").is_ok(), "{good}");
        }
        for bad in ["", ".", "..", "a b", "a/b", "é", &"t".repeat(250)] {
            assert!(TopicName::parse(bad, "sink topic").is_err(), "{bad}");
        }
    }

    #[test]
    fn tables_never_need_quoting_to_be_safe() {
        for good in ["sessions", "Session_2", "_x", &"t".repeat(63)] {
            assert!(TableName::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "2x",
            "a-b",
            "sessions; DROP TABLE users",
            "a\"b",
            &"t".repeat(64),
        ] {
            assert!(TableName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn columns_take_any_quotable_identifier() {
        for good in ["SESSION_ID", "a b", "\"quoted\"", &"c".repeat(63)] {
            assert!(ColumnName::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "a\0b", &"c".repeat(64)] {
            assert!(ColumnName::parse(bad).is_err(), "{bad:?}");
        }
    }
}
