//! The consumer group pages and changes, over the same code as `sluice
//! groups` (crate::cli::groups): list, describe with members, committed
//! offsets, end offsets and lag, reset offsets (the CLI's targets, refused
//! unless the group has no active members) and delete.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Result;
use sluice_client::offsets;

use super::http::{percent_encode, Params, Reply};
use super::pages::{Chrome, GroupPage, GroupRow, GroupsPage, MemberRow, OffsetView};
use super::{done, required, user_error};
use crate::cli::datetime::parse_datetime_ms;
use crate::cli::groups::{
    assignment_text, check_inactive, delete_one, describe_group, list_all, parse_topic_scope,
    plan_offsets, reset_scope, view_group, ResetArgs, Target,
};
use crate::cli::output::offset_cell;
use sluice_client::Cluster as Client;

pub fn list(client: &mut Client, chrome: Chrome) -> Result<GroupsPage> {
    let or_dash = |text: String| {
        if text.is_empty() {
            "-".to_string()
        } else {
            text
        }
    };
    let rows = list_all(client)?
        .into_iter()
        .map(|group| GroupRow {
            group: group.group,
            state: or_dash(group.state),
            protocol_type: or_dash(group.protocol_type),
            group_type: or_dash(group.group_type),
        })
        .collect();
    Ok(GroupsPage { chrome, rows })
}

pub fn group(client: &mut Client, chrome: Chrome, query: &Params) -> Result<GroupPage> {
    let id = required(query, "id")?;
    let view = view_group(client, id)?;
    let inactive = view.members.is_empty() && matches!(view.state.as_str(), "Empty" | "Dead");
    let total_lag: i64 = view.offsets.iter().filter_map(|row| row.lag()).sum();
    let topics: BTreeSet<String> = view.offsets.iter().map(|row| row.topic.clone()).collect();
    let offsets = view
        .offsets
        .iter()
        .map(|row| OffsetView {
            topic: row.topic.clone(),
            partition: row.partition,
            committed: offset_cell(row.current),
            end: offset_cell(row.log_end),
            lag: offset_cell(row.lag()),
            member: row
                .member
                .map_or("-".into(), |index| view.members[index].member_id.clone()),
        })
        .collect();
    Ok(GroupPage {
        chrome,
        group: view.group.clone(),
        state: view.state.clone(),
        protocol_type: view.protocol_type.clone(),
        protocol: view.protocol.clone(),
        members: view
            .members
            .iter()
            .map(|member| MemberRow {
                member_id: member.member_id.clone(),
                client_id: member.client_id.clone(),
                host: member.host.clone(),
                assignment: assignment_text(&member.assignment),
            })
            .collect(),
        offsets,
        total_lag: total_lag.to_string(),
        inactive,
        topics: topics.into_iter().collect(),
    })
}

fn group_page(group: &str) -> String {
    format!("/group?id={}", percent_encode(group))
}

fn target(form: &Params) -> Result<Target> {
    let value = || required(form, "value");
    let number = |text: &str| {
        text.parse::<i64>()
            .map_err(|_| user_error(format!("'{text}' is not a number")))
    };
    Ok(match form.get("target").unwrap_or("") {
        "earliest" => Target::Earliest,
        "latest" => Target::Latest,
        "offset" => Target::Offset(number(value()?)?),
        "shift" => Target::ShiftBy(number(value()?)?),
        "datetime" => Target::Timestamp(parse_datetime_ms(value()?).map_err(user_error)?),
        other => return Err(user_error(format!("unknown target '{other}'"))),
    })
}

/// Commits new offsets for the group's partitions of one topic (some of
/// them, or all), or of every topic it has offsets for, as `sluice groups
/// reset-offsets --execute` does.
pub fn reset(client: &mut Client, form: &Params) -> Result<Reply> {
    let group = required(form, "group")?;
    let target = target(form)?;
    let described = describe_group(client, group)?;
    check_inactive(&described, group).map_err(|error| user_error(format!("{error:#}")))?;
    let committed = offsets::committed(client, group, None)?;
    // The CLI's scope: `--topic T[:P,P]` or `--all-topics`.
    let topics = match form.get("topic") {
        Some(topic) => {
            let text = match form.get("partitions") {
                Some(list) => format!("{topic}:{list}"),
                None => topic.to_string(),
            };
            vec![parse_topic_scope(&text).map_err(user_error)?]
        }
        None => Vec::new(),
    };
    let args = ResetArgs {
        group: group.to_string(),
        all_topics: topics.is_empty(),
        topics,
        to_earliest: false,
        to_latest: false,
        to_offset: None,
        to_datetime: None,
        shift_by: None,
        dry_run: false,
        execute: true,
    };
    let (partitions, _) = reset_scope(client, &args, &committed)?;
    if partitions.is_empty() {
        return Err(user_error(format!(
            "Group '{group}' has no offsets to reset."
        )));
    }
    let plan = plan_offsets(client, &partitions, &committed, target)?;
    let new: BTreeMap<_, _> = plan
        .iter()
        .map(|(key, (_, new))| (key.clone(), *new))
        .collect();
    offsets::commit(client, group, &new)?;
    Ok(done(
        &group_page(group),
        &format!("Reset {} offset(s) of group '{group}'.", new.len()),
    ))
}

pub fn delete(client: &mut Client, form: &Params) -> Result<Reply> {
    let group = required(form, "group")?;
    if form.get("confirm") != Some(group) {
        return Err(user_error(format!(
            "Type the group's name, '{group}', to delete it."
        )));
    }
    delete_one(client, group)?;
    Ok(done(
        "/groups",
        &format!("Deleted consumer group '{group}'."),
    ))
}
