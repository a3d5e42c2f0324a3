//! `weir-bench categories`: the re-keyed aggregation of
//! `pipelines/category-sales.toml` (each purchase split into its items,
//! summed per product category through a repartition topic) against the
//! Kafka Streams peer doing the same (`--topology category-sales`: a
//! `groupBy` on the category, with its repartition topic), side by side on
//! the same pre-produced input, taking turns going first.
//!
//! Each contestant is timed from its first commit on the input to the
//! moment its results are complete: weir's table, or the last row of each
//! category on the peer's output topic, equal to what this bench computes
//! itself from the input topic and the catalog (a third implementation, in
//! Rust, of the same sums). Its process's CPU time and peak memory are read
//! from `/proc` over the same span.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value as Json;
use weir_tests::Stack;
use weir_tests::oracle::read_topic;
use weir_tests::pipeline::{Names, create_topic, stock_pipeline, terminate};

use crate::race::{Figures, clock_ticks, cpu_seconds, median, peak_mib, show};

/// Options of `weir-bench categories`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Events pre-produced.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Partitions of the input topic.
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// Live sessions in the generated stream.
    #[arg(long, default_value_t = 1000)]
    sessions: usize,
    /// Runs of each, taking turns going first.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// The Kafka Streams peer's jar (built with Maven when missing).
    #[arg(long)]
    peer_jar: Option<PathBuf>,
}

/// A category's sums: units, revenue in cents, order lines.
type Sums = (i64, i64, i64);

/// Every category's sums, by category.
type Sales = BTreeMap<String, Sums>;

/// Runs both in turn and prints each run and the medians.
pub fn run(args: &Args) -> Result<()> {
    let stack = Stack::from_env();
    let tokio = tokio::runtime::Runtime::new()?;
    let dir = std::env::temp_dir().join(weir_tests::unique("weir-bench-categories"));
    std::fs::create_dir_all(&dir)?;
    let jar = match &args.peer_jar {
        Some(jar) => jar.clone(),
        None => crate::race::build_peer()?,
    };
    let ticks = clock_ticks()?;
    let tag = crate::race::tag("categories");
    let input = Names::fresh(&tag);
    tokio.block_on(create_topic(&stack, &input.events, args.partitions))?;
    println!(
        "weir-bench categories: {} events, {} partitions, {} live sessions, {} runs each",
        args.events, args.partitions, args.sessions, args.runs
    );
    // The generator writes its catalog (`products`) beside the events.
    crate::pipeline::produce(&stack, &input.events, args.events, args.sessions)?;
    let expected = tokio.block_on(expected_sales(&stack, &input.events))?;
    let lines: i64 = expected.values().map(|sums| sums.2).sum();
    println!(
        "  {lines} items sold in {} categories (summed here from the input and the catalog)",
        expected.len()
    );
    let race = Contest {
        stack: &stack,
        tokio: &tokio,
        dir: &dir,
        input: &input.events,
        partitions: args.partitions,
        events: args.events,
        ticks,
        expected: &expected,
    };
    let (mut weir, mut streams) = (Vec::new(), Vec::new());
    for run in 0..args.runs {
        let weir_first = run % 2 == 0;
        for is_weir in [weir_first, !weir_first] {
            let id = format!("{tag}-{}{run}", if is_weir { "w" } else { "s" });
            if is_weir {
                let figures = race.weir(&id)?;
                println!("  run {}: weir           {}", run + 1, show(&figures));
                weir.push(figures);
            } else {
                let figures = race.streams(&jar, &id)?;
                println!("  run {}: Kafka Streams  {}", run + 1, show(&figures));
                streams.push(figures);
            }
        }
    }
    let medians = |figures: &[Figures]| {
        let pick = |f: fn(&Figures) -> f64| median(&mut figures.iter().map(f).collect::<Vec<_>>());
        (
            pick(|f| f.events_per_second),
            pick(|f| f.cpu_per_million),
            pick(|f| f.peak_mib.unwrap_or(f64::NAN)),
        )
    };
    let (weir, streams) = (medians(&weir), medians(&streams));
    println!(
        "medians: weir {:.0} events/s, {:.1} CPU s per million events, peak {:.0} MiB; \
         Kafka Streams {:.0} events/s, {:.1} CPU s per million events, peak {:.0} MiB: \
         weir at {:.2}x the throughput, {:.2}x the CPU per event, {:.2}x the memory",
        weir.0,
        weir.1,
        weir.2,
        streams.0,
        streams.1,
        streams.2,
        weir.0 / streams.0,
        weir.1 / streams.1,
        weir.2 / streams.2,
    );
    std::fs::remove_dir_all(&dir)?;
    crate::race::delete_tagged(&stack, &tag)
}

/// What every run shares.
struct Contest<'a> {
    stack: &'a Stack,
    tokio: &'a tokio::runtime::Runtime,
    dir: &'a Path,
    input: &'a str,
    partitions: i32,
    events: u64,
    ticks: f64,
    expected: &'a Sales,
}

impl Contest<'_> {
    /// `weir run pipelines/category-sales.toml` on the input, to its own
    /// table (dropped afterwards), until the table holds every sum.
    fn weir(&self, id: &str) -> Result<Figures> {
        let names = Names::fresh(id);
        let table = format!("{}_sales", names.table);
        let pipeline = stock_pipeline(
            self.dir,
            "category-sales",
            &names.pipeline,
            &[
                (
                    "name = \"category-sales\"",
                    format!("name = \"{}\"", names.pipeline),
                ),
                (
                    "topic = \"ecommerce.events\"",
                    format!("topic = \"{}\"", self.input),
                ),
                ("table = \"category_sales\"", format!("table = \"{table}\"")),
            ],
            "",
        )?;
        let mut child = crate::rekey::spawn(self.stack, self.dir, &pipeline, &names.pipeline)?;
        let pool = self.tokio.block_on(self.stack.pool(1))?;
        let query = format!(
            "SELECT \"CATEGORY\", \"UNITS_SOLD\", round(\"REVENUE\" * 100)::bigint, \"ORDER_LINES\" FROM \"{table}\""
        );
        let result = self.time(&mut child, &names.group(), || {
            // Before its first flush the table does not exist yet.
            let rows: Vec<(String, i64, i64, i64)> =
                match self.tokio.block_on(sqlx::query_as(&query).fetch_all(&pool)) {
                    Ok(rows) => rows,
                    Err(_) => return Ok(false),
                };
            let found: Sales = rows
                .into_iter()
                .map(|(category, units, cents, lines)| (category, (units, cents, lines)))
                .collect();
            Ok(&found == self.expected)
        });
        let stopped = terminate(&mut child);
        self.tokio.block_on(async {
            sqlx::query(&format!("DROP TABLE IF EXISTS \"{table}\""))
                .execute(&pool)
                .await
        })?;
        let figures = result?;
        stopped?;
        Ok(figures)
    }

    /// The Kafka Streams peer as application `id`, until the last row of
    /// every category on its output topic holds its sum.
    fn streams(&self, jar: &Path, id: &str) -> Result<Figures> {
        let output = format!("{id}.rows");
        self.tokio
            .block_on(create_topic(self.stack, &output, self.partitions))?;
        let mut child = crate::race::peer(jar, self.stack, id, (self.input, &output))
            .args(["--topology", "category-sales", "--catalog"])
            .arg(jdbc_url(&self.stack.database_url)?)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.join(format!("{id}.log")))?)
            .spawn()
            .context("cannot start `java` for the Kafka Streams peer")?;
        let mut rows = LastRows::new(self.stack, &output)?;
        let result = self.time(&mut child, id, || Ok(&rows.read()? == self.expected));
        let stopped = terminate(&mut child);
        std::fs::remove_dir_all(std::env::temp_dir().join(id)).ok();
        let figures = result?;
        stopped?;
        Ok(figures)
    }

    /// Times `child`, consuming the input as `group`, from its first
    /// commit until `complete` says its results are; with its CPU time over
    /// that span and its peak memory.
    fn time(
        &self,
        child: &mut Child,
        group: &str,
        mut complete: impl FnMut() -> Result<bool>,
    ) -> Result<Figures> {
        let pid = child.id();
        let timed = crate::pipeline::time_from_first_commit(
            self.stack,
            (group, self.input),
            || matches!(child.try_wait(), Ok(None)),
            || cpu_seconds(pid, self.ticks),
            |_| complete(),
        )?;
        let cpu = cpu_seconds(pid, self.ticks)? - timed.first;
        let counted = (self.events as f64) - timed.at_start as f64;
        Ok(Figures {
            events_per_second: counted / timed.seconds,
            cpu_per_million: cpu / (counted / 1e6),
            peak_mib: Some(peak_mib(pid)?),
            freshness_p99: None,
        })
    }
}

/// The sums of every purchase's items per category, computed here from
/// the input topic and the `products` table, the rules of the
/// `purchase-items` and `category-sales` plugins: a product the catalog
/// lacks (or whose category is NULL) is `uncategorised`; revenue is each
/// line's price rounded to the cent, times its quantity.
async fn expected_sales(stack: &Stack, topic: &str) -> Result<Sales> {
    let pool = stack.pool(1).await?;
    let catalog: BTreeMap<String, String> =
        sqlx::query_as::<_, (String, Option<String>)>("SELECT product_id, category FROM products")
            .fetch_all(&pool)
            .await?
            .into_iter()
            .filter_map(|(product, category)| Some((product, category?)))
            .collect();
    pool.close().await;
    let mut sales = Sales::new();
    for (_, value) in read_topic(stack, topic)? {
        let event: Json = serde_json::from_str(&value)?;
        if event["event_type"] != "purchase" {
            continue;
        }
        for item in event["items"].as_array().context("a purchase's items")? {
            let product = item["product_id"].as_str().context("product_id")?;
            let price = item["price"].as_f64().context("price")?;
            let quantity = item["quantity"].as_i64().context("quantity")?;
            let category = catalog.get(product).map_or("uncategorised", String::as_str);
            let sums = sales.entry(category.to_owned()).or_default();
            sums.0 += quantity;
            sums.1 += (price * 100.0).round() as i64 * quantity;
            sums.2 += 1;
        }
    }
    Ok(sales)
}

/// The last row of each category on the peer's output topic (JSON values
/// carrying `CATEGORY`), read as it is written; committed records only.
struct LastRows {
    consumer: BaseConsumer,
    rows: Sales,
}

impl LastRows {
    fn new(stack: &Stack, topic: &str) -> Result<Self> {
        let consumer: BaseConsumer = stack
            .kafka_client()
            .set("group.id", weir_tests::unique("categories-reader"))
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .create()?;
        let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
        let partitions = metadata
            .topics()
            .first()
            .map_or(0, |found| found.partitions().len());
        ensure!(partitions > 0, "the output topic {topic} has no partitions");
        let mut list = TopicPartitionList::new();
        for partition in 0..i32::try_from(partitions)? {
            list.add_partition_offset(topic, partition, Offset::Beginning)?;
        }
        consumer.assign(&list)?;
        Ok(Self {
            consumer,
            rows: Sales::new(),
        })
    }

    /// Every category's newest row so far.
    fn read(&mut self) -> Result<Sales> {
        while let Some(message) = self.consumer.poll(Duration::ZERO) {
            let message = message?;
            let row: Json = serde_json::from_slice(message.payload().unwrap_or_default())?;
            let number = |name: &str| {
                row[name]
                    .as_i64()
                    .with_context(|| format!("{name} in {row}"))
            };
            let revenue = row["REVENUE"].as_f64().context("REVENUE")?;
            let category = row["CATEGORY"].as_str().context("CATEGORY")?;
            self.rows.insert(
                category.to_owned(),
                (
                    number("UNITS_SOLD")?,
                    (revenue * 100.0).round() as i64,
                    number("ORDER_LINES")?,
                ),
            );
        }
        Ok(self.rows.clone())
    }
}

/// `postgres://user:password@host:port/db` as a JDBC URL.
fn jdbc_url(database_url: &str) -> Result<String> {
    let url = reqwest::Url::parse(database_url)?;
    let host = url.host_str().context("a host in the database URL")?;
    let mut jdbc = format!(
        "jdbc:postgresql://{host}:{}{}?user={}",
        url.port().unwrap_or(5432),
        url.path(),
        url.username()
    );
    if let Some(password) = url.password() {
        jdbc.push_str(&format!("&password={password}"));
    }
    Ok(jdbc)
}
