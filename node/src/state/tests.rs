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
        result
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
    let id = JobId::new_random();
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
    let ids: Vec<JobId> = (0..20).map(|_| JobId::new_random()).collect();
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
