//! The one interface every output implements ([`Sink`]), and what a flush
//! hands the sinks ([`Records`]): rows by their shape, dead letters, and the
//! state changes for the changelog.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::future::BoxFuture;

use super::changelog::ChangelogRecord;
use super::dead_letter::DeadLetter;
use super::error::SinkError;
use super::schema::RowSchema;
use crate::plugin::{Batch, BatchExt, Value};

/// One output row: the aggregate's key, and its columns' values.
pub type Row = (String, Vec<Value>);

/// A shape of rows: the schema of one aggregator version. Sinks prepare
/// each shape once ([`Sink::prepare`]: a registry id, an upsert statement)
/// and find that again by its id when rows of that shape arrive.
#[derive(Debug)]
pub struct Shape {
    /// Unique in the process.
    pub id: u64,
    /// The rows' columns.
    pub schema: Arc<RowSchema>,
}

impl Shape {
    /// A new shape of rows of `schema`.
    pub fn new(schema: Arc<RowSchema>) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Self {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            schema,
        }
    }
}

/// Rows of one shape, each with the input partition its key belongs to.
#[derive(Debug)]
pub struct Rows {
    /// Their shape.
    pub shape: Arc<Shape>,
    /// The rows.
    pub rows: Vec<Row>,
    /// Each row's input partition.
    pub partitions: Vec<i32>,
}

impl Rows {
    /// No rows yet, of `shape`.
    pub fn new(shape: Arc<Shape>) -> Self {
        Self {
            shape,
            rows: Vec::new(),
            partitions: Vec::new(),
        }
    }

    /// Adds `row`, of a key of `partition`.
    pub fn push(&mut self, partition: i32, row: Row) {
        self.rows.push(row);
        self.partitions.push(partition);
    }
}

/// What one flush hands the sinks.
#[derive(Debug, Default)]
pub struct Records {
    /// Rows changed since the last flush, each key once, grouped by their
    /// shape (a swap can fall between two flushes).
    pub rows: Vec<Rows>,
    /// Records that could not be processed.
    pub dead: Vec<DeadLetter>,
    /// The state changes, for the changelog.
    pub changelog: Vec<ChangelogRecord>,
    /// A pipeline without an aggregator: the records its last stage
    /// passed on, batch by batch, for the sinks to write as they are.
    pub emitted: Vec<Batch>,
}

impl Records {
    /// How many rows, of every shape.
    pub fn row_count(&self) -> usize {
        self.rows.iter().map(|rows| rows.rows.len()).sum()
    }

    /// How many records were emitted.
    pub fn emitted_count(&self) -> usize {
        self.emitted.iter().map(|batch| batch.records.len()).sum()
    }

    /// Keeps only what belongs to partitions `keep` accepts; how many
    /// rows, dead letters and changelog records were left out.
    pub fn retain_partitions(&mut self, keep: impl Fn(i32) -> bool) -> usize {
        let count = |records: &Self| {
            records.row_count()
                + records.dead.len()
                + records.changelog.len()
                + records.emitted_count()
        };
        let before = count(self);
        for rows in &mut self.rows {
            let mut partitions = rows.partitions.iter();
            rows.rows
                .retain(|_| partitions.next().is_some_and(|&partition| keep(partition)));
            rows.partitions.retain(|&partition| keep(partition));
        }
        self.rows.retain(|rows| !rows.rows.is_empty());
        self.dead.retain(|letter| keep(letter.partition));
        self.changelog.retain(|record| keep(record.partition));
        for batch in &mut self.emitted {
            if !batch.records.iter().all(|record| keep(record.partition)) {
                *batch = batch.select_where(|index| keep(batch.records[index].partition));
            }
        }
        self.emitted.retain(|batch| !batch.records.is_empty());
        before - count(self)
    }

    /// Nothing to write.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
            && self.dead.is_empty()
            && self.changelog.is_empty()
            && self.emitted.is_empty()
    }
}

/// When a sink writes in a flush.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// With the other outputs (rows, dead letters), all at once.
    Outputs,
    /// After every output confirmed: a key whose new state is in the
    /// changelog then has its row in the sinks, so skipping the records
    /// it applied after a crash loses no row.
    State,
}

/// Somewhere a pipeline's results go. A sink is one file and one line in
/// the topology: implement this, and build it where the others are built.
pub trait Sink: Send + Sync {
    /// Its name in metrics, logs and errors (`kafka`, `postgres`, ...).
    fn name(&self) -> &str;

    /// When it writes in a flush.
    fn phase(&self) -> Phase {
        Phase::Outputs
    }

    /// How many of `records` it writes (none: [`Sink::write`] is not called).
    fn count(&self, records: &Records) -> usize;

    /// Writes its part of `records`, returning once it is durable: all of
    /// it, or an error saying whether to retry.
    fn write<'a>(&'a self, records: &'a Records) -> BoxFuture<'a, Result<(), SinkError>>;

    /// Whether rows of `schema` may follow the rows it holds (before a swap
    /// to a new aggregator version): `Some(reason)` when they may not.
    fn check<'a>(
        &'a self,
        _schema: &'a RowSchema,
    ) -> BoxFuture<'a, Result<Option<String>, SinkError>> {
        Box::pin(std::future::ready(Ok(None)))
    }

    /// Gets ready for rows of `shape` (at start, before a swap's cut-over,
    /// and again on a rollback to it): safe to repeat.
    fn prepare<'a>(&'a self, _shape: &'a Shape) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(std::future::ready(Ok(())))
    }
}

/// What a sink prepared for each shape (a registry id, a statement).
#[derive(Debug)]
pub struct Prepared<T>(std::sync::Mutex<std::collections::HashMap<u64, T>>);

impl<T> Default for Prepared<T> {
    fn default() -> Self {
        Self(std::sync::Mutex::default())
    }
}

impl<T: Clone> Prepared<T> {
    /// Keeps `value` for rows of `shape`.
    pub fn insert(&self, shape: &Shape, value: T) {
        self.0.lock().expect("not poisoned").insert(shape.id, value);
    }

    /// What `sink` prepared for `shape`; rows of a shape never prepared are
    /// a bug in weir.
    pub fn get(&self, sink: &str, shape: &Shape) -> Result<T, SinkError> {
        let value = self.0.lock().expect("not poisoned").get(&shape.id).cloned();
        value.ok_or_else(|| {
            SinkError::internal(
                sink,
                format!("rows of shape {} were never prepared", shape.id),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::{BatchBuilder, RecordRef};

    #[test]
    fn records_of_partitions_left_behind_are_dropped_from_every_part() {
        let mut builder = BatchBuilder::default();
        for (partition, offset) in [(0, 1), (1, 2), (0, 3), (2, 4)] {
            builder.push(RecordRef {
                key: None,
                value: format!("r{offset}").as_bytes(),
                timestamp: 0,
                partition,
                offset,
            });
            builder.header("n", &[offset as u8]);
        }
        let only_gone = {
            let mut one = BatchBuilder::default();
            one.push(RecordRef {
                key: None,
                value: b"gone",
                timestamp: 0,
                partition: 1,
                offset: 9,
            });
            one.build()
        };
        let mut records = Records {
            emitted: vec![builder.build(), only_gone],
            ..Records::default()
        };

        let dropped = records.retain_partitions(|partition| partition != 1);

        assert_eq!((dropped, records.emitted_count()), (2, 3));
        assert_eq!(records.emitted.len(), 1, "an emptied batch goes");
        let kept = &records.emitted[0];
        let seen: Vec<_> = (0..kept.records.len())
            .map(|i| {
                let header = kept.headers_of(i)[0].value[0];
                (kept.record(i).value.to_vec(), header)
            })
            .collect();
        assert_eq!(
            seen,
            [
                (b"r1".to_vec(), 1),
                (b"r3".to_vec(), 3),
                (b"r4".to_vec(), 4)
            ]
        );
    }
}
