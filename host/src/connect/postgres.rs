//! How weir reaches PostgreSQL: a libpq-style URL (`sslmode`, `sslrootcert`,
//! `sslcert` and `sslkey` as query parameters), its password given apart.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgSslMode};

use super::SettingsError;
use super::secret::Secret;

/// The local stack's database.
pub const LOCAL_URL: &str = "postgres://weir:weir@127.0.0.1:5432/weir";

/// A PostgreSQL database weir connects to. Its `Debug` and
/// [`Database::describe`] never show the password.
#[derive(Clone)]
pub struct Database {
    options: PgConnectOptions,
    shown: String,
}

impl Database {
    /// The database at `url`, with `password` over any the URL holds.
    pub fn new(url: &str, password: Option<Secret>) -> Result<Self, SettingsError> {
        let shown = redacted(url);
        let mut options = PgConnectOptions::from_str(url).map_err(|error| {
            SettingsError::Invalid(format!("the database URL {shown}: {error}"))
        })?;
        if let Some(password) = password {
            options = options.password(password.expose());
        }
        Ok(Self { options, shown })
    }

    /// The local stack's database.
    pub fn local() -> Self {
        Self::new(LOCAL_URL, None).expect("the local URL parses")
    }

    /// Options for a connection or a pool.
    pub fn options(&self) -> PgConnectOptions {
        self.options.clone()
    }

    /// The URL without its password, and how TLS is used.
    pub fn describe(&self) -> String {
        let tls = match self.options.get_ssl_mode() {
            PgSslMode::Disable => "no TLS",
            PgSslMode::Allow | PgSslMode::Prefer => "TLS when offered",
            PgSslMode::Require => "TLS, certificate not checked",
            PgSslMode::VerifyCa => "TLS, certificate checked",
            PgSslMode::VerifyFull => "TLS, certificate and host checked",
        };
        format!("{} ({tls})", self.shown)
    }
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// `url` with any password replaced by `***` (an unparsable URL is shown
/// as its scheme alone: it may hold a password where a parser cannot see it).
pub fn redacted(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            }
            parsed.to_string()
        }
        Err(_) => format!(
            "{}://(unparsable)",
            url.split("://").next().unwrap_or_default()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_never_shown() {
        let database = Database::new(
            "postgres://weir:hunter2@db.internal:5432/weir?sslmode=verify-full&sslrootcert=/ca.pem",
            None,
        )
        .unwrap();
        let shown = format!("{database:?} {}", database.describe());
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("db.internal"), "{shown}");
        assert!(shown.contains("certificate and host checked"), "{shown}");
        assert!(matches!(
            database.options().get_ssl_mode(),
            PgSslMode::VerifyFull
        ));
        let broken = Database::new("postgres://weir:hunter2@host:notaport/weir", None)
            .unwrap_err()
            .to_string();
        assert!(!broken.contains("hunter2"), "{broken}");
    }

    #[test]
    fn a_password_given_apart_is_not_shown_either() {
        let database =
            Database::new("postgres://weir@127.0.0.1/weir", Some(Secret::new("apart"))).unwrap();
        assert!(!format!("{database:?} {}", database.describe()).contains("apart"));
    }
}
