//! A client of the Confluent schema registry REST API: registers a schema
//! under a subject once and remembers its id.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::Deserialize;

use crate::connect::RegistryAccess;

/// The registry refused or could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// No answer, or a server error: worth trying again later.
    #[error("schema registry at {url} is unreachable: {message}")]
    Unreachable {
        /// The registry URL.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The registry answered, but not as expected (a refusal, a bad answer).
    #[error("schema registry at {url}: {message}")]
    Http {
        /// The registry URL.
        url: String,
        /// What went wrong.
        message: String,
    },
}

/// Registers schemas and caches their ids (never one request per message).
pub struct RegistryClient {
    url: String,
    access: RegistryAccess,
    http: reqwest::Client,
    ids: Mutex<HashMap<(String, String), u32>>,
}

#[derive(Deserialize)]
struct Registered {
    id: u32,
}

impl RegistryClient {
    /// A client of `registry` (its URL, credentials, trusted CAs and
    /// timeouts: a registry that does not answer fails the call, retried
    /// or the swap refused, instead of holding a start, a swap or a rollback).
    pub fn new(registry: &RegistryAccess) -> Result<Self, RegistryError> {
        let http = registry.client().map_err(|error| RegistryError::Http {
            url: registry.url().to_owned(),
            message: format!("cannot make an HTTPS client: {}", error.without_url()),
        })?;
        Ok(Self {
            url: registry.url().to_owned(),
            access: registry.clone(),
            http,
            ids: Mutex::new(HashMap::new()),
        })
    }

    /// The id of `schema` under `subject`, registering it the first time
    /// (the registry answers with the existing id for a schema it knows).
    pub async fn register(&self, subject: &str, schema: &str) -> Result<u32, RegistryError> {
        let cache_key = (subject.to_owned(), schema.to_owned());
        if let Some(id) = self.ids.lock().expect("registry cache").get(&cache_key) {
            return Ok(*id);
        }
        let error = |message: String| RegistryError::Http {
            url: self.url.clone(),
            message,
        };
        let response = self
            .access
            .authorize(
                self.http
                    .post(format!("{}/subjects/{subject}/versions", self.url)),
            )
            .header("Content-Type", "application/vnd.schemaregistry.v1+json")
            .json(&serde_json::json!({ "schema": schema }))
            .send()
            .await
            .map_err(|e| RegistryError::Unreachable {
                url: self.url.clone(),
                message: format!("cannot register under `{subject}`: {}", e.without_url()),
            })?;
        let status = response.status();
        if status.is_server_error() {
            let body = response.text().await.unwrap_or_default();
            return Err(RegistryError::Unreachable {
                url: self.url.clone(),
                message: format!("registering under `{subject}` failed ({status}): {body}"),
            });
        }
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(error(format!(
                "registering under `{subject}` was refused ({status}): {body}"
            )));
        }
        let Registered { id } = response
            .json()
            .await
            .map_err(|e| error(format!("unexpected answer registering `{subject}`: {e}")))?;
        self.ids
            .lock()
            .expect("registry cache")
            .insert(cache_key, id);
        Ok(id)
    }

    /// Whether the registry's compatibility rules for `subject` accept
    /// `schema` as its next version (a subject with no version accepts anything).
    pub async fn is_compatible(&self, subject: &str, schema: &str) -> Result<bool, RegistryError> {
        let unreachable = |message: String| RegistryError::Unreachable {
            url: self.url.clone(),
            message,
        };
        let response = self
            .access
            .authorize(self.http.post(format!(
                "{}/compatibility/subjects/{subject}/versions/latest",
                self.url
            )))
            .header("Content-Type", "application/vnd.schemaregistry.v1+json")
            .json(&serde_json::json!({ "schema": schema }))
            .send()
            .await
            .map_err(|e| {
                unreachable(format!(
                    "cannot check compatibility under `{subject}`: {}",
                    e.without_url()
                ))
            })?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(true);
        }
        if status.is_server_error() {
            let body = response.text().await.unwrap_or_default();
            return Err(unreachable(format!(
                "checking compatibility under `{subject}` failed ({status}): {body}"
            )));
        }
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            // An unparsable or invalid schema is refused with a client error.
            return Err(RegistryError::Http {
                url: self.url.clone(),
                message: format!("the schema was refused under `{subject}` ({status}): {body}"),
            });
        }
        #[derive(Deserialize)]
        struct Answer {
            is_compatible: bool,
        }
        let Answer { is_compatible } = response.json().await.map_err(|e| RegistryError::Http {
            url: self.url.clone(),
            message: format!("unexpected answer checking `{subject}`: {e}"),
        })?;
        Ok(is_compatible)
    }

    /// The schema registered as `id` (`GET /schemas/ids/{id}`), with its
    /// type; `Ok(None)` when the registry has no schema by that id.
    pub async fn schema_by_id(&self, id: u32) -> Result<Option<SchemaById>, RegistryError> {
        let unreachable = |message: String| RegistryError::Unreachable {
            url: self.url.clone(),
            message,
        };
        let response = self
            .access
            .authorize(self.http.get(format!("{}/schemas/ids/{id}", self.url)))
            .send()
            .await
            .map_err(|e| unreachable(format!("cannot fetch schema {id}: {}", e.without_url())))?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if status.is_server_error() {
            let body = response.text().await.unwrap_or_default();
            return Err(unreachable(format!(
                "fetching schema {id} failed ({status}): {body}"
            )));
        }
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(RegistryError::Http {
                url: self.url.clone(),
                message: format!("fetching schema {id} was refused ({status}): {body}"),
            });
        }
        let found: SchemaById = response.json().await.map_err(|e| RegistryError::Http {
            url: self.url.clone(),
            message: format!("unexpected answer fetching schema {id}: {e}"),
        })?;
        Ok(Some(found))
    }
}

/// A schema as the registry holds it under an id.
#[derive(Debug, Clone, Deserialize)]
pub struct SchemaById {
    /// Its text.
    pub schema: String,
    /// `AVRO` (the registry leaves it out for Avro), `JSON` or `PROTOBUF`.
    #[serde(rename = "schemaType", default = "avro")]
    pub schema_type: String,
}

fn avro() -> String {
    "AVRO".to_owned()
}
