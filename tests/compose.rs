//! The Docker path, checked without Docker: `tests/compose-check` loads
//! `docker-compose.yml` with compose-go, the loader `docker compose` itself
//! runs (schema, interpolation, paths), and checks that everything the stack
//! takes from the repository is there: mounts, the Dockerfile and what it
//! copies, the pipelines and plugins the image runs, Prometheus' and
//! Grafana's files. Broken copies of the files must then be refused, each for
//! its own reason, so a pass means something.
//!
//! Needs Go (the module cache is enough once the checker's modules are in it).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The repository's root.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("the repository exists")
}

/// The checker, built once per run of this file: each test runs it several
/// times, and `go run` would link it again each time. `go -C` because the
/// checker is a module of its own, not part of one at the repository's root;
/// no version-control stamp, which needs git to read the checkout and tells
/// a test nothing.
fn checker() -> &'static Path {
    static CHECKER: OnceLock<PathBuf> = OnceLock::new();
    CHECKER.get_or_init(|| {
        let binary = Path::new(env!("CARGO_TARGET_TMPDIR")).join("compose-check");
        let output = Command::new("go")
            .args([
                "-C",
                "tests/compose-check",
                "build",
                "-buildvcs=false",
                "-o",
            ])
            .arg(&binary)
            .arg(".")
            .current_dir(repo())
            .output()
            .unwrap_or_else(|error| {
                panic!("cannot run `go` ({error}): the Docker path's check needs Go 1.24 or newer")
            });
        assert!(
            output.status.success(),
            "building tests/compose-check failed:\n{}",
            text(&output)
        );
        binary
    })
}

/// Runs the checker on `files`, relative paths resolving against the
/// repository as for the real compose file.
fn check(files: &[&Path]) -> Output {
    Command::new(checker())
        .arg("--project-directory")
        .arg(repo())
        .args(files)
        .current_dir(repo())
        .output()
        .expect("the checker runs")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A folder of its own under Cargo's temporary folder, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("compose-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("a scratch folder");
        Self(dir)
    }

    fn write(&self, name: &str, content: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, content).expect("a scratch file");
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `original` with `from` replaced by `to`, once; `from` must be there, or
/// the broken copy would silently be the original.
fn replaced(original: &str, from: &str, to: &str) -> String {
    assert!(
        original.contains(from),
        "the text to break is gone: {from:?}; update this test to the file's new content"
    );
    original.replacen(from, to, 1)
}

#[test]
fn the_compose_file_and_the_dockerfile_pass_the_static_check() {
    let output = check(&[&repo().join("docker-compose.yml")]);
    println!("{}", text(&output));
    assert!(
        output.status.success(),
        "docker-compose.yml fails its static check:\n{}",
        text(&output)
    );
}

#[test]
fn broken_copies_of_the_compose_file_are_refused() {
    let compose =
        std::fs::read_to_string(repo().join("docker-compose.yml")).expect("the compose file");
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).expect("the Dockerfile");
    let prometheus = std::fs::read_to_string(repo().join("deploy/prometheus.yml"))
        .expect("Prometheus' configuration");
    let scratch = Scratch::new();

    // Files the broken compose copies point at.
    let bad_dockerfile = scratch.write(
        "Dockerfile",
        &replaced(
            &dockerfile,
            "COPY pipelines pipelines",
            "COPY pipeline pipelines",
        ),
    );
    let bad_prometheus = scratch.write(
        "prometheus.yml",
        &replaced(&prometheus, "\"weir:7878\"", "\"weir-host:7878\""),
    );

    // (what is broken, the text replaced, its replacement, what the checker must say)
    let cases = [
        (
            "a bind mount of a folder that does not exist",
            "./grafana/dashboards:/var/lib/grafana/dashboards:ro".to_owned(),
            "./grafana/no-such-folder:/var/lib/grafana/dashboards:ro".to_owned(),
            "grafana/no-such-folder does not exist",
        ),
        (
            "waiting for a one-shot service to be healthy",
            "      topics:\n        condition: service_completed_successfully".to_owned(),
            "      topics:\n        condition: service_healthy".to_owned(),
            "waits for topics to be healthy, but topics has no healthcheck",
        ),
        (
            "a Dockerfile that does not exist",
            "dockerfile: Dockerfile".to_owned(),
            "dockerfile: Dockerfile.gone".to_owned(),
            "Dockerfile.gone does not exist",
        ),
        (
            "a Dockerfile copying a path the repository does not have",
            "dockerfile: Dockerfile".to_owned(),
            format!("dockerfile: {}", bad_dockerfile.display()),
            "COPY pipeline: pipeline does not exist in the build context",
        ),
        (
            "Grafana's port not published",
            "\"127.0.0.1:3000:3000\"".to_owned(),
            "\"127.0.0.1:3300:3000\"".to_owned(),
            "no service publishes port 3000",
        ),
        (
            "weir running a pipeline file that does not exist",
            "\"pipelines/activity.toml\"]".to_owned(),
            "\"pipelines/activities.toml\"]".to_owned(),
            "pipelines/activities.toml does not exist",
        ),
        (
            "Prometheus scraping a host that is no service",
            "./deploy/prometheus.yml:/etc/prometheus/prometheus.yml:ro".to_owned(),
            format!(
                "{}:/etc/prometheus/prometheus.yml:ro",
                bad_prometheus.display()
            ),
            "weir-host is not a service of the stack",
        ),
        (
            "a key the Compose schema does not know",
            "    stop_grace_period: 60s\n".to_owned(),
            "    stop_grace_period: 60s\n    stop_gracefully: true\n".to_owned(),
            "stop_gracefully",
        ),
    ];
    let mut failures = Vec::new();
    for (index, (what, from, to, expected)) in cases.iter().enumerate() {
        let broken = scratch.write(
            &format!("broken-{index}.yml"),
            &replaced(&compose, from, to),
        );
        let output = check(&[&broken]);
        let said = text(&output);
        if output.status.success() {
            failures.push(format!("{what}: accepted\n{said}"));
        } else if !said.contains(expected) {
            failures.push(format!(
                "{what}: refused, but without saying {expected:?}:\n{said}"
            ));
        } else {
            println!("refused, as it must be: {what}");
        }
    }
    assert!(
        failures.is_empty(),
        "broken compose files the check did not refuse as it should:\n\n{}",
        failures.join("\n")
    );
}
