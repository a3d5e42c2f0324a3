//! One question to each service weir needs, asked at start: wrong
//! credentials or an untrusted certificate then stop weir with one error
//! naming the service and the setting to fix, instead of a retry loop.
//! A service that does not answer at all is not an error here: starting
//! waits for it, as it always has.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use sqlx::Connection as _;

use super::{Database, RegistryAccess, Services};
use crate::kafka::Connection;

/// How long each service gets to answer the question.
const PATIENCE: Duration = Duration::from_secs(10);

/// A service refused weir (credentials, certificate, settings).
#[derive(Debug, thiserror::Error)]
#[error("{service} refused weir: {message}. To fix: {fix}")]
pub struct AccessError {
    /// Kafka, PostgreSQL or the schema registry.
    pub service: &'static str,
    /// What it said.
    pub message: String,
    /// The setting to look at.
    pub fix: String,
}

/// Which services a process uses.
#[derive(Debug, Clone, Copy, Default)]
pub struct Needs {
    /// Kafka (every pipeline reads it).
    pub kafka: bool,
    /// PostgreSQL (a sink, or a lookup query).
    pub database: bool,
    /// The schema registry (the Kafka sink's Avro, an Avro source's schemas).
    pub registry: bool,
}

/// Asks each needed service a question with weir's credentials; an error
/// when one refuses them.
pub async fn check(services: &Services, needs: Needs) -> Result<(), AccessError> {
    if needs.kafka {
        let kafka = services.kafka.clone();
        tokio::task::spawn_blocking(move || check_kafka(&kafka))
            .await
            .map_err(|error| AccessError {
                service: "Kafka",
                message: format!("the check failed: {error}"),
                fix: "nothing: this is a bug in weir".to_owned(),
            })??;
    }
    if needs.database {
        check_database(&services.database).await?;
    }
    if needs.registry {
        check_registry(&services.registry).await?;
    }
    Ok(())
}

const KAFKA_SETTINGS: &str = "the Kafka settings (the file WEIR_KAFKA_CONFIG or --kafka-config names, \
                              and WEIR_KAFKA_* variables)";

/// Keeps the first authentication or TLS error librdkafka reports.
#[derive(Default)]
struct Refusals(Mutex<Option<(RDKafkaErrorCode, String)>>);

impl ClientContext for Refusals {
    fn error(&self, error: KafkaError, reason: &str) {
        if let Some(code @ (RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SSL)) =
            error.rdkafka_error_code()
        {
            let mut first = self.0.lock().unwrap_or_else(|poison| poison.into_inner());
            first.get_or_insert_with(|| (code, reason.to_owned()));
        }
    }
}

impl ConsumerContext for Refusals {}

/// Asks the cluster for its brokers until it answers, refuses, or
/// [`PATIENCE`] runs out.
pub fn check_kafka(kafka: &Connection) -> Result<(), AccessError> {
    let refused = |message: String, fix: &str| AccessError {
        service: "Kafka",
        message,
        fix: fix.to_owned(),
    };
    let client: BaseConsumer<Refusals> = kafka
        .reader(None)
        .create_with_context(Refusals::default())
        .map_err(|error| refused(error.to_string(), KAFKA_SETTINGS))?;
    let started = Instant::now();
    while started.elapsed() < PATIENCE {
        let answered = client
            .fetch_metadata(None, Duration::from_millis(500))
            .is_ok();
        // Serves librdkafka's events, which carries its errors to `Refusals`.
        let _ = client.poll(Duration::from_millis(100));
        if let Some((code, reason)) = client.context().0.lock().ok().and_then(|mut r| r.take()) {
            let fix = match code {
                RDKafkaErrorCode::SSL => format!(
                    "`ssl.ca.location` (the CA that signed the brokers' certificates), or \
                     `security.protocol` if the listener has no TLS, in {KAFKA_SETTINGS}"
                ),
                _ => format!(
                    "`sasl.mechanism`, `sasl.username` and `sasl.password` in {KAFKA_SETTINGS}"
                ),
            };
            return Err(refused(reason, &fix));
        }
        if answered {
            return Ok(());
        }
    }
    tracing::warn!(
        bootstrap = kafka.bootstrap(),
        "Kafka did not answer within {PATIENCE:?}; starting anyway, waiting for it."
    );
    Ok(())
}

/// Connects once; credentials and TLS problems are errors.
async fn check_database(database: &Database) -> Result<(), AccessError> {
    let refused = |message: String, fix: &str| AccessError {
        service: "PostgreSQL",
        message: format!("{}: {message}", database.describe()),
        fix: fix.to_owned(),
    };
    let options = database.options();
    let connecting = sqlx::PgConnection::connect_with(&options);
    let error = match tokio::time::timeout(PATIENCE, connecting).await {
        Ok(Ok(connection)) => {
            let _ = connection.close().await;
            return Ok(());
        }
        Ok(Err(error)) => error,
        Err(_) => return Ok(()),
    };
    match &error {
        sqlx::Error::Database(server) => match server.code().as_deref() {
            // invalid_password
            Some("28P01") => Err(refused(
                server.message().to_owned(),
                "the user of WEIR_DATABASE_URL (--database-url) and its password \
                 (WEIR_DATABASE_PASSWORD or --database-password-file)",
            )),
            // invalid_authorization_specification: pg_hba.conf refused (no TLS, wrong host or user)
            Some("28000") => Err(refused(
                server.message().to_owned(),
                "the user of WEIR_DATABASE_URL, and its `sslmode` (the server may require TLS)",
            )),
            _ => Ok(()),
        },
        // rustls reports a refused certificate as an I/O error of kind `InvalidData`.
        sqlx::Error::Tls(_) | sqlx::Error::Io(_) if is_tls_failure(&error) => Err(refused(
            format!("TLS failed: {error}"),
            "`sslrootcert` in WEIR_DATABASE_URL (the CA that signed the server's certificate) \
             and the host name in it (`verify-full` checks the certificate names it)",
        )),
        sqlx::Error::Configuration(setting) => Err(refused(
            setting.to_string(),
            "the parameters of WEIR_DATABASE_URL (--database-url)",
        )),
        _ => Ok(()),
    }
}

/// Lists the registry's subjects; a refusal of the credentials or of its
/// certificate is an error.
async fn check_registry(registry: &RegistryAccess) -> Result<(), AccessError> {
    let refused = |message: String, fix: &str| AccessError {
        service: "the schema registry",
        message: format!("{}: {message}", registry.url()),
        fix: fix.to_owned(),
    };
    let client = registry.client().map_err(|error| {
        refused(
            error.to_string(),
            "WEIR_REGISTRY_CA (--registry-ca), a PEM file of CAs",
        )
    })?;
    let request = registry.authorize(client.get(format!("{}/subjects", registry.url())));
    match request.send().await {
        Ok(response) => match response.status().as_u16() {
            401 | 403 => Err(refused(
                format!(
                    "{} for user {}",
                    response.status(),
                    registry
                        .user()
                        .map_or("(none given)".to_owned(), |u| format!("`{u}`"))
                ),
                "WEIR_REGISTRY_USER (--registry-user) and its password \
                 (WEIR_REGISTRY_PASSWORD or --registry-password-file)",
            )),
            _ => Ok(()),
        },
        Err(error) if is_tls_failure(&error) => Err(refused(
            format!("TLS failed: {}", chain(&error.without_url())),
            "WEIR_REGISTRY_CA (--registry-ca): the CA that signed the registry's certificate, \
             and the host name of WEIR_REGISTRY_URL, which the certificate must name",
        )),
        Err(_) => Ok(()),
    }
}

/// True when `error` failed in the TLS handshake: rustls reports a refused
/// certificate as an I/O error of kind `InvalidData`, which the HTTP and
/// database clients wrap in errors of their own (sqlx's own TLS errors
/// count too).
fn is_tls_failure(error: &(dyn std::error::Error + 'static)) -> bool {
    if matches!(
        error.downcast_ref::<sqlx::Error>(),
        Some(sqlx::Error::Tls(_))
    ) {
        return true;
    }
    if let Some(io) = error.downcast_ref::<std::io::Error>() {
        if io.kind() == std::io::ErrorKind::InvalidData {
            return true;
        }
        // An I/O error's `source` skips the error it wraps: look inside.
        if let Some(inner) = io.get_ref() {
            return is_tls_failure(inner);
        }
    }
    error.source().is_some_and(is_tls_failure)
}

/// `error` and its causes on one line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(current) = source {
        text.push_str(": ");
        text.push_str(&current.to_string());
        source = current.source();
    }
    text
}
