//! The message browser and the produce form: reads records of one topic
//! (some or all partitions, from an offset, a time, or the newest N) with
//! Fetch at each leader, and shows each key, header and value as text,
//! pretty JSON or a hex dump as its bytes call for. Everything is bounded:
//! records per page, partitions per page, bytes shown per value (the
//! whole value is a separate download), fetch rounds and fetch bytes, so a
//! 100 MB record or a topic of 10,000 partitions cannot take the console
//! down. Produces one record per form with the CLI producer's batch code.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::{bail, Result};
use bytes::Bytes;
use kafka_protocol::messages::produce_request::PartitionProduceData;
use kafka_protocol::messages::FetchRequest;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Compression, Record};
use sluice_client::idempotence::ProducerIdentity;
use sluice_client::offsets::{self, TopicPartition, EARLIEST_TIMESTAMP, LATEST_TIMESTAMP};
use sluice_client::partitioner::partition_for_key;
use sluice_client::records::{decode_batch, fetch_request, split_batches};
use sluice_client::retry::classify;
use sluice_client::{retrying, Cluster as Client, KafkaError};

use super::http::{percent_encode, Params, Reply};
use super::pages::{Chrome, MessagesPage, RecordView, Shown};
use super::{done, format_timestamp, now_ms, required, user_error};
use crate::cli::datetime::parse_datetime_ms;
use crate::cli::produce::{encode_batch, send_round, Headers};

/// Records on one page, and the default.
pub const RECORDS_MAX: usize = 500;
const RECORDS_DEFAULT: usize = 20;
/// Partitions read at once with "all".
const PARTITIONS_BROWSED_MAX: usize = 100;
/// Partition numbers listed in the chooser.
const PARTITIONS_LISTED_MAX: usize = 1000;
/// Bytes of a value, key or header shown on the page.
pub const VALUE_SHOWN_BYTES_MAX: usize = 64 * 1024;
const KEY_SHOWN_BYTES_MAX: usize = 1024;
/// Bytes asked per partition, and per Fetch; a batch larger than the
/// partition's share is asked for alone with up to the record maximum.
const PARTITION_FETCH_BYTES: i32 = 1024 * 1024;
const FETCH_BYTES_MAX: i32 = 8 * 1024 * 1024;
const RECORD_FETCH_BYTES_MAX: i32 = 128 * 1024 * 1024;
const FETCH_ROUNDS_MAX: usize = 8;

/// Where reading starts.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Start {
    Newest,
    Offset(i64),
    Timestamp(i64),
}

pub fn messages(client: &mut Client, chrome: Chrome, query: &Params) -> Result<MessagesPage> {
    let topic = required(query, "topic")?.to_string();
    let count = query
        .number::<usize>("count")
        .map_err(user_error)?
        .unwrap_or(RECORDS_DEFAULT)
        .clamp(1, RECORDS_MAX);
    let mode = query.get("mode").unwrap_or("newest").to_string();
    let start = match mode.as_str() {
        "offset" => Start::Offset(query.number("offset").map_err(user_error)?.unwrap_or(0)),
        "timestamp" => {
            let text = required(query, "timestamp")?;
            Start::Timestamp(parse_datetime_ms(text).map_err(user_error)?)
        }
        _ => Start::Newest,
    };
    let mut all = partitions_of(client, &topic)?;
    let mut notes = Vec::new();
    let partition = query.get("partition").unwrap_or("all").to_string();
    let chosen: Vec<i32> = match partition.as_str() {
        "all" => {
            if all.len() > PARTITIONS_BROWSED_MAX {
                notes.push(format!(
                    "Reading the first {PARTITIONS_BROWSED_MAX} of {} partitions; choose a partition for the others.",
                    all.len()
                ));
            }
            all.iter().copied().take(PARTITIONS_BROWSED_MAX).collect()
        }
        number => {
            let index: i32 = number
                .parse()
                .map_err(|_| user_error(format!("no partition '{number}'")))?;
            if !all.contains(&index) {
                return Err(user_error(format!(
                    "Topic '{topic}' has no partition {index}."
                )));
            }
            vec![index]
        }
    };
    let mut records = read(client, &topic, &chosen, start, count, &mut notes)?;
    match start {
        Start::Newest => records.sort_by(|a, b| {
            (b.1.timestamp, a.0, b.1.offset).cmp(&(a.1.timestamp, b.0, a.1.offset))
        }),
        _ => {
            records.sort_by_key(|(partition, record)| (record.timestamp, *partition, record.offset))
        }
    }
    records.truncate(count);
    if all.len() > PARTITIONS_LISTED_MAX {
        all.truncate(PARTITIONS_LISTED_MAX);
    }
    Ok(MessagesPage {
        chrome,
        records: records.iter().map(|(p, r)| view(&topic, *p, r)).collect(),
        topic,
        partitions: all,
        partition,
        mode,
        offset: query.get("offset").unwrap_or("").to_string(),
        timestamp: query.get("timestamp").unwrap_or("").to_string(),
        count,
        count_max: RECORDS_MAX,
        notes,
    })
}

fn partitions_of(client: &mut Client, topic: &str) -> Result<Vec<i32>> {
    client.refresh(&[topic.to_string()])?;
    match client.partitions(topic) {
        Some(partitions) if !partitions.is_empty() => Ok(partitions.keys().copied().collect()),
        _ => Err(user_error(format!("Topic '{topic}' does not exist."))),
    }
}

/// Up to `count` records of each partition from where `start` says.
fn read(
    client: &mut Client,
    topic: &str,
    partitions: &[i32],
    start: Start,
    count: usize,
    notes: &mut Vec<String>,
) -> Result<Vec<(i32, Record)>> {
    let keys: Vec<TopicPartition> = partitions.iter().map(|p| (topic.to_string(), *p)).collect();
    let earliest = offsets::list_offsets(client, &keys, EARLIEST_TIMESTAMP)?;
    let latest = offsets::list_offsets(client, &keys, LATEST_TIMESTAMP)?;
    let at_time = match start {
        Start::Timestamp(ms) => offsets::list_offsets(client, &keys, ms)?,
        _ => BTreeMap::new(),
    };
    // Partition -> (next offset, end offset, bytes to ask).
    let mut positions: BTreeMap<i32, (i64, i64, i32)> = BTreeMap::new();
    for key in &keys {
        let low = earliest.get(key).copied().flatten().unwrap_or(0);
        let end = latest.get(key).copied().flatten().unwrap_or(low);
        let from = match start {
            Start::Newest => end.saturating_sub(count as i64).max(low),
            Start::Offset(offset) => offset.clamp(low, end),
            Start::Timestamp(_) => at_time.get(key).copied().flatten().unwrap_or(end),
        };
        if from < end {
            positions.insert(key.1, (from, end, PARTITION_FETCH_BYTES));
        }
    }
    let mut taken: BTreeMap<i32, Vec<Record>> = BTreeMap::new();
    for _ in 0..FETCH_ROUNDS_MAX {
        positions.retain(|partition, (next, end, _)| {
            *next < *end && taken.get(partition).map_or(0, Vec::len) < count
        });
        if positions.is_empty() {
            break;
        }
        for (partition, data) in fetch_round(client, topic, &positions)? {
            let entry = positions
                .get_mut(&partition)
                .expect("fetched what we asked");
            take(
                partition,
                data,
                entry,
                taken.entry(partition).or_default(),
                count,
                notes,
            )?;
        }
    }
    Ok(taken
        .into_iter()
        .flat_map(|(partition, records)| records.into_iter().map(move |r| (partition, r)))
        .collect())
}

/// One Fetch per leader of the partitions still to read.
fn fetch_round(
    client: &mut Client,
    topic: &str,
    positions: &BTreeMap<i32, (i64, i64, i32)>,
) -> Result<Vec<(i32, Bytes)>> {
    let mut by_leader: BTreeMap<i32, Vec<(i32, i64, i32)>> = BTreeMap::new();
    for (partition, (next, _, bytes)) in positions {
        let Some(leader) = client.leader(topic, *partition).filter(|l| *l >= 0) else {
            bail!("{topic}-{partition} has no leader");
        };
        by_leader
            .entry(leader)
            .or_default()
            .push((*partition, *next, *bytes));
    }
    let mut fetched = Vec::new();
    for (leader, wanted) in by_leader {
        let request = fetch_request(topic, &wanted, 0, FETCH_BYTES_MAX);
        let connection = client.broker(leader)?;
        let version = connection.version::<FetchRequest>(12)?;
        let response = connection.call_at(&request, version)?;
        KafkaError::check(response.error_code, None, "fetching records")?;
        for answer in response.responses {
            for partition in answer.partitions {
                let index = partition.partition_index;
                if classify(partition.error_code).is_some() {
                    client.refresh(&[topic.to_string()])?;
                    continue; // a leader moved: next round
                }
                KafkaError::check(
                    partition.error_code,
                    None,
                    format!("fetching {topic}-{index}"),
                )?;
                fetched.push((index, partition.records.unwrap_or_default()));
            }
        }
    }
    Ok(fetched)
}

/// Decodes one partition's fetched bytes into `records` (up to `count`)
/// and moves its position.
fn take(
    partition: i32,
    data: Bytes,
    (next, end, bytes): &mut (i64, i64, i32),
    records: &mut Vec<Record>,
    count: usize,
    notes: &mut Vec<String>,
) -> Result<()> {
    if data.is_empty() {
        // Another partition filled the response; its turn comes next round.
        return Ok(());
    }
    let batches = split_batches(data);
    if batches.is_empty() {
        if *bytes >= RECORD_FETCH_BYTES_MAX {
            notes.push(format!(
                "Partition {partition}: a record batch at offset {next} is larger than {RECORD_FETCH_BYTES_MAX} bytes; skipped the rest."
            ));
            *next = *end;
        } else {
            *bytes = bytes.saturating_mul(8).min(RECORD_FETCH_BYTES_MAX);
        }
        return Ok(());
    }
    for batch in batches {
        let batch = decode_batch(batch)?;
        for record in batch.records {
            if record.offset < *next || records.len() >= count {
                continue;
            }
            *next = record.offset + 1;
            records.push(record);
        }
        if records.len() < count {
            *next = (*next).max(batch.next_offset);
        }
    }
    if records.len() >= count {
        *next = *end;
    }
    Ok(())
}

fn view(topic: &str, partition: i32, record: &Record) -> RecordView {
    RecordView {
        partition,
        offset: record.offset,
        timestamp: format!(
            "{} ({})",
            format_timestamp(record.timestamp),
            record.timestamp
        ),
        key: show(record.key.as_ref(), KEY_SHOWN_BYTES_MAX),
        headers: record
            .headers
            .iter()
            .map(|(name, value)| (name.to_string(), show(value.as_ref(), KEY_SHOWN_BYTES_MAX)))
            .collect(),
        value: show(record.value.as_ref(), VALUE_SHOWN_BYTES_MAX),
        download: format!(
            "/messages/value?topic={}&partition={partition}&offset={}",
            percent_encode(topic),
            record.offset
        ),
    }
}

/// Bytes as text, pretty JSON or a hex dump, at most `limit` of them.
pub fn show(bytes: Option<&Bytes>, limit: usize) -> Shown {
    let Some(bytes) = bytes else {
        return Shown {
            kind: "null",
            text: "null".into(),
            size: 0,
            truncated: false,
        };
    };
    let truncated = bytes.len() > limit;
    let head = &bytes[..bytes.len().min(limit)];
    let text = match std::str::from_utf8(head) {
        Ok(text) => Some(text),
        // Cut inside a character: the whole characters before it.
        Err(error) if truncated && error.error_len().is_none() => {
            std::str::from_utf8(&head[..error.valid_up_to()]).ok()
        }
        Err(_) => None,
    };
    let printable = |text: &str| {
        !text
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    };
    match text.filter(|text| printable(text)) {
        Some(text) if !truncated && (text.starts_with('{') || text.starts_with('[')) => {
            match serde_json::from_str::<serde::de::IgnoredAny>(text) {
                Ok(_) => Shown {
                    kind: "json",
                    text: indent_json(text),
                    size: bytes.len(),
                    truncated,
                },
                Err(_) => Shown {
                    kind: "text",
                    text: text.to_string(),
                    size: bytes.len(),
                    truncated,
                },
            }
        }
        Some(text) => Shown {
            kind: "text",
            text: text.to_string(),
            size: bytes.len(),
            truncated,
        },
        None => {
            let limit = limit.min(4096);
            Shown {
                kind: "hex",
                text: hex_dump(&bytes[..bytes.len().min(limit)]),
                size: bytes.len(),
                truncated: bytes.len() > limit,
            }
        }
    }
}

/// Valid JSON laid out two spaces a level, its fields in the record's
/// own order (a parsed map would sort them).
fn indent_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len() * 2);
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        out.push_str(&"  ".repeat(depth));
    };
    let mut chars = json.chars().peekable();
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                let close = if c == '{' { '}' } else { ']' };
                while chars.peek().is_some_and(|next| next.is_whitespace()) {
                    chars.next();
                }
                if chars.peek() == Some(&close) {
                    out.push(close);
                    chars.next();
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

/// `00000000  de ad be ef ...  |....|`, 16 bytes a line.
fn hex_dump(bytes: &[u8]) -> String {
    let mut out = String::new();
    for (line, chunk) in bytes.chunks(16).enumerate() {
        let _ = write!(out, "{:08x} ", line * 16);
        for byte in chunk {
            let _ = write!(out, " {byte:02x}");
        }
        out.push_str(&"   ".repeat(16 - chunk.len()));
        out.push_str("  |");
        out.extend(chunk.iter().map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '.'
            }
        }));
        out.push_str("|\n");
    }
    out
}

/// The whole value of one record, as a file.
pub fn download(client: &mut Client, query: &Params) -> Result<Reply> {
    let topic = required(query, "topic")?.to_string();
    let partition: i32 = query.number("partition").map_err(user_error)?.unwrap_or(0);
    let offset: i64 = query
        .number("offset")
        .map_err(user_error)?
        .ok_or_else(|| user_error("'offset' is required"))?;
    partitions_of(client, &topic)?;
    let mut position = (offset, offset + 1, RECORD_FETCH_BYTES_MAX);
    for _ in 0..FETCH_ROUNDS_MAX {
        let positions = [(partition, position)].into_iter().collect();
        for (_, data) in fetch_round(client, &topic, &positions)? {
            let mut records = Vec::new();
            take(
                partition,
                data,
                &mut position,
                &mut records,
                1,
                &mut Vec::new(),
            )?;
            if let Some(record) = records.into_iter().find(|r| r.offset == offset) {
                let value = record.value.map(|v| v.to_vec()).unwrap_or_default();
                return Ok(Reply::download(
                    &format!("{topic}-{partition}-{offset}.bin"),
                    value,
                ));
            }
        }
        if position.0 > offset {
            break;
        }
    }
    Err(user_error(format!(
        "No record at offset {offset} of {topic}-{partition}."
    )))
}

pub fn produce(client: &mut Client, form: &Params) -> Result<Reply> {
    let topic = required(form, "topic")?.to_string();
    let partitions = partitions_of(client, &topic)?;
    let key = form
        .raw("key")
        .filter(|key| !key.is_empty())
        .map(|key| Bytes::from(key.to_string()));
    let value = Bytes::from(form.raw("value").unwrap_or("").replace("\r\n", "\n"));
    let partition: i32 = match form.number("partition").map_err(user_error)? {
        Some(partition) => partition,
        None => match &key {
            Some(key) => partition_for_key(key, partitions.len() as u32) as i32,
            None => 0,
        },
    };
    if !partitions.contains(&partition) {
        return Err(user_error(format!(
            "Topic '{topic}' has no partition {partition}."
        )));
    }
    let mut headers = Headers::default();
    for line in form
        .raw("headers")
        .unwrap_or("")
        .lines()
        .filter(|l| !l.trim().is_empty())
    {
        let (name, value) =
            crate::cli::parse_key_value(line.trim_end_matches('\r')).map_err(user_error)?;
        headers.insert(StrBytes::from_string(name), Some(Bytes::from(value)));
    }
    let batch = encode_batch(
        vec![(key, value)],
        &headers,
        &ProducerIdentity::NONE,
        -1,
        now_ms(),
        Compression::None,
    )?;
    let mut pending: BTreeMap<i32, PartitionProduceData> = [(
        partition,
        PartitionProduceData::default()
            .with_index(partition)
            .with_records(Some(batch)),
    )]
    .into();
    retrying(client, |client| {
        send_round(client, &topic, -1, false, &mut pending)
    })?;
    let page = format!(
        "/messages?topic={}&partition={partition}",
        percent_encode(&topic)
    );
    Ok(done(
        &page,
        &format!("Produced a record to {topic}-{partition}."),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_shown_as_they_call_for() {
        let shown = |bytes: &[u8], limit| show(Some(&Bytes::copy_from_slice(bytes)), limit);
        let text = shown(b"<script>alert(1)</script>", 100);
        assert_eq!(
            (text.kind, text.text.as_str()),
            ("text", "<script>alert(1)</script>")
        );
        let json = shown(br#"{"a":[1,2]}"#, 100);
        assert_eq!(json.kind, "json");
        assert_eq!(json.text, "{\n  \"a\": [\n    1,\n    2\n  ]\n}");
        let ordered = shown(br#"{"z": "a, \"b\": {", "a": {}, "m": [ ]}"#, 100);
        assert_eq!(
            ordered.text,
            "{\n  \"z\": \"a, \\\"b\\\": {\",\n  \"a\": {},\n  \"m\": []\n}"
        );
        let binary = shown(&[0, 159, 146, 150], 100);
        assert_eq!(binary.kind, "hex");
        assert!(binary.text.starts_with("00000000  00 9f 92 96"));
        let long = shown("é".repeat(10).as_bytes(), 5);
        assert_eq!(
            (long.kind, long.text.as_str(), long.truncated, long.size),
            ("text", "éé", true, 20)
        );
        assert_eq!(show(None, 10).kind, "null");
    }
}
