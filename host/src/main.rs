//! The `weir` binary: parses the command line, sets up logging, and hands
//! over to the library.

use std::process::ExitCode;

use clap::Parser;
use weir::cli::{Cli, Command, PluginCommand};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        Command::Run(args) => {
            let stop = weir::cli::stop_on_signal();
            weir::engine::run(&args, &stop)
        }
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
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

/// `weir validate`: every problem of every file, exit status 1 if any.
fn validate(files: &[std::path::PathBuf]) -> ExitCode {
    let mut failed = false;
    for file in files {
        let pipeline = match weir::pipeline::load(file) {
            Ok(pipeline) => pipeline,
            Err(errors) => {
                failed = true;
                eprintln!("{errors}");
                continue;
            }
        };
        // The file is sound; now what only the plugins can tell.
        let kinds = match weir::engine::check_plugins(&pipeline) {
            Ok(kinds) => kinds,
            Err(error) => {
                failed = true;
                eprintln!("{}: {error:#}", file.display());
                continue;
            }
        };
        let config = &pipeline.config;
        let stages: Vec<String> = config
            .stages
            .iter()
            .zip(kinds)
            .map(|(s, kind)| format!("{} ({})", s.name.get_ref(), kind.world()))
            .collect();
        println!(
            "{}: ok — pipeline `{}`: {} -> {} -> sinks:{}{}; dead letters to `{}`",
            file.display(),
            config.name.get_ref(),
            config.source.topic.get_ref(),
            stages.join(" -> "),
            config
                .sinks
                .kafka
                .as_ref()
                .map(|k| format!(" kafka `{}`", k.topic.get_ref()))
                .unwrap_or_default(),
            config
                .sinks
                .postgres
                .as_ref()
                .map(|p| format!(" postgres `{}`", p.table.get_ref()))
                .unwrap_or_default(),
            pipeline.dead_letter_topic(),
        );
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
