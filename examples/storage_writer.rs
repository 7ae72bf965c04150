//! Appends to one partition log until killed, printing `synced <offset>`
//! for every batch whose durability (group commit) was confirmed. The crash
//! test (`tests/storage_crash.rs`) kills it with SIGKILL and checks that
//! recovery kept every printed offset.
//!
//! Usage: storage_writer <dir> <producers> <value_bytes>

use std::io::Write;

use sluice::storage::batch::test_batches::batch;
use sluice::storage::{LogConfig, PartitionLog, ShardStorage, StorageConfig};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(&args[1]);
    let producers: usize = args[2].parse().expect("producers");
    let value_bytes: usize = args[3].parse().expect("value bytes");
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(1 << 20)
        .ring_depth(128)
        .spawn(move || async move {
            let mut storage = StorageConfig::new(&dir);
            storage.preallocate_bytes = 4 << 20;
            let shard = ShardStorage::new(storage);
            let config = LogConfig {
                segment_bytes: 1 << 20,
                ..LogConfig::default()
            };
            let log = PartitionLog::open(dir.join("crash-0"), config, &shard)
                .await
                .unwrap();
            let mut tasks = Vec::new();
            for producer in 0..producers {
                let log = log.clone();
                tasks.push(glommio::spawn_local(async move {
                    let value = vec![producer as u8; value_bytes];
                    loop {
                        let records =
                            batch(3, Some(b"key"), Some(&value), sluice::storage::now_ms());
                        let info = log
                            .append(&records, sluice::storage::now_ms())
                            .await
                            .unwrap();
                        log.wait_durable(info.last_offset).await.unwrap();
                        let mut out = std::io::stdout().lock();
                        writeln!(out, "synced {}", info.last_offset).unwrap();
                        out.flush().unwrap();
                    }
                }));
            }
            for task in tasks {
                task.await;
            }
        })
        .expect("executor")
        .join()
        .expect("writer");
}
