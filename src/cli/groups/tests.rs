//! `sluice groups`: argument parsing, offsets and assignments.

use super::*;
use crate::cli::{Cli, Command};
use clap::Parser;
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTopic;
use kafka_protocol::messages::{ConsumerProtocolAssignment, TopicName};
use kafka_protocol::protocol::{Encodable, StrBytes};

#[test]
fn new_offsets_stay_inside_the_log() {
    let range = LogRange {
        earliest: Some(10),
        latest: Some(50),
        at_time: None,
    };
    let check = |target, current, expected| {
        assert_eq!(
            new_offset(target, range, current),
            expected,
            "{target:?} from {current:?}"
        );
    };
    check(Target::Earliest, Some(30), Some(10));
    check(Target::Latest, None, Some(50));
    check(Target::Offset(20), None, Some(20));
    check(Target::Offset(5), None, Some(10));
    check(Target::Offset(99), None, Some(50));
    check(Target::ShiftBy(-5), Some(30), Some(25));
    check(Target::ShiftBy(-50), Some(30), Some(10));
    check(Target::ShiftBy(i64::MAX), Some(30), Some(50));
    check(Target::ShiftBy(1), None, None);
    check(Target::Timestamp(0), None, Some(50));
    let found = LogRange {
        at_time: Some(42),
        ..range
    };
    assert_eq!(new_offset(Target::Timestamp(0), found, None), Some(42));
    let empty = LogRange::default();
    assert_eq!(new_offset(Target::Offset(7), empty, None), Some(0));
}

#[test]
fn topic_scopes() {
    assert_eq!(
        parse_topic_scope("orders"),
        Ok(TopicScope {
            topic: "orders".into(),
            partitions: None
        })
    );
    assert_eq!(
        parse_topic_scope("orders:0,2"),
        Ok(TopicScope {
            topic: "orders".into(),
            partitions: Some(vec![0, 2])
        })
    );
    assert!(parse_topic_scope("orders:x").is_err());
    assert!(parse_topic_scope(":1").is_err());
}

fn reset(line: &str) -> Result<ResetArgs, clap::Error> {
    let cli = Cli::try_parse_from(line.split_whitespace())?;
    match cli.command {
        Command::Groups {
            action: GroupsCommand::ResetOffsets(args),
        } => Ok(args),
        other => panic!("parsed as {other:?}"),
    }
}

#[test]
fn reset_needs_one_scope_and_one_target() {
    let args = reset("sluice groups reset-offsets --group g --topic t --shift-by -2").unwrap();
    assert_eq!(args.target(), Target::ShiftBy(-2));
    assert!(!args.execute);
    let args = reset("sluice groups reset-offsets --group g --all-topics --to-earliest --execute")
        .unwrap();
    assert_eq!(args.target(), Target::Earliest);
    assert!(args.execute);
    let bad = [
        "sluice groups reset-offsets --group g --to-earliest",
        "sluice groups reset-offsets --group g --topic t",
        "sluice groups reset-offsets --group g --topic t --to-earliest --to-latest",
        "sluice groups reset-offsets --group g --topic t --to-latest --dry-run --execute",
    ];
    for line in bad {
        assert!(reset(line).is_err(), "{line}");
    }
}

#[test]
fn assignments_decode_and_garbage_is_ignored() {
    let assignment = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
        AssignedTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str("t")))
            .with_partitions(vec![2, 0]),
    ]);
    let mut bytes = bytes::BytesMut::new();
    bytes.extend_from_slice(&1i16.to_be_bytes());
    assignment.encode(&mut bytes, 1).unwrap();
    assert_eq!(
        decode_assignment("consumer", &bytes),
        vec![("t".to_string(), 0), ("t".to_string(), 2)]
    );
    assert!(decode_assignment("consumer", &[0, 1, 0xff, 0xff, 0xff]).is_empty());
    assert!(decode_assignment("connect", &bytes).is_empty());
}
