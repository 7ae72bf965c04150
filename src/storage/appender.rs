//! The direct-I/O appender of the active segment: an aligned tail buffer.
//!
//! Owns: the bytes appended to a segment until their write completes. The
//! buffer starts at an aligned file position; a full buffer is written in
//! one aligned write; a flush writes the partial buffer padded to the
//! alignment and keeps its last partial block, which the next write
//! rewrites. Runs on the shard owning the log; every method is synchronous
//! (writes run in spawned tasks), so the caller never holds a borrow across
//! an await. Must not touch the page cache (O_DIRECT only) and must not let
//! two writes of the same block be in flight at once: a write that starts in
//! the block where the previous write ended unaligned waits for it.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::rc::Rc;

use glommio::io::{DmaBuffer, DmaFile};

use super::config::ALIGN_BYTES;
use super::fault::{self, Fault, FaultPoint};
use super::notify::Completion;

fn align_down(value: u64) -> u64 {
    value & !(ALIGN_BYTES - 1)
}

fn align_up(value: u64) -> u64 {
    align_down(value + ALIGN_BYTES - 1)
}

/// Aligned write buffers of one size, reused across writes and segments of
/// the shard: fresh buffers cost page faults on every first touch.
pub(crate) struct BufferPool {
    buffer_bytes: usize,
    buffers_max: usize,
    buffers: RefCell<Vec<DmaBuffer>>,
}

impl BufferPool {
    pub fn new(buffer_bytes: usize, buffers_max: usize) -> Self {
        assert!(buffer_bytes as u64 % ALIGN_BYTES == 0 && buffer_bytes > 0);
        BufferPool {
            buffer_bytes,
            buffers_max,
            buffers: RefCell::new(Vec::new()),
        }
    }

    fn take(&self, file: &DmaFile) -> DmaBuffer {
        let reused = self.buffers.borrow_mut().pop();
        reused.unwrap_or_else(|| file.alloc_dma_buffer(self.buffer_bytes))
    }

    /// Keeps `buffer` for reuse if it is whole (not trimmed) and room is left.
    fn give(&self, buffer: DmaBuffer) {
        let mut buffers = self.buffers.borrow_mut();
        if buffer.len() == self.buffer_bytes && buffers.len() < self.buffers_max {
            buffers.push(buffer);
        }
    }
}

struct InFlight {
    position: u64,
    end: u64,
    buffer: Rc<DmaBuffer>,
    done: Completion,
}

pub(crate) struct Appender {
    file: Rc<DmaFile>,
    pool: Rc<BufferPool>,
    path: PathBuf,
    buffer: DmaBuffer,
    /// Aligned file position of `buffer[0]`.
    buffer_position: u64,
    buffer_len: usize,
    /// Bytes of `buffer` already handed to a write.
    issued_len: usize,
    in_flight: VecDeque<InFlight>,
    /// The last write issued, and whether it ended inside a block.
    last_write: Option<(Completion, bool)>,
    /// Every byte below this is in the file (its write completed).
    readable_bytes: u64,
    preallocated_bytes: u64,
    preallocate_step_bytes: u64,
    in_flight_max: usize,
    failed: Option<String>,
}

impl Appender {
    /// An appender continuing a segment of `size_bytes`, whose last partial
    /// block (`size_bytes % ALIGN_BYTES` bytes) is `tail`.
    pub fn new(
        file: Rc<DmaFile>,
        path: PathBuf,
        size_bytes: u64,
        tail: &[u8],
        pool: Rc<BufferPool>,
        in_flight_max: usize,
        preallocate_step_bytes: u64,
    ) -> Appender {
        assert_eq!(tail.len() as u64, size_bytes % ALIGN_BYTES);
        let mut buffer = pool.take(&file);
        buffer.as_bytes_mut()[..tail.len()].copy_from_slice(tail);
        Appender {
            file,
            pool,
            path,
            buffer,
            buffer_position: align_down(size_bytes),
            buffer_len: tail.len(),
            issued_len: tail.len(),
            in_flight: VecDeque::new(),
            last_write: None,
            readable_bytes: size_bytes,
            preallocated_bytes: 0,
            preallocate_step_bytes,
            in_flight_max,
            failed: None,
        }
    }

    pub fn size_bytes(&self) -> u64 {
        self.buffer_position + self.buffer_len as u64
    }

    pub fn failed(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    /// Copies `data` into the tail buffer, writing out each buffer that fills.
    pub fn append(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let capacity = self.buffer.len();
            let count = data.len().min(capacity - self.buffer_len);
            self.buffer.as_bytes_mut()[self.buffer_len..self.buffer_len + count]
                .copy_from_slice(&data[..count]);
            self.buffer_len += count;
            data = &data[count..];
            if self.buffer_len == capacity {
                self.issue(capacity);
            }
        }
    }

    /// Writes out whatever is buffered and not yet written, padded to the
    /// alignment; the last partial block stays buffered.
    pub fn flush_tail(&mut self) {
        if self.buffer_len > self.issued_len {
            self.issue(self.buffer_len);
        }
    }

    /// Completions of every write not yet known complete. Awaiting them all
    /// means every byte appended before `flush_tail` is in the file.
    pub fn pending_writes(&mut self) -> Vec<Completion> {
        self.reap();
        self.in_flight.iter().map(|w| w.done.clone()).collect()
    }

    /// The oldest write to wait for when too many are in flight.
    pub fn backpressure(&mut self) -> Option<Completion> {
        self.reap();
        if self.in_flight.len() > self.in_flight_max {
            return self.in_flight.front().map(|w| w.done.clone());
        }
        None
    }

    /// Forgets completed writes, advancing `readable_bytes`; a failed write
    /// fails the appender.
    pub fn reap(&mut self) -> u64 {
        while let Some(front) = self.in_flight.front() {
            match front.done.outcome() {
                None => break,
                Some(Err(error)) => {
                    self.failed.get_or_insert(error);
                    break;
                }
                Some(Ok(())) => {
                    self.readable_bytes = self.readable_bytes.max(front.end);
                    let done = self.in_flight.pop_front().expect("front exists");
                    if let Ok(buffer) = Rc::try_unwrap(done.buffer) {
                        self.pool.give(buffer);
                    }
                }
            }
        }
        self.readable_bytes
    }

    /// Copies bytes at or above `readable_bytes` (still in memory) into
    /// `out`. Returns false if part of the range is not held in memory.
    pub fn copy_unwritten(&self, position: u64, out: &mut [u8]) -> bool {
        let end = position + out.len() as u64;
        if position < self.readable_bytes || end > self.size_bytes() {
            return false;
        }
        let sources = self
            .in_flight
            .iter()
            .map(|w| (w.position, w.end, w.buffer.as_bytes()))
            .chain(std::iter::once((
                self.buffer_position,
                self.size_bytes(),
                self.buffer.as_bytes(),
            )));
        // Later sources hold newer copies of shared blocks: copy in order.
        for (source_start, source_end, bytes) in sources {
            let from = position.max(source_start);
            let to = end.min(source_end);
            if from < to {
                let source = &bytes[(from - source_start) as usize..(to - source_start) as usize];
                out[(from - position) as usize..(to - position) as usize].copy_from_slice(source);
            }
        }
        true
    }

    fn issue(&mut self, data_len: usize) {
        let capacity = self.buffer.len();
        let write_len = align_up(data_len as u64) as usize;
        let keep_from = if write_len == capacity && data_len == capacity {
            capacity
        } else {
            align_down(data_len as u64) as usize
        };
        let mut next = self.pool.take(&self.file);
        let kept = data_len - keep_from.min(data_len);
        next.as_bytes_mut()[..kept].copy_from_slice(&self.buffer.as_bytes()[keep_from..data_len]);
        let mut written = std::mem::replace(&mut self.buffer, next);
        written.as_bytes_mut()[data_len..write_len].fill(0);
        written.trim_to_size(write_len);
        let position = self.buffer_position;
        let end = position + data_len as u64;
        self.buffer_position += keep_from as u64;
        self.buffer_len = kept;
        self.issued_len = kept;
        self.spawn_write(Rc::new(written), position, end);
    }

    fn spawn_write(&mut self, buffer: Rc<DmaBuffer>, position: u64, end: u64) {
        let done = Completion::default();
        let previous = match self.last_write.take() {
            Some((previous, true)) => Some(previous),
            _ => None,
        };
        let write_end = position + buffer.len() as u64;
        let preallocate_to =
            if self.preallocate_step_bytes > 0 && write_end > self.preallocated_bytes {
                // Grow ahead by as much as the segment holds already, from one
                // write buffer up to the configured step: a shard may hold
                // thousands of mostly idle partitions, and each active segment's
                // preallocation is disk nothing else can use.
                let step = write_end.clamp(self.buffer.len() as u64, self.preallocate_step_bytes);
                self.preallocated_bytes = align_up(write_end) + step;
                Some(self.preallocated_bytes)
            } else {
                None
            };
        let task = WriteTask {
            file: self.file.clone(),
            path: self.path.clone(),
            buffer: buffer.clone(),
            position,
            previous,
            preallocate_to,
        };
        let completion = done.clone();
        glommio::spawn_local(async move {
            completion.complete(task.run().await);
        })
        .detach();
        self.last_write = Some((done.clone(), end % ALIGN_BYTES != 0));
        self.in_flight.push_back(InFlight {
            position,
            end,
            buffer,
            done,
        });
    }
}

struct WriteTask {
    file: Rc<DmaFile>,
    path: PathBuf,
    buffer: Rc<DmaBuffer>,
    position: u64,
    previous: Option<Completion>,
    preallocate_to: Option<u64>,
}

impl WriteTask {
    async fn run(self) -> Result<(), String> {
        if let Some(previous) = &self.previous {
            previous.wait().await?;
        }
        let describe = |e: std::io::Error| format!("write to {:?}: {e}", self.path);
        if let Some(size) = self.preallocate_to {
            // Preallocation is an optimisation: a failure shows up on write.
            let _ = self.file.pre_allocate(size, false).await;
        }
        if let Some(fault) = fault::take(FaultPoint::SegmentWrite) {
            return self.inject(fault).await;
        }
        let written = self
            .file
            .write_rc_at(self.buffer.clone(), self.position)
            .await
            .map_err(|e| describe(e.into()))?;
        if written != self.buffer.len() {
            return Err(format!("short write to {:?}: {written}", self.path));
        }
        Ok(())
    }

    async fn inject(&self, fault: Fault) -> Result<(), String> {
        let bytes = self.buffer.as_bytes();
        let (keep, garbage) = match fault {
            Fault::Eio => return Err(format!("injected EIO writing {:?}", self.path)),
            Fault::ShortWrite => (align_down(bytes.len() as u64 / 2) as usize, 0),
            Fault::TornLastBlock => (bytes.len(), ALIGN_BYTES as usize / 2),
        };
        if keep > 0 {
            let mut copy = self.file.alloc_dma_buffer(keep);
            copy.as_bytes_mut().copy_from_slice(&bytes[..keep]);
            copy.as_bytes_mut()[keep - garbage..].fill(0xA5);
            let _ = self.file.write_at(copy, self.position).await;
        }
        Err(format!("injected {fault:?} writing {:?}", self.path))
    }
}
