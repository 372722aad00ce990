//! Keys, tenants, quotas and the audit trail, applied to in-memory replicas.

use super::tests::{cmd, spec, MemState};
use super::*;
use crate::ids::{JobId, KeyId, TenantId};
use crate::model::apikey::{ApiKeyRecord, KeyKind, KeyPatch, Scope};
use crate::model::audit::{Actor, AuditRecord, AUDIT_KEPT};
use crate::model::tenant::{TenantPatch, TenantRecord};
use crate::store::Table;

fn boot(s: &mut MemState) {
    let body = CommandBody::BootstrapAdminKey {
        id: KeyId(uuid::Uuid::new_v4()),
        hash: [9; 32],
        prefix: "rcn_boot".into(),
        name: "admin".into(),
        kind: KeyKind::Admin,
    };
    assert_eq!(s.apply(&cmd(1, body)), CommandResult::AdminKeyBootstrapped { created: true });
}

fn tenant(id: &str, max_jobs: Option<u32>) -> TenantRecord {
    TenantRecord { id: TenantId(id.into()), name: id.into(), max_jobs, ..TenantRecord::default_record(0) }
}

fn key(tenant: &str, scopes: &[Scope]) -> ApiKeyRecord {
    ApiKeyRecord {
        id: KeyId(uuid::Uuid::new_v4()),
        tenant: TenantId(tenant.into()),
        name: "ci".into(),
        prefix: "rcn_12345".into(),
        kind: KeyKind::Custom,
        scopes: scopes.iter().copied().collect(),
        allowed_cidrs: vec![],
        expires_at_ms: None,
        last_used_at_ms: None,
        created_at_ms: 0,
        updated_at_ms: 0,
    }
}

fn actor() -> Option<Actor> {
    Some(Actor {
        key_id: Some(KeyId(uuid::Uuid::nil())),
        prefix: "rcn_actor".into(),
        tenant: TenantId::default_tenant(),
        client_ip: Some("192.0.2.7".into()),
    })
}

fn audit_trail(s: &MemState) -> Vec<AuditRecord> {
    s.scan_prefix(Table::Audit, &[], usize::MAX)
        .unwrap()
        .into_iter()
        .map(|(_, v)| crate::store::decode(&v).unwrap())
        .collect()
}

#[test]
fn the_first_admin_key_brings_the_default_tenant_and_all_scopes() {
    let mut s = MemState::default();
    boot(&mut s);
    let t = access::tenant(&s, &TenantId::default_tenant()).unwrap().unwrap();
    assert_eq!(t.name, "Default");
    let rec: ApiKeyRecord =
        crate::store::decode(&s.get(Table::Keys, &keys::key_by_hash(&[9; 32])).unwrap().unwrap()).unwrap();
    assert_eq!(rec.scopes.len(), Scope::ALL.len());
    assert!(access::key_by_id(&s, rec.id).unwrap().is_some(), "found by id too");
    assert_eq!(audit_trail(&s)[0].action, "key.bootstrap");
}

#[test]
fn keys_are_created_changed_and_revoked_within_their_tenant() {
    let mut s = MemState::default();
    boot(&mut s);
    let k = key("default", &[Scope::JobsRead]);
    let created = s.apply(&cmd(10, CommandBody::CreateKey { hash: [1; 32], record: Box::new(k.clone()) }));
    let CommandResult::Key(r) = created else { panic!("{created:?}") };
    assert_eq!((r.created_at_ms, r.updated_at_ms), (10, 10));
    let dup = s.apply(&cmd(11, CommandBody::CreateKey { hash: [1; 32], record: Box::new(key("default", &[])) }));
    assert_eq!(dup, CommandResult::Rejected(Rejection::KeyExists));
    let nowhere = s.apply(&cmd(11, CommandBody::CreateKey { hash: [2; 32], record: Box::new(key("ghost", &[])) }));
    assert_eq!(nowhere, CommandResult::Rejected(Rejection::TenantNotFound { id: TenantId("ghost".into()) }));

    let patch = KeyPatch { scopes: Some([Scope::JobsRead, Scope::RunsRead].into()), ..KeyPatch::default() };
    let other = TenantId("other".into());
    let r = s.apply(&cmd(12, CommandBody::UpdateKey { id: k.id, tenant: other.clone(), patch: patch.clone() }));
    assert_eq!(r, CommandResult::Rejected(Rejection::KeyNotFound { id: k.id }), "another tenant cannot see it");
    let r = s.apply(&cmd(12, CommandBody::UpdateKey { id: k.id, tenant: k.tenant.clone(), patch }));
    let CommandResult::Key(r) = r else { panic!("{r:?}") };
    assert_eq!(r.scopes.len(), 2);
    assert_eq!(r.updated_at_ms, 12);

    s.apply(&cmd(13, CommandBody::TouchKeys { used: vec![(k.id, 500), (KeyId(uuid::Uuid::nil()), 1)] }));
    s.apply(&cmd(14, CommandBody::TouchKeys { used: vec![(k.id, 400)] }));
    assert_eq!(access::key_by_id(&s, k.id).unwrap().unwrap().1.last_used_at_ms, Some(500), "never backwards");

    let r = s.apply(&cmd(15, CommandBody::RevokeKey { id: k.id, tenant: other }));
    assert_eq!(r, CommandResult::Rejected(Rejection::KeyNotFound { id: k.id }));
    let r = s.apply(&cmd(15, CommandBody::RevokeKey { id: k.id, tenant: k.tenant.clone() }));
    assert_eq!(r, CommandResult::KeyRevoked { id: k.id });
    assert!(s.get(Table::Keys, &keys::key_by_hash(&[1; 32])).unwrap().is_none());
    assert!(access::key_by_id(&s, k.id).unwrap().is_none());
}

#[test]
fn the_job_quota_is_judged_in_log_order() {
    let mut s = MemState::default();
    boot(&mut s);
    assert!(matches!(
        s.apply(&cmd(2, CommandBody::CreateTenant { record: tenant("team", Some(2)) })),
        CommandResult::Tenant(_)
    ));
    let team = TenantId("team".into());
    let mut results = Vec::new();
    for i in 0..3 {
        let body = CommandBody::CreateJob { id: JobId::generate(), tenant: team.clone(), spec: spec(&format!("j{i}")) };
        results.push(s.apply(&cmd(10 + i, body)));
    }
    assert!(matches!(results[0], CommandResult::Job(_)));
    assert!(matches!(results[1], CommandResult::Job(_)));
    assert_eq!(results[2], CommandResult::Rejected(Rejection::PlanLimitReached { max: 2 }));
    // Lifting the quota lets the next one in.
    let patch = TenantPatch { max_jobs: Some(None), ..TenantPatch::default() };
    assert!(matches!(
        s.apply(&cmd(20, CommandBody::UpdateTenant { id: team.clone(), patch })),
        CommandResult::Tenant(_)
    ));
    let body = CommandBody::CreateJob { id: JobId::generate(), tenant: team.clone(), spec: spec("j3") };
    assert!(matches!(s.apply(&cmd(21, body)), CommandResult::Job(_)));
}

#[test]
fn tenants_are_deleted_only_when_empty_and_take_their_keys() {
    let mut s = MemState::default();
    boot(&mut s);
    s.apply(&cmd(2, CommandBody::CreateTenant { record: tenant("team", None) }));
    let again = s.apply(&cmd(3, CommandBody::CreateTenant { record: tenant("team", None) }));
    assert_eq!(again, CommandResult::Rejected(Rejection::TenantExists { id: TenantId("team".into()) }));
    let team = TenantId("team".into());
    let k = key("team", &[Scope::JobsWrite]);
    s.apply(&cmd(4, CommandBody::CreateKey { hash: [4; 32], record: Box::new(k.clone()) }));
    let job = JobId::generate();
    s.apply(&cmd(5, CommandBody::CreateJob { id: job, tenant: team.clone(), spec: spec("j") }));
    assert_eq!(
        s.apply(&cmd(6, CommandBody::DeleteTenant { id: team.clone() })),
        CommandResult::Rejected(Rejection::TenantNotEmpty { id: team.clone(), jobs: 1 })
    );
    s.apply(&cmd(7, CommandBody::DeleteJob { id: job, tenant: team.clone() }));
    assert_eq!(
        s.apply(&cmd(8, CommandBody::DeleteTenant { id: team.clone() })),
        CommandResult::TenantDeleted { id: team }
    );
    assert!(access::key_by_id(&s, k.id).unwrap().is_none(), "its keys are gone with it");
    assert_eq!(
        s.apply(&cmd(9, CommandBody::DeleteTenant { id: TenantId::default_tenant() })),
        CommandResult::Rejected(Rejection::DefaultTenant)
    );
}

#[test]
fn the_audit_trail_names_actor_and_fields_never_values_and_stays_bounded() {
    let mut s = MemState::default();
    boot(&mut s);
    let t = TenantId::default_tenant();
    let id = JobId::generate();
    let mut c = cmd(5, CommandBody::CreateJob { id, tenant: t.clone(), spec: spec("audited") });
    c.actor = actor();
    s.apply(&c);
    let mut c = cmd(
        6,
        CommandBody::UpdateJob {
            id,
            tenant: t.clone(),
            patch: crate::model::job::JobPatch {
                headers: Some(vec![("X-Token".into(), "hunter2".into())]),
                ..Default::default()
            },
        },
    );
    c.actor = actor();
    s.apply(&c);
    // A rejected command leaves no entry.
    let mut c = cmd(7, CommandBody::DeleteJob { id: JobId::generate(), tenant: t.clone() });
    c.actor = actor();
    s.apply(&c);
    let trail = audit_trail(&s);
    assert_eq!(
        trail.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
        ["key.bootstrap", "job.create", "job.update"]
    );
    assert_eq!(trail[2].detail, "fields headers");
    assert_eq!(trail[2].actor.client_ip.as_deref(), Some("192.0.2.7"));
    assert!(!format!("{trail:?}").contains("hunter2"));
    assert_eq!(trail.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);

    // Bounded: the oldest entries fall out.
    for i in 0..AUDIT_KEPT + 5 {
        let patch = TenantPatch { name: Some(format!("n{i}")), ..TenantPatch::default() };
        let mut c = cmd(10 + i as i64, CommandBody::UpdateTenant { id: t.clone(), patch });
        c.actor = actor();
        s.apply(&c);
    }
    let trail = audit_trail(&s);
    assert_eq!(trail.len() as u64, AUDIT_KEPT);
    assert_eq!(trail.last().map(|e| e.seq), Some(AUDIT_KEPT + 8));
}
