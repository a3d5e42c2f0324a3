//! What a plugin may observe beyond its input. The real clocks and a random
//! source are capabilities a stage grants in the pipeline file
//! (`capabilities = ["clock", "random"]`). A plugin not granted them reads
//! replayable ones instead:
//!
//! - both clocks stand, for the length of a call, at the time of the newest
//!   record of the call's batch (the monotonic clock never goes back: it
//!   keeps the latest time it showed);
//! - random bytes, secure and insecure alike, come from a ChaCha generator
//!   seeded for each call from the stage's name and the call's input (the
//!   batch's first record, its size and time; a migration's state).
//!
//! The same input in the same batches then gives the same output byte for
//! byte: a replay after a crash, a `weir plugin test` run twice, a rebuilt
//! table. A plugin that keeps a cache keyed by time, or draws identifiers,
//! gets values that repeat when the input does — which is what a replay is.

use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chacha20::ChaCha12Rng;
use rand_core::{SeedableRng, TryRng};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock};

use super::bindings::types::Batch;

/// Something a stage may grant its plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Capability {
    /// The host's wall clock and monotonic clock.
    Clock,
    /// The host's random source (`wasi:random`, secure and insecure).
    Random,
}

impl Capability {
    /// Its name in the pipeline file.
    pub fn name(self) -> &'static str {
        match self {
            Self::Clock => "clock",
            Self::Random => "random",
        }
    }

    /// The WASI interfaces (without their version) whose answers it makes
    /// real.
    pub fn interfaces(self) -> &'static [&'static str] {
        match self {
            Self::Clock => &["wasi:clocks/wall-clock", "wasi:clocks/monotonic-clock"],
            Self::Random => &[
                "wasi:random/random",
                "wasi:random/insecure",
                "wasi:random/insecure-seed",
            ],
        }
    }
}

/// The capabilities a stage grants (none by default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// The real clocks.
    pub clock: bool,
    /// The real random source.
    pub random: bool,
}

impl FromIterator<Capability> for Capabilities {
    fn from_iter<I: IntoIterator<Item = Capability>>(capabilities: I) -> Self {
        let mut granted = Self::default();
        for capability in capabilities {
            match capability {
                Capability::Clock => granted.clock = true,
                Capability::Random => granted.random = true,
            }
        }
        granted
    }
}

/// What a call is given, which seeds its random bytes and sets its time.
#[derive(Clone, Copy)]
pub(super) enum CallInput<'a> {
    /// A batch of records (time: its newest record).
    Batch(&'a Batch),
    /// Bytes without a time (a migration's state): the time stays.
    Bytes(&'a [u8]),
    /// Nothing (the state version, the schema): time and generator stay.
    Nothing,
}

/// The replayable clocks and random source of one instance; [`Self::start`]
/// sets them before each call. Clones share them (the WASI context holds
/// clones).
#[derive(Clone)]
pub(super) struct Replay(Arc<Mutex<ReplayState>>);

struct ReplayState {
    /// The stage's name, hashed: a part of every seed.
    stage: [u8; 32],
    /// What both clocks show (ms since the Unix epoch).
    now_ms: i64,
    /// The latest time the monotonic clock showed (ns).
    monotonic_ns: u64,
    random: ChaCha12Rng,
}

/// Resolution of the replayable clocks: records carry milliseconds.
const RESOLUTION: Duration = Duration::from_millis(1);

impl Replay {
    /// The replayable clocks and random source of an instance of `stage`:
    /// the Unix epoch, and a generator seeded by the stage's name.
    pub(super) fn new(stage: &str) -> Self {
        let stage: [u8; 32] = Sha256::digest(stage.as_bytes()).into();
        Self(Arc::new(Mutex::new(ReplayState {
            stage,
            now_ms: 0,
            monotonic_ns: 0,
            random: ChaCha12Rng::from_seed(stage),
        })))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ReplayState> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Before a call given `input`: its time, and a generator seeded by it.
    pub(super) fn start(&self, input: CallInput<'_>) {
        let mut state = self.state();
        let mut seed = Sha256::new();
        seed.update(state.stage);
        match input {
            CallInput::Batch(batch) => {
                if let Some(newest) = batch.records.iter().map(|r| r.timestamp).max() {
                    state.now_ms = newest;
                }
                seed.update(b"batch");
                seed.update(state.now_ms.to_le_bytes());
                seed.update((batch.records.len() as u64).to_le_bytes());
                if let Some(first) = batch.records.first() {
                    seed.update(first.partition.to_le_bytes());
                    seed.update(first.offset.to_le_bytes());
                }
            }
            CallInput::Bytes(bytes) => {
                seed.update(b"bytes");
                seed.update(bytes);
            }
            CallInput::Nothing => return,
        }
        let ns = u64::try_from(state.now_ms)
            .unwrap_or(0)
            .saturating_mul(1_000_000);
        state.monotonic_ns = state.monotonic_ns.max(ns);
        state.random = ChaCha12Rng::from_seed(seed.finalize().into());
    }

    /// Gives `builder` the replayable clocks and random source, except
    /// what `granted` makes real.
    pub(super) fn install(&self, builder: &mut WasiCtxBuilder, granted: Capabilities) {
        if !granted.clock {
            builder
                .wall_clock(self.clone())
                .monotonic_clock(self.clone());
        }
        if !granted.random {
            let seed = u128::from_le_bytes(self.state().stage[..16].try_into().expect("16 bytes"));
            builder
                .secure_random(self.clone())
                .insecure_random(self.clone())
                .insecure_random_seed(seed);
        }
    }
}

impl HostWallClock for Replay {
    fn resolution(&self) -> Duration {
        RESOLUTION
    }

    fn now(&self) -> Duration {
        Duration::from_millis(u64::try_from(self.state().now_ms).unwrap_or(0))
    }
}

impl HostMonotonicClock for Replay {
    fn resolution(&self) -> u64 {
        RESOLUTION.as_nanos() as u64
    }

    fn now(&self) -> u64 {
        self.state().monotonic_ns
    }
}

impl TryRng for Replay {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        self.state().random.try_next_u32()
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        self.state().random.try_next_u64()
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.state().random.try_fill_bytes(dst)
    }
}
