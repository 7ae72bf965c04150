//! What a record carries: the value header that makes end-to-end latency and
//! verification possible, keys by distribution, and Kafka's partitioner.
//!
//! Value layout (big-endian), then filler up to the record size:
//! `run_id: u32 | producer: u32 | sequence: u64 | intended_send_ns: u64`.
//! `sequence` counts per (producer, partition) from 0; `intended_send_ns`
//! is wall-clock nanoseconds since the Unix epoch of the moment the record
//! was due (not the moment it was sent: see `rate`).

use clap::ValueEnum;
use serde::Serialize;

pub const VALUE_HEADER_BYTES: usize = 24;

/// The fields of a value header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValueHeader {
    pub run_id: u32,
    pub producer: u32,
    pub sequence: u64,
    pub intended_send_ns: u64,
}

impl ValueHeader {
    pub fn encode(&self) -> [u8; VALUE_HEADER_BYTES] {
        let mut out = [0u8; VALUE_HEADER_BYTES];
        out[0..4].copy_from_slice(&self.run_id.to_be_bytes());
        out[4..8].copy_from_slice(&self.producer.to_be_bytes());
        out[8..16].copy_from_slice(&self.sequence.to_be_bytes());
        out[16..24].copy_from_slice(&self.intended_send_ns.to_be_bytes());
        out
    }

    pub fn decode(value: &[u8]) -> Option<ValueHeader> {
        if value.len() < VALUE_HEADER_BYTES {
            return None;
        }
        Some(ValueHeader {
            run_id: u32::from_be_bytes(value[0..4].try_into().unwrap()),
            producer: u32::from_be_bytes(value[4..8].try_into().unwrap()),
            sequence: u64::from_be_bytes(value[8..16].try_into().unwrap()),
            intended_send_ns: u64::from_be_bytes(value[16..24].try_into().unwrap()),
        })
    }
}

/// A small, fast, seedable generator (SplitMix64). Not for secrets.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (bound > 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// How filler bytes look: incompressible, or roughly 2:1 compressible text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Payload {
    Random,
    Text,
}

/// A pool of filler bytes; each record takes a window at a moving offset so
/// consecutive values differ (compression sees realistic data, not one value
/// repeated).
pub struct Filler {
    pool: Vec<u8>,
    at: usize,
}

pub const FILLER_POOL_BYTES: usize = 1 << 20;

impl Filler {
    pub fn new(kind: Payload, seed: u64) -> Filler {
        let mut rng = Rng::new(seed);
        let pool = match kind {
            Payload::Random => {
                let mut pool = Vec::with_capacity(FILLER_POOL_BYTES);
                while pool.len() < FILLER_POOL_BYTES {
                    pool.extend_from_slice(&rng.next_u64().to_le_bytes());
                }
                pool
            }
            Payload::Text => {
                const WORDS: &[&str] = &[
                    "broker",
                    "partition",
                    "offset",
                    "record",
                    "batch",
                    "leader",
                    "replica",
                    "segment",
                    "consumer",
                    "producer",
                    "topic",
                    "latency",
                    "commit",
                    "fetch",
                    "the",
                    "a",
                    "of",
                    "and",
                    "to",
                    "in",
                    "is",
                    "for",
                    "with",
                    "on",
                    "at",
                ];
                let mut pool = Vec::with_capacity(FILLER_POOL_BYTES + 16);
                while pool.len() < FILLER_POOL_BYTES {
                    let word = WORDS[rng.below(WORDS.len() as u64) as usize];
                    pool.extend_from_slice(word.as_bytes());
                    pool.extend_from_slice(format!(" {} ", rng.below(1000)).as_bytes());
                }
                pool.truncate(FILLER_POOL_BYTES);
                pool
            }
        };
        Filler { pool, at: 0 }
    }

    /// The next `len` filler bytes (len must not exceed half the pool).
    pub fn take(&mut self, len: usize) -> &[u8] {
        assert!(
            len <= FILLER_POOL_BYTES / 2,
            "record too large for the filler pool"
        );
        if self.at + len > self.pool.len() {
            self.at = 0;
        }
        let start = self.at;
        // Move by an odd stride so windows do not repeat with the record size.
        self.at += len / 2 + 7;
        &self.pool[start..start + len]
    }
}

/// How records get keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyDistribution {
    /// No key: the producer fills one partition's batch, then moves on
    /// (Kafka's sticky partitioner).
    None,
    /// Keys drawn uniformly from `key_space`.
    Uniform,
    /// A fraction `hot_fraction` of records use one of `hot_keys` keys; the
    /// rest are uniform over `key_space`.
    Hot,
}

/// Draws keys; a key is `key_bytes` long and starts with its index.
#[derive(Debug, Clone)]
pub struct KeyGenerator {
    pub distribution: KeyDistribution,
    pub key_space: u64,
    pub hot_keys: u64,
    pub hot_fraction: f64,
    pub key_bytes: usize,
}

impl KeyGenerator {
    /// Writes the next key into `key` and returns it, or `None` for no key.
    pub fn next<'a>(&self, rng: &mut Rng, key: &'a mut [u8]) -> Option<&'a [u8]> {
        let index = match self.distribution {
            KeyDistribution::None => return None,
            KeyDistribution::Uniform => rng.below(self.key_space),
            KeyDistribution::Hot => {
                if rng.unit() < self.hot_fraction {
                    rng.below(self.hot_keys)
                } else {
                    rng.below(self.key_space)
                }
            }
        };
        let key = &mut key[..self.key_bytes];
        key.fill(b'k');
        let digits = format_decimal(index);
        let n = digits.1.min(key.len());
        key[..n].copy_from_slice(&digits.0[20 - digits.1..20 - digits.1 + n]);
        Some(key)
    }
}

fn format_decimal(mut value: u64) -> ([u8; 20], usize) {
    let mut out = [0u8; 20];
    let mut at = 20;
    loop {
        at -= 1;
        out[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    (out, 20 - at)
}

/// Kafka's partitioner lives in the client crate; re-exported for the
/// generator and its benchmarks.
pub use sluice_client::partitioner::{murmur2, partition_for_key};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_header_round_trips() {
        let header = ValueHeader {
            run_id: 7,
            producer: 3,
            sequence: 1 << 40,
            intended_send_ns: 1_700_000_000_000_000_000,
        };
        let mut value = header.encode().to_vec();
        value.extend_from_slice(b"filler");
        assert_eq!(ValueHeader::decode(&value), Some(header));
        assert_eq!(ValueHeader::decode(&value[..10]), None);
    }

    #[test]
    fn hot_keys_take_their_share() {
        let generator = KeyGenerator {
            distribution: KeyDistribution::Hot,
            key_space: 1_000_000,
            hot_keys: 2,
            hot_fraction: 0.9,
            key_bytes: 8,
        };
        let mut rng = Rng::new(1);
        let mut buf = [0u8; 8];
        let mut hot = 0;
        for _ in 0..10_000 {
            let key = generator.next(&mut rng, &mut buf).unwrap();
            if key == b"0kkkkkkk" || key == b"1kkkkkkk" {
                hot += 1;
            }
        }
        assert!((8_800..9_200).contains(&hot), "{hot}");
    }

    #[test]
    fn filler_windows_move() {
        let mut filler = Filler::new(Payload::Random, 1);
        let first = filler.take(100).to_vec();
        let second = filler.take(100).to_vec();
        assert_ne!(first, second);
        for _ in 0..100_000 {
            assert_eq!(filler.take(1000).len(), 1000);
        }
    }
}
