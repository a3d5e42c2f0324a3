//! How a sink fails, by what to do about it.

/// Any error a sink's library gives.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A sink failed; the variant says what to do.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The data itself is refused and would be refused again (too large,
    /// out of a column's range): retrying cannot help.
    #[error("{sink} refused the data: {source}")]
    Data {
        /// The sink.
        sink: String,
        /// Why.
        source: BoxError,
    },
    /// A service failed or did not answer (the broker, the database, the
    /// registry, a full disk): worth retrying with backoff.
    #[error("{sink}: {source}")]
    External {
        /// The sink.
        sink: String,
        /// Why.
        source: BoxError,
    },
    /// weir broke its own rules (a row that does not fit its checked
    /// schema, a shape never prepared): a bug, so the pipeline stops.
    #[error("{sink}: a bug in weir: {source}")]
    Internal {
        /// The sink.
        sink: String,
        /// What went wrong.
        source: BoxError,
    },
}

impl SinkError {
    /// Whether trying again may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::External { .. })
    }

    /// The sink it names.
    pub fn sink(&self) -> &str {
        match self {
            Self::Data { sink, .. } | Self::External { sink, .. } | Self::Internal { sink, .. } => {
                sink
            }
        }
    }

    /// An internal error of `sink` saying `what`.
    pub fn internal(sink: &str, what: impl Into<String>) -> Self {
        Self::Internal {
            sink: sink.to_owned(),
            source: what.into().into(),
        }
    }
}

impl SinkError {
    /// Kafka's `error` writing to `topic`: the broker refusing a record for
    /// what it is (too large, invalid) is data; the rest is external (an
    /// idempotent producer that gave up, a broker down, a timeout).
    pub fn from_kafka(sink: &str, topic: &str, error: rdkafka::error::KafkaError) -> Self {
        use rdkafka::error::{KafkaError, RDKafkaErrorCode as Code};
        let permanent = matches!(
            error,
            KafkaError::MessageProduction(
                Code::MessageSizeTooLarge
                    | Code::InvalidMessageSize
                    | Code::InvalidMessage
                    | Code::InvalidRecord
                    | Code::MessageBatchTooLarge
                    | Code::InvalidTimestamp
            )
        );
        let source = format!("topic `{topic}`: {error}").into();
        let sink = sink.to_owned();
        if permanent {
            Self::Data { sink, source }
        } else {
            Self::External { sink, source }
        }
    }
}
