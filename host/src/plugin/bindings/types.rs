//! The contract's `types` interface on the host side: the generated types,
//! except the four that cross the boundary once per record or per field on
//! every call (`span`, `record-info`, and so `batch` and `fields`, which hold
//! lists of them).
//!
//! wasmtime lowers a list of records field by field, and every field store
//! looks up the guest's memory again: in the demo pipeline that lookup
//! alone was 0.27 µs per event of the 0.57 µs the boundary cost. These
//! types write a whole list into the guest's memory in one pass instead. Each
//! borrows its shape (ABI, type check, single-value lowering) from a twin
//! that derives it the usual way, so the component's own type is still
//! checked at load; the bulk path writes the same bytes at the offsets the
//! canonical ABI gives (pinned by the tests below and by
//! `host/tests/runtime.rs`, which reads them back through a plugin).

use std::mem::MaybeUninit;

use wasmtime::component::__internal::{
    CanonicalAbiInfo, InstanceType, InterfaceType, LiftContext, LowerContext,
};
use wasmtime::component::{ComponentType, Lift, Lower};

pub use super::types_world::weir::plugin::types::{
    Host, HostWithStore, PluginError, RecordHeader, Rejection, Value, add_to_linker,
    add_to_linker_instance,
};

/// Where bytes lie in a batch's `data` buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub start: u32,
    pub len: u32,
}

/// One input record's metadata (contract: `record-info`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordInfo {
    /// `None` when the Kafka record has no key.
    pub key: Option<Span>,
    pub value: Span,
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
    pub partition: i32,
    pub offset: i64,
}

/// A batch of records: all keys and values in one buffer.
#[derive(ComponentType, Lower, Debug, Clone, PartialEq)]
#[component(record)]
pub struct Batch {
    #[component(name = "data")]
    pub data: Vec<u8>,
    #[component(name = "records")]
    pub records: Vec<RecordInfo>,
    #[component(name = "headers")]
    pub headers: Vec<RecordHeader>,
}

/// The values of the fields a plugin reads, as spans of each record's value.
#[derive(ComponentType, Lower, Debug, Clone, PartialEq)]
#[component(record)]
pub struct Fields {
    #[component(name = "first")]
    pub first: Vec<Option<u32>>,
    #[component(name = "spans")]
    pub spans: Vec<Span>,
}

/// The twins: the same records, derived the usual way.
mod twin {
    use wasmtime::component::{ComponentType, Lift, Lower};

    #[derive(ComponentType, Lower, Lift, Clone, Copy)]
    #[component(record)]
    pub struct Span {
        #[component(name = "start")]
        pub start: u32,
        #[component(name = "len")]
        pub len: u32,
    }

    #[derive(ComponentType, Lower, Lift, Clone, Copy)]
    #[component(record)]
    pub struct RecordInfo {
        #[component(name = "key")]
        pub key: Option<Span>,
        #[component(name = "value")]
        pub value: Span,
        #[component(name = "timestamp")]
        pub timestamp: i64,
        #[component(name = "partition")]
        pub partition: i32,
        #[component(name = "offset")]
        pub offset: i64,
    }
}

impl From<Span> for twin::Span {
    fn from(span: Span) -> Self {
        Self {
            start: span.start,
            len: span.len,
        }
    }
}

impl From<twin::Span> for Span {
    fn from(span: twin::Span) -> Self {
        Self {
            start: span.start,
            len: span.len,
        }
    }
}

impl From<RecordInfo> for twin::RecordInfo {
    fn from(info: RecordInfo) -> Self {
        Self {
            key: info.key.map(Into::into),
            value: info.value.into(),
            timestamp: info.timestamp,
            partition: info.partition,
            offset: info.offset,
        }
    }
}

impl From<twin::RecordInfo> for RecordInfo {
    fn from(info: twin::RecordInfo) -> Self {
        Self {
            key: info.key.map(Into::into),
            value: info.value.into(),
            timestamp: info.timestamp,
            partition: info.partition,
            offset: info.offset,
        }
    }
}

/// A record's layout in guest memory (canonical ABI, 32-bit).
mod layout {
    /// `span`: start, len.
    pub const SPAN_SIZE: usize = 8;
    /// `record-info`: the offsets of its fields. `key` is an `option<span>`:
    /// a discriminant byte, then the span at the span's alignment.
    pub const KEY_TAG: usize = 0;
    pub const KEY: usize = 4;
    pub const VALUE: usize = 12;
    pub const TIMESTAMP: usize = 24;
    pub const PARTITION: usize = 32;
    pub const OFFSET: usize = 40;
    pub const RECORD_INFO_SIZE: usize = 48;
}

/// Writes `span` as the canonical ABI lays it out (8 bytes).
fn put_span(bytes: &mut [u8], span: Span) {
    bytes[..4].copy_from_slice(&span.start.to_le_bytes());
    bytes[4..8].copy_from_slice(&span.len.to_le_bytes());
}

/// Writes `spans` into `memory`, `SPAN_SIZE` bytes each.
fn write_spans(memory: &mut [u8], spans: &[Span]) {
    for (bytes, span) in memory.chunks_exact_mut(layout::SPAN_SIZE).zip(spans) {
        put_span(bytes, *span);
    }
}

/// Writes `records` into `memory`, `RECORD_INFO_SIZE` bytes each, padding
/// zeroed.
fn write_record_infos(memory: &mut [u8], records: &[RecordInfo]) {
    use layout::*;
    for (bytes, info) in memory.chunks_exact_mut(RECORD_INFO_SIZE).zip(records) {
        let mut record = [0_u8; RECORD_INFO_SIZE];
        if let Some(key) = info.key {
            record[KEY_TAG] = 1;
            put_span(&mut record[KEY..], key);
        }
        put_span(&mut record[VALUE..], info.value);
        record[TIMESTAMP..TIMESTAMP + 8].copy_from_slice(&info.timestamp.to_le_bytes());
        record[PARTITION..PARTITION + 4].copy_from_slice(&info.partition.to_le_bytes());
        record[OFFSET..OFFSET + 8].copy_from_slice(&info.offset.to_le_bytes());
        bytes.copy_from_slice(&record);
    }
}

/// Implements wasmtime's traits for `$ty`: its shape, type check, lifting
/// and single-value lowering through `$twin`; lists lowered by `$write`,
/// which writes them as the twin would, `SIZE32` bytes per item.
macro_rules! shaped_like {
    ($ty:ty, $twin:ty, $write:path) => {
        // SAFETY: `$ty` has the twin's canonical-ABI shape: the same fields.
        #[allow(
            unsafe_code,
            reason = "wasmtime's lowering traits are unsafe to implement"
        )]
        unsafe impl ComponentType for $ty {
            type Lower = <$twin as ComponentType>::Lower;
            const ABI: CanonicalAbiInfo = <$twin as ComponentType>::ABI;

            fn typecheck(ty: &InterfaceType, types: &InstanceType<'_>) -> wasmtime::Result<()> {
                <$twin as ComponentType>::typecheck(ty, types)
            }
        }

        // SAFETY: lifting goes through the twin.
        #[allow(
            unsafe_code,
            reason = "wasmtime's lowering traits are unsafe to implement"
        )]
        unsafe impl Lift for $ty {
            fn linear_lift_from_flat(
                cx: &mut LiftContext<'_>,
                ty: InterfaceType,
                src: &Self::Lower,
            ) -> wasmtime::Result<Self> {
                <$twin as Lift>::linear_lift_from_flat(cx, ty, src).map(Into::into)
            }

            fn linear_lift_from_memory(
                cx: &mut LiftContext<'_>,
                ty: InterfaceType,
                bytes: &[u8],
            ) -> wasmtime::Result<Self> {
                <$twin as Lift>::linear_lift_from_memory(cx, ty, bytes).map(Into::into)
            }
        }

        // SAFETY: a single value lowers through the twin; a list is written
        // as the twin would write it, `SIZE32` bytes per item at `offset`,
        // which the caller checked lies in memory (the slice is bounds
        // checked again here).
        #[allow(
            unsafe_code,
            reason = "wasmtime's lowering traits are unsafe to implement"
        )]
        unsafe impl Lower for $ty {
            fn linear_lower_to_flat<T>(
                &self,
                cx: &mut LowerContext<'_, T>,
                ty: InterfaceType,
                dst: &mut MaybeUninit<Self::Lower>,
            ) -> wasmtime::Result<()> {
                <$twin>::from(*self).linear_lower_to_flat(cx, ty, dst)
            }

            fn linear_lower_to_memory<T>(
                &self,
                cx: &mut LowerContext<'_, T>,
                ty: InterfaceType,
                offset: usize,
            ) -> wasmtime::Result<()> {
                <$twin>::from(*self).linear_lower_to_memory(cx, ty, offset)
            }

            fn linear_store_list_to_memory<T>(
                cx: &mut LowerContext<'_, T>,
                _ty: InterfaceType,
                offset: usize,
                items: &[Self],
            ) -> wasmtime::Result<()> {
                let size = <Self as ComponentType>::SIZE32;
                $write(
                    &mut cx.as_slice_mut()[offset..][..items.len() * size],
                    items,
                );
                Ok(())
            }
        }
    };
}

shaped_like!(Span, twin::Span, write_spans);
shaped_like!(RecordInfo, twin::RecordInfo, write_record_infos);

#[cfg(test)]
mod tests {
    use super::*;

    /// The offsets the bulk path writes at are the ones the canonical ABI
    /// gives, computed the way wasmtime's derived lowering computes them.
    #[test]
    fn layout_is_the_canonical_abis() {
        let mut offset = 0;
        let start = <u32 as ComponentType>::ABI.next_field32_size(&mut offset);
        let len = <u32 as ComponentType>::ABI.next_field32_size(&mut offset);
        assert_eq!((start, len), (0, 4));
        assert_eq!(<Span as ComponentType>::SIZE32, layout::SPAN_SIZE);

        let mut offset = 0;
        let key = <Option<Span> as ComponentType>::ABI.next_field32_size(&mut offset);
        let value = <Span as ComponentType>::ABI.next_field32_size(&mut offset);
        let timestamp = <i64 as ComponentType>::ABI.next_field32_size(&mut offset);
        let partition = <i32 as ComponentType>::ABI.next_field32_size(&mut offset);
        let offset_field = <i64 as ComponentType>::ABI.next_field32_size(&mut offset);
        assert_eq!(
            (key, value, timestamp, partition, offset_field),
            (
                layout::KEY_TAG,
                layout::VALUE,
                layout::TIMESTAMP,
                layout::PARTITION,
                layout::OFFSET
            )
        );
        // Inside `option<span>`: the tag byte, then the payload at the
        // span's alignment.
        let mut inner = 1;
        let payload = <Span as ComponentType>::ABI.next_field32_size(&mut inner);
        assert_eq!(key + payload, layout::KEY);
        assert_eq!(
            <RecordInfo as ComponentType>::SIZE32,
            layout::RECORD_INFO_SIZE
        );
    }
}
