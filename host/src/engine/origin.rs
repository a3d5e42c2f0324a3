//! Where a re-keyed record came from, and how an aggregator behind a
//! repartition topic counts each source record once.
//!
//! A pipeline whose aggregator is keyed by a field (`key_field`) runs in two
//! hops. The first reads the source topic, runs the filters and transforms
//! and writes each record to the repartition topic, keyed by the field, with
//! a `weir.origin` header: the record's partition and offset in the source
//! topic, and its index among the records its source record became (a
//! transform may make several). The first hop writes at least once: after a
//! crash or a rebalance it writes again what it had not committed.
//!
//! The second hop reads the repartition topic into the aggregator. Each
//! key's state holds, per source partition, the newest [`Origin`] folded in
//! ([`Origins`]). The first hop writes one source partition's records in
//! order and without gaps (an idempotent producer, its gapless guarantee
//! on), and a key's records all go to one repartition partition, so a
//! record written again arrives after the original, never in its place: a
//! record whose origin is not past the newest its key holds for that source
//! partition was counted already, and is skipped.

/// The header the first hop adds.
pub const HEADER: &str = "weir.origin";

/// The bytes of a header value: partition, offset, index, big-endian.
const ENCODED: usize = 16;

/// A record's place in the source topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// The source partition.
    pub partition: i32,
    /// The source record's offset there.
    pub offset: i64,
    /// Its index among the records the source record became.
    pub index: u32,
}

impl Origin {
    /// The header value.
    pub fn encode(self) -> [u8; ENCODED] {
        let mut value = [0; ENCODED];
        value[..4].copy_from_slice(&self.partition.to_be_bytes());
        value[4..12].copy_from_slice(&self.offset.to_be_bytes());
        value[12..].copy_from_slice(&self.index.to_be_bytes());
        value
    }

    /// Reads a header value; `None` when it is not one weir wrote.
    pub fn decode(value: &[u8]) -> Option<Self> {
        let value: &[u8; ENCODED] = value.try_into().ok()?;
        Some(Self {
            partition: i32::from_be_bytes(value[..4].try_into().expect("four bytes")),
            offset: i64::from_be_bytes(value[4..12].try_into().expect("eight bytes")),
            index: u32::from_be_bytes(value[12..].try_into().expect("four bytes")),
        })
    }

    /// Whether this comes after `other` in the same source partition.
    fn after(self, other: Self) -> bool {
        (self.offset, self.index) > (other.offset, other.index)
    }
}

/// The newest origin a key's state holds, per source partition (at most one
/// entry per partition, in no order).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origins(Vec<Origin>);

impl Origins {
    /// From stored entries (one per partition).
    pub fn from_vec(origins: Vec<Origin>) -> Self {
        Self(origins)
    }

    /// The entries.
    pub fn as_slice(&self) -> &[Origin] {
        &self.0
    }

    /// True when no record was folded in.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether a record from `origin` was folded in already.
    pub fn holds(&self, origin: Origin) -> bool {
        self.0
            .iter()
            .find(|held| held.partition == origin.partition)
            .is_some_and(|held| !origin.after(*held))
    }

    /// Notes that the record from `origin` was folded in.
    pub fn advance(&mut self, origin: Origin) {
        match self.0.iter_mut().find(|h| h.partition == origin.partition) {
            Some(held) if origin.after(*held) => *held = origin,
            Some(_) => {}
            None => self.0.push(origin),
        }
    }

    /// Notes everything `other` holds.
    pub fn merge(&mut self, other: &Self) {
        for &origin in &other.0 {
            self.advance(origin);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(partition: i32, offset: i64, index: u32) -> Origin {
        Origin {
            partition,
            offset,
            index,
        }
    }

    #[test]
    fn an_origin_reads_back_as_written_and_other_bytes_are_refused() {
        let origin = at(7, 1 << 40, 3);
        assert_eq!(Origin::decode(&origin.encode()), Some(origin));
        assert_eq!(Origin::decode(&origin.encode()[..15]), None);
        assert_eq!(Origin::decode(b"0:17"), None);
    }

    #[test]
    fn a_key_holds_what_it_folded_per_source_partition() {
        let mut origins = Origins::default();
        assert!(!origins.holds(at(0, 0, 0)));
        origins.advance(at(0, 10, 0));
        origins.advance(at(1, 3, 1));
        // Written again after a crash: held.
        assert!(origins.holds(at(0, 10, 0)));
        assert!(origins.holds(at(0, 9, 5)));
        assert!(origins.holds(at(1, 3, 0)));
        // The next record of a split source record, and later records: not held.
        assert!(!origins.holds(at(0, 10, 1)));
        assert!(!origins.holds(at(1, 4, 0)));
        assert!(!origins.holds(at(2, 0, 0)));
        // Going back changes nothing.
        origins.advance(at(0, 5, 0));
        assert!(!origins.holds(at(0, 11, 0)));
        assert!(origins.holds(at(0, 10, 0)));
        let mut merged = Origins::from_vec(vec![at(0, 12, 0), at(2, 1, 0)]);
        merged.merge(&origins);
        let mut entries = merged.as_slice().to_vec();
        entries.sort_by_key(|o| o.partition);
        assert_eq!(entries, vec![at(0, 12, 0), at(1, 3, 1), at(2, 1, 0)]);
    }
}
