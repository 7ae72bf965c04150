use super::*;

const NOW: i64 = 1_000_000;

fn manager() -> TxnManager {
    TxnManager::new(TxnConfig {
        log_partitions: 50,
        max_timeout_ms: 900_000,
    })
}

/// Runs an operation's step to completion, as the runtime does when the
/// record commits.
fn commit(manager: &mut TxnManager, step: Step) -> Option<MarkerJob> {
    manager.settle(&step, true);
    step.markers
}

fn init(manager: &mut TxnManager, id: &str, new_id: i64) -> Answer {
    let fresh = manager.needs_producer_id(id).then_some(new_id);
    let (answer, step) = manager.init_producer_id(id, 60_000, None, fresh, NOW);
    commit(manager, step);
    answer
}

fn parts(names: &[(&str, i32)]) -> Vec<(String, i32)> {
    names.iter().map(|(t, p)| (t.to_string(), *p)).collect()
}

#[test]
fn a_transaction_commits_through_prepare_and_complete() {
    let mut m = manager();
    assert_eq!(init(&mut m, "tx", 100), Ok((100, 0)));
    let (answer, step) = m.add_partitions("tx", 100, 0, &parts(&[("a", 0), ("b", 1)]), NOW);
    assert_eq!(answer, Ok(()));
    assert!(step.record.is_some());
    commit(&mut m, step);
    assert_eq!(m.verify("tx", 100, 0, &parts(&[("a", 0)])), Ok(()));
    assert_eq!(
        m.verify("tx", 100, 0, &parts(&[("c", 0)])),
        Err(errors::INVALID_TXN_STATE)
    );
    let (answer, step) = m.end_txn("tx", 100, 0, true, NOW);
    assert_eq!(answer, Ok(()));
    let job = commit(&mut m, step).expect("markers");
    assert!(job.commit);
    assert_eq!(job.partitions, parts(&[("a", 0), ("b", 1)]));
    assert_eq!(m.get("tx").unwrap().state, TxnState::PrepareCommit);
    // A retry while the markers are written.
    assert_eq!(
        m.end_txn("tx", 100, 0, true, NOW).0,
        Err(errors::CONCURRENT_TRANSACTIONS)
    );
    let step = m.complete(&job, NOW);
    commit(&mut m, step);
    let done = m.get("tx").unwrap();
    assert_eq!(done.state, TxnState::CompleteCommit);
    assert!(done.partitions.is_empty());
    assert_eq!(m.end_txn("tx", 100, 0, true, NOW).0, Ok(()));
}

#[test]
fn a_new_producer_fences_the_old_and_aborts_its_transaction() {
    let mut m = manager();
    init(&mut m, "tx", 100).unwrap();
    let (_, step) = m.add_partitions("tx", 100, 0, &parts(&[("a", 0)]), NOW);
    commit(&mut m, step);
    // The second instance: the open transaction is aborted with a bumped
    // epoch first; the client retries.
    let (answer, step) = m.init_producer_id("tx", 60_000, None, None, NOW);
    assert_eq!(answer, Err(errors::CONCURRENT_TRANSACTIONS));
    let job = commit(&mut m, step).expect("abort markers");
    assert!(!job.commit);
    assert_eq!(job.producer_epoch, 1);
    let step = m.complete(&job, NOW);
    commit(&mut m, step);
    assert_eq!(init(&mut m, "tx", 999), Ok((100, 2)));
    // The first instance is fenced.
    let (answer, _) = m.add_partitions("tx", 100, 0, &parts(&[("a", 0)]), NOW);
    assert_eq!(answer, Err(errors::PRODUCER_FENCED));
    assert_eq!(
        m.end_txn("tx", 100, 0, true, NOW).0,
        Err(errors::PRODUCER_FENCED)
    );
}

#[test]
fn kip_360_bumps_only_the_current_epoch() {
    let mut m = manager();
    init(&mut m, "tx", 100).unwrap();
    let (answer, step) = m.init_producer_id("tx", 60_000, Some((100, 0)), None, NOW);
    assert_eq!(answer, Ok((100, 1)));
    commit(&mut m, step);
    // A retry of the same bump gets the same answer.
    let (answer, _) = m.init_producer_id("tx", 60_000, Some((100, 0)), None, NOW);
    assert_eq!(answer, Ok((100, 1)));
    let (answer, _) = m.init_producer_id("tx", 60_000, Some((7, 0)), None, NOW);
    assert_eq!(answer, Err(errors::PRODUCER_FENCED));
}

#[test]
fn timeouts_are_checked_and_expired_transactions_aborted() {
    let mut m = manager();
    let (answer, _) = m.init_producer_id("tx", 900_001, None, Some(1), NOW);
    assert_eq!(answer, Err(errors::INVALID_TRANSACTION_TIMEOUT));
    init(&mut m, "tx", 100).unwrap();
    let (_, step) = m.add_partitions("tx", 100, 0, &parts(&[("a", 0)]), NOW);
    commit(&mut m, step);
    assert!(m.expire(NOW + 60_000).is_empty());
    let steps = m.expire(NOW + 60_001);
    assert_eq!(steps.len(), 1);
    let job = steps[0].markers.clone().unwrap();
    assert!(!job.commit);
    assert_eq!(job.producer_epoch, 1);
}

#[test]
fn a_failed_record_restores_the_state_before() {
    let mut m = manager();
    init(&mut m, "tx", 100).unwrap();
    let (_, step) = m.add_partitions("tx", 100, 0, &parts(&[("a", 0)]), NOW);
    assert_eq!(
        m.add_partitions("tx", 100, 0, &parts(&[("b", 0)]), NOW).0,
        Err(errors::CONCURRENT_TRANSACTIONS)
    );
    m.settle(&step, false);
    assert_eq!(m.get("tx").unwrap().state, TxnState::Empty);
}

#[test]
fn loading_resumes_prepared_transactions() {
    let mut m = manager();
    init(&mut m, "tx", 100).unwrap();
    let (_, add) = m.add_partitions("tx", 100, 0, &parts(&[("a", 0)]), NOW);
    m.settle(&add, true);
    let (_, end) = m.end_txn("tx", 100, 0, false, NOW);
    m.settle(&end, true);
    let partition = crate::txn::partition_for_txn("tx", 50);
    let records: Vec<_> = [add.record.unwrap(), end.record.unwrap()].into();
    let mut fresh = manager();
    let (count, resume) = fresh.load(partition, &records);
    assert_eq!(count, 1);
    assert_eq!(resume.len(), 1);
    assert!(!resume[0].commit);
    assert_eq!(fresh.get("tx").unwrap().state, TxnState::PrepareAbort);
}
