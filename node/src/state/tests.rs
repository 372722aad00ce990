//! The state machine tested without sockets or RocksDB: an in-memory map stands in for the
//! tables, and the same commands applied to two replicas must give the same bytes.

use std::collections::BTreeMap;

use super::*;
use crate::ids::{JobId, KeyId, TenantId};
use crate::model::apikey::KeyKind;
use crate::model::job::{HttpMethod, JobPatch, JobSpec};
use crate::store::{Batch, BatchOp, Table};

#[derive(Default, Clone, PartialEq, Eq, Debug)]
pub(crate) struct MemState(BTreeMap<(u8, Vec<u8>), Vec<u8>>);

impl StateRead for MemState {
    fn get(&self, t: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self.0.get(&(t.tag(), key.to_vec())).cloned())
    }

    fn scan_prefix(&self, t: Table, prefix: &[u8], limit: usize) -> Result<Vec<crate::store::Pair>, StateError> {
        Ok(self
            .0
            .range((t.tag(), prefix.to_vec())..)
            .take_while(|((tag, k), _)| *tag == t.tag() && k.starts_with(prefix))
            .take(limit)
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect())
    }
}

impl MemState {
    pub(crate) fn apply(&mut self, cmd: &Command) -> CommandResult {
        let mut batch = Batch::default();
        let result = apply(self, cmd, &mut batch).unwrap();
        self.write(batch);
        result
    }

    /// Takes `batch`'s writes, in order.
    pub(crate) fn write(&mut self, batch: Batch) {
        for op in batch.into_ops() {
            match op {
                BatchOp::Put(t, k, v) => {
                    self.0.insert((t.tag(), k), v);
                }
                BatchOp::Delete(t, k) => {
                    self.0.remove(&(t.tag(), k));
                }
                BatchOp::DeleteRange(t, from, to) => {
                    self.0.retain(|(tag, k), _| !(*tag == t.tag() && *k >= from && *k < to));
                }
            }
        }
    }
}

pub(crate) fn spec(name: &str) -> JobSpec {
    JobSpec {
        name: name.into(),
        method: HttpMethod::Post,
        cron_expression: "*/5 * * * *".into(),
        headers: vec![("X-Token".into(), "secret".into())],
        body: Some("{}".into()),
        timeout_seconds: 30,
        max_retries: 3,
        retry_delay_seconds: 60,
        notify_on_failure: true,
        ..JobSpec::example("https://example.com/hook")
    }
}

pub(crate) fn cmd(at: i64, body: CommandBody) -> Command {
    Command { proposed_at_ms: at, body, actor: None }
}

#[test]
fn create_update_delete_and_their_rejections() {
    let mut s = MemState::default();
    let t = TenantId::default_tenant();
    let id = JobId::generate();
    let r = s.apply(&cmd(1000, CommandBody::CreateJob { id, tenant: t.clone(), spec: spec("a") }));
    let CommandResult::Job(job) = r else { panic!("{r:?}") };
    assert_eq!((job.created_at_ms, job.updated_at_ms), (1000, 1000));

    let again = s.apply(&cmd(1001, CommandBody::CreateJob { id, tenant: t.clone(), spec: spec("b") }));
    assert_eq!(again, CommandResult::Rejected(Rejection::JobExists { id }));

    let patch = JobPatch { name: Some("renamed".into()), is_active: Some(false), ..JobPatch::default() };
    let r = s.apply(&cmd(2000, CommandBody::UpdateJob { id, tenant: t.clone(), patch }));
    let CommandResult::Job(job) = r else { panic!("{r:?}") };
    assert_eq!(job.spec.name, "renamed");
    assert!(!job.spec.is_active);
    assert_eq!(job.spec.url, "https://example.com/hook", "untouched fields keep their value");
    assert_eq!((job.created_at_ms, job.updated_at_ms), (1000, 2000));

    let other = TenantId("other".into());
    let r = s.apply(&cmd(2001, CommandBody::DeleteJob { id, tenant: other }));
    assert_eq!(r, CommandResult::Rejected(Rejection::JobNotFound { id }), "another tenant cannot see it");

    assert_eq!(s.apply(&cmd(3000, CommandBody::DeleteJob { id, tenant: t.clone() })), CommandResult::JobDeleted { id });
    assert_eq!(
        s.apply(&cmd(3001, CommandBody::DeleteJob { id, tenant: t.clone() })),
        CommandResult::Rejected(Rejection::JobNotFound { id })
    );
    let count: u64 = crate::store::decode(&s.get(Table::SmMeta, &keys::job_count(&t)).unwrap().unwrap()).unwrap();
    assert_eq!(count, 0);
}

#[test]
fn replicas_applying_the_same_log_hold_the_same_bytes() {
    let t = TenantId::default_tenant();
    let ids: Vec<JobId> = (0..20).map(|_| JobId::generate()).collect();
    let mut log = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        log.push(cmd(i as i64, CommandBody::CreateJob { id: *id, tenant: t.clone(), spec: spec(&format!("j{i}")) }));
        if i % 3 == 0 {
            log.push(cmd(100 + i as i64, CommandBody::DeleteJob { id: *id, tenant: t.clone() }));
        }
        if i % 4 == 1 {
            let patch = JobPatch { max_retries: Some(7), ..JobPatch::default() };
            log.push(cmd(200 + i as i64, CommandBody::UpdateJob { id: *id, tenant: t.clone(), patch }));
        }
    }
    let (mut a, mut b) = (MemState::default(), MemState::default());
    let ra: Vec<_> = log.iter().map(|c| a.apply(c)).collect();
    let rb: Vec<_> = log.iter().map(|c| b.apply(c)).collect();
    assert_eq!(ra, rb);
    assert_eq!(a, b);
}

#[test]
fn a_batch_applies_exactly_like_its_commands_one_by_one() {
    // The same log, once command by command and once cut into batches of 1 to 7: the same
    // answers and the same bytes, audit trail and counters included. Commands in one batch
    // touch the same job (create, update, delete, create again), so each must see the ones
    // before it.
    let t = TenantId::default_tenant();
    let ids: Vec<JobId> = (0..6).map(|_| JobId::generate()).collect();
    let mut log = Vec::new();
    for round in 0..4i64 {
        for (i, id) in ids.iter().enumerate() {
            let at = round * 100 + i as i64;
            let body = match (round + i as i64) % 4 {
                0 => CommandBody::CreateJob { id: *id, tenant: t.clone(), spec: spec(&format!("j{i}")) },
                1 => {
                    let patch = JobPatch { max_retries: Some(round as u32), ..JobPatch::default() };
                    CommandBody::UpdateJob { id: *id, tenant: t.clone(), patch }
                }
                2 => CommandBody::DeleteJob { id: *id, tenant: t.clone() },
                _ => CommandBody::CreateJob { id: *id, tenant: t.clone(), spec: spec("again") },
            };
            log.push(Command { actor: Some(crate::model::audit::Actor::system()), ..cmd(at, body) });
        }
    }
    let mut one_by_one = MemState::default();
    let expected: Vec<_> = log.iter().map(|c| one_by_one.apply(c)).collect();

    let mut batched = MemState::default();
    let mut answers = Vec::new();
    let mut rest = log.as_slice();
    let mut n = 0;
    while !rest.is_empty() {
        n = n % 7 + 1;
        let (chunk, tail) = rest.split_at(n.min(rest.len()));
        rest = tail;
        let r = batched.apply(&cmd(0, CommandBody::Batch(chunk.to_vec())));
        let CommandResult::Batch(rs) = r else { panic!("{r:?}") };
        assert_eq!(rs.len(), chunk.len());
        answers.extend(rs);
    }
    assert_eq!(answers, expected);
    assert_eq!(batched, one_by_one);
    assert!(expected.iter().any(|r| matches!(r, CommandResult::Rejected(Rejection::JobExists { .. }))));
}

#[test]
fn admin_key_bootstraps_once() {
    let mut s = MemState::default();
    let boot = |n: u8| CommandBody::BootstrapAdminKey {
        id: KeyId(uuid::Uuid::new_v4()),
        hash: [n; 32],
        prefix: "rcn_abc".into(),
        name: "admin".into(),
        kind: KeyKind::Admin,
    };
    assert_eq!(s.apply(&cmd(1, boot(1))), CommandResult::AdminKeyBootstrapped { created: true });
    assert_eq!(s.apply(&cmd(2, boot(2))), CommandResult::AdminKeyBootstrapped { created: false });
    assert!(s.get(Table::Keys, &keys::key_by_hash(&[1; 32])).unwrap().is_some());
    assert!(
        s.get(Table::Keys, &keys::key_by_hash(&[2; 32])).unwrap().is_none(),
        "a second bootstrap must not add a key"
    );
}

#[test]
fn the_cluster_level_only_rises_and_its_raise_needs_that_level() {
    let mut s = MemState::default();
    assert_eq!(cluster_level(&s).unwrap(), crate::level::UNLABELLED, "a cluster starts at level 1");
    let raise = |level| CommandBody::RaiseLevel { level };
    assert_eq!(raise(2).level(), 2, "a release below the level cannot read its raise");
    assert_eq!(s.apply(&cmd(1, raise(2))), CommandResult::Done);
    assert_eq!(cluster_level(&s).unwrap(), 2);
    // Lower or equal: nothing written, so replicas that apply it twice stay byte-equal.
    let before = s.clone();
    assert_eq!(s.apply(&cmd(2, raise(1))), CommandResult::Done);
    assert_eq!(s.apply(&cmd(3, raise(2))), CommandResult::Done);
    assert_eq!(s, before, "a raise to a level already reached changed the state");
    // In a batch, like any command.
    let batch = CommandBody::Batch(vec![cmd(4, raise(3)), cmd(4, CommandBody::Noop)]);
    assert_eq!(batch.level(), 3);
    s.apply(&cmd(4, batch));
    assert_eq!(cluster_level(&s).unwrap(), 3);
}
