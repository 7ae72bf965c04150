//! Kafka v2 record batches, built in place and parsed without a record
//! allocation.
//!
//! [`BatchBuilder`] appends records straight into the batch's records
//! section (one copy of each value, into a buffer reused from batch to
//! batch) and [`BatchBuilder::finish`] writes the 61-byte header, the
//! (optionally compressed) records and the CRC-32C. [`parse_batches`] walks
//! a Fetch response's bytes and hands each record to a closure as slices.
//! Compression uses `kafka-protocol`'s codecs, so the framing (xerial
//! snappy, lz4 frames) is the one Kafka clients use.

use std::cell::RefCell;
use std::io::Write;

use anyhow::{bail, Context, Result};
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::compression::{self as codec, Compressor, Decompressor};
use kafka_protocol::records::Compression;
use sluice_client::idempotence::ProducerIdentity;

/// Bytes of a v2 batch header, up to and including the record count.
pub const BATCH_HEADER_BYTES: usize = 61;
/// Where the CRC-covered part of the header starts (the attributes).
const CRC_START: usize = 21;
/// Bytes before the batch length field ends: base offset and length.
const LOG_OVERHEAD: usize = 12;
const MAGIC_V2: i8 = 2;
/// Attributes bit: the batch holds control records (transaction markers).
const CONTROL_FLAG: i16 = 0x20;

/// The compression codecs, by their Kafka names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Codec {
    fn attribute(self) -> i16 {
        self.compression() as i16
    }

    pub fn compression(self) -> Compression {
        match self {
            Codec::None => Compression::None,
            Codec::Gzip => Compression::Gzip,
            Codec::Snappy => Compression::Snappy,
            Codec::Lz4 => Compression::Lz4,
            Codec::Zstd => Compression::Zstd,
        }
    }
}

/// Size of a zigzag varint (Kafka's signed varint).
fn varint_bytes(value: i64) -> usize {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    let mut bytes = 1;
    while zigzag >= 0x80 {
        zigzag >>= 7;
        bytes += 1;
    }
    bytes
}

fn put_varint(buf: &mut BytesMut, value: i64) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    while zigzag >= 0x80 {
        buf.put_u8((zigzag as u8) | 0x80);
        zigzag >>= 7;
    }
    buf.put_u8(zigzag as u8);
}

fn get_varint(buf: &[u8], at: &mut usize) -> Result<i64> {
    let mut value: u64 = 0;
    let mut shift = 0;
    loop {
        let Some(&byte) = buf.get(*at) else {
            bail!("record truncated inside a varint");
        };
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 63 {
            bail!("varint longer than 10 bytes");
        }
    }
    Ok(((value >> 1) as i64) ^ -((value & 1) as i64))
}

/// One batch being filled. Reused: `finish` leaves it empty.
pub struct BatchBuilder {
    records: BytesMut,
    count: i32,
    base_timestamp_ms: i64,
    max_timestamp_ms: i64,
}

impl Default for BatchBuilder {
    fn default() -> Self {
        Self::with_capacity(16 * 1024)
    }
}

impl BatchBuilder {
    pub fn with_capacity(bytes: usize) -> BatchBuilder {
        BatchBuilder {
            records: BytesMut::with_capacity(bytes),
            count: 0,
            base_timestamp_ms: 0,
            max_timestamp_ms: 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Bytes the batch would take uncompressed.
    pub fn size_bytes(&self) -> usize {
        BATCH_HEADER_BYTES + self.records.len()
    }

    /// Appends a record whose value is the concatenation of `value_parts`
    /// (so a header and a payload need no intermediate copy).
    pub fn push(&mut self, timestamp_ms: i64, key: Option<&[u8]>, value_parts: &[&[u8]]) {
        if self.count == 0 {
            self.base_timestamp_ms = timestamp_ms;
            self.max_timestamp_ms = timestamp_ms;
        }
        self.max_timestamp_ms = self.max_timestamp_ms.max(timestamp_ms);
        let timestamp_delta = timestamp_ms - self.base_timestamp_ms;
        let offset_delta = i64::from(self.count);
        let value_len: usize = value_parts.iter().map(|part| part.len()).sum();
        let key_len = key.map_or(-1, |key| key.len() as i64);
        let body_bytes = 1
            + varint_bytes(timestamp_delta)
            + varint_bytes(offset_delta)
            + varint_bytes(key_len)
            + key.map_or(0, |key| key.len())
            + varint_bytes(value_len as i64)
            + value_len
            + 1;
        self.records.reserve(body_bytes + 5);
        let before = self.records.len();
        put_varint(&mut self.records, body_bytes as i64);
        let body_start = self.records.len();
        self.records.put_u8(0); // record attributes
        put_varint(&mut self.records, timestamp_delta);
        put_varint(&mut self.records, offset_delta);
        put_varint(&mut self.records, key_len);
        if let Some(key) = key {
            self.records.put_slice(key);
        }
        put_varint(&mut self.records, value_len as i64);
        for part in value_parts {
            self.records.put_slice(part);
        }
        put_varint(&mut self.records, 0); // no headers
        debug_assert_eq!(self.records.len() - body_start, body_bytes);
        debug_assert!(self.records.len() > before);
        self.count += 1;
    }

    /// Writes the finished batch (header, records, CRC) to `out` and empties
    /// the builder; a batch of no idempotent producer.
    pub fn finish(&mut self, codec: Codec, out: &mut BytesMut) -> Result<()> {
        self.finish_as(codec, out, ProducerIdentity::NONE, -1)
    }

    /// As [`BatchBuilder::finish`], stamped with an idempotent producer's
    /// identity and the batch's base sequence (-1 without idempotence).
    pub fn finish_as(
        &mut self,
        codec: Codec,
        out: &mut BytesMut,
        producer: ProducerIdentity,
        base_sequence: i32,
    ) -> Result<()> {
        assert!(self.count > 0, "an empty batch is never sent");
        let start = out.len();
        out.reserve(BATCH_HEADER_BYTES + self.records.len());
        out.put_i64(0); // base offset, assigned by the broker
        out.put_i32(0); // batch length, filled below
        out.put_i32(-1); // partition leader epoch
        out.put_i8(MAGIC_V2);
        out.put_u32(0); // crc, filled below
        out.put_i16(codec.attribute());
        out.put_i32(self.count - 1); // last offset delta
        out.put_i64(self.base_timestamp_ms);
        out.put_i64(self.max_timestamp_ms);
        out.put_i64(producer.id);
        out.put_i16(producer.epoch);
        out.put_i32(base_sequence);
        out.put_i32(self.count);
        debug_assert_eq!(out.len() - start, BATCH_HEADER_BYTES);
        compress_into(codec, &self.records, out)?;
        let batch_length = (out.len() - start - LOG_OVERHEAD) as i32;
        out[start + 8..start + 12].copy_from_slice(&batch_length.to_be_bytes());
        let crc = crc32c::crc32c(&out[start + CRC_START..]);
        out[start + 17..start + 21].copy_from_slice(&crc.to_be_bytes());
        self.records.clear();
        self.count = 0;
        Ok(())
    }
}

/// zstd level, as Kafka's default (`compression.zstd.level` 3).
const ZSTD_LEVEL: i32 = 3;

thread_local! {
    // One zstd context per thread, reused: creating one costs more than
    // compressing a 16 KiB batch.
    static ZSTD_COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
    static ZSTD_DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

fn compress_into(codec: Codec, records: &[u8], out: &mut BytesMut) -> Result<()> {
    let copy = |buf: &mut BytesMut| -> Result<()> {
        buf.put_slice(records);
        Ok(())
    };
    match codec {
        Codec::None => out.put_slice(records),
        Codec::Gzip => codec::Gzip::compress(out, copy)?,
        Codec::Snappy => codec::Snappy::compress(out, copy)?,
        Codec::Lz4 => {
            // The lz4 frame format with 64 KiB blocks, as Kafka's clients write.
            let mut encoder = lz4::EncoderBuilder::new()
                .block_size(lz4::BlockSize::Max64KB)
                .block_mode(lz4::BlockMode::Independent)
                .build(out.writer())
                .context("starting an lz4 frame")?;
            encoder.write_all(records).context("lz4")?;
            let (_, result) = encoder.finish();
            result.context("finishing an lz4 frame")?;
        }
        Codec::Zstd => ZSTD_COMPRESSOR.with(|cell| -> Result<()> {
            let mut cell = cell.borrow_mut();
            if cell.is_none() {
                *cell = Some(zstd::bulk::Compressor::new(ZSTD_LEVEL)?);
            }
            let compressor = cell.as_mut().unwrap();
            let start = out.len();
            let bound = zstd::zstd_safe::compress_bound(records.len());
            out.resize(start + bound, 0);
            let written = compressor.compress_to_buffer(records, &mut out[start..])?;
            out.truncate(start + written);
            Ok(())
        })?,
    }
    Ok(())
}

fn decompress(compression: i16, mut data: Bytes) -> Result<Bytes> {
    let take = |buf: &mut Bytes| -> Result<Bytes> { Ok(std::mem::take(buf)) };
    Ok(match compression {
        0 => data,
        1 => codec::Gzip::decompress(&mut data, take)?,
        2 => codec::Snappy::decompress(&mut data, take)?,
        3 => codec::Lz4::decompress(&mut data, take)?,
        4 => {
            // Frames that state their size (ours, and most clients') use a
            // reused context; the rest go through a stream decoder.
            let size = zstd::zstd_safe::get_frame_content_size(&data)
                .ok()
                .flatten();
            match size {
                Some(size) if size <= sluice_client::wire::FRAME_BYTES_MAX as u64 => {
                    ZSTD_DECOMPRESSOR.with(|cell| -> Result<Bytes> {
                        let mut cell = cell.borrow_mut();
                        if cell.is_none() {
                            *cell = Some(zstd::bulk::Decompressor::new()?);
                        }
                        let plain = cell.as_mut().unwrap().decompress(&data, size as usize)?;
                        Ok(Bytes::from(plain))
                    })?
                }
                _ => codec::Zstd::decompress(&mut data, take)?,
            }
        }
        other => bail!("unknown compression codec {other}"),
    })
}

/// One record as seen by a consumer: slices into the fetched bytes.
#[derive(Debug)]
pub struct RecordView<'a> {
    pub offset: i64,
    pub timestamp_ms: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
}

/// What a walk over fetched bytes found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ParseSummary {
    /// The offset after the last whole batch, if any batch was whole.
    pub next_offset: Option<i64>,
    pub batches: u64,
    /// Bytes of whole batches, as they came on the wire.
    pub bytes: u64,
}

/// Walks the record batches in `data` (a Fetch response's records), calling
/// `on_record` for each data record. A truncated last batch is normal
/// (brokers cut at `partition_max_bytes`) and is left for the next fetch.
pub fn parse_batches(
    data: &Bytes,
    check_crc: bool,
    mut on_record: impl FnMut(RecordView<'_>),
) -> Result<ParseSummary> {
    let mut summary = ParseSummary::default();
    let mut at = 0usize;
    while data.len() - at >= LOG_OVERHEAD {
        let base_offset = i64::from_be_bytes(data[at..at + 8].try_into().unwrap());
        let batch_length = i32::from_be_bytes(data[at + 8..at + 12].try_into().unwrap());
        if batch_length < (BATCH_HEADER_BYTES - LOG_OVERHEAD) as i32 {
            bail!("batch at offset {base_offset} has length {batch_length}");
        }
        let end = at + LOG_OVERHEAD + batch_length as usize;
        if end > data.len() {
            break; // partial batch
        }
        let batch = &data[at..end];
        let magic = batch[16] as i8;
        if magic != MAGIC_V2 {
            bail!("batch at offset {base_offset} has magic {magic}; only v2 is read");
        }
        if check_crc {
            let stored = u32::from_be_bytes(batch[17..21].try_into().unwrap());
            let computed = crc32c::crc32c(&batch[CRC_START..]);
            if stored != computed {
                bail!(
                    "batch at offset {base_offset}: CRC {stored:#x} stored, {computed:#x} computed"
                );
            }
        }
        let attributes = i16::from_be_bytes(batch[21..23].try_into().unwrap());
        let last_offset_delta = i32::from_be_bytes(batch[23..27].try_into().unwrap());
        let base_timestamp = i64::from_be_bytes(batch[27..35].try_into().unwrap());
        let count = i32::from_be_bytes(batch[57..61].try_into().unwrap());
        if attributes & CONTROL_FLAG == 0 {
            let records = data.slice(at + BATCH_HEADER_BYTES..end);
            let records = decompress(attributes & 0x7, records)
                .with_context(|| format!("decompressing the batch at offset {base_offset}"))?;
            walk_records(&records, count, base_offset, base_timestamp, &mut on_record)
                .with_context(|| format!("in the batch at offset {base_offset}"))?;
        }
        summary.next_offset = Some(base_offset + i64::from(last_offset_delta) + 1);
        summary.batches += 1;
        summary.bytes += (end - at) as u64;
        at = end;
    }
    Ok(summary)
}

fn walk_records(
    records: &[u8],
    count: i32,
    base_offset: i64,
    base_timestamp: i64,
    on_record: &mut impl FnMut(RecordView<'_>),
) -> Result<()> {
    let mut at = 0usize;
    for _ in 0..count {
        let length = get_varint(records, &mut at)?;
        let end = at + usize::try_from(length).context("negative record length")?;
        if end > records.len() {
            bail!("record runs past its batch");
        }
        at += 1; // attributes
        let timestamp_delta = get_varint(records, &mut at)?;
        let offset_delta = get_varint(records, &mut at)?;
        let key = read_bytes(records, &mut at, end)?;
        let value = read_bytes(records, &mut at, end)?;
        on_record(RecordView {
            offset: base_offset + offset_delta,
            timestamp_ms: base_timestamp + timestamp_delta,
            key,
            value,
        });
        at = end; // skip headers
    }
    Ok(())
}

fn read_bytes<'a>(records: &'a [u8], at: &mut usize, end: usize) -> Result<Option<&'a [u8]>> {
    let length = get_varint(records, at)?;
    if length < 0 {
        return Ok(None);
    }
    let stop = *at + length as usize;
    if stop > end {
        bail!("record field runs past its record");
    }
    let bytes = &records[*at..stop];
    *at = stop;
    Ok(Some(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::RecordBatchDecoder;

    fn build(codec: Codec, count: usize) -> Bytes {
        let mut builder = BatchBuilder::default();
        for index in 0..count {
            let key = format!("key-{index}");
            let value = vec![index as u8; 100 + index];
            builder.push(
                1_000 + index as i64,
                (index % 2 == 0).then_some(key.as_bytes()),
                &[b"head", &value],
            );
        }
        let mut out = BytesMut::new();
        builder.finish(codec, &mut out).unwrap();
        assert!(builder.is_empty());
        out.freeze()
    }

    #[test]
    fn kafka_protocol_decodes_what_we_build() {
        for codec in [
            Codec::None,
            Codec::Gzip,
            Codec::Snappy,
            Codec::Lz4,
            Codec::Zstd,
        ] {
            let mut bytes = build(codec, 7);
            let set = RecordBatchDecoder::decode(&mut bytes).unwrap();
            assert_eq!(set.records.len(), 7, "{codec:?}");
            assert_eq!(set.compression, codec.compression());
            let record = &set.records[4];
            assert_eq!(record.offset, 4);
            assert_eq!(record.timestamp, 1_004);
            assert_eq!(record.key.as_deref(), Some(&b"key-4"[..]));
            assert_eq!(&record.value.as_ref().unwrap()[..4], b"head");
            assert_eq!(record.value.as_ref().unwrap().len(), 4 + 104);
            assert_eq!(set.records[3].key, None);
        }
    }

    #[test]
    fn parse_reads_what_we_build_with_every_codec() {
        for codec in [
            Codec::None,
            Codec::Gzip,
            Codec::Snappy,
            Codec::Lz4,
            Codec::Zstd,
        ] {
            let mut data = BytesMut::new();
            data.extend_from_slice(&build(codec, 3));
            let second = build(codec, 2);
            data.extend_from_slice(&second);
            // The second batch starts at offset 3.
            let at = data.len() - second.len();
            data[at..at + 8].copy_from_slice(&3i64.to_be_bytes());
            // The CRC does not cover the base offset, so it still holds.
            let data = data.freeze();
            let mut seen = Vec::new();
            let summary = parse_batches(&data, true, |record| {
                seen.push((
                    record.offset,
                    record.key.map(<[u8]>::to_vec),
                    record.value.unwrap().len(),
                ))
            })
            .unwrap();
            assert_eq!(summary.next_offset, Some(5), "{codec:?}");
            assert_eq!(summary.batches, 2);
            let offsets: Vec<i64> = seen.iter().map(|s| s.0).collect();
            assert_eq!(offsets, vec![0, 1, 2, 3, 4]);
            assert_eq!(seen[1].1, None);
            assert_eq!(seen[2].2, 4 + 102);
        }
    }

    #[test]
    fn a_truncated_last_batch_is_left_for_the_next_fetch() {
        let whole = build(Codec::None, 3);
        let mut data = BytesMut::new();
        data.extend_from_slice(&whole);
        data.extend_from_slice(&whole[..whole.len() - 10]);
        let mut count = 0;
        let summary = parse_batches(&data.freeze(), true, |_| count += 1).unwrap();
        assert_eq!(count, 3);
        assert_eq!(summary.batches, 1);
        assert_eq!(summary.next_offset, Some(3));
    }

    #[test]
    fn a_corrupt_batch_is_reported() {
        let mut data = BytesMut::from(&build(Codec::None, 3)[..]);
        let last = data.len() - 1;
        data[last] ^= 0xff;
        assert!(parse_batches(&data.clone().freeze(), true, |_| {}).is_err());
        assert!(parse_batches(&data.freeze(), false, |_| {}).is_ok());
    }

    #[test]
    fn varints_round_trip() {
        for value in [
            0i64,
            1,
            -1,
            63,
            -64,
            64,
            300,
            -300,
            i32::MAX as i64,
            i64::MIN,
            i64::MAX,
        ] {
            let mut buf = BytesMut::new();
            put_varint(&mut buf, value);
            assert_eq!(buf.len(), varint_bytes(value), "{value}");
            let mut at = 0;
            assert_eq!(get_varint(&buf, &mut at).unwrap(), value);
            assert_eq!(at, buf.len());
        }
    }
}
