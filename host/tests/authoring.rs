//! The plugin author's tools from an empty folder: `weir plugin new` in
//! every language and world, then `weir plugin build`, `weir plugin test`
//! (which compares with the template's expected output) and `weir plugin
//! inspect`, through the real `weir` binary.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Instant;

fn weir(dir: &Path, args: &[&str]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("weir runs");
    assert!(
        output.status.success(),
        "`weir {}` failed in {}:\n{}",
        args.join(" "),
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn scaffold_builds_and_passes_its_test(lang: &str, world: &str) {
    let empty =
        std::env::temp_dir().join(format!("weir-new-{lang}-{world}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&empty);
    std::fs::create_dir_all(&empty).unwrap();
    let name = format!("my-first-{world}");
    let started = Instant::now();
    weir(
        &empty,
        &["plugin", "new", &name, "--lang", lang, "--world", world],
    );
    let dir = empty.join(&name);
    weir(&dir, &["plugin", "build"]);
    let component = dir.join("target").join(format!("{name}.wasm"));
    assert!(component.is_file(), "{} was built", component.display());
    let built = started.elapsed();

    // Its own test: the template's input, compared with its expected output.
    let test = weir(&dir, &["plugin", "test"]);
    let stderr = String::from_utf8_lossy(&test.stderr);
    assert!(stderr.contains("The output equals"), "{stderr}");
    assert!(
        stderr.contains("; 1 dead letters"),
        "the bad event is refused: {stderr}"
    );

    // The comparison is real: a wrong expectation fails the test.
    let expected = dir.join("test/expected.jsonl");
    let text = std::fs::read_to_string(&expected).unwrap();
    std::fs::write(&expected, text.replacen("\"s1\"", "\"s9\"", 1)).unwrap();
    let failed = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["plugin", "test"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(
        !failed.status.success(),
        "a wrong expectation fails the test"
    );

    let inspect = weir(
        &dir,
        &["plugin", "inspect", "--json", component.to_str().unwrap()],
    );
    let report: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(report["world"], world);
    assert_eq!(report["contract"], "0.2.0");
    assert_eq!(report["reads"], serde_json::json!(["event_type"]));
    if world == "aggregator" {
        assert_eq!(report["state_version"], 1);
        assert_eq!(report["columns"][0][0], "EVENTS");
    }
    println!("{lang} {world}: new, build and test pass ({built:.1?} to build from nothing)");
    std::fs::remove_dir_all(&empty).unwrap();
}

#[test]
fn a_new_rust_aggregator_builds_and_passes_its_test() {
    scaffold_builds_and_passes_its_test("rust", "aggregator");
}

#[test]
fn a_new_rust_filter_builds_and_passes_its_test() {
    scaffold_builds_and_passes_its_test("rust", "filter");
}

#[test]
fn a_new_javascript_aggregator_builds_and_passes_its_test() {
    scaffold_builds_and_passes_its_test("js", "aggregator");
}

#[test]
fn a_new_javascript_filter_builds_and_passes_its_test() {
    scaffold_builds_and_passes_its_test("js", "filter");
}

#[test]
fn a_new_python_aggregator_builds_and_passes_its_test() {
    scaffold_builds_and_passes_its_test("python", "aggregator");
}

#[test]
fn a_new_python_filter_builds_and_passes_its_test() {
    scaffold_builds_and_passes_its_test("python", "filter");
}

#[test]
fn a_new_c_aggregator_builds_and_passes_its_test() {
    scaffold_builds_and_passes_its_test("c", "aggregator");
}

#[test]
fn a_new_c_filter_builds_and_passes_its_test() {
    scaffold_builds_and_passes_its_test("c", "filter");
}

#[test]
fn a_new_rust_transform_builds_and_passes_its_test() {
    scaffold_builds_and_passes_its_test("rust", "transform");
}

#[test]
fn a_new_javascript_transform_builds_and_passes_its_test() {
    scaffold_builds_and_passes_its_test("js", "transform");
}

#[test]
fn a_new_python_transform_builds_and_passes_its_test() {
    scaffold_builds_and_passes_its_test("python", "transform");
}

#[test]
fn a_new_c_transform_builds_and_passes_its_test() {
    scaffold_builds_and_passes_its_test("c", "transform");
}
