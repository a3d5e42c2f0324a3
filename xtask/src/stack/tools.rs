//! The machine's tools the stack needs: Java, Maven, tar; running them with
//! errors that say what to install.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{Context, Result, bail};

/// The oldest Java that runs both Kafka 4.3 and the schema registry.
const MIN_JAVA: u32 = 17;

/// The `java` to run: `$JAVA_HOME/bin/java` when set, else the one on `PATH`.
pub fn java() -> Result<PathBuf> {
    let java = match std::env::var_os("JAVA_HOME") {
        Some(home) => Path::new(&home).join("bin/java"),
        None => PathBuf::from("java"),
    };
    let output = Command::new(&java)
        .arg("-version")
        .output()
        .map_err(|error| {
            anyhow::anyhow!(
                "Java is missing ({} could not be run: {error}). Install a JDK {MIN_JAVA} or newer \
             (on Debian: `apt-get install openjdk-17-jre-headless`) or set JAVA_HOME.",
                java.display()
            )
        })?;
    let banner = String::from_utf8_lossy(&output.stderr);
    let major = java_major_version(&banner)
        .with_context(|| format!("cannot read the Java version from: {banner}"))?;
    if major < MIN_JAVA {
        bail!(
            "{} is Java {major}; Kafka 4.3 needs Java {MIN_JAVA} or newer. Install a newer JDK \
             or point JAVA_HOME at one.",
            java.display()
        );
    }
    Ok(java)
}

/// `openjdk version "17.0.15" 2025-04-15` -> 17; `java version "1.8.0_392"` -> 8.
fn java_major_version(banner: &str) -> Option<u32> {
    let quoted = banner.split('"').nth(1)?;
    let mut parts = quoted.split(['.', '-', '+']);
    let first: u32 = parts.next()?.parse().ok()?;
    if first == 1 {
        parts.next()?.parse().ok()
    } else {
        Some(first)
    }
}

/// Checks that Maven is installed; the stack's Java artifacts come through it.
pub fn ensure_maven() -> Result<()> {
    match Command::new("mvn").arg("--version").output() {
        Ok(output) if output.status.success() => Ok(()),
        _ => bail!(
            "Maven is missing: `mvn --version` did not run. The stack fetches Kafka and the \
             schema registry from Maven Central with it; install it (on Debian: \
             `apt-get install maven`)."
        ),
    }
}

/// Runs `command` to completion; on failure the error shows its output.
pub fn run(command: &mut Command, what: &str) -> Result<Output> {
    let output = command
        .output()
        .with_context(|| format!("cannot run {:?} ({what})", command.get_program()))?;
    if !output.status.success() {
        bail!(
            "{what} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(output)
}

/// A Maven command in batch mode that prints only what matters.
pub fn maven() -> Command {
    let mut command = Command::new("mvn");
    command.args(["--batch-mode", "--quiet", "--no-transfer-progress"]);
    command
}

#[cfg(test)]
mod tests {
    use super::java_major_version;

    #[test]
    fn reads_java_major_versions() {
        let modern = "openjdk version \"17.0.15\" 2025-04-15\nOpenJDK Runtime";
        assert_eq!(java_major_version(modern), Some(17));
        assert_eq!(
            java_major_version("openjdk version \"25\" 2025-09-16"),
            Some(25)
        );
        assert_eq!(java_major_version("java version \"1.8.0_392\""), Some(8));
        assert_eq!(java_major_version("no version here"), None);
    }
}
