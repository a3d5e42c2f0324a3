//! Secrets: passwords, keys and tokens weir holds but never prints, and the
//! references that let a settings file name a secret without containing it.

use std::path::{Path, PathBuf};

/// A value weir never prints: its `Debug` and `Display` show `<redacted>`.
/// Only [`Secret::expose`] gives the value, to the client that sends it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the client that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The first line of the file at `path` (a secret mounted as a file, as
    /// Kubernetes and Docker do), without its line ending.
    pub fn from_file(path: &Path) -> Result<Self, SecretError> {
        let text = std::fs::read_to_string(path).map_err(|source| SecretError::File {
            path: path.to_owned(),
            source,
        })?;
        Ok(Self(text.lines().next().unwrap_or_default().to_owned()))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A secret that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// `${env:NAME}` names an unset variable.
    #[error("`${{env:{0}}}`: the environment variable {0} is not set")]
    Env(String),
    /// A secret file cannot be read.
    #[error("cannot read the secret file {}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `${...}` with a provider weir does not have.
    #[error("`{0}`: weir reads `${{env:NAME}}` and `${{file:PATH}}` references, nothing else")]
    Provider(String),
}

/// A setting's value as written, its references resolved: `${env:NAME}` is
/// the variable NAME, `${file:PATH}` the first line of the file PATH (the
/// syntax of Kafka's `EnvVarConfigProvider` and, for a whole file, its
/// `FileConfigProvider`); anything else is the value itself.
pub fn resolve(value: &str) -> Result<Secret, SecretError> {
    let Some(reference) = value
        .strip_prefix("${")
        .and_then(|rest| rest.strip_suffix('}'))
    else {
        return Ok(Secret::new(value));
    };
    if let Some(name) = reference.strip_prefix("env:") {
        return std::env::var(name)
            .map(Secret::new)
            .map_err(|_| SecretError::Env(name.to_owned()));
    }
    if let Some(path) = reference.strip_prefix("file:") {
        return Secret::from_file(Path::new(path));
    }
    Err(SecretError::Provider(value.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_prints_its_value() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret}"), "<redacted>");
        assert_eq!(format!("{secret:?}"), "<redacted>");
        assert_eq!(format!("{:?}", Some(&secret)), "Some(<redacted>)");
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test]
    fn references_read_the_environment_and_files() {
        let dir = std::env::temp_dir().join(format!("weir-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("password");
        std::fs::write(&file, "from-a-file\nsecond line ignored\n").unwrap();

        let read = resolve(&format!("${{file:{}}}", file.display())).unwrap();
        assert_eq!(read.expose(), "from-a-file");
        assert_eq!(resolve("plain value").unwrap().expose(), "plain value");
        // PATH is set in every test environment.
        let path = resolve("${env:PATH}").unwrap();
        assert_eq!(path.expose(), std::env::var("PATH").unwrap());

        let unset = resolve("${env:WEIR_TEST_SURELY_UNSET_VARIABLE}").unwrap_err();
        assert!(
            unset
                .to_string()
                .contains("WEIR_TEST_SURELY_UNSET_VARIABLE")
        );
        let missing = resolve(&format!("${{file:{}}}", dir.join("none").display()));
        assert!(matches!(missing, Err(SecretError::File { .. })));
        assert!(matches!(
            resolve("${vault:secret/kafka}"),
            Err(SecretError::Provider(_))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
