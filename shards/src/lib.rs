//! The thread-per-core substrate of Sluice. It knows nothing of Kafka.
//!
//! What it owns:
//! - [`ShardPool`]: one glommio `LocalExecutor` per shard, pinned to a core
//!   (`Placement::Fixed`), with a small `io_memory` because io_uring buffers
//!   are locked memory and our machines allow only 8 MiB of it per process.
//! - [`Mesh`]: the bounded full mesh of channels between shards. Work for
//!   another shard travels as a `Send` closure ([`Mesh::submit_to`]); it runs
//!   on the target shard, where it may touch that shard's `Rc` state, and its
//!   `Send` result travels back. This is Seastar's `submit_to`, and the only
//!   way shards talk: they share no mutable state.
//! - [`shard_for_hash`]: the one pure function that maps a key to its owner.
//!
//! Decisions, each with its reason:
//! - The shard id *is* the mesh peer id. glommio orders mesh peers by
//!   executor id, which follows creation order; taking the peer id as the
//!   shard id makes the mapping true by construction rather than by hope.
//! - A full cross-shard queue is backpressure: the sender awaits (the reactor
//!   keeps running other tasks) and the event is counted in
//!   [`MeshStats::queue_full`], so an operator can see it.
//! - Work sent to the local shard runs inline, without a channel hop.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use glommio::channels::channel_mesh::{MeshBuilder, Senders};
use glommio::{LocalExecutorBuilder, Placement};

/// Index of a shard inside one broker process, `0..nr_shards`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardId(pub usize);

impl std::fmt::Display for ShardId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "shard-{}", self.0)
    }
}

/// The owner of a key among `nr_shards`: a pure function, the same on every
/// shard, so no table needs to be kept in sync.
pub fn shard_for_hash(hash: u64, nr_shards: usize) -> ShardId {
    assert!(nr_shards > 0, "a pool has at least one shard");
    ShardId((hash % nr_shards as u64) as usize)
}

/// A unit of work sent to another shard: built on the sender, run on the
/// receiver (given the receiver's mesh, to send the result back), where it
/// produces a shard-local future.
type Job = Box<dyn FnOnce(Mesh) -> Pin<Box<dyn Future<Output = ()>>> + Send>;

/// A result on its way back: run on the shard that asked, where it
/// completes the asker's reply future.
type Delivery = Box<dyn FnOnce() + Send>;

#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    #[error("shard {0} is not part of this pool")]
    NoSuchShard(usize),
    #[error("shard {0} is shutting down")]
    Closed(usize),
}

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error(
        "locked-memory limit too low: {shards} shard(s) x io.memory.bytes={io_memory_bytes} \
         need about {needed_bytes} bytes, but `ulimit -l` allows {limit_bytes} bytes. \
         Lower `--shards` or `io.memory.bytes` (minimum 524288), or raise the memlock limit: \
         `ulimit -l`; systemd: LimitMEMLOCK=infinity; docker run: --ulimit memlock=-1; \
         compose: `ulimits: memlock: -1`; Kubernetes has no per-pod setting: the node's \
         container runtime default (containerd/CRI-O LimitMEMLOCK or default_ulimits) applies; \
         see deploy/README.md"
    )]
    MemlockTooLow {
        shards: usize,
        io_memory_bytes: usize,
        needed_bytes: u64,
        limit_bytes: u64,
    },
    #[error("io.memory.bytes={0} is below glommio's minimum of 524288 bytes")]
    IoMemoryTooSmall(usize),
    #[error("could not start shard {shard}: {message}")]
    Spawn { shard: usize, message: String },
    #[error("shard {shard} failed: {message}")]
    Failed { shard: usize, message: String },
}

/// Counters of one shard's mesh use. Shard-local (`Cell`), read by metrics.
#[derive(Default, Debug)]
pub struct MeshStats {
    pub sent: Cell<u64>,
    pub received: Cell<u64>,
    pub queue_full: Cell<u64>,
}

/// A shard's handle on the mesh. Lives on one shard; cheap to clone (`Rc`).
#[derive(Clone)]
pub struct Mesh {
    inner: Rc<MeshInner>,
}

struct MeshInner {
    me: ShardId,
    nr_shards: usize,
    senders: Senders<Job>,
    /// The reply mesh: results travel back on their own channels, read by
    /// a loop that runs from the start (work waits for `open_inbox`,
    /// replies never do, so a shard may ask before it serves).
    reply_senders: Senders<Delivery>,
    stats: MeshStats,
    /// Until [`Mesh::open_inbox`], work from other shards waits in the
    /// bounded queues (backpressure on the senders) instead of running
    /// against state this shard has not built yet.
    inbox: std::cell::RefCell<Option<glommio::channels::channel_mesh::Receivers<Job>>>,
}

impl Mesh {
    pub fn shard_id(&self) -> ShardId {
        self.inner.me
    }

    pub fn nr_shards(&self) -> usize {
        self.inner.nr_shards
    }

    pub fn stats(&self) -> &MeshStats {
        &self.inner.stats
    }

    /// Starts running work sent by other shards. Call it once this shard's
    /// state is in place; before that, their work waits in the queues.
    pub fn open_inbox(&self) {
        let Some(mut receivers) = self.inner.inbox.borrow_mut().take() else {
            return; // already open
        };
        for (_peer, receiver) in receivers.streams() {
            let mesh = self.clone();
            glommio::spawn_local(async move {
                while let Some(job) = receiver.recv().await {
                    let stats = mesh.stats();
                    stats.received.set(stats.received.get() + 1);
                    glommio::spawn_local(job(mesh.clone())).detach();
                }
            })
            .detach();
        }
    }

    /// Runs `work` on `shard` and returns its result here. The closure is
    /// `Send`; the future it makes is not, so it may use the target shard's
    /// local state.
    pub async fn submit_to<F, Fut, T>(&self, shard: ShardId, work: F) -> Result<T, MeshError>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
        T: Send + 'static,
    {
        self.send_to(shard, work).await?.await
    }

    /// Queues `work` on `shard` and returns once it is queued, with a
    /// future of its result. Work queued by one shard on another starts
    /// there in the order it was queued (one FIFO channel per pair, and
    /// glommio starts spawned tasks in order), so a caller that awaits
    /// `send_to` before queueing the next piece keeps its order, e.g. the
    /// appends of one producer. Local work is spawned, likewise in order.
    pub async fn send_to<F, Fut, T>(&self, shard: ShardId, work: F) -> Result<Reply<T>, MeshError>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
        T: Send + 'static,
    {
        if shard.0 >= self.inner.nr_shards {
            return Err(MeshError::NoSuchShard(shard.0));
        }
        if shard == self.inner.me {
            let task = glommio::spawn_local(async move { work().await });
            return Ok(Reply {
                state: ReplyState::Local(task),
                shard,
            });
        }
        // The reply is completed on this shard, never on `shard`: a waker
        // of a glommio task must not be woken or dropped by another thread.
        // glommio 0.9's foreign-waker drop decrements the task's count to
        // zero and then increments it again; if the task finishes in that
        // window its own thread frees it, and the queued foreign wake frees
        // it a second time (glibc: "double free detected in tcache 2").
        let (reply_tx, reply_rx) = futures_channel::oneshot::channel();
        let asker = self.inner.me;
        let unsent = UnsentReply(Some(reply_tx));
        let job: Job = Box::new(move |mesh: Mesh| {
            let mut reply = ReplySender {
                tx: unsent.take(),
                route: (mesh.clone(), asker),
            };
            Box::pin(async move {
                let result = work().await;
                let reply_tx = reply.tx.take().expect("answered once");
                let delivery: Delivery = Box::new(move || {
                    // The asker may have gone (connection closed): nothing to do.
                    let _ = reply_tx.send(result);
                });
                mesh.deliver(asker, delivery).await;
            })
        });
        self.send_job(shard, job).await?;
        Ok(Reply {
            state: ReplyState::Remote(reply_rx),
            shard,
        })
    }

    /// Runs `work` on every shard (this one included) and collects the
    /// results in shard order.
    pub async fn submit_to_all<F, Fut, T>(&self, work: F) -> Result<Vec<T>, MeshError>
    where
        F: Fn() -> Fut + Send + Clone + 'static,
        Fut: Future<Output = T> + 'static,
        T: Send + 'static,
    {
        let mut results = Vec::with_capacity(self.inner.nr_shards);
        for shard in 0..self.inner.nr_shards {
            results.push(self.submit_to(ShardId(shard), work.clone()).await?);
        }
        Ok(results)
    }

    /// Sends a result back to the shard that asked for it.
    async fn deliver(&self, asker: ShardId, delivery: Delivery) {
        let senders = &self.inner.reply_senders;
        let sent = match senders.try_send_to(asker.0, delivery) {
            Err(glommio::GlommioError::WouldBlock(glommio::ResourceType::Channel(delivery))) => {
                senders.send_to(asker.0, delivery).await
            }
            other => other,
        };
        if let Err(error) = sent {
            forget_returned(error);
        }
    }

    async fn send_job(&self, shard: ShardId, job: Job) -> Result<(), MeshError> {
        use glommio::{GlommioError, ResourceType};
        let stats = &self.inner.stats;
        stats.sent.set(stats.sent.get() + 1);
        match self.inner.senders.try_send_to(shard.0, job) {
            Ok(()) => Ok(()),
            Err(GlommioError::WouldBlock(ResourceType::Channel(job))) => {
                stats.queue_full.set(stats.queue_full.get() + 1);
                self.inner
                    .senders
                    .send_to(shard.0, job)
                    .await
                    .map_err(|_| MeshError::Closed(shard.0))
            }
            Err(_) => Err(MeshError::Closed(shard.0)),
        }
    }
}

/// The sending half of a reply while its work is away on another shard.
/// Work dropped before it answers (its shard is stopping) must still not
/// drop the sender there, since that wakes the asker from a foreign thread:
/// the sender goes home to be dropped (the asker then sees
/// [`MeshError::Closed`]), or, if it cannot, is leaked.
struct ReplySender<T: Send + 'static> {
    tx: Option<futures_channel::oneshot::Sender<T>>,
    /// This shard's mesh, and the asker.
    route: (Mesh, ShardId),
}

impl<T: Send + 'static> Drop for ReplySender<T> {
    fn drop(&mut self) {
        let Some(tx) = self.tx.take() else {
            return; // answered
        };
        let (mesh, asker) = &self.route;
        let delivery: Delivery = Box::new(move || drop(tx));
        if let Err(error) = mesh.inner.reply_senders.try_send_to(asker.0, delivery) {
            forget_returned(error);
        }
    }
}

/// A delivery the reply mesh refused (the asker is shutting down, or, from
/// `Drop`, its queue is full) is leaked, not dropped: dropping it here would
/// drop its reply sender on this thread and wake the asker's task from a
/// foreign thread. A handful of bytes, at shutdown.
fn forget_returned(error: glommio::GlommioError<Delivery>) {
    if let glommio::GlommioError::WouldBlock(glommio::ResourceType::Channel(delivery))
    | glommio::GlommioError::Closed(glommio::ResourceType::Channel(delivery)) = error
    {
        std::mem::forget(delivery);
    }
}

/// The sending half of a reply on its way to the work's shard. Work that
/// never runs (dropped with its queue at shutdown, or refused by a closed
/// queue) has no way home: its sender is leaked, not dropped on a thread
/// that does not own the asker.
struct UnsentReply<T>(Option<futures_channel::oneshot::Sender<T>>);

impl<T> UnsentReply<T> {
    fn take(mut self) -> Option<futures_channel::oneshot::Sender<T>> {
        self.0.take()
    }
}

impl<T> Drop for UnsentReply<T> {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            std::mem::forget(tx);
        }
    }
}

/// The result of work queued with [`Mesh::send_to`].
pub struct Reply<T> {
    state: ReplyState<T>,
    shard: ShardId,
}

enum ReplyState<T> {
    Local(glommio::Task<T>),
    Remote(futures_channel::oneshot::Receiver<T>),
}

impl<T> Future for Reply<T> {
    type Output = Result<T, MeshError>;

    fn poll(
        mut self: Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let shard = self.shard.0;
        match &mut self.state {
            ReplyState::Local(task) => Pin::new(task).poll(context).map(Ok),
            ReplyState::Remote(receiver) => Pin::new(receiver)
                .poll(context)
                .map(|result| result.map_err(|_| MeshError::Closed(shard))),
        }
    }
}

/// How to build the pool.
#[derive(Clone, Debug)]
pub struct PoolConfig {
    pub nr_shards: usize,
    /// glommio's registered I/O buffer area per executor (locked memory).
    pub io_memory_bytes: usize,
    pub ring_depth: usize,
    /// Bound of each shard-to-shard queue, in jobs.
    pub mesh_channel_capacity: usize,
    /// Thread name prefix; threads are named `{name}-{shard}`.
    pub name: String,
}

/// glommio refuses less than this for `io_memory`.
pub const IO_MEMORY_BYTES_MIN: usize = 512 * 1024;

/// Starts `config.nr_shards` pinned executors joined by a mesh, runs
/// `shard_main` on each, and waits for all of them to return.
pub struct ShardPool;

impl ShardPool {
    pub fn run<G, Fut>(config: &PoolConfig, shard_main: G) -> Result<(), PoolError>
    where
        G: Fn(Mesh) -> Fut + Send + Clone + 'static,
        Fut: Future<Output = Result<(), String>> + 'static,
    {
        check_memlock(config)?;
        let cpus = available_cpus();
        let mesh_builder =
            MeshBuilder::<Job, _>::full(config.nr_shards, config.mesh_channel_capacity);
        let reply_builder =
            MeshBuilder::<Delivery, _>::full(config.nr_shards, config.mesh_channel_capacity);
        let mut handles = Vec::with_capacity(config.nr_shards);
        for index in 0..config.nr_shards {
            let cpu = cpus[index % cpus.len()];
            let builder = LocalExecutorBuilder::new(Placement::Fixed(cpu))
                .name(&format!("{}-{}", config.name, index))
                .io_memory(config.io_memory_bytes)
                .ring_depth(config.ring_depth)
                .preempt_timer(Duration::from_millis(100));
            let mesh_builder = mesh_builder.clone();
            let reply_builder = reply_builder.clone();
            let shard_main = shard_main.clone();
            let nr_shards = config.nr_shards;
            let handle = builder
                .spawn(move || async move {
                    let mesh = join_mesh(mesh_builder, reply_builder, nr_shards).await?;
                    shard_main(mesh).await
                })
                .map_err(|error| PoolError::Spawn {
                    shard: index,
                    message: explain_spawn_error(&error.to_string()),
                })?;
            handles.push(handle);
        }
        let mut first_error = None;
        for (index, handle) in handles.into_iter().enumerate() {
            let outcome = match handle.join() {
                Ok(Ok(())) => continue,
                Ok(Err(message)) => PoolError::Failed {
                    shard: index,
                    message,
                },
                Err(error) => PoolError::Failed {
                    shard: index,
                    message: explain_spawn_error(&error.to_string()),
                },
            };
            first_error.get_or_insert(outcome);
        }
        first_error.map_or(Ok(()), Err)
    }
}

async fn join_mesh(
    builder: MeshBuilder<Job, glommio::channels::channel_mesh::Full>,
    reply_builder: MeshBuilder<Delivery, glommio::channels::channel_mesh::Full>,
    nr_shards: usize,
) -> Result<Mesh, String> {
    let (senders, receivers) = builder
        .join()
        .await
        .map_err(|_| "could not join the shard mesh".to_string())?;
    let (reply_senders, mut reply_receivers) = reply_builder
        .join()
        .await
        .map_err(|_| "could not join the shard reply mesh".to_string())?;
    let me = ShardId(senders.peer_id());
    assert_eq!(
        me.0,
        reply_senders.peer_id(),
        "both meshes order peers by executor id"
    );
    for (_peer, receiver) in reply_receivers.streams() {
        glommio::spawn_local(async move {
            while let Some(delivery) = receiver.recv().await {
                delivery();
            }
        })
        .detach();
    }
    Ok(Mesh {
        inner: Rc::new(MeshInner {
            me,
            nr_shards,
            senders,
            reply_senders,
            stats: MeshStats::default(),
            inbox: std::cell::RefCell::new(Some(receivers)),
        }),
    })
}

fn available_cpus() -> Vec<usize> {
    // SAFETY: sched_getaffinity writes into the zeroed set we own.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    let mut cpus = Vec::new();
    if rc == 0 {
        for cpu in 0..libc::CPU_SETSIZE as usize {
            // SAFETY: cpu < CPU_SETSIZE.
            if unsafe { libc::CPU_ISSET(cpu, &set) } {
                cpus.push(cpu);
            }
        }
    }
    if cpus.is_empty() {
        cpus.push(0);
    }
    cpus
}

/// The soft `RLIMIT_MEMLOCK`, or `None` when unlimited or unknown.
pub fn memlock_limit_bytes() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) };
    if rc != 0 || limit.rlim_cur == libc::RLIM_INFINITY {
        return None;
    }
    Some(limit.rlim_cur)
}

/// io_uring rings and glommio's buffers are locked memory: check before
/// starting, so the operator reads a sentence instead of an errno.
fn check_memlock(config: &PoolConfig) -> Result<(), PoolError> {
    if config.io_memory_bytes < IO_MEMORY_BYTES_MIN {
        return Err(PoolError::IoMemoryTooSmall(config.io_memory_bytes));
    }
    // Each executor registers its io_memory and three rings; allow 64 KiB
    // per ring entry page on top as a margin.
    let per_shard = config.io_memory_bytes as u64 + 3 * 64 * 1024;
    let needed_bytes = per_shard * config.nr_shards as u64;
    match memlock_limit_bytes() {
        Some(limit_bytes) if limit_bytes < needed_bytes => Err(PoolError::MemlockTooLow {
            shards: config.nr_shards,
            io_memory_bytes: config.io_memory_bytes,
            needed_bytes,
            limit_bytes,
        }),
        _ => Ok(()),
    }
}

fn explain_spawn_error(message: &str) -> String {
    let lowered = message.to_lowercase();
    if lowered.contains("cannot allocate memory") || lowered.contains("operation not permitted") {
        format!(
            "{message} (io_uring could not lock memory: lower `--shards` or `io.memory.bytes`, \
             or raise the memlock limit: `ulimit -l`, docker run --ulimit memlock=-1, \
             compose `ulimits: memlock`, systemd LimitMEMLOCK=; or a seccomp profile blocks \
             io_uring, as Docker 25+ and containerd 2.0 default profiles do: docker run \
             --security-opt seccomp=unconfined, Kubernetes seccompProfile Unconfined; \
             see deploy/README.md)"
        )
    } else {
        message.to_string()
    }
}

#[cfg(test)]
mod tests;
