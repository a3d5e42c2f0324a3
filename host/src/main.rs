//! The `weir` binary: parses the command line, sets up logging, and hands
//! over to the library.

use std::process::ExitCode;

use clap::Parser;
use weir::cli::{Cli, Command, PluginCommand};

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(error) = weir::telemetry::init(&cli.log, cli.log_format) {
        eprintln!("error: --log {}: {error}", cli.log);
        return ExitCode::from(2);
    }
    let result = match cli.command {
        Command::Generate(args) => {
            let stop = weir::cli::stop_on_signal();
            weir::generate::run(&args, &stop)
                .map(drop)
                .map_err(anyhow::Error::from)
        }
        Command::Run(args) => match args.plans() {
            Err(errors) => Err(anyhow::Error::from(errors)),
            Ok(plans) => match args.config() {
                Err(error) => Err(anyhow::Error::from(error)),
                Ok(config) => {
                    let stop = weir::cli::stop_on_signal();
                    weir::engine::run(plans, &config, &stop).map_err(anyhow::Error::from)
                }
            },
        },
        Command::Plugin(args) => match &args.action {
            PluginCommand::Running(action) => weir::admin::client::run(&args, action),
            PluginCommand::New(new) => weir::authoring::scaffold::run(new).map(drop),
            PluginCommand::Build(build) => weir::authoring::build::run(build).map(drop),
            PluginCommand::Test(test) => weir::authoring::local::run(test).map(drop),
            PluginCommand::Inspect(inspect) => weir::authoring::inspect::run(inspect),
        },
        Command::Validate { files } => return validate(&files),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{}", describe(&error));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes, each said once: many of weir's errors already
/// name their cause, which `{:#}` would repeat.
fn describe(error: &anyhow::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

/// `weir validate`: every problem of every file, exit status 1 if any.
fn validate(files: &[std::path::PathBuf]) -> ExitCode {
    let mut failed = false;
    for file in files {
        let plan = match weir::pipeline::load(file) {
            Ok(plan) => plan,
            Err(errors) => {
                failed = true;
                eprintln!("{errors}");
                continue;
            }
        };
        // The file is sound; now what only the plugins can tell.
        let kinds = match weir::pipeline::check_plugins(&plan) {
            Ok(kinds) => kinds,
            Err(error) => {
                failed = true;
                eprintln!("{}: {}", file.display(), describe(&error.into()));
                continue;
            }
        };
        let stages: Vec<String> = plan
            .stage_names()
            .zip(kinds)
            .map(|(name, kind)| format!("{name} ({})", kind.world()))
            .collect();
        println!(
            "{}: ok — pipeline `{}`: {} -> {} -> sinks:{}{}; dead letters to `{}`",
            file.display(),
            plan.name,
            plan.source.topic,
            stages.join(" -> "),
            plan.sinks
                .kafka
                .as_ref()
                .map(|k| format!(" kafka `{}`", k.topic))
                .unwrap_or_default(),
            plan.sinks
                .postgres
                .as_ref()
                .map(|p| format!(" postgres `{}`", p.table))
                .unwrap_or_default(),
            plan.dead_letter_topic,
        );
        if plan.source.format == weir::pipeline::Format::Avro {
            println!(
                "  the source's values are Avro in the Confluent wire format: each read with \
                 its writer's schema, fetched by id from the schema registry"
            );
        }
        if let Some(repartition) = plan.repartition() {
            println!("  {repartition}");
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
