//! Kafka client settings as users of Kafka's tools write them: a properties
//! file (`security.protocol=SASL_SSL`, `sasl.mechanism=SCRAM-SHA-512`, ...)
//! and `WEIR_KAFKA_<NAME>` environment variables, applied to every client
//! weir makes (the source, the sinks, the changelog, the dead letters).

use std::path::Path;

use super::SettingsError;
use super::secret::{Secret, resolve};
use crate::kafka::{Connection, weirs_own};

/// The environment variable naming the properties file; every other
/// `WEIR_KAFKA_<NAME>` variable sets one property.
pub const CONFIG_VAR: &str = "WEIR_KAFKA_CONFIG";
const PROPERTY_PREFIX: &str = "WEIR_KAFKA_";

/// The bootstrap servers when nothing names any (the local stack's broker).
pub const LOCAL_BOOTSTRAP: &str = "127.0.0.1:9092";

/// The cluster the settings describe: the properties of `file`, then those
/// of `env` (`WEIR_KAFKA_SASL_PASSWORD` is `sasl.password`), then
/// `bootstrap` when given; values may be `${env:NAME}` or `${file:PATH}`
/// references. A property weir sets itself (its guarantees rest on it) is
/// refused with the reason.
pub fn connection(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
    bootstrap: Option<&str>,
) -> Result<Connection, SettingsError> {
    let mut properties: Vec<(String, String, String)> = Vec::new();
    if let Some(file) = file {
        let origin = file.display().to_string();
        let text = std::fs::File::open(file).map_err(|source| SettingsError::Read {
            what: "the Kafka properties file",
            path: file.to_owned(),
            source,
        })?;
        let read = java_properties::read(std::io::BufReader::new(text)).map_err(|error| {
            SettingsError::Invalid(format!("the Kafka properties file {origin}: {error}"))
        })?;
        let mut read: Vec<_> = read.into_iter().collect();
        read.sort();
        for (name, value) in read {
            properties.push((name, value, origin.clone()));
        }
    }
    let mut from_env: Vec<_> = env
        .into_iter()
        .filter(|(name, _)| name != CONFIG_VAR)
        .filter_map(|(name, value)| {
            let property = name.strip_prefix(PROPERTY_PREFIX)?;
            Some((property.to_lowercase().replace('_', "."), value, name))
        })
        .collect();
    from_env.sort();
    properties.extend(from_env);

    let mut bootstrap = bootstrap.map(str::to_owned);
    let mut resolved: Vec<(String, Secret)> = Vec::new();
    for (name, value, origin) in properties {
        if let Some(reason) = weirs_own(&name) {
            return Err(SettingsError::Invalid(format!(
                "Kafka property `{name}` (from {origin}) is weir's own: {reason}"
            )));
        }
        let value = resolve(&value).map_err(|error| {
            SettingsError::Invalid(format!("Kafka property `{name}` (from {origin}): {error}"))
        })?;
        if name == "bootstrap.servers" {
            bootstrap.get_or_insert_with(|| value.expose().to_owned());
            continue;
        }
        resolved.retain(|(existing, _)| *existing != name);
        resolved.push((name, value));
    }
    let bootstrap = bootstrap.unwrap_or_else(|| LOCAL_BOOTSTRAP.to_owned());
    Ok(Connection::new(bootstrap).with_properties(resolved))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, text: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("weir-kafka-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    }

    #[test]
    fn a_properties_file_then_the_environment_then_the_flag() {
        let path = file(
            "client.properties",
            "# a comment\nbootstrap.servers=broker-1:9093\nsecurity.protocol=SASL_SSL\n\
             sasl.mechanism=SCRAM-SHA-512\nsasl.username=weir\nsasl.password=from-file\n",
        );
        let kafka = connection(
            Some(&path),
            env(&[
                ("WEIR_KAFKA_SASL_PASSWORD", "from-env"),
                ("WEIR_KAFKA_CLIENT_RACK", "eu-west-1a"),
                ("WEIR_KAFKA_CONFIG", "/ignored"),
                ("HOME", "/root"),
            ]),
            None,
        )
        .unwrap();
        assert_eq!(kafka.bootstrap(), "broker-1:9093");
        let admin = kafka.admin();
        assert_eq!(admin.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(admin.get("sasl.password"), Some("from-env"));
        assert_eq!(admin.get("client.rack"), Some("eu-west-1a"));
        assert_eq!(admin.get("config"), None);

        let flagged = connection(Some(&path), env(&[]), Some("other:9092")).unwrap();
        assert_eq!(flagged.bootstrap(), "other:9092");
        let neither = connection(None, env(&[]), None).unwrap();
        assert_eq!(neither.bootstrap(), LOCAL_BOOTSTRAP);
    }

    #[test]
    fn secrets_are_read_from_references_and_never_printed() {
        let secret = file("password", "s3cret-from-a-file\n");
        let path = file(
            "referencing.properties",
            &format!("sasl.password=${{file:{}}}\n", secret.display()),
        );
        let kafka = connection(Some(&path), env(&[]), None).unwrap();
        assert_eq!(
            kafka
                .producer(crate::kafka::Producing::Flushes)
                .get("sasl.password"),
            Some("s3cret-from-a-file")
        );
        assert!(!format!("{kafka:?}").contains("s3cret"), "{kafka:?}");
    }

    #[test]
    fn weirs_own_properties_are_refused_with_the_reason() {
        let error = connection(
            None,
            env(&[("WEIR_KAFKA_ENABLE_AUTO_COMMIT", "true")]),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("enable.auto.commit"), "{error}");
        assert!(error.contains("WEIR_KAFKA_ENABLE_AUTO_COMMIT"), "{error}");
        let path = file("bad.properties", "sasl.password=${env:WEIR_SURELY_UNSET}\n");
        let error = connection(Some(&path), env(&[]), None)
            .unwrap_err()
            .to_string();
        assert!(error.contains("WEIR_SURELY_UNSET"), "{error}");
    }
}
