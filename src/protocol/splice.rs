//! Encoding a response around bytes that are not in memory: the zero-copy
//! path of Fetch.
//!
//! `kafka-protocol` encodes a partition's `records` as a length and then a
//! `put_slice` of the bytes. For records that should go out by `sendfile`,
//! the handler puts a *placeholder*: a slice of the right length inside a
//! reserved, never-written, read-only mapping. [`SpliceBuf`] is a
//! `ByteBufMut` that recognises a placeholder by its address, records a cut
//! there instead of copying, and so produces the response as parts: encoded
//! bytes, and holes to be filled from files by the network layer.
//!
//! No I/O here: the mapping is address space only (`MAP_NORESERVE`, never
//! touched), made once per process.

use std::ops::Range;
use std::sync::OnceLock;

use bytes::buf::UninitSlice;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::protocol::buf::ByteBufMut;

/// Address space reserved for placeholders: a hole of up to
/// `PLACEHOLDER_BYTES_MAX - index` bytes for placeholder `index`.
const PLACEHOLDER_BYTES_MAX: usize = 4 << 30;
/// Placeholders per response, at most.
pub const PLACEHOLDERS_MAX: usize = 1 << 20;

struct Mapping(usize);

fn mapping() -> Option<usize> {
    static MAPPING: OnceLock<Option<Mapping>> = OnceLock::new();
    MAPPING
        .get_or_init(|| {
            // SAFETY: an anonymous read-only mapping we never unmap.
            let address = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    PLACEHOLDER_BYTES_MAX,
                    libc::PROT_READ,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                    -1,
                    0,
                )
            };
            (address != libc::MAP_FAILED).then_some(Mapping(address as usize))
        })
        .as_ref()
        .map(|mapping| mapping.0)
}

/// A placeholder for `len` bytes, the `index`-th hole of a response; `None`
/// when the mapping could not be made or the hole does not fit (callers
/// then fall back to reading the bytes).
pub fn placeholder(index: usize, len: usize) -> Option<Bytes> {
    let base = mapping()?;
    if index >= PLACEHOLDERS_MAX || index + len > PLACEHOLDER_BYTES_MAX {
        return None;
    }
    // SAFETY: inside the mapping, which is readable and lives forever.
    let slice: &'static [u8] =
        unsafe { std::slice::from_raw_parts((base + index) as *const u8, len) };
    Some(Bytes::from_static(slice))
}

fn placeholder_index(slice: &[u8]) -> Option<usize> {
    let base = mapping()?;
    let address = slice.as_ptr() as usize;
    (!slice.is_empty() && address >= base && address < base + PLACEHOLDERS_MAX)
        .then(|| address - base)
}

/// One part of an encoded response.
#[derive(Debug)]
pub enum Part {
    Bytes(Bytes),
    /// The `index`-th placeholder's bytes go here (`len` of them).
    Hole {
        index: usize,
        len: usize,
    },
}

impl Part {
    /// Bytes this part puts on the wire.
    pub fn len(&self) -> usize {
        match self {
            Part::Bytes(bytes) => bytes.len(),
            Part::Hole { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A `ByteBufMut` that cuts at placeholders.
#[derive(Default)]
pub struct SpliceBuf {
    done: Vec<(usize, PartMut)>,
    current: BytesMut,
    current_start: usize,
}

enum PartMut {
    Bytes(BytesMut),
    Hole { index: usize, len: usize },
}

impl SpliceBuf {
    pub fn new() -> SpliceBuf {
        SpliceBuf::default()
    }

    pub fn len(&self) -> usize {
        self.current_start + self.current.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn into_parts(mut self) -> Vec<Part> {
        self.cut();
        self.done
            .into_iter()
            .map(|(_, part)| match part {
                PartMut::Bytes(bytes) => Part::Bytes(bytes.freeze()),
                PartMut::Hole { index, len } => Part::Hole { index, len },
            })
            .collect()
    }

    fn cut(&mut self) {
        if !self.current.is_empty() {
            let end = self.len();
            let bytes = std::mem::take(&mut self.current);
            self.done.push((self.current_start, PartMut::Bytes(bytes)));
            self.current_start = end;
        }
    }
}

// SAFETY: every method delegates to `current`, a `BytesMut`.
unsafe impl BufMut for SpliceBuf {
    fn remaining_mut(&self) -> usize {
        self.current.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, count: usize) {
        self.current.advance_mut(count)
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.current.chunk_mut()
    }

    fn put_slice(&mut self, source: &[u8]) {
        match placeholder_index(source) {
            Some(index) => {
                self.cut();
                let len = source.len();
                self.done
                    .push((self.current_start, PartMut::Hole { index, len }));
                self.current_start += len;
            }
            None => self.current.extend_from_slice(source),
        }
    }
}

impl ByteBufMut for SpliceBuf {
    fn offset(&self) -> usize {
        self.len()
    }

    fn seek(&mut self, offset: usize) {
        assert!(offset >= self.current_start, "seek into a finished part");
        self.current.resize(offset - self.current_start, 0);
    }

    fn range(&mut self, range: Range<usize>) -> &mut [u8] {
        if range.start >= self.current_start {
            let start = self.current_start;
            return &mut self.current[range.start - start..range.end - start];
        }
        let part = self
            .done
            .iter_mut()
            .rev()
            .find(|(start, _)| *start <= range.start)
            .expect("the first part starts at 0");
        match part {
            (start, PartMut::Bytes(bytes)) => &mut bytes[range.start - *start..range.end - *start],
            (_, PartMut::Hole { .. }) => panic!("range inside a hole"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    #[test]
    fn placeholders_become_holes_and_the_rest_stays_bytes() {
        let mut buffer = SpliceBuf::new();
        buffer.put_i32(0);
        buffer.put_slice(b"head");
        buffer.put_slice(&placeholder(0, 1000).unwrap());
        buffer.put_slice(b"mid");
        buffer.put_slice(&placeholder(1, 7).unwrap());
        assert_eq!(buffer.len(), 4 + 4 + 1000 + 3 + 7);
        let size = (buffer.len() - 4) as i32;
        buffer.range(0..4).copy_from_slice(&size.to_be_bytes());
        let parts = buffer.into_parts();
        let shapes: Vec<String> = parts
            .iter()
            .map(|part| match part {
                Part::Bytes(bytes) => format!("b{}", bytes.len()),
                Part::Hole { index, len } => format!("h{index}:{len}"),
            })
            .collect();
        assert_eq!(shapes, ["b8", "h0:1000", "b3", "h1:7"]);
        let Part::Bytes(first) = &parts[0] else {
            unreachable!()
        };
        assert_eq!(&first[..4], &(1014i32).to_be_bytes());
    }

    #[test]
    fn ordinary_bytes_are_never_mistaken_for_placeholders() {
        let mut buffer = SpliceBuf::new();
        buffer.put_slice(&vec![0u8; 4096]);
        assert_eq!(buffer.into_parts().len(), 1);
    }
}
