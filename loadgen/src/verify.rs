//! Verify mode: every acknowledged record is consumed exactly once, in the
//! order it was produced, per partition.
//!
//! Producers log what the broker acknowledged as ranges of per-(producer,
//! partition) sequence numbers with their base offsets. Consumers log each
//! sequence number they see. [`check`] then names what was lost (acknowledged,
//! never consumed), duplicated (consumed twice) and reordered (consumed after
//! a later sequence number of the same producer and partition).
//!
//! Each consumer owns its partitions, so each keeps its own [`SeenLog`] and
//! the logs merge without conflict at the end.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

/// Records of one producer in one partition.
pub type Stream = (u32, i32);

/// How many examples of each problem the report lists.
pub const SAMPLES_MAX: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckedRange {
    pub first_sequence: u64,
    pub count: u64,
    pub base_offset: i64,
}

/// What one producer saw acknowledged.
#[derive(Debug, Default, Clone)]
pub struct AckLog {
    pub ranges: HashMap<Stream, Vec<AckedRange>>,
}

impl AckLog {
    pub fn acknowledge(
        &mut self,
        stream: Stream,
        first_sequence: u64,
        count: u64,
        base_offset: i64,
    ) {
        let ranges = self.ranges.entry(stream).or_default();
        if let Some(last) = ranges.last_mut() {
            if last.first_sequence + last.count == first_sequence
                && last.base_offset + last.count as i64 == base_offset
            {
                last.count += count;
                return;
            }
        }
        ranges.push(AckedRange {
            first_sequence,
            count,
            base_offset,
        });
    }

    pub fn merge(&mut self, other: AckLog) {
        for (stream, ranges) in other.ranges {
            self.ranges.entry(stream).or_default().extend(ranges);
        }
    }

    pub fn acknowledged(&self) -> u64 {
        self.ranges
            .values()
            .flatten()
            .map(|range| range.count)
            .sum()
    }
}

/// What one consumer saw of one stream.
#[derive(Debug, Default, Clone)]
pub struct StreamSeen {
    bits: Vec<u64>,
    highest: Option<u64>,
    pub count: u64,
    pub duplicates: Vec<(u64, i64)>,
    pub reorders: Vec<(u64, u64, i64)>,
}

impl StreamSeen {
    fn contains(&self, sequence: u64) -> bool {
        let word = (sequence / 64) as usize;
        word < self.bits.len() && self.bits[word] & (1 << (sequence % 64)) != 0
    }

    fn insert(&mut self, sequence: u64) {
        let word = (sequence / 64) as usize;
        if word >= self.bits.len() {
            self.bits.resize(word + 1, 0);
        }
        self.bits[word] |= 1 << (sequence % 64);
    }
}

/// What one consumer saw.
#[derive(Debug, Default, Clone)]
pub struct SeenLog {
    pub streams: HashMap<Stream, StreamSeen>,
}

impl SeenLog {
    /// Logs the record `sequence` of `stream`, consumed at `offset`.
    pub fn see(&mut self, stream: Stream, sequence: u64, offset: i64) {
        let seen = self.streams.entry(stream).or_default();
        seen.count += 1;
        if seen.contains(sequence) {
            seen.duplicates.push((sequence, offset));
            return;
        }
        seen.insert(sequence);
        match seen.highest {
            Some(highest) if sequence < highest => seen.reorders.push((sequence, highest, offset)),
            _ => seen.highest = Some(sequence),
        }
    }

    /// Merges another consumer's log. A partition read by two consumers (a
    /// group moved it) is a union: a record both saw is a duplicate.
    pub fn merge(&mut self, other: SeenLog) {
        for (stream, seen) in other.streams {
            let Some(mine) = self.streams.get_mut(&stream) else {
                self.streams.insert(stream, seen);
                continue;
            };
            mine.count += seen.count;
            mine.duplicates.extend(seen.duplicates);
            mine.reorders.extend(seen.reorders);
            for (word, bits) in seen.bits.iter().enumerate() {
                if word >= mine.bits.len() {
                    mine.bits.resize(word + 1, 0);
                }
                let mut both = *bits & mine.bits[word];
                while both != 0 {
                    let bit = u64::from(both.trailing_zeros());
                    mine.duplicates.push((word as u64 * 64 + bit, -1));
                    both &= both - 1;
                }
                mine.bits[word] |= bits;
            }
            mine.highest = mine.highest.max(seen.highest);
        }
    }
}

/// One partition's counts.
#[derive(Debug, Default, Clone, Copy, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct PartitionCounts {
    pub acknowledged: u64,
    pub consumed: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub reordered: u64,
}

/// The verdict, with examples.
#[derive(Debug, Default, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct VerifyReport {
    /// Per partition (every producer's records in it).
    #[serde(default)]
    pub partitions: BTreeMap<i32, PartitionCounts>,
    pub acknowledged: u64,
    pub consumed: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub reordered: u64,
    /// Records whose produce request failed or timed out but which were
    /// consumed anyway (allowed: the outcome of a failed request is unknown).
    pub unacknowledged_consumed: u64,
    pub lost_samples: Vec<String>,
    pub duplicated_samples: Vec<String>,
    pub reordered_samples: Vec<String>,
    pub passed: bool,
}

/// Compares what was acknowledged with what was consumed.
pub fn check(acks: &AckLog, seen: &SeenLog) -> VerifyReport {
    let mut report = VerifyReport::default();
    let empty = StreamSeen::default();
    // Sorted, so the report reads partition by partition.
    let streams: BTreeMap<(i32, u32), ()> = acks
        .ranges
        .keys()
        .chain(seen.streams.keys())
        .map(|&(producer, partition)| ((partition, producer), ()))
        .collect();
    for &(partition, producer) in streams.keys() {
        let stream = (producer, partition);
        let stream_seen = seen.streams.get(&stream).unwrap_or(&empty);
        let ranges = acks.ranges.get(&stream).map(Vec::as_slice).unwrap_or(&[]);
        let before = (
            report.acknowledged,
            report.lost,
            report.duplicated,
            report.reordered,
        );
        report.consumed += stream_seen.count;
        let mut acked_bits = StreamSeen::default();
        for range in ranges {
            for index in 0..range.count {
                let sequence = range.first_sequence + index;
                report.acknowledged += 1;
                acked_bits.insert(sequence);
                if !stream_seen.contains(sequence) {
                    report.lost += 1;
                    if report.lost_samples.len() < SAMPLES_MAX {
                        report.lost_samples.push(format!(
                            "partition {partition} producer {producer} sequence {sequence}: acknowledged at offset {}, never consumed",
                            range.base_offset + index as i64
                        ));
                    }
                }
            }
        }
        for &(sequence, offset) in &stream_seen.duplicates {
            report.duplicated += 1;
            if report.duplicated_samples.len() < SAMPLES_MAX {
                report.duplicated_samples.push(format!(
                    "partition {partition} producer {producer} sequence {sequence}: consumed again at offset {offset}"
                ));
            }
        }
        for &(sequence, after, offset) in &stream_seen.reorders {
            report.reordered += 1;
            if report.reordered_samples.len() < SAMPLES_MAX {
                report.reordered_samples.push(format!(
                    "partition {partition} producer {producer} sequence {sequence}: consumed at offset {offset}, after sequence {after}"
                ));
            }
        }
        for (word, bits) in stream_seen.bits.iter().enumerate() {
            let acked = acked_bits.bits.get(word).copied().unwrap_or(0);
            report.unacknowledged_consumed += u64::from((bits & !acked).count_ones());
        }
        let counts = report.partitions.entry(partition).or_default();
        counts.acknowledged += report.acknowledged - before.0;
        counts.consumed += stream_seen.count;
        counts.lost += report.lost - before.1;
        counts.duplicated += report.duplicated - before.2;
        counts.reordered += report.reordered - before.3;
    }
    report.passed = report.lost == 0 && report.duplicated == 0 && report.reordered == 0;
    report
}

impl VerifyReport {
    pub fn print(&self) {
        for (partition, counts) in &self.partitions {
            println!(
                "verify: partition {partition}: {} acknowledged, {} consumed, {} lost, {} duplicated, {} reordered",
                counts.acknowledged, counts.consumed, counts.lost, counts.duplicated, counts.reordered
            );
        }
        println!(
            "verify: {} acknowledged, {} consumed, {} lost, {} duplicated, {} reordered, {} consumed without acknowledgement: {}",
            self.acknowledged,
            self.consumed,
            self.lost,
            self.duplicated,
            self.reordered,
            self.unacknowledged_consumed,
            if self.passed { "PASSED" } else { "FAILED" }
        );
        for (title, samples) in [
            ("lost", &self.lost_samples),
            ("duplicated", &self.duplicated_samples),
            ("reordered", &self.reordered_samples),
        ] {
            for sample in samples {
                println!("  {title}: {sample}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acks(ranges: &[(u32, i32, u64, u64, i64)]) -> AckLog {
        let mut log = AckLog::default();
        for &(producer, partition, first, count, base) in ranges {
            log.acknowledge((producer, partition), first, count, base);
        }
        log
    }

    fn seen(records: &[(u32, i32, u64)]) -> SeenLog {
        let mut log = SeenLog::default();
        for (offset, &(producer, partition, sequence)) in records.iter().enumerate() {
            log.see((producer, partition), sequence, offset as i64);
        }
        log
    }

    fn check_case(
        acked: &[(u32, i32, u64, u64, i64)],
        consumed: &[(u32, i32, u64)],
        expected: (u64, u64, u64, u64),
    ) -> VerifyReport {
        let report = check(&acks(acked), &seen(consumed));
        assert_eq!(
            (
                report.lost,
                report.duplicated,
                report.reordered,
                report.unacknowledged_consumed
            ),
            expected,
            "{report:#?}"
        );
        assert_eq!(report.passed, expected.0 + expected.1 + expected.2 == 0);
        report
    }

    #[test]
    fn all_consumed_once_in_order_passes() {
        check_case(
            &[(0, 0, 0, 3, 0)],
            &[(0, 0, 0), (0, 0, 1), (0, 0, 2)],
            (0, 0, 0, 0),
        );
    }

    #[test]
    fn a_missing_record_is_lost() {
        let report = check_case(&[(0, 0, 0, 3, 10)], &[(0, 0, 0), (0, 0, 2)], (1, 0, 0, 0));
        assert_eq!(
            report.lost_samples,
            vec!["partition 0 producer 0 sequence 1: acknowledged at offset 11, never consumed"]
        );
        assert_eq!(
            report.partitions[&0],
            PartitionCounts {
                acknowledged: 3,
                consumed: 2,
                lost: 1,
                duplicated: 0,
                reordered: 0
            }
        );
    }

    #[test]
    fn a_record_seen_twice_is_duplicated() {
        check_case(
            &[(0, 0, 0, 2, 0)],
            &[(0, 0, 0), (0, 0, 1), (0, 0, 1)],
            (0, 1, 0, 0),
        );
    }

    #[test]
    fn an_earlier_sequence_after_a_later_one_is_reordered() {
        check_case(
            &[(0, 0, 0, 3, 0)],
            &[(0, 0, 0), (0, 0, 2), (0, 0, 1)],
            (0, 0, 1, 0),
        );
    }

    #[test]
    fn producers_and_partitions_are_separate_streams() {
        // Interleaving two producers in one partition is not a reorder.
        check_case(
            &[(0, 0, 0, 2, 0), (1, 0, 0, 2, 2), (0, 1, 0, 1, 0)],
            &[(1, 0, 0), (0, 0, 0), (1, 0, 1), (0, 0, 1), (0, 1, 0)],
            (0, 0, 0, 0),
        );
    }

    #[test]
    fn unacknowledged_records_may_appear_or_not() {
        // Sequence 1's request failed: its absence is not a loss, its
        // presence not an error.
        check_case(
            &[(0, 0, 0, 1, 0), (0, 0, 2, 1, 2)],
            &[(0, 0, 0), (0, 0, 2)],
            (0, 0, 0, 0),
        );
        check_case(
            &[(0, 0, 0, 1, 0), (0, 0, 2, 1, 2)],
            &[(0, 0, 0), (0, 0, 1), (0, 0, 2)],
            (0, 0, 0, 1),
        );
    }

    #[test]
    fn adjacent_acks_merge_into_one_range() {
        let log = acks(&[(0, 0, 0, 5, 100), (0, 0, 5, 5, 105), (0, 0, 10, 1, 200)]);
        assert_eq!(log.ranges[&(0, 0)].len(), 2);
        assert_eq!(log.acknowledged(), 11);
    }

    #[test]
    fn a_partition_read_by_two_consumers_merges() {
        let mut first = seen(&[(0, 0, 0), (0, 0, 1)]);
        let second = seen(&[(0, 0, 1), (0, 0, 2)]);
        first.merge(second);
        let report = check(&acks(&[(0, 0, 0, 3, 0)]), &first);
        assert_eq!((report.lost, report.duplicated), (0, 1), "{report:#?}");
    }

    #[test]
    fn the_report_serializes() {
        let report = check(&acks(&[(0, 0, 0, 2, 0)]), &seen(&[(0, 0, 1)]));
        let json = serde_json::to_string(&report).unwrap();
        let back: VerifyReport = serde_json::from_str(&json).unwrap();
        assert_eq!(back, report);
        assert!(json.contains("\"lost\":1"));
    }
}
