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
        let what = format!("registering under `{subject}`");
        let request = self
            .http
            .post(format!("{}/subjects/{subject}/versions", self.url));
        let Some(Registered { id }) = self.ask(with_schema(request, schema), &what).await? else {
            return Err(self.refused(&what, reqwest::StatusCode::NOT_FOUND, String::new()));
        };
        self.ids
            .lock()
            .expect("registry cache")
            .insert(cache_key, id);
        Ok(id)
    }

    /// Whether the registry's compatibility rules for `subject` accept
    /// `schema` as its next version (a subject with no version accepts
    /// anything). An unparsable or invalid schema is refused.
    pub async fn is_compatible(&self, subject: &str, schema: &str) -> Result<bool, RegistryError> {
        #[derive(Deserialize)]
        struct Answer {
            is_compatible: bool,
        }
        let request = self.http.post(format!(
            "{}/compatibility/subjects/{subject}/versions/latest",
            self.url
        ));
        let what = format!("checking compatibility under `{subject}`");
        let answer: Option<Answer> = self.ask(with_schema(request, schema), &what).await?;
        Ok(answer.is_none_or(|answer| answer.is_compatible))
    }

    /// The schema registered as `id` (`GET /schemas/ids/{id}`), with its
    /// type; `Ok(None)` when the registry has no schema by that id.
    pub async fn schema_by_id(&self, id: u32) -> Result<Option<SchemaById>, RegistryError> {
        let request = self.http.get(format!("{}/schemas/ids/{id}", self.url));
        self.ask(request, &format!("fetching schema {id}")).await
    }

    /// Sends `request` (with weir's credentials) and reads its JSON answer;
    /// `Ok(None)` for a 404. No answer, or a server error, is
    /// [`RegistryError::Unreachable`] (worth trying again); any other
    /// refusal or an unexpected answer is [`RegistryError::Http`]. `what`
    /// names the request in errors.
    async fn ask<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<Option<T>, RegistryError> {
        let unreachable = |message: String| RegistryError::Unreachable {
            url: self.url.clone(),
            message,
        };
        let response = self
            .access
            .authorize(request)
            .send()
            .await
            .map_err(|e| unreachable(format!("{what}: no answer: {}", e.without_url())))?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            if status.is_server_error() {
                return Err(unreachable(format!("{what} failed ({status}): {body}")));
            }
            return Err(self.refused(what, status, body));
        }
        let answer = response.json().await.map_err(|e| RegistryError::Http {
            url: self.url.clone(),
            message: format!("{what}: unexpected answer: {e}"),
        })?;
        Ok(Some(answer))
    }

    /// The registry refused request `what`.
    fn refused(&self, what: &str, status: reqwest::StatusCode, body: String) -> RegistryError {
        RegistryError::Http {
            url: self.url.clone(),
            message: format!("{what} was refused ({status}): {body}"),
        }
    }
}

/// `request` carrying `schema` as the registry takes one.
fn with_schema(request: reqwest::RequestBuilder, schema: &str) -> reqwest::RequestBuilder {
    request
        .header("Content-Type", "application/vnd.schemaregistry.v1+json")
        .json(&serde_json::json!({ "schema": schema }))
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
