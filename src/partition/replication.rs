//! One partition replica's part in replication, as a pure state machine:
//! its role (leader or follower, with the leader epoch), and on a leader
//! the followers' progress, the ISR it works with, the high watermark, and
//! the ISR changes it should ask the controller for.
//!
//! Runs on the shard that owns the partition. Pure: the clock and the log
//! offsets are passed in; no I/O, no messages (the partition and the
//! replication maintenance task act on what it returns).
//!
//! The high watermark is the smallest offset every member of the ISR has
//! (Kafka's rule), where the leader's own offset is its synced end when
//! the topic syncs every append (Sluice's durability promise) and its log
//! end otherwise, and a follower's is the offset it fetches from, which it
//! asks for only once what it has is synced. It never moves back on a
//! leader. While an ISR addition is pending at the controller the new
//! member already counts (Kafka's "maximal ISR"): once the controller
//! commits it, it may be elected, so the high watermark must not have
//! passed what it has.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::cluster::metadata::PartitionState;

/// A follower as its leader sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FollowerProgress {
    /// The offset it last fetched from: everything below is on it (on its
    /// disk, when the topic syncs every append).
    pub fetch_offset: i64,
    /// When it last fetched up to the leader's log end.
    pub last_caught_up: Instant,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LeaderState {
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub replicas: Vec<i32>,
    /// The ISR the controller committed.
    pub isr: Vec<i32>,
    /// Members this leader asked the controller to add.
    pub pending_add: BTreeSet<i32>,
    /// An AlterPartition is in flight (one at a time, as Kafka).
    pub alter_in_flight: bool,
    /// After a refusal, no new request before this.
    pub retry_after: Option<Instant>,
    pub followers: BTreeMap<i32, FollowerProgress>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Role {
    /// Not yet told by an image (unit tests, a partition being opened).
    Unassigned,
    Leader(LeaderState),
    Follower {
        leader: i32,
        leader_epoch: i32,
    },
}

/// What an image changed for this replica.
#[derive(Clone, Debug, PartialEq)]
pub enum Transition {
    Unchanged,
    BecameLeader {
        leader_epoch: i32,
    },
    BecameFollower {
        leader: i32,
        leader_epoch: i32,
    },
    /// Still the leader; the ISR or replicas changed.
    LeaderUpdated,
}

/// An ISR change to ask the controller for.
#[derive(Clone, Debug, PartialEq)]
pub struct IsrChange {
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub isr: Vec<i32>,
}

#[derive(Clone, Debug)]
pub struct Replication {
    node_id: i32,
    role: Role,
    /// The last high watermark computed (leader) or learned (follower).
    high_watermark: i64,
}

impl Replication {
    pub fn new(node_id: i32, high_watermark: i64) -> Replication {
        Replication {
            node_id,
            role: Role::Unassigned,
            high_watermark,
        }
    }

    pub fn role(&self) -> &Role {
        &self.role
    }

    pub fn is_leader(&self) -> bool {
        matches!(self.role, Role::Leader(_))
    }

    /// The leader epoch this replica knows, if assigned.
    pub fn leader_epoch(&self) -> Option<i32> {
        match &self.role {
            Role::Unassigned => None,
            Role::Leader(leader) => Some(leader.leader_epoch),
            Role::Follower { leader_epoch, .. } => Some(*leader_epoch),
        }
    }

    /// Follows the controller's decision for this partition.
    pub fn update(&mut self, state: &PartitionState, now: Instant) -> Transition {
        if state.leader != self.node_id {
            let follower = Role::Follower {
                leader: state.leader,
                leader_epoch: state.leader_epoch,
            };
            if self.role == follower {
                return Transition::Unchanged;
            }
            self.role = follower;
            return Transition::BecameFollower {
                leader: state.leader,
                leader_epoch: state.leader_epoch,
            };
        }
        match &mut self.role {
            Role::Leader(leader) if leader.leader_epoch == state.leader_epoch => {
                if leader.partition_epoch == state.partition_epoch {
                    return Transition::Unchanged;
                }
                leader.partition_epoch = state.partition_epoch;
                // A member the controller removed (a fenced broker) must
                // fetch again before it can rejoin: what it had may be gone.
                for removed in leader.isr.iter().filter(|id| !state.isr.contains(id)) {
                    if let Some(progress) = leader.followers.get_mut(removed) {
                        progress.fetch_offset = -1;
                    }
                }
                leader.replicas = state.replicas.clone();
                leader.isr = state.isr.clone();
                leader.pending_add.retain(|id| !state.isr.contains(id));
                leader.alter_in_flight = false;
                leader.followers.retain(|id, _| state.replicas.contains(id));
                Transition::LeaderUpdated
            }
            _ => {
                // A new term of leadership: every follower gets a full lag
                // window before it can be dropped from the ISR.
                let followers = state
                    .replicas
                    .iter()
                    .filter(|id| **id != self.node_id)
                    .map(|id| {
                        let progress = FollowerProgress {
                            fetch_offset: -1,
                            last_caught_up: now,
                        };
                        (*id, progress)
                    })
                    .collect();
                self.role = Role::Leader(LeaderState {
                    leader_epoch: state.leader_epoch,
                    partition_epoch: state.partition_epoch,
                    replicas: state.replicas.clone(),
                    isr: state.isr.clone(),
                    pending_add: BTreeSet::new(),
                    alter_in_flight: false,
                    retry_after: None,
                    followers,
                });
                Transition::BecameLeader {
                    leader_epoch: state.leader_epoch,
                }
            }
        }
    }

    /// The high watermark given this replica's own end (its synced end or
    /// log end, see the module docs); moves the stored value forward on a
    /// leader.
    pub fn high_watermark(&mut self, own_end: i64) -> i64 {
        if let Role::Leader(leader) = &self.role {
            let mut candidate = own_end;
            for member in leader.isr.iter().chain(&leader.pending_add) {
                if *member == self.node_id {
                    continue;
                }
                let offset = leader
                    .followers
                    .get(member)
                    .map_or(-1, |progress| progress.fetch_offset);
                candidate = candidate.min(offset);
            }
            self.high_watermark = self.high_watermark.max(candidate);
        }
        self.high_watermark
    }

    /// The stored value, without recomputing (followers, checkpoints).
    pub fn stored_high_watermark(&self) -> i64 {
        self.high_watermark
    }

    /// A follower learns the leader's high watermark from a fetch answer.
    pub fn set_follower_high_watermark(&mut self, leader_high_watermark: i64, log_end: i64) {
        if !self.is_leader() {
            self.high_watermark = leader_high_watermark.min(log_end);
        }
    }

    /// After truncation the stored value may not exceed the log end.
    pub fn clamp_high_watermark(&mut self, log_end: i64) {
        self.high_watermark = self.high_watermark.min(log_end);
    }

    /// A follower fetched from `fetch_offset` while the leader's log ended
    /// at `log_end`. Returns false if `replica` is not a follower here.
    pub fn record_fetch(
        &mut self,
        replica: i32,
        fetch_offset: i64,
        log_end: i64,
        now: Instant,
    ) -> bool {
        let Role::Leader(leader) = &mut self.role else {
            return false;
        };
        let Some(progress) = leader.followers.get_mut(&replica) else {
            return false;
        };
        progress.fetch_offset = fetch_offset;
        if fetch_offset >= log_end {
            progress.last_caught_up = now;
        }
        true
    }

    /// The members that count for `min.insync.replicas`: the committed ISR.
    pub fn isr_size(&self) -> usize {
        match &self.role {
            Role::Leader(leader) => leader.isr.len(),
            _ => 0,
        }
    }

    /// The ISR change this leader should ask for now, if any: followers that
    /// have not caught up for `lag_max` leave; followers out of the ISR that
    /// have everything below the high watermark come back. Marks the request
    /// in flight; [`Self::alter_failed`] clears it.
    pub fn isr_change(
        &mut self,
        high_watermark: i64,
        lag_max: Duration,
        now: Instant,
    ) -> Option<IsrChange> {
        let node_id = self.node_id;
        let Role::Leader(leader) = &mut self.role else {
            return None;
        };
        if leader.alter_in_flight || leader.retry_after.is_some_and(|at| now < at) {
            return None;
        }
        let lagging = |id: &i32| {
            leader
                .followers
                .get(id)
                .is_some_and(|progress| now.duration_since(progress.last_caught_up) > lag_max)
        };
        let mut isr: Vec<i32> = leader
            .isr
            .iter()
            .copied()
            .filter(|id| *id == node_id || !lagging(id))
            .collect();
        let joining: Vec<i32> = leader
            .replicas
            .iter()
            .copied()
            .filter(|id| !isr.contains(id) && *id != node_id)
            .filter(|id| {
                leader
                    .followers
                    .get(id)
                    .is_some_and(|progress| progress.fetch_offset >= high_watermark && !lagging(id))
            })
            .collect();
        // The leader is always in its own ISR.
        if !isr.contains(&node_id) {
            isr.insert(0, node_id);
        }
        isr.extend(&joining);
        if isr == leader.isr {
            return None;
        }
        leader.pending_add.extend(&joining);
        leader.alter_in_flight = true;
        Some(IsrChange {
            leader_epoch: leader.leader_epoch,
            partition_epoch: leader.partition_epoch,
            isr,
        })
    }

    /// The controller refused or did not answer: try again after `backoff`.
    pub fn alter_failed(&mut self, now: Instant, backoff: Duration) {
        if let Role::Leader(leader) = &mut self.role {
            leader.alter_in_flight = false;
            leader.retry_after = Some(now + backoff);
            leader.pending_add.retain(|id| leader.isr.contains(id));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(leader: i32, epoch: i32, isr: &[i32]) -> PartitionState {
        let mut state = PartitionState::new(vec![1, 2, 3], isr.to_vec(), leader);
        state.leader_epoch = epoch;
        state
    }

    #[test]
    fn roles_follow_the_image() {
        let now = Instant::now();
        let mut replica = Replication::new(1, 0);
        assert_eq!(
            replica.update(&state(2, 4, &[1, 2, 3]), now),
            Transition::BecameFollower {
                leader: 2,
                leader_epoch: 4
            }
        );
        assert_eq!(
            replica.update(&state(2, 4, &[1, 2, 3]), now),
            Transition::Unchanged
        );
        assert_eq!(
            replica.update(&state(1, 5, &[1, 2, 3]), now),
            Transition::BecameLeader { leader_epoch: 5 }
        );
        let mut shrunk = state(1, 5, &[1, 2]);
        shrunk.partition_epoch = 1;
        assert_eq!(replica.update(&shrunk, now), Transition::LeaderUpdated);
        assert_eq!(replica.isr_size(), 2);
    }

    #[test]
    fn the_high_watermark_is_the_smallest_isr_offset_and_never_moves_back() {
        let now = Instant::now();
        let mut replica = Replication::new(1, 0);
        replica.update(&state(1, 0, &[1, 2, 3]), now);
        assert_eq!(replica.high_watermark(10), 0, "followers have not fetched");
        replica.record_fetch(2, 7, 10, now);
        replica.record_fetch(3, 5, 10, now);
        assert_eq!(replica.high_watermark(10), 5);
        assert_eq!(replica.high_watermark(4), 5, "own end lower: stays");
        replica.record_fetch(3, 10, 10, now);
        assert_eq!(replica.high_watermark(10), 7);
        // Not a follower of this partition: ignored.
        assert!(!replica.record_fetch(9, 100, 10, now));
    }

    #[test]
    fn a_single_replica_leader_uses_its_own_end() {
        let now = Instant::now();
        let mut replica = Replication::new(1, 0);
        replica.update(&PartitionState::new(vec![1], vec![1], 1), now);
        assert_eq!(replica.high_watermark(42), 42);
    }

    #[test]
    fn lagging_followers_leave_and_caught_up_ones_return() {
        let start = Instant::now();
        let lag = Duration::from_secs(30);
        let mut replica = Replication::new(1, 0);
        replica.update(&state(1, 0, &[1, 2, 3]), start);
        let later = start + Duration::from_secs(31);
        replica.record_fetch(2, 10, 10, later);
        let hw = replica.high_watermark(10);
        let change = replica.isr_change(hw, lag, later).unwrap();
        assert_eq!(change.isr, vec![1, 2]);
        assert_eq!(replica.isr_change(hw, lag, later), None, "one in flight");
        // The controller commits it.
        let mut shrunk = state(1, 0, &[1, 2]);
        shrunk.partition_epoch = 1;
        replica.update(&shrunk, later);
        // Follower 3 catches up to the high watermark: it may come back, and
        // counts for the high watermark from the request on.
        let hw = replica.high_watermark(12);
        assert_eq!(hw, 10);
        replica.record_fetch(3, 12, 12, later);
        let change = replica.isr_change(hw, lag, later).unwrap();
        assert_eq!(change.isr, vec![1, 2, 3]);
        assert_eq!(change.partition_epoch, 1);
        replica.record_fetch(2, 12, 12, later);
        assert_eq!(replica.high_watermark(12), 12);
        replica.alter_failed(later, Duration::from_secs(1));
        assert_eq!(replica.isr_change(12, lag, later), None, "backing off");
        let retry = later + Duration::from_secs(1);
        assert!(replica.isr_change(12, lag, retry).is_some(), "asked again");
    }

    #[test]
    fn a_member_removed_by_the_controller_must_fetch_again_to_rejoin() {
        let now = Instant::now();
        let lag = Duration::from_secs(30);
        let mut replica = Replication::new(1, 0);
        replica.update(&state(1, 0, &[1, 2, 3]), now);
        replica.record_fetch(2, 10, 10, now);
        replica.record_fetch(3, 10, 10, now);
        let mut fenced = state(1, 0, &[1, 2]);
        fenced.partition_epoch = 1;
        replica.update(&fenced, now);
        let hw = replica.high_watermark(10);
        assert_eq!(replica.isr_change(hw, lag, now), None);
        replica.record_fetch(3, 10, 10, now);
        assert_eq!(replica.isr_change(hw, lag, now).unwrap().isr, vec![1, 2, 3]);
    }

    #[test]
    fn a_follower_takes_the_leaders_high_watermark_up_to_its_own_end() {
        let mut replica = Replication::new(2, 0);
        replica.update(&state(1, 0, &[1, 2]), Instant::now());
        replica.set_follower_high_watermark(50, 30);
        assert_eq!(replica.stored_high_watermark(), 30);
        replica.clamp_high_watermark(20);
        assert_eq!(replica.stored_high_watermark(), 20);
    }
}
