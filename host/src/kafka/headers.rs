//! A record's headers as bytes. rdkafka's `Headers` turns each name into a
//! `&str` and panics on one that is not UTF-8, which any client can write
//! (a panic there stopped the source thread for good); librdkafka's own
//! accessors give the bytes, and the source decides what such a record is.

#![allow(
    unsafe_code,
    reason = "librdkafka's C accessors are the only way to read a header name rdkafka would panic on"
)]

use std::ffi::CStr;
use std::ptr;

use rdkafka::bindings as rdsys;
use rdkafka::message::BorrowedMessage;

/// The headers of `message` in order, as (name, value) bytes; a header
/// without a value has an empty one.
pub fn headers<'a>(message: &'a BorrowedMessage<'_>) -> Vec<(&'a [u8], &'a [u8])> {
    let mut native = ptr::null_mut();
    // SAFETY: `message.ptr()` is the librdkafka message `message` owns,
    // alive while it is borrowed; librdkafka only reads it here and stores
    // a pointer to headers the message owns.
    let found = unsafe { rdsys::rd_kafka_message_headers(message.ptr(), &raw mut native) };
    if found != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || native.is_null() {
        return Vec::new();
    }
    // SAFETY: `native` is the message's headers, as librdkafka just said.
    let count = unsafe { rdsys::rd_kafka_header_cnt(native) };
    let mut headers = Vec::with_capacity(count);
    for index in 0..count {
        let (mut name, mut value, mut size) = (ptr::null(), ptr::null(), 0usize);
        // SAFETY: `index` is below the count; the out-pointers are ours.
        let got = unsafe {
            rdsys::rd_kafka_header_get_all(
                native,
                index,
                &raw mut name,
                &raw mut value,
                &raw mut size,
            )
        };
        if got != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || name.is_null() {
            continue;
        }
        // SAFETY: librdkafka keeps each name NUL-terminated and each value
        // `size` bytes long (or null), owned by the message for `'a`.
        let name = unsafe { CStr::from_ptr(name) }.to_bytes();
        let value = if value.is_null() {
            &[][..]
        } else {
            // SAFETY: as above.
            unsafe { std::slice::from_raw_parts(value.cast::<u8>(), size) }
        };
        headers.push((name, value));
    }
    headers
}
