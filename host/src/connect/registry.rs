//! How weir reaches the schema registry: its URL (HTTP or HTTPS), a CA to
//! trust beside the system's, basic authentication, and timeouts.

use std::path::Path;
use std::time::Duration;

use super::SettingsError;
use super::postgres::redacted;
use super::secret::Secret;

/// The local stack's registry (Apicurio's Confluent-compatible API).
pub const LOCAL_URL: &str = "http://127.0.0.1:8081/apis/ccompat/v7";

/// A connection attempt gives up after this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A whole call (connect, send, answer) gives up after this long, so a
/// registry that does not answer fails a start, a swap or a rollback
/// instead of holding it.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// The registry weir registers its output schemas with. Its `Debug` never
/// shows the password.
#[derive(Clone)]
pub struct RegistryAccess {
    url: String,
    user: Option<String>,
    password: Option<Secret>,
    cas: Vec<reqwest::Certificate>,
}

impl RegistryAccess {
    /// The registry at `url`; a user and password in the URL are taken out
    /// of it and used as basic authentication, as are `user` and `password`
    /// (which win); `ca` is a PEM file of CAs trusted beside the system's.
    pub fn new(
        url: &str,
        user: Option<String>,
        password: Option<Secret>,
        ca: Option<&Path>,
    ) -> Result<Self, SettingsError> {
        let mut parsed = reqwest::Url::parse(url).map_err(|error| {
            SettingsError::Invalid(format!("the registry URL {}: {error}", redacted(url)))
        })?;
        let from_url_user = Some(parsed.username().to_owned()).filter(|user| !user.is_empty());
        let from_url_password = parsed.password().map(Secret::new);
        let _ = parsed.set_username("");
        let _ = parsed.set_password(None);
        let cas = match ca {
            None => Vec::new(),
            Some(path) => read_cas(path)?,
        };
        Ok(Self {
            url: parsed.as_str().trim_end_matches('/').to_owned(),
            user: user.or(from_url_user),
            password: password.or(from_url_password),
            cas,
        })
    }

    /// The local stack's registry.
    pub fn local() -> Self {
        Self::new(LOCAL_URL, None, None, None).expect("the local URL parses")
    }

    /// The base URL, without credentials.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The user basic authentication names, if any.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// An HTTP client with the timeouts and the trusted CAs.
    pub fn client(&self) -> Result<reqwest::Client, reqwest::Error> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(CALL_TIMEOUT);
        for ca in &self.cas {
            builder = builder.add_root_certificate(ca.clone());
        }
        builder.build()
    }

    /// `request` with the credentials, if any.
    pub fn authorize(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.user {
            Some(user) => request.basic_auth(user, self.password.as_ref().map(Secret::expose)),
            None => request,
        }
    }
}

/// The certificates of the PEM file at `path` (at least one).
fn read_cas(path: &Path) -> Result<Vec<reqwest::Certificate>, SettingsError> {
    let pem = std::fs::read(path).map_err(|source| SettingsError::Read {
        what: "the registry's CA file",
        path: path.to_owned(),
        source,
    })?;
    let invalid = |why: String| {
        SettingsError::Invalid(format!("the registry's CA file {} {why}", path.display()))
    };
    let cas = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|error| invalid(format!("is not a PEM certificate: {error}")))?;
    if cas.is_empty() {
        return Err(invalid("holds no PEM certificate".to_owned()));
    }
    Ok(cas)
}

impl std::fmt::Debug for RegistryAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryAccess")
            .field("url", &self.url)
            .field("user", &self.user)
            .field("password", &self.password)
            .field("cas", &self.cas.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_the_url_move_out_of_it() {
        let registry = RegistryAccess::new(
            "https://weir:hunter2@registry:8443/apis/ccompat/v7/",
            None,
            None,
            None,
        )
        .unwrap();
        assert_eq!(registry.url(), "https://registry:8443/apis/ccompat/v7");
        assert_eq!(registry.user(), Some("weir"));
        assert!(!format!("{registry:?}").contains("hunter2"));

        let given = RegistryAccess::new(
            "https://weir:hunter2@registry:8443",
            Some("other".into()),
            Some(Secret::new("x")),
            None,
        )
        .unwrap();
        assert_eq!(given.user(), Some("other"));
    }

    #[test]
    fn a_ca_file_that_is_not_pem_is_refused() {
        let path = std::env::temp_dir().join(format!("weir-not-a-ca-{}", std::process::id()));
        std::fs::write(&path, "not a certificate").unwrap();
        let error = RegistryAccess::new(LOCAL_URL, None, None, Some(&path)).unwrap_err();
        assert!(error.to_string().contains("no PEM certificate"), "{error}");
        std::fs::remove_file(&path).unwrap();
        let missing = RegistryAccess::new(LOCAL_URL, None, None, Some(&path)).unwrap_err();
        assert!(matches!(missing, SettingsError::Read { .. }), "{missing}");
    }
}
