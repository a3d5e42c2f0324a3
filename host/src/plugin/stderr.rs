//! A plugin's standard output and error: kept as the last few KiB in memory,
//! so a trap can be reported with what the plugin printed just before (a
//! Rust panic message, a Python traceback), and a chatty plugin never fails
//! for lack of room.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// The last `capacity` bytes written by a plugin.
#[derive(Clone)]
pub struct TailBuffer {
    bytes: Arc<Mutex<VecDeque<u8>>>,
    capacity: usize,
}

impl TailBuffer {
    /// An empty buffer keeping at most `capacity` bytes.
    pub fn new(capacity: usize) -> Self {
        Self {
            bytes: Arc::new(Mutex::new(VecDeque::with_capacity(capacity))),
            capacity,
        }
    }

    /// Takes what was written since the last call, as text.
    pub fn take(&self) -> String {
        let mut bytes = self.bytes.lock().expect("tail buffer lock");
        let text: Vec<u8> = bytes.drain(..).collect();
        String::from_utf8_lossy(&text).trim().to_owned()
    }

    fn push(&self, data: &[u8]) {
        let mut bytes = self.bytes.lock().expect("tail buffer lock");
        let keep = data.len().min(self.capacity);
        let overflow = (bytes.len() + keep).saturating_sub(self.capacity);
        bytes.drain(..overflow);
        bytes.extend(&data[data.len() - keep..]);
    }
}

impl IsTerminal for TailBuffer {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for TailBuffer {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl tokio::io::AsyncWrite for TailBuffer {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.push(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::TailBuffer;

    #[test]
    fn keeps_only_the_newest_bytes() {
        let tail = TailBuffer::new(8);
        tail.push(b"hello ");
        tail.push(b"world!");
        assert_eq!(tail.take(), "o world!");
        assert_eq!(tail.take(), "");
        tail.push(b"0123456789abcdef");
        assert_eq!(tail.take(), "89abcdef");
    }
}
