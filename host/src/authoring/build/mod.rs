//! `weir plugin build`: one command builds a plugin in any of weir's
//! languages into a component, with that language's own tools from its own
//! registry. A plugin folder says what it is in `weir-plugin.toml`:
//!
//! ```toml
//! name = "session-stats"     # the component is <name>.wasm
//! language = "javascript"    # rust | javascript | python | c
//! world = "aggregator"       # filter | transform | aggregator
//! entry = "session-stats.js" # javascript: the module; python: the module name
//!
//! [test]                     # what `weir plugin test` runs here
//! input = "test/events.jsonl"
//! expect = "test/expected.jsonl"
//! key_field = "session_id"
//! ```
//!
//! - Rust: `cargo build --release --target wasm32-wasip2` (the crate uses
//!   weir's Rust SDK).
//! - JavaScript: `npm install` when `node_modules` is missing, esbuild bundles
//!   the entry with weir's SDK, componentize-js makes the component.
//! - Python: componentize-py (pinned by the SDK's `requirements.txt`, in a
//!   virtual environment in weir's cache) with weir's SDK on its path.
//! - C: bindings for the world generated from the contract (wit-bindgen's C
//!   generator, built into weir), every `.c` file of the folder compiled with
//!   weir's SDK by clang for wasm32-wasi (wasi-libc), and the module made a
//!   component here (wit-component, with the WASI adapter when it needs one).
//!
//! A build is skipped when the component is newer than every source file,
//! the contract and the SDK (`--force` builds anyway).
//!
//! # Layout
//!
//! - `manifest`: `weir-plugin.toml`, what a plugin folder says it is;
//! - `job`: the command, from the folder to a component renamed into place;
//! - `fresh`: whether a component is newer than everything it is built from;
//! - `rust`, `javascript`, `python`, `c`: each language's build;
//! - `tools`: starting the external tools a build runs.

mod c;
mod fresh;
mod javascript;
mod job;
mod manifest;
mod python;
mod rust;
mod tools;

pub use job::{BuildArgs, run};
pub use manifest::{Language, Manifest, TestManifest, World, manifest};
pub use python::python_with;
