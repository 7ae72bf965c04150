//! DescribeLogDirs (key 35): the one log directory (`data.dir`), its size
//! and free space, and every partition's size, gathered from all shards.

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{
    ApiKey, DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName,
};

use super::{str_bytes, ApiSupport, RequestContext};
use crate::shard;

pub const API: ApiSupport = super::api(ApiKey::DescribeLogDirs, 1, 4);

pub async fn handle(
    context: &RequestContext,
    request: DescribeLogDirsRequest,
) -> DescribeLogDirsResponse {
    if let Some(code) = context.cluster_refusal(crate::security::acl::Operation::Describe) {
        return DescribeLogDirsResponse::default().with_error_code(code);
    }
    let wanted: Option<BTreeMap<String, Vec<i32>>> = request.topics.map(|topics| {
        topics
            .into_iter()
            .map(|topic| (topic.topic.0.to_string(), topic.partitions))
            .collect()
    });
    let sizes = context
        .shard
        .mesh
        .submit_to_all(|| async {
            let shard = shard::current();
            shard
                .partitions
                .all()
                .iter()
                .map(|p| (p.key.topic.clone(), p.key.partition, p.log.size_bytes()))
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
    let mut topics: BTreeMap<String, Vec<(i32, u64)>> = BTreeMap::new();
    for (topic, partition, size) in sizes.into_iter().flatten() {
        let included = match &wanted {
            None => true,
            Some(wanted) => wanted.get(&topic).is_some_and(|p| p.contains(&partition)),
        };
        if included {
            topics.entry(topic).or_default().push((partition, size));
        }
    }
    let topics = topics
        .into_iter()
        .map(|(name, mut partitions)| {
            partitions.sort_unstable();
            let partitions = partitions
                .into_iter()
                .map(|(index, size)| {
                    DescribeLogDirsPartition::default()
                        .with_partition_index(index)
                        .with_partition_size(i64::try_from(size).unwrap_or(i64::MAX))
                })
                .collect();
            DescribeLogDirsTopic::default()
                .with_name(TopicName(str_bytes(name)))
                .with_partitions(partitions)
        })
        .collect();
    let data_dir = context.shard.config.data_dir.clone();
    let (total_bytes, usable_bytes) = if context.api_version >= 4 {
        disk_space(&data_dir).unwrap_or((-1, -1))
    } else {
        (-1, -1)
    };
    let log_dir = std::fs::canonicalize(&data_dir).unwrap_or(data_dir);
    let result = DescribeLogDirsResult::default()
        .with_log_dir(str_bytes(log_dir.display().to_string()))
        .with_topics(topics)
        .with_total_bytes(total_bytes)
        .with_usable_bytes(usable_bytes);
    DescribeLogDirsResponse::default().with_results(vec![result])
}

/// Total and available bytes of the file system holding `dir`.
fn disk_space(dir: &std::path::Path) -> Option<(i64, i64)> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs writes into the zeroed struct we own.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
        return None;
    }
    let block = stat.f_frsize as i64;
    Some((stat.f_blocks as i64 * block, stat.f_bavail as i64 * block))
}
