//! The records of `__consumer_offsets`, in Kafka's own key and value
//! schemas, so that the topic reads as Kafka's does:
//! - `OffsetCommitKey` (key version 1): group, topic, partition;
//!   `OffsetCommitValue` v3 (v1 when the commit set an expire timestamp).
//! - `GroupMetadataKey` (key version 2): group; `GroupMetadataValue` v3.
//! - A null value is a tombstone; the topic is compacted on the key.
//!
//! Pure encoding. Decoding reads disk contents: it checks every length and
//! returns an error, never panics.

use bytes::{BufMut, Bytes, BytesMut};

use super::group::{CommittedOffset, Group, GroupState, Member, Protocol, TopicPartition};

/// One record bound for a `__consumer_offsets` partition.
#[derive(Clone, Debug, PartialEq)]
pub struct LogRecord {
    pub partition: i32,
    pub key: Bytes,
    pub value: Option<Bytes>,
}

const OFFSET_COMMIT_KEY_VERSION: i16 = 1;
const GROUP_METADATA_KEY_VERSION: i16 = 2;
const OFFSET_COMMIT_VALUE_VERSION: i16 = 3;
const OFFSET_COMMIT_VALUE_VERSION_EXPIRING: i16 = 1;
const GROUP_METADATA_VALUE_VERSION: i16 = 3;

pub(crate) fn put_string(buf: &mut BytesMut, text: &str) {
    let len = i16::try_from(text.len()).unwrap_or(i16::MAX);
    buf.put_i16(len);
    buf.put_slice(&text.as_bytes()[..len as usize]);
}

fn put_nullable_string(buf: &mut BytesMut, text: Option<&str>) {
    match text {
        Some(text) => put_string(buf, text),
        None => buf.put_i16(-1),
    }
}

fn put_bytes(buf: &mut BytesMut, bytes: &[u8]) {
    buf.put_i32(bytes.len() as i32);
    buf.put_slice(bytes);
}

pub fn offset_commit_key(group_id: &str, topic: &str, partition: i32) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(OFFSET_COMMIT_KEY_VERSION);
    put_string(&mut buf, group_id);
    put_string(&mut buf, topic);
    buf.put_i32(partition);
    buf.freeze()
}

pub fn group_metadata_key(group_id: &str) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(GROUP_METADATA_KEY_VERSION);
    put_string(&mut buf, group_id);
    buf.freeze()
}

pub fn offset_commit_value(offset: &CommittedOffset) -> Bytes {
    let mut buf = BytesMut::new();
    match offset.expire_timestamp_ms {
        Some(expire_ms) => {
            buf.put_i16(OFFSET_COMMIT_VALUE_VERSION_EXPIRING);
            buf.put_i64(offset.offset);
            put_string(&mut buf, &offset.metadata);
            buf.put_i64(offset.commit_timestamp_ms);
            buf.put_i64(expire_ms);
        }
        None => {
            buf.put_i16(OFFSET_COMMIT_VALUE_VERSION);
            buf.put_i64(offset.offset);
            buf.put_i32(offset.leader_epoch);
            put_string(&mut buf, &offset.metadata);
            buf.put_i64(offset.commit_timestamp_ms);
        }
    }
    buf.freeze()
}

pub fn group_metadata_value(group: &Group) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(GROUP_METADATA_VALUE_VERSION);
    put_string(&mut buf, group.protocol_type.as_deref().unwrap_or(""));
    buf.put_i32(group.generation_id);
    put_nullable_string(&mut buf, group.protocol_name.as_deref());
    put_nullable_string(&mut buf, group.leader_id.as_deref());
    buf.put_i64(group.state_timestamp_ms as i64);
    buf.put_i32(group.members.len() as i32);
    let protocol = group.protocol_name.as_deref().unwrap_or("");
    for member in group.members.values() {
        put_string(&mut buf, &member.member_id);
        put_nullable_string(&mut buf, member.group_instance_id.as_deref());
        put_string(&mut buf, &member.client_id);
        put_string(&mut buf, &member.client_host);
        buf.put_i32(member.rebalance_timeout_ms);
        buf.put_i32(member.session_timeout_ms);
        put_bytes(&mut buf, member.metadata(protocol).map_or(&[][..], |m| m));
        put_bytes(&mut buf, &member.assignment);
    }
    buf.freeze()
}

/// The offset record (or tombstone) of one partition of `group_id`.
pub fn offset_commit_record(
    offsets_partitions: i32,
    group_id: &str,
    key: &TopicPartition,
    offset: Option<&CommittedOffset>,
) -> LogRecord {
    LogRecord {
        partition: super::partition_for_group(group_id, offsets_partitions),
        key: offset_commit_key(group_id, &key.0, key.1),
        value: offset.map(offset_commit_value),
    }
}

pub fn group_metadata_record(offsets_partitions: i32, group: &Group) -> LogRecord {
    LogRecord {
        partition: super::partition_for_group(&group.group_id, offsets_partitions),
        key: group_metadata_key(&group.group_id),
        value: Some(group_metadata_value(group)),
    }
}

pub fn group_tombstone(offsets_partitions: i32, group_id: &str) -> LogRecord {
    LogRecord {
        partition: super::partition_for_group(group_id, offsets_partitions),
        key: group_metadata_key(group_id),
        value: None,
    }
}

// ---------------------------------------------------------------------------
// Decoding

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RecordError {
    #[error("record truncated")]
    Truncated,
    #[error("unknown {what} version {version}")]
    Version { what: &'static str, version: i16 },
    #[error("negative length {0}")]
    Length(i32),
    #[error("string is not UTF-8")]
    Utf8,
}

/// A group as its metadata record stored it.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadedGroup {
    pub protocol_type: String,
    pub generation_id: i32,
    pub protocol_name: Option<String>,
    pub leader_id: Option<String>,
    pub state_timestamp_ms: Option<i64>,
    pub members: Vec<LoadedMember>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LoadedMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub subscription: Bytes,
    pub assignment: Bytes,
}

impl LoadedGroup {
    /// The group as the coordinator resumes it: Stable with its members
    /// (whose sessions start now) and their last assignment, or Empty.
    pub fn into_group(self, group_id: &str, now_ms: u64) -> Group {
        let mut group = Group::new(group_id, now_ms);
        group.generation_id = self.generation_id;
        group.protocol_type = (!self.protocol_type.is_empty()).then_some(self.protocol_type);
        group.protocol_name = self.protocol_name.clone();
        let protocol = self.protocol_name.unwrap_or_default();
        for loaded in self.members {
            group.add_member(Member {
                member_id: loaded.member_id,
                group_instance_id: loaded.group_instance_id,
                client_id: loaded.client_id,
                client_host: loaded.client_host,
                rebalance_timeout_ms: loaded.rebalance_timeout_ms,
                session_timeout_ms: loaded.session_timeout_ms,
                protocol_type: group.protocol_type.clone().unwrap_or_default(),
                protocols: vec![Protocol {
                    name: protocol.clone(),
                    metadata: loaded.subscription,
                }],
                assignment: loaded.assignment,
                awaiting_join: false,
                awaiting_sync: false,
                last_heartbeat_ms: now_ms,
            });
        }
        if self
            .leader_id
            .as_ref()
            .is_some_and(|l| group.members.contains_key(l))
        {
            group.leader_id = self.leader_id;
        }
        if group.members.is_empty() {
            group.state_timestamp_ms = self
                .state_timestamp_ms
                .and_then(|t| u64::try_from(t).ok())
                .unwrap_or(now_ms);
        } else {
            group.transition(GroupState::Stable, now_ms);
        }
        group
    }
}

#[derive(Debug, PartialEq)]
pub enum Decoded {
    Offset {
        group_id: String,
        topic_partition: TopicPartition,
        offset: Option<CommittedOffset>,
    },
    Group {
        group_id: String,
        metadata: Option<LoadedGroup>,
    },
    /// A key version this coordinator does not use (e.g. share groups).
    Unknown,
}

/// A bounds-checked reader of Kafka's big-endian record schemas.
pub(crate) struct Reader<'a> {
    pub(crate) bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn take(&mut self, count: usize) -> Result<&'a [u8], RecordError> {
        if self.bytes.len() < count {
            return Err(RecordError::Truncated);
        }
        let (head, tail) = self.bytes.split_at(count);
        self.bytes = tail;
        Ok(head)
    }
    pub(crate) fn i16(&mut self) -> Result<i16, RecordError> {
        Ok(i16::from_be_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }
    pub(crate) fn i32(&mut self) -> Result<i32, RecordError> {
        Ok(i32::from_be_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    pub(crate) fn i64(&mut self) -> Result<i64, RecordError> {
        Ok(i64::from_be_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    pub(crate) fn nullable_string(&mut self) -> Result<Option<String>, RecordError> {
        let len = self.i16()?;
        if len < 0 {
            return Ok(None);
        }
        let raw = self.take(len as usize)?;
        let text = std::str::from_utf8(raw).map_err(|_| RecordError::Utf8)?;
        Ok(Some(text.to_string()))
    }
    pub(crate) fn string(&mut self) -> Result<String, RecordError> {
        self.nullable_string()?.ok_or(RecordError::Length(-1))
    }
    pub(crate) fn bytes(&mut self) -> Result<Bytes, RecordError> {
        let len = self.i32()?;
        if len < 0 {
            return Ok(Bytes::new());
        }
        Ok(Bytes::copy_from_slice(self.take(len as usize)?))
    }
}

pub fn decode(key: &[u8], value: Option<&[u8]>) -> Result<Decoded, RecordError> {
    let mut reader = Reader { bytes: key };
    match reader.i16()? {
        0 | 1 => {
            let group_id = reader.string()?;
            let topic = reader.string()?;
            let partition = reader.i32()?;
            let offset = value.map(decode_offset).transpose()?;
            Ok(Decoded::Offset {
                group_id,
                topic_partition: (topic, partition),
                offset,
            })
        }
        2 => {
            let group_id = reader.string()?;
            let metadata = value.map(decode_group).transpose()?;
            Ok(Decoded::Group { group_id, metadata })
        }
        _ => Ok(Decoded::Unknown),
    }
}

fn decode_offset(value: &[u8]) -> Result<CommittedOffset, RecordError> {
    let mut reader = Reader { bytes: value };
    let version = reader.i16()?;
    if !(0..=3).contains(&version) {
        return Err(RecordError::Version {
            what: "OffsetCommitValue",
            version,
        });
    }
    let offset = reader.i64()?;
    let leader_epoch = if version >= 3 { reader.i32()? } else { -1 };
    let metadata = reader.string()?;
    let commit_timestamp_ms = reader.i64()?;
    let expire_timestamp_ms = if version == 1 {
        Some(reader.i64()?)
    } else {
        None
    };
    Ok(CommittedOffset {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp_ms,
        expire_timestamp_ms,
    })
}

fn decode_group(value: &[u8]) -> Result<LoadedGroup, RecordError> {
    let mut reader = Reader { bytes: value };
    let version = reader.i16()?;
    if !(0..=3).contains(&version) {
        return Err(RecordError::Version {
            what: "GroupMetadataValue",
            version,
        });
    }
    let protocol_type = reader.string()?;
    let generation_id = reader.i32()?;
    let protocol_name = reader.nullable_string()?;
    let leader_id = reader.nullable_string()?;
    let state_timestamp_ms = if version >= 2 {
        Some(reader.i64()?)
    } else {
        None
    };
    let count = reader.i32()?;
    if count < 0 {
        return Err(RecordError::Length(count));
    }
    let mut members = Vec::new();
    for _ in 0..count {
        let member_id = reader.string()?;
        let group_instance_id = if version >= 3 {
            reader.nullable_string()?
        } else {
            None
        };
        let client_id = reader.string()?;
        let client_host = reader.string()?;
        let rebalance_timeout_ms = if version >= 1 { reader.i32()? } else { -1 };
        let session_timeout_ms = reader.i32()?;
        let rebalance_timeout_ms = if rebalance_timeout_ms < 0 {
            session_timeout_ms
        } else {
            rebalance_timeout_ms
        };
        members.push(LoadedMember {
            member_id,
            group_instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms,
            session_timeout_ms,
            subscription: reader.bytes()?,
            assignment: reader.bytes()?,
        });
    }
    Ok(LoadedGroup {
        protocol_type,
        generation_id,
        protocol_name,
        leader_id,
        state_timestamp_ms,
        members,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offset(expire: Option<i64>) -> CommittedOffset {
        CommittedOffset {
            offset: 42,
            leader_epoch: if expire.is_some() { -1 } else { 7 },
            metadata: "meta".into(),
            commit_timestamp_ms: 1_700_000_000_000,
            expire_timestamp_ms: expire,
        }
    }

    #[test]
    fn offset_records_round_trip() {
        for committed in [offset(None), offset(Some(1_700_000_060_000))] {
            let record = offset_commit_record(50, "g", &("t".into(), 3), Some(&committed));
            assert_eq!(record.partition, super::super::partition_for_group("g", 50));
            let decoded = decode(&record.key, record.value.as_deref()).unwrap();
            assert_eq!(
                decoded,
                Decoded::Offset {
                    group_id: "g".into(),
                    topic_partition: ("t".into(), 3),
                    offset: Some(committed),
                }
            );
        }
        let tombstone = offset_commit_record(50, "g", &("t".into(), 3), None);
        assert!(matches!(
            decode(&tombstone.key, None).unwrap(),
            Decoded::Offset { offset: None, .. }
        ));
    }

    #[test]
    fn offset_key_is_kafkas_layout() {
        let key = offset_commit_key("g", "t", 1);
        assert_eq!(&key[..], b"\x00\x01\x00\x01g\x00\x01t\x00\x00\x00\x01");
        assert_eq!(&group_metadata_key("g")[..], b"\x00\x02\x00\x01g");
    }

    #[test]
    fn group_records_round_trip() {
        let mut group = Group::new("g", 5);
        group.protocol_type = Some("consumer".into());
        group.protocol_name = Some("range".into());
        group.generation_id = 4;
        group.add_member(Member {
            member_id: "m-1".into(),
            group_instance_id: Some("i-1".into()),
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            rebalance_timeout_ms: 300_000,
            session_timeout_ms: 10_000,
            protocol_type: "consumer".into(),
            protocols: vec![Protocol {
                name: "range".into(),
                metadata: Bytes::from_static(b"sub"),
            }],
            assignment: Bytes::from_static(b"assigned"),
            awaiting_join: false,
            awaiting_sync: false,
            last_heartbeat_ms: 0,
        });
        let record = group_metadata_record(50, &group);
        let Decoded::Group {
            group_id,
            metadata: Some(loaded),
        } = decode(&record.key, record.value.as_deref()).unwrap()
        else {
            panic!("a group record");
        };
        assert_eq!(group_id, "g");
        let resumed = loaded.into_group("g", 99);
        assert_eq!(resumed.state, GroupState::Stable);
        assert_eq!(resumed.generation_id, 4);
        assert_eq!(resumed.leader_id.as_deref(), Some("m-1"));
        assert_eq!(
            resumed.static_members.get("i-1").map(String::as_str),
            Some("m-1")
        );
        let member = &resumed.members["m-1"];
        assert_eq!(&member.assignment[..], b"assigned");
        assert_eq!(member.metadata("range").map(|m| &m[..]), Some(&b"sub"[..]));
        assert_eq!(member.last_heartbeat_ms, 99);
    }

    #[test]
    fn damaged_records_are_errors_not_panics() {
        let record = offset_commit_record(50, "g", &("t".into(), 3), Some(&offset(None)));
        let value = record.value.unwrap();
        for cut in 0..value.len() {
            assert!(
                decode(&record.key, Some(&value[..cut])).is_err(),
                "cut {cut}"
            );
        }
        for cut in 0..record.key.len() {
            assert!(decode(&record.key[..cut], None).is_err(), "cut {cut}");
        }
        assert!(decode(b"\x00\x02\x00\x01g", Some(b"\x00\x09")).is_err());
        assert!(decode(b"\x00\x02\x00\x01g", Some(b"\x00\x03\x00\x00\x00\x00\x00\x01\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff")).is_err());
        assert_eq!(decode(b"\x00\x07", None), Ok(Decoded::Unknown));
    }
}
