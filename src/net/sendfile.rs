//! Zero-copy sends of file regions into a connection's socket.
//!
//! glommio has no sendfile, and `sendfile(2)` reads the file synchronously
//! when its pages are not in the page cache, which is always the case for
//! data the storage engine wrote with O_DIRECT and nobody has read since: on
//! the shard's thread, a cold read stalled every other request of the shard
//! for the disk's time. So the sends run on the executor's blocking thread
//! pool (glommio's `spawn_blocking`, `sluice_shards::BLOCKING_THREADS_PER_SHARD` threads
//! pinned to the shard's CPU, set by the shard pool): the shard's thread
//! only waits for a completion, as for any other I/O. The pool thread owns a
//! duplicate of the socket descriptor while it sends, so a connection closed
//! meanwhile cannot hand the number to another socket under it. The socket
//! is non-blocking (set once at accept: glommio's io_uring reads and writes
//! still wait as before); when the peer's buffer is full the pool thread
//! polls for room, and gives up after [`SEND_STALL_MAX`] without progress
//! (a consumer that stopped reading), which closes the connection. The
//! region carries a buffered descriptor of the segment (through the page
//! cache): the O_DIRECT one cannot sendfile at unaligned offsets.

use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::io::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use crate::storage::FileRegion;

/// How long a send may make no progress before the connection is given up.
pub const SEND_STALL_MAX: Duration = Duration::from_secs(30);
/// One wait for room in the socket buffer.
const POLL_WAIT_MS: i32 = 100;

/// Makes `socket` non-blocking, as the zero-copy path needs.
pub fn set_nonblocking(socket: RawFd) -> std::io::Result<()> {
    // SAFETY: fcntl on a descriptor the caller owns.
    unsafe {
        let flags = libc::fcntl(socket, libc::F_GETFL);
        if flags < 0 || libc::fcntl(socket, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Sends all of `region` into `socket`, on the blocking thread pool.
pub async fn send_region(socket: RawFd, region: &FileRegion) -> std::io::Result<()> {
    // SAFETY: dup of a descriptor the connection keeps open for this call.
    let duplicate = unsafe { libc::dup(socket) };
    if duplicate < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `duplicate` is a new descriptor this function owns.
    let socket = unsafe { OwnedFd::from_raw_fd(duplicate) };
    // The storage engine's buffered descriptor of the segment: the bytes it
    // read the region from, even if compaction or retention has since
    // replaced or removed the file by name.
    let file = Arc::clone(&region.file);
    let position = i64::try_from(region.position).map_err(std::io::Error::other)?;
    let len = usize::try_from(region.len).map_err(std::io::Error::other)?;
    let path = region.path.clone();
    glommio::executor()
        .spawn_blocking(move || {
            send_blocking(&socket, &file, position, len).map_err(|error| {
                if error.kind() == std::io::ErrorKind::UnexpectedEof {
                    std::io::Error::new(
                        error.kind(),
                        format!("{} ended inside a fetched region", path.display()),
                    )
                } else {
                    error
                }
            })
        })
        .await
}

/// The sendfile loop, on a pool thread.
fn send_blocking(
    socket: &OwnedFd,
    file: &std::fs::File,
    mut position: i64,
    mut left: usize,
) -> std::io::Result<()> {
    let mut stalled = Duration::ZERO;
    while left > 0 {
        // SAFETY: both descriptors are open for the duration of the call.
        let sent =
            unsafe { libc::sendfile(socket.as_raw_fd(), file.as_raw_fd(), &mut position, left) };
        if sent > 0 {
            left -= sent as usize;
            stalled = Duration::ZERO;
            continue;
        }
        if sent == 0 {
            // The file is shorter than the region: it was truncated or
            // deleted under us. The response is half sent: give up on it.
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let error = std::io::Error::last_os_error();
        match error.kind() {
            std::io::ErrorKind::WouldBlock => {
                if stalled >= SEND_STALL_MAX {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("the peer read nothing for {SEND_STALL_MAX:?}"),
                    ));
                }
                wait_writable(socket)?;
                stalled += Duration::from_millis(POLL_WAIT_MS as u64);
            }
            std::io::ErrorKind::Interrupted => {}
            _ => return Err(error),
        }
    }
    Ok(())
}

/// Waits up to [`POLL_WAIT_MS`] for room in the socket's send buffer.
fn wait_writable(socket: &OwnedFd) -> std::io::Result<()> {
    let mut poll = libc::pollfd {
        fd: socket.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one pollfd we own, for the duration of the call.
    let ready = unsafe { libc::poll(&mut poll, 1, POLL_WAIT_MS) };
    if ready < 0 {
        let error = std::io::Error::last_os_error();
        if error.kind() != std::io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
    Ok(())
}
