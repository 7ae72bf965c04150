//! Zero-copy sends of file regions into a connection's socket.
//!
//! glommio has no sendfile, so this calls `libc::sendfile` on the shard's
//! own thread. The socket is non-blocking (set once at accept: glommio's
//! io_uring reads and writes still wait as before), so a full socket buffer
//! answers EAGAIN instead of blocking the shard; then the task waits a
//! little (a timer, not a blocked thread) and tries again. The region
//! carries a buffered descriptor of the segment (through the page cache):
//! the O_DIRECT one cannot sendfile at unaligned offsets.

use std::os::unix::io::{AsRawFd, RawFd};
use std::time::Duration;

use crate::storage::FileRegion;

/// Waits between tries while the peer's socket buffer is full.
const WAIT_US_MIN: u64 = 50;
const WAIT_US_MAX: u64 = 5_000;

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

/// Sends all of `region` into `socket`.
pub async fn send_region(socket: RawFd, region: &FileRegion) -> std::io::Result<()> {
    // The storage engine's buffered descriptor of the segment: the bytes it
    // read the region from, even if compaction or retention has since
    // replaced or removed the file by name.
    let file = &region.file;
    let mut position = i64::try_from(region.position).map_err(std::io::Error::other)?;
    let mut left = usize::try_from(region.len).map_err(std::io::Error::other)?;
    let mut wait_us = WAIT_US_MIN;
    while left > 0 {
        // SAFETY: both descriptors are open for the duration of the call.
        let sent = unsafe { libc::sendfile(socket, file.as_raw_fd(), &mut position, left) };
        if sent > 0 {
            left -= sent as usize;
            wait_us = WAIT_US_MIN;
            continue;
        }
        if sent == 0 {
            // The file is shorter than the region: it was truncated or
            // deleted under us. The response is half sent: give up on it.
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("{} ended inside a fetched region", region.path.display()),
            ));
        }
        let error = std::io::Error::last_os_error();
        match error.kind() {
            std::io::ErrorKind::WouldBlock => {
                glommio::timer::sleep(Duration::from_micros(wait_us)).await;
                wait_us = (wait_us * 2).min(WAIT_US_MAX);
            }
            std::io::ErrorKind::Interrupted => {}
            _ => return Err(error),
        }
    }
    Ok(())
}

/// Bytes of a region read at a time when it cannot be sent zero-copy.
const COPY_CHUNK_BYTES: usize = 256 * 1024;

/// Sends all of `region` through `writer` (TLS encrypts in user space, so
/// the bytes must pass through memory): `pread` into `buffer`, reused
/// across regions and responses of the connection, then write. The read
/// is synchronous on the shard's thread, as `sendfile`'s is.
pub async fn copy_region<W>(
    writer: &mut W,
    region: &FileRegion,
    buffer: &mut Vec<u8>,
) -> std::io::Result<()>
where
    W: futures_lite::AsyncWrite + Unpin,
{
    use futures_lite::AsyncWriteExt;
    use std::os::unix::fs::FileExt;
    let mut position = region.position;
    let mut left = usize::try_from(region.len).map_err(std::io::Error::other)?;
    buffer.resize(COPY_CHUNK_BYTES.min(left.max(1)).max(buffer.len()), 0);
    while left > 0 {
        let chunk = left.min(buffer.len());
        let read = region.file.read_at(&mut buffer[..chunk], position)?;
        if read == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("{} ended inside a fetched region", region.path.display()),
            ));
        }
        writer.write_all(&buffer[..read]).await?;
        position += read as u64;
        left -= read;
    }
    Ok(())
}
