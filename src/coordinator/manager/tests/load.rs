//! Leadership: electing, loading and resigning `__consumer_offsets`
//! partitions, and which requests are admitted meanwhile.

use super::*;

/// Every partition of `config()` led at `leader_epoch`.
fn all_partitions(leader_epoch: i32) -> BTreeMap<i32, i32> {
    (0..config().offsets_partitions)
        .map(|partition| (partition, leader_epoch))
        .collect()
}

/// Elects and loads (empty) every partition, as a single node does.
fn lead_everything(h: &mut Harness) {
    let changes = h.manager.follow(&all_partitions(0));
    for (partition, epoch) in changes.elected {
        assert_eq!(
            h.manager.complete_load(partition, epoch, &[], h.now_ms),
            Some(0)
        );
    }
}

/// A group id whose partition differs from `"g"`'s.
fn group_elsewhere(h: &Harness) -> String {
    let here = h.manager.partition_of("g");
    (0..)
        .map(|i| format!("other-{i}"))
        .find(|id| h.manager.partition_of(id) != here)
        .expect("some group lands elsewhere")
}

fn simple_commit(h: &mut Harness, group_id: &str, offset: i64) -> Vec<Vec<i16>> {
    let request = CommitRequest::one(group_id, "", -1, offset, None);
    let codes = h.manager.commit(&request, h.now_ms);
    h.drain();
    codes
}

#[test]
fn admission_follows_election_loading_and_resignation() {
    let mut h = Harness::new(config());
    let partition = h.manager.partition_of("g");
    let other = group_elsewhere(&h);
    assert_eq!(h.manager.admit("g"), Err(errors::NOT_COORDINATOR));
    assert!(h.manager.elect(partition, 0));
    assert!(!h.manager.elect(partition, 0), "already held at that epoch");
    assert_eq!(
        h.manager.admit("g"),
        Err(errors::COORDINATOR_LOAD_IN_PROGRESS)
    );
    assert!(h.manager.is_loading());
    // A load for another epoch is stale.
    assert_eq!(h.manager.complete_load(partition, 1, &[], h.now_ms), None);
    assert_eq!(
        h.manager.complete_load(partition, 0, &[], h.now_ms),
        Some(0)
    );
    assert_eq!(h.manager.admit("g"), Ok(()));
    assert!(!h.manager.is_loading());
    assert_eq!(h.manager.admit(&other), Err(errors::NOT_COORDINATOR));
    assert_eq!(h.manager.resign(partition), 0);
    assert_eq!(h.manager.admit("g"), Err(errors::NOT_COORDINATOR));
}

#[test]
fn resigning_drops_the_groups_and_answers_their_parked_requests() {
    let mut h = Harness::new(config());
    lead_everything(&mut h);
    let other = group_elsewhere(&h);
    let (a, _b) = h.stable_pair();
    assert_eq!(h.commit(&a, 1, 77), errors::NONE);
    assert_eq!(simple_commit(&mut h, &other, 5), vec![vec![errors::NONE]]);
    // A new member starts a rebalance; it and the rejoining leader wait.
    let c = h.new_member();
    assert_eq!(
        h.join(&a),
        Outcome::Parked {
            member_id: a.clone()
        }
    );
    assert_eq!(h.state(), GroupState::PreparingRebalance);
    let partition = h.manager.partition_of("g");
    let mut led = all_partitions(0);
    led.remove(&partition);
    let changes = h.manager.follow(&led);
    assert_eq!(changes.resigned, vec![(partition, 1)]);
    assert!(changes.elected.is_empty());
    h.drain();
    assert!(h.manager.group("g").is_none(), "its members are gone");
    assert_eq!(h.joins[&a].error_code, errors::NOT_COORDINATOR);
    assert_eq!(h.joins[&c].error_code, errors::NOT_COORDINATOR);
    assert_eq!(h.manager.admit("g"), Err(errors::NOT_COORDINATOR));
    // Groups of other partitions stay.
    assert_eq!(h.manager.admit(&other), Ok(()));
    assert_eq!(h.manager.group(&other).unwrap().offsets.len(), 1);
    // Nothing is written for an unload.
    assert!(h.manager.take_outbox().records.is_empty());
}

#[test]
fn a_reloaded_group_has_its_committed_offsets_and_last_generation() {
    let mut h = Harness::new(config());
    lead_everything(&mut h);
    let (a, b) = h.stable_pair();
    assert_eq!(h.commit(&a, 1, 77), errors::NONE);
    let partition = h.manager.partition_of("g");
    let mut led = all_partitions(0);
    led.remove(&partition);
    h.manager.follow(&led);
    h.drain();
    assert!(h.manager.group("g").is_none());
    // Leadership comes back at a later epoch: the partition is read again.
    led.insert(partition, 1);
    let changes = h.manager.follow(&led);
    assert_eq!(changes.elected, vec![(partition, 1)]);
    assert_eq!(
        h.manager.admit("g"),
        Err(errors::COORDINATOR_LOAD_IN_PROGRESS)
    );
    let records: Vec<LogRecord> = h
        .records
        .iter()
        .filter(|record| record.partition == partition)
        .cloned()
        .collect();
    assert_eq!(records.len(), 2, "the group at sync, then the offset");
    let replayed = h
        .manager
        .complete_load(partition, 1, &records, h.now_ms)
        .unwrap();
    assert_eq!(replayed, 2);
    assert_eq!(h.manager.admit("g"), Ok(()));
    let fetched = h.manager.fetch("g", None);
    assert_eq!(fetched[0].1[0].1.as_ref().map(|o| o.offset), Some(77));
    let group = h.manager.group("g").unwrap();
    assert_eq!(group.generation_id, 1);
    assert!(group.members.contains_key(&a) && group.members.contains_key(&b));
    // Members that do not come back to this coordinator expire.
    h.advance(SESSION_MS as u64 + 1);
    assert_eq!(h.state(), GroupState::Empty);
    assert_eq!(h.manager.fetch("g", None).len(), 1, "offsets stay");
}

#[test]
fn follow_resigns_moved_partitions_and_reloads_new_epochs() {
    let mut h = Harness::new(config());
    let led = BTreeMap::from([(0, 0), (1, 0)]);
    let changes = h.manager.follow(&led);
    assert_eq!(changes.elected, vec![(0, 0), (1, 0)]);
    assert_eq!(h.manager.follow(&led), LeadershipChanges::default());
    let changes = h.manager.follow(&BTreeMap::from([(1, 0)]));
    assert_eq!(changes.resigned, vec![(0, 0)]);
    assert!(changes.elected.is_empty());
    // Lost and regained between two looks: a new epoch, so reloaded.
    let changes = h.manager.follow(&BTreeMap::from([(1, 1)]));
    assert_eq!(changes.resigned, vec![(1, 0)]);
    assert_eq!(changes.elected, vec![(1, 1)]);
    // A failed load is forgotten and tried again at the next look.
    h.manager.abandon_load(1, 1);
    assert!(h.manager.partitions().is_empty());
    let changes = h.manager.follow(&BTreeMap::from([(1, 1)]));
    assert_eq!(changes.elected, vec![(1, 1)]);
}

#[test]
fn a_load_overtaken_by_resignation_replays_nothing() {
    let mut h = Harness::new(config());
    lead_everything(&mut h);
    assert_eq!(simple_commit(&mut h, "g", 9), vec![vec![errors::NONE]]);
    let partition = h.manager.partition_of("g");
    let records = h.records.clone();
    h.manager.resign(partition);
    assert!(h.manager.elect(partition, 1));
    h.manager.resign(partition);
    assert_eq!(
        h.manager.complete_load(partition, 1, &records, h.now_ms),
        None
    );
    assert!(h.manager.group("g").is_none());
}
