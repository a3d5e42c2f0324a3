//! Records no well-behaved client writes, sent through librdkafka's C API:
//! header names that are not UTF-8 (rdkafka's safe API takes names as
//! `&str`, and Kafka's own clients as strings), for the tests that check
//! weir takes anything a broker accepts.

#![allow(
    unsafe_code,
    reason = "rdkafka's safe API cannot write a header name that is not UTF-8"
)]

use std::ffi::CString;

use anyhow::{Context, Result, bail};
use rdkafka::bindings as rdsys;
use rdkafka::client::{Client, ClientContext};

/// One record as it goes to the broker: any key, any value or none (a
/// tombstone), headers whose names are any bytes but NUL, a timestamp.
#[derive(Debug, Clone, Default)]
pub struct Raw {
    /// The key, if any.
    pub key: Option<Vec<u8>>,
    /// The value; `None` for a null value.
    pub value: Option<Vec<u8>>,
    /// The headers, in order.
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    /// Milliseconds since the epoch (`None`: the producer's clock).
    pub timestamp: Option<i64>,
}

/// Queues `record` for `topic` on the producer of `client` (partitioned by
/// its key, as the producer's other records). The producer's `flush`
/// sends it.
pub fn send<C: ClientContext>(client: &Client<C>, topic: &str, record: &Raw) -> Result<()> {
    use rdsys::rd_kafka_vtype_t as Type;
    let topic = CString::new(topic).context("a topic name without NUL")?;
    let names = record
        .headers
        .iter()
        .map(|(name, _)| CString::new(name.as_slice()).context("a header name without NUL"))
        .collect::<Result<Vec<_>>>()?;
    let field = |vtype, u| rdsys::rd_kafka_vu_t { vtype, u };
    let memory = |bytes: &[u8]| rdsys::rd_kafka_vu_s__bindgen_ty_1 {
        mem: rdsys::rd_kafka_vu_s__bindgen_ty_1__bindgen_ty_1 {
            ptr: bytes.as_ptr().cast_mut().cast(),
            size: bytes.len(),
        },
    };
    let mut fields = vec![
        field(
            Type::RD_KAFKA_VTYPE_TOPIC,
            rdsys::rd_kafka_vu_s__bindgen_ty_1 {
                cstr: topic.as_ptr(),
            },
        ),
        // librdkafka copies what it is given before `produceva` returns.
        field(
            Type::RD_KAFKA_VTYPE_MSGFLAGS,
            rdsys::rd_kafka_vu_s__bindgen_ty_1 {
                i: rdsys::RD_KAFKA_MSG_F_COPY,
            },
        ),
    ];
    if let Some(value) = &record.value {
        fields.push(field(Type::RD_KAFKA_VTYPE_VALUE, memory(value)));
    }
    if let Some(key) = &record.key {
        fields.push(field(Type::RD_KAFKA_VTYPE_KEY, memory(key)));
    }
    if let Some(timestamp) = record.timestamp {
        fields.push(field(
            Type::RD_KAFKA_VTYPE_TIMESTAMP,
            rdsys::rd_kafka_vu_s__bindgen_ty_1 { i64_: timestamp },
        ));
    }
    for (name, (_, value)) in names.iter().zip(&record.headers) {
        fields.push(field(
            Type::RD_KAFKA_VTYPE_HEADER,
            rdsys::rd_kafka_vu_s__bindgen_ty_1 {
                header: rdsys::rd_kafka_vu_s__bindgen_ty_1__bindgen_ty_2 {
                    name: name.as_ptr(),
                    val: value.as_ptr().cast(),
                    size: isize::try_from(value.len())?,
                },
            },
        ));
    }
    // SAFETY: `client` owns a live producer handle; every pointer in
    // `fields` points into `topic`, `names` or `record`,
    // all alive until this returns, and librdkafka copies them (F_COPY).
    let error =
        unsafe { rdsys::rd_kafka_produceva(client.native_ptr(), fields.as_ptr(), fields.len()) };
    if !error.is_null() {
        // SAFETY: a non-null result is an error object we own.
        let message = unsafe {
            let text = std::ffi::CStr::from_ptr(rdsys::rd_kafka_error_string(error))
                .to_string_lossy()
                .into_owned();
            rdsys::rd_kafka_error_destroy(error);
            text
        };
        bail!("librdkafka refused the record: {message}");
    }
    Ok(())
}
