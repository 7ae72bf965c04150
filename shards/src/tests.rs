//! The pool, the mesh and their errors, on real executors.

use super::*;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Keeps a shard's executor (and so its mesh receivers) alive until every
/// shard has finished its part of a test.
async fn barrier(done: &AtomicUsize, nr_shards: usize) {
    done.fetch_add(1, Ordering::SeqCst);
    while done.load(Ordering::SeqCst) < nr_shards {
        glommio::timer::sleep(Duration::from_millis(1)).await;
    }
}

fn small_pool(nr_shards: usize) -> PoolConfig {
    PoolConfig {
        nr_shards,
        io_memory_bytes: IO_MEMORY_BYTES_MIN,
        ring_depth: 32,
        mesh_channel_capacity: 4,
        name: "test".into(),
    }
}

#[test]
fn shard_for_hash_is_in_range_and_stable() {
    for hash in [0u64, 1, 7, u64::MAX] {
        let shard = shard_for_hash(hash, 3);
        assert!(shard.0 < 3);
        assert_eq!(shard, shard_for_hash(hash, 3));
    }
}

#[test]
fn submit_to_runs_on_the_target_shard() {
    let config = small_pool(2);
    let done = Arc::new(AtomicUsize::new(0));
    ShardPool::run(&config, move |mesh: Mesh| {
        let done = done.clone();
        async move {
            mesh.open_inbox();
            // Executor threads are named `{name}-{index}` and shard ids
            // follow creation order: each job reports where it really ran.
            let seen = mesh
                .submit_to_all(|| async { std::thread::current().name().map(str::to_owned) })
                .await
                .map_err(|e| e.to_string())?;
            barrier(&done, 2).await;
            // glommio appends its executor id: `test-0-<id>`.
            let on = |index: usize, name: &Option<String>| {
                name.as_deref()
                    .is_some_and(|n| n.starts_with(&format!("test-{index}-")))
            };
            if seen.len() != 2 || !on(0, &seen[0]) || !on(1, &seen[1]) {
                return Err(format!("jobs ran on {seen:?}"));
            }
            Ok(())
        }
    })
    .unwrap();
}

/// Polls `inner` with a waker that notes the thread it is woken on,
/// then passes the wake on.
struct WakeWitness<F> {
    inner: Pin<Box<F>>,
    woken_on: Arc<std::sync::Mutex<Vec<std::thread::ThreadId>>>,
}

struct NotingWaker {
    inner: std::task::Waker,
    woken_on: Arc<std::sync::Mutex<Vec<std::thread::ThreadId>>>,
}

impl std::task::Wake for NotingWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let mut woken_on = self.woken_on.lock().unwrap();
        woken_on.push(std::thread::current().id());
        drop(woken_on);
        // Only wake the task from its own thread: another thread's wake
        // of a glommio task is what this test guards against.
        self.inner.wake_by_ref();
    }
}

impl<F: Future> Future for WakeWitness<F> {
    type Output = F::Output;

    fn poll(
        mut self: Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        let waker = std::task::Waker::from(Arc::new(NotingWaker {
            inner: context.waker().clone(),
            woken_on: self.woken_on.clone(),
        }));
        let mut noted = std::task::Context::from_waker(&waker);
        self.inner.as_mut().poll(&mut noted)
    }
}

/// A reply from another shard completes the asker's future on the
/// asker's own thread (glommio 0.9 can free a task twice when a foreign
/// thread wakes or drops its waker as the task finishes).
#[test]
fn replies_wake_the_asker_on_its_own_thread() {
    let config = small_pool(2);
    let done = Arc::new(AtomicUsize::new(0));
    ShardPool::run(&config, move |mesh: Mesh| {
        let done = done.clone();
        async move {
            mesh.open_inbox();
            let mut outcome = Ok(());
            if mesh.shard_id() == ShardId(0) {
                let woken_on = Arc::new(std::sync::Mutex::new(Vec::new()));
                for value in 0..20u64 {
                    let reply = mesh.submit_to(ShardId(1), move || async move {
                        // Answer after the asker has parked on the reply.
                        glommio::timer::sleep(Duration::from_millis(2)).await;
                        value + 1
                    });
                    let witness = WakeWitness {
                        inner: Box::pin(reply),
                        woken_on: woken_on.clone(),
                    };
                    if witness.await.map_err(|e| e.to_string())? != value + 1 {
                        outcome = Err(format!("wrong reply to {value}"));
                    }
                }
                let me = std::thread::current().id();
                let woken_on = woken_on.lock().unwrap().clone();
                if woken_on.is_empty() || woken_on.iter().any(|thread| *thread != me) {
                    outcome = Err(format!("woken on {woken_on:?}, asker is {me:?}"));
                }
            }
            barrier(&done, 2).await;
            outcome
        }
    })
    .unwrap();
}

/// Work dropped before it answers (its shard stopped) answers Closed,
/// and the asker hears it on its own thread.
#[test]
fn work_dropped_by_a_stopping_shard_answers_closed() {
    let config = small_pool(2);
    let started = Arc::new(AtomicUsize::new(0));
    ShardPool::run(&config, move |mesh: Mesh| {
        let started = started.clone();
        async move {
            mesh.open_inbox();
            if mesh.shard_id() == ShardId(1) {
                // Stop once the never-ending work has started here.
                while started.load(Ordering::SeqCst) == 0 {
                    glommio::timer::sleep(Duration::from_millis(1)).await;
                }
                return Ok(());
            }
            let flag = started.clone();
            let reply = mesh.submit_to(ShardId(1), move || async move {
                flag.store(1, Ordering::SeqCst);
                futures_lite::future::pending::<u32>().await
            });
            let timeout = async {
                glommio::timer::sleep(Duration::from_secs(10)).await;
                Err(MeshError::NoSuchShard(99))
            };
            match futures_lite::future::or(reply, timeout).await {
                Err(MeshError::Closed(1)) => Ok(()),
                Err(MeshError::NoSuchShard(99)) => Err("no answer within 10 s".into()),
                other => Err(format!("expected Closed(1), got {:?}", other.is_ok())),
            }
        }
    })
    .unwrap();
}

#[test]
fn a_full_queue_is_backpressure_not_loss() {
    let config = small_pool(2);
    let done = Arc::new(AtomicUsize::new(0));
    ShardPool::run(&config, move |mesh: Mesh| {
        let done = done.clone();
        async move {
            mesh.open_inbox();
            if mesh.shard_id() != ShardId(0) {
                barrier(&done, 2).await;
                return Ok(());
            }
            // Far more jobs in flight than the queue holds: all must arrive.
            let mut tasks = Vec::new();
            for value in 0..64u64 {
                let mesh = mesh.clone();
                tasks.push(glommio::spawn_local(async move {
                    mesh.submit_to(ShardId(1), move || async move { value * 2 })
                        .await
                }));
            }
            let mut sum = 0;
            for task in tasks {
                sum += task.await.map_err(|e| e.to_string())?;
            }
            assert_eq!(sum, (0..64u64).map(|v| v * 2).sum::<u64>());
            assert!(
                mesh.stats().queue_full.get() > 0,
                "the bound of 4 was never hit"
            );
            barrier(&done, 2).await;
            Ok(())
        }
    })
    .unwrap();
}

#[test]
fn work_queued_in_order_starts_in_order() {
    thread_local!(static SEEN: std::cell::RefCell<Vec<u32>> = const { std::cell::RefCell::new(Vec::new()) });
    let config = small_pool(2);
    let done = Arc::new(AtomicUsize::new(0));
    ShardPool::run(&config, move |mesh: Mesh| {
        let done = done.clone();
        async move {
            mesh.open_inbox();
            if mesh.shard_id() == ShardId(0) {
                let mut replies = Vec::new();
                for index in 0..100u32 {
                    for shard in [ShardId(0), ShardId(1)] {
                        let reply = mesh
                            .send_to(shard, move || async move {
                                SEEN.with(|seen| seen.borrow_mut().push(index));
                                glommio::yield_if_needed().await;
                            })
                            .await
                            .map_err(|e| e.to_string())?;
                        replies.push(reply);
                    }
                }
                for reply in replies {
                    reply.await.map_err(|e| e.to_string())?;
                }
                let seen = mesh
                    .submit_to_all(|| async { SEEN.with(|seen| seen.borrow().clone()) })
                    .await
                    .map_err(|e| e.to_string())?;
                let expected: Vec<u32> = (0..100).collect();
                assert_eq!(seen, vec![expected.clone(), expected]);
            }
            barrier(&done, 2).await;
            Ok(())
        }
    })
    .unwrap();
}

/// Regression: a job reached a shard before its state existed and
/// panicked there (a topic created while the other shard started).
#[test]
fn work_waits_until_the_target_opens_its_inbox() {
    thread_local!(static READY: Cell<bool> = const { Cell::new(false) });
    let config = small_pool(2);
    let done = Arc::new(AtomicUsize::new(0));
    ShardPool::run(&config, move |mesh: Mesh| {
        let done = done.clone();
        async move {
            if mesh.shard_id() == ShardId(1) {
                glommio::timer::sleep(Duration::from_millis(50)).await;
                READY.with(|ready| ready.set(true));
            }
            mesh.open_inbox();
            if mesh.shard_id() == ShardId(0) {
                let ready = mesh
                    .submit_to(ShardId(1), || async { READY.with(|ready| ready.get()) })
                    .await
                    .map_err(|e| e.to_string())?;
                assert!(ready, "the job ran before shard 1 was ready");
            }
            barrier(&done, 2).await;
            Ok(())
        }
    })
    .unwrap();
}

#[test]
fn unknown_shard_is_an_error() {
    ShardPool::run(&small_pool(1), |mesh: Mesh| async move {
        match mesh.submit_to(ShardId(5), || async {}).await {
            Err(MeshError::NoSuchShard(5)) => Ok(()),
            other => Err(format!("expected NoSuchShard, got {:?}", other.is_ok())),
        }
    })
    .unwrap();
}

#[test]
fn too_little_io_memory_is_refused_with_a_reason() {
    let mut config = small_pool(1);
    config.io_memory_bytes = 4096;
    let error = ShardPool::run(&config, |_mesh: Mesh| async { Ok(()) }).unwrap_err();
    assert!(error.to_string().contains("524288"), "{error}");
}
