//! The `weir` binary: parses the command line, sets up logging, and hands
//! over to the library.

use clap::{CommandFactory, Parser};
use weir::cli::Cli;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    weir::telemetry::init(&cli.log, cli.log_format)?;
    // No subcommand exists yet: show what the binary is.
    Cli::command().print_help()?;
    Ok(())
}
