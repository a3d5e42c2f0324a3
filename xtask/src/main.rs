//! weir's developer entry points.
//!
//! # Layout
//!
//! - [`stack`]: the local stack (Kafka, schema registry, PostgreSQL) started
//!   from Maven Central artifacts and the machine's PostgreSQL binaries, no Docker.
//! - [`workflow`]: the two commands a new user runs, `demo` and `test`.
//! - [`demo`]: the stock pipeline end to end with a live summary.
//! - [`toolchains`]: what the tests need beyond Rust (Python for their clients, clang for C plugins).

mod demo;
mod stack;
mod toolchains;
mod workflow;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// weir's developer entry points: the local stack, the demo, the test suite.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start, stop or inspect the local stack: Kafka, the schema registry, PostgreSQL.
    Stack {
        /// The secured stack instead (beside the plain one, on ports of its
        /// own): SASL_SSL and mutual-TLS Kafka, TLS-only PostgreSQL, an HTTPS
        /// registry with basic authentication, a local CA.
        #[arg(long, global = true)]
        secure: bool,
        #[command(subcommand)]
        action: StackAction,
    },
    /// Run the stock demo end to end, starting the local stack first.
    Demo(demo::DemoArgs),
    /// Run every check and test, starting the local stack first.
    Test {
        /// Stop the local stack when the tests are done (CI does this).
        #[arg(long)]
        stop_stack: bool,
    },
}

#[derive(Debug, Subcommand)]
enum StackAction {
    /// Start every service (or the ones named) that is not running yet and
    /// wait until each answers.
    Up {
        /// The services to start; none means all of them.
        #[arg(value_enum)]
        services: Vec<stack::ServiceName>,
    },
    /// Stop the services this stack started (by PID), or only the ones named,
    /// and wait until their processes have exited and their ports are free.
    Down {
        /// The services to stop; none means all of them.
        #[arg(value_enum)]
        services: Vec<stack::ServiceName>,
    },
    /// Tell, for each service, whether it is up and where.
    Status,
    /// Print the environment variables that point weir (and the tests) at
    /// the stack, as `NAME=value` lines.
    Env,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // The message chain says what failed and how to fix it; a
            // backtrace would only bury it.
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let secure = matches!(cli.command, Command::Stack { secure: true, .. });
    let stack = stack::Stack::locate(secure)?;
    match cli.command {
        Command::Stack { action, .. } => match action {
            StackAction::Up { services } => stack.up_services(&services),
            StackAction::Down { services } => stack.down_services(&services),
            StackAction::Status => stack.print_status(),
            StackAction::Env => {
                stack.print_env();
                Ok(())
            }
        },
        Command::Demo(args) => demo::run(&stack, &args),
        Command::Test { stop_stack } => workflow::test(&stack, stop_stack),
    }
}
