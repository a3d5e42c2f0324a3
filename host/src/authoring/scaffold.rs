//! `weir plugin new`: a new plugin folder (a filter, transform or
//! aggregator) in any of weir's languages, from
//! the templates in `plugins/templates/` — a working plugin with its own
//! test, which `weir plugin test` builds and passes as it is.
//!
//! A template is `plugins/templates/<language>/<world>/` (the plugin's
//! files, with `{{name}}` and `{{sdk}}` filled in) and
//! `plugins/templates/test/<world>/` (its test input and expected output).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::build::{Language, World};

/// `weir plugin new`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct NewArgs {
    /// The plugin's name: lower-case letters, digits and hyphens (`revenue-by-category`).
    pub name: String,
    /// The language to write it in.
    #[arg(long, value_enum)]
    pub lang: Language,
    /// The kind of plugin.
    #[arg(long, value_enum, default_value_t = World::Aggregator)]
    pub world: World,
    /// The folder to create it in (default: `./<name>`).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// Runs `weir plugin new`; returns the new folder.
pub fn run(args: &NewArgs) -> anyhow::Result<PathBuf> {
    check_name(&args.name)?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    if dir.exists() && fs::read_dir(&dir)?.next().is_some() {
        bail!(
            "{} already exists and is not empty: choose another name or --dir",
            dir.display()
        );
    }
    let home = crate::dirs::home()?;
    let templates = home.join("plugins/templates");
    let (language, sdk) = match args.lang {
        Language::Rust => ("rust", "rust"),
        Language::Javascript => ("javascript", "js"),
        Language::Python => ("python", "python"),
        Language::C => ("c", "c"),
    };
    let world = args.world.name();
    let source = templates.join(language).join(world);
    if !source.is_dir() {
        bail!("weir has no {language} template for a {world} yet");
    }
    let sdk = home.join("plugins/sdk").join(sdk);
    let fill = |text: &str| {
        text.replace("{{name}}", &args.name)
            .replace("{{sdk}}", &sdk.display().to_string())
    };
    copy_filled(&source, &dir, &fill)?;
    copy_filled(
        &templates.join("test").join(world),
        &dir.join("test"),
        &fill,
    )?;
    let entry = match args.lang {
        Language::Rust => String::new(),
        Language::Javascript => "entry = \"plugin.js\"\n".to_owned(),
        Language::Python => "entry = \"app\"\n".to_owned(),
        Language::C => String::new(),
    };
    let key_field = if args.world == World::Aggregator {
        "key_field = \"session_id\"\n"
    } else {
        ""
    };
    write(
        &dir.join("weir-plugin.toml"),
        &format!(
            "# How `weir plugin build` builds this plugin, and what `weir plugin test` runs.\n\
             name = \"{name}\"\nlanguage = \"{language}\"\nworld = \"{world}\"\n{entry}\n\
             [test]\ninput = \"test/events.jsonl\"\nexpect = \"test/expected.jsonl\"\n{key_field}",
            name = args.name,
        ),
    )?;
    write(
        &dir.join(".gitignore"),
        "target/\nnode_modules/\n__pycache__/\n",
    )?;
    write(&dir.join("README.md"), &readme(&args.name, language, world))?;
    eprintln!(
        "Created {} ({language} {world}). Next:\n  cd {}\n  weir plugin test        # builds it, runs it over test/events.jsonl, compares with test/expected.jsonl",
        dir.display(),
        dir.display()
    );
    Ok(dir)
}

fn check_name(name: &str) -> anyhow::Result<()> {
    let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if !valid {
        bail!(
            "`{name}` cannot name a plugin: use lower-case letters, digits and hyphens, starting with a letter (for example `revenue-by-category`)"
        );
    }
    Ok(())
}

/// Copies the files under `from` to `to`, filling in their placeholders.
fn copy_filled(from: &Path, to: &Path, fill: &dyn Fn(&str) -> String) -> anyhow::Result<()> {
    fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
    for entry in fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_filled(&entry.path(), &target, fill)?;
        } else {
            let text = fs::read_to_string(entry.path())
                .with_context(|| format!("cannot read {}", entry.path().display()))?;
            write(&target, &fill(&text))?;
        }
    }
    Ok(())
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

fn readme(name: &str, language: &str, world: &str) -> String {
    let source = match language {
        "rust" => "src/lib.rs",
        "javascript" => "plugin.js",
        "c" => "plugin.c",
        _ => "app.py",
    };
    format!(
        "# {name}\n\n\
         A weir {world} in {language}. The code is in `{source}`; `weir-plugin.toml` says how it\n\
         is built and tested.\n\n\
         ```sh\n\
         weir plugin build      # the component: target/{name}.wasm\n\
         weir plugin test       # build, run over test/events.jsonl, compare with test/expected.jsonl\n\
         weir plugin test --input events.jsonl --output -   # any input, output printed\n\
         weir plugin inspect target/{name}.wasm             # what the component declares\n\
         ```\n\n\
         Into a running pipeline: `weir plugin swap <pipeline> <stage> target/{name}.wasm`.\n"
    )
}
