//! `weir-bench secured`: what TLS and SASL cost. The aggregation-only
//! pipeline (`session-stats` alone, Avro to Kafka) over the same events on
//! the plain local stack and on the secured one (`cargo xtask stack up
//! --secure`: SASL_SSL with SCRAM-SHA-512 to Kafka, HTTPS with basic
//! authentication to the registry), taking turns going first; events per
//! second from the first commit to the last, and the ratio.

use anyhow::Result;
use weir_tests::Stack;
use weir_tests::pipeline::{Names, create_topic};

use crate::pipeline::{produce, run_to_end};
use crate::race::median;

/// Options of `weir-bench secured`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Events produced once into each stack.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Partitions of the input topics.
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// Live sessions in the generated stream.
    #[arg(long, default_value_t = 1000)]
    sessions: usize,
    /// Runs on each stack (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

/// Runs both sides `runs` times and prints each run, the medians and the ratio.
pub fn run(args: &Args) -> Result<()> {
    let plain = Stack::from_env();
    let secured = Stack::secured()?;
    let tokio = tokio::runtime::Runtime::new()?;
    let dir = std::env::temp_dir().join(weir_tests::unique("weir-bench-secured"));
    std::fs::create_dir_all(&dir)?;
    let tag = crate::race::tag("secured");
    println!(
        "weir-bench secured: aggregation only, {} events, {} partitions, {} runs each, plaintext \
         against SASL_SSL (SCRAM-SHA-512) and an HTTPS registry",
        args.events, args.partitions, args.runs
    );
    let sides = [("plaintext", &plain), ("SASL_SSL ", &secured)];
    let mut inputs = Vec::new();
    for (side, stack) in sides {
        let input = Names::fresh(&tag).events;
        tokio.block_on(create_topic(stack, &input, args.partitions))?;
        produce(stack, &input, args.events, args.sessions)?;
        println!("  {side}: {} events produced into {input}", args.events);
        inputs.push(input);
    }
    let mut rates: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for run in 0..args.runs {
        let order: [usize; 2] = if run % 2 == 0 { [0, 1] } else { [1, 0] };
        for side in order {
            let (label, stack) = sides[side];
            let names = Names {
                events: inputs[side].clone(),
                ..Names::fresh(&tag)
            };
            let pipeline = crate::race::aggregation_only(&dir, &names)?;
            let rate = run_to_end(stack, &names.group(), &names.events, &pipeline, args.events)?;
            println!("  run {run}: {label} {rate:>9.0} events/s");
            rates[side].push(rate);
        }
    }
    let [plain_rate, secured_rate] = rates.map(|mut side| median(&mut side));
    println!(
        "  median: plaintext {plain_rate:.0} events/s, SASL_SSL {secured_rate:.0} events/s: \
         ratio {:.2}",
        secured_rate / plain_rate
    );
    std::fs::remove_dir_all(&dir)?;
    crate::race::delete_tagged(&plain, &tag)?;
    crate::race::delete_tagged(&secured, &tag)?;
    Ok(())
}
