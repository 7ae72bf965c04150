//! Named fault-injection points of the storage engine, for tests.
//!
//! Owns: a thread-local (so per-shard) table of armed faults. The storage
//! code asks `take` at each named point; unarmed, that is one thread-local
//! read. Production code never arms a fault; tests (unit, crash) do, through
//! [`arm`]. Must not be used to alter behaviour outside tests.

use std::cell::{Cell, RefCell};

/// Where a fault can be injected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultPoint {
    /// A segment data write (direct I/O).
    SegmentWrite,
    /// The `fdatasync` of a segment file by the group commit.
    SegmentSync,
}

/// What happens at the point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The operation fails with EIO and writes nothing.
    Eio,
    /// The write stores only its first half (rounded down to whole blocks)
    /// and then fails, as a short write would.
    ShortWrite,
    /// The write stores everything but the second half of its last block,
    /// which holds garbage, then fails: a torn sector at power loss.
    TornLastBlock,
}

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static FAULTS: RefCell<Vec<(FaultPoint, Fault, u32)>> = const { RefCell::new(Vec::new()) };
}

/// Arms `fault` at `point`, to fire once after `skip` passes through it.
pub fn arm(point: FaultPoint, fault: Fault, skip: u32) {
    FAULTS.with(|faults| faults.borrow_mut().push((point, fault, skip)));
    ARMED.with(|armed| armed.set(true));
}

/// Disarms every fault of this thread.
pub fn clear() {
    FAULTS.with(|faults| faults.borrow_mut().clear());
    ARMED.with(|armed| armed.set(false));
}

/// Returns the fault to inject at `point` now, if one is armed and due.
pub(crate) fn take(point: FaultPoint) -> Option<Fault> {
    if !ARMED.with(|armed| armed.get()) {
        return None;
    }
    FAULTS.with(|faults| {
        let mut faults = faults.borrow_mut();
        let index = faults.iter().position(|(p, _, _)| *p == point)?;
        if faults[index].2 > 0 {
            faults[index].2 -= 1;
            return None;
        }
        Some(faults.remove(index).1)
    })
}
