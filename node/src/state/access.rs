//! Applying access-control commands (keys, tenants, key use) and writing the audit trail.
//!
//! Like the rest of `state`, deterministic: time comes from the command. A key is stored twice,
//! its record under its hash (how requests find it) and its hash under its id (how the keys API
//! finds it); both change in one batch.

use crate::ids::{JobId, KeyId, TenantId};
use crate::model::apikey::{ApiKeyRecord, KeyHash, KeyPatch};
use crate::model::audit::{Actor, AuditRecord, AUDIT_KEPT};
use crate::model::tenant::{TenantPatch, TenantRecord};
use crate::state::apply::get_value;
use crate::state::command::{CommandBody, CommandResult, Rejection};
use crate::state::{keys, StateError, StateRead};
use crate::store::{Batch, Table};

/// A key's record by its id, with its hash.
pub fn key_by_id(view: &impl StateRead, id: KeyId) -> Result<Option<(KeyHash, ApiKeyRecord)>, StateError> {
    let Some(hash) = get_value::<KeyHash>(view, Table::Keys, &keys::key_by_id(id))? else {
        return Ok(None);
    };
    Ok(get_value::<ApiKeyRecord>(view, Table::Keys, &keys::key_by_hash(&hash))?.map(|r| (hash, r)))
}

pub fn tenant(view: &impl StateRead, id: &TenantId) -> Result<Option<TenantRecord>, StateError> {
    get_value(view, Table::Tenants, &keys::tenant(id))
}

pub fn create_key(
    view: &impl StateRead,
    batch: &mut Batch,
    now: i64,
    hash: &KeyHash,
    record: &ApiKeyRecord,
) -> Result<CommandResult, StateError> {
    if tenant(view, &record.tenant)?.is_none() {
        return Ok(CommandResult::Rejected(Rejection::TenantNotFound { id: record.tenant.clone() }));
    }
    if view.get(Table::Keys, &keys::key_by_hash(hash))?.is_some()
        || view.get(Table::Keys, &keys::key_by_id(record.id))?.is_some()
    {
        return Ok(CommandResult::Rejected(Rejection::KeyExists));
    }
    let mut r = record.clone();
    r.created_at_ms = now;
    r.updated_at_ms = now;
    r.last_used_at_ms = None;
    batch.put_value(Table::Keys, keys::key_by_hash(hash), &r)?;
    batch.put_value(Table::Keys, keys::key_by_id(r.id), hash)?;
    Ok(CommandResult::Key(Box::new(r)))
}

pub fn update_key(
    view: &impl StateRead,
    batch: &mut Batch,
    now: i64,
    id: KeyId,
    tenant_id: &TenantId,
    patch: &KeyPatch,
) -> Result<CommandResult, StateError> {
    let Some((hash, mut r)) = key_by_id(view, id)?.filter(|(_, r)| &r.tenant == tenant_id) else {
        return Ok(CommandResult::Rejected(Rejection::KeyNotFound { id }));
    };
    patch.apply_to(&mut r);
    r.updated_at_ms = now.max(r.updated_at_ms);
    batch.put_value(Table::Keys, keys::key_by_hash(&hash), &r)?;
    Ok(CommandResult::Key(Box::new(r)))
}

pub fn revoke_key(
    view: &impl StateRead,
    batch: &mut Batch,
    id: KeyId,
    tenant_id: &TenantId,
) -> Result<CommandResult, StateError> {
    let Some((hash, _)) = key_by_id(view, id)?.filter(|(_, r)| &r.tenant == tenant_id) else {
        return Ok(CommandResult::Rejected(Rejection::KeyNotFound { id }));
    };
    batch.delete(Table::Keys, keys::key_by_hash(&hash));
    batch.delete(Table::Keys, keys::key_by_id(id));
    Ok(CommandResult::KeyRevoked { id })
}

/// Records when keys were last used; never moves a time backwards, ignores revoked keys.
pub fn touch_keys(
    view: &impl StateRead,
    batch: &mut Batch,
    used: &[(KeyId, i64)],
) -> Result<CommandResult, StateError> {
    let mut n = 0;
    for (id, at) in used {
        if let Some((hash, mut r)) = key_by_id(view, *id)? {
            if r.last_used_at_ms.is_none_or(|t| t < *at) {
                r.last_used_at_ms = Some(*at);
                batch.put_value(Table::Keys, keys::key_by_hash(&hash), &r)?;
                n += 1;
            }
        }
    }
    Ok(CommandResult::Touched { keys: n })
}

pub fn create_tenant(
    view: &impl StateRead,
    batch: &mut Batch,
    now: i64,
    record: &TenantRecord,
) -> Result<CommandResult, StateError> {
    if tenant(view, &record.id)?.is_some() {
        return Ok(CommandResult::Rejected(Rejection::TenantExists { id: record.id.clone() }));
    }
    let mut t = record.clone();
    t.created_at_ms = now;
    t.updated_at_ms = now;
    batch.put_value(Table::Tenants, keys::tenant(&t.id), &t)?;
    Ok(CommandResult::Tenant(Box::new(t)))
}

pub fn update_tenant(
    view: &impl StateRead,
    batch: &mut Batch,
    now: i64,
    id: &TenantId,
    patch: &TenantPatch,
) -> Result<CommandResult, StateError> {
    let Some(mut t) = tenant(view, id)? else {
        return Ok(CommandResult::Rejected(Rejection::TenantNotFound { id: id.clone() }));
    };
    patch.apply_to(&mut t);
    t.updated_at_ms = now.max(t.updated_at_ms);
    batch.put_value(Table::Tenants, keys::tenant(id), &t)?;
    Ok(CommandResult::Tenant(Box::new(t)))
}

/// Deletes an empty tenant and revokes its keys. The default tenant stays.
pub fn delete_tenant(view: &impl StateRead, batch: &mut Batch, id: &TenantId) -> Result<CommandResult, StateError> {
    if *id == TenantId::default_tenant() {
        return Ok(CommandResult::Rejected(Rejection::DefaultTenant));
    }
    if tenant(view, id)?.is_none() {
        return Ok(CommandResult::Rejected(Rejection::TenantNotFound { id: id.clone() }));
    }
    let jobs: u64 = get_value(view, Table::SmMeta, &keys::job_count(id))?.unwrap_or(0);
    if jobs > 0 {
        return Ok(CommandResult::Rejected(Rejection::TenantNotEmpty { id: id.clone(), jobs }));
    }
    for (k, v) in view.scan_prefix(Table::Keys, keys::KEY_RECORDS, usize::MAX)? {
        let r: ApiKeyRecord = crate::store::decode(&v)?;
        if &r.tenant == id {
            batch.delete(Table::Keys, k);
            batch.delete(Table::Keys, keys::key_by_id(r.id));
        }
    }
    batch.delete(Table::Tenants, keys::tenant(id));
    Ok(CommandResult::TenantDeleted { id: id.clone() })
}

/// What the trail says about a command that took effect: (tenant, action, target, detail).
fn describe(body: &CommandBody, result: &CommandResult) -> Option<(TenantId, &'static str, String, String)> {
    let job = |t: &TenantId, a, id: &JobId, d: String| Some((t.clone(), a, id.to_string(), d));
    match (body, result) {
        (_, CommandResult::Rejected(_)) => None,
        (CommandBody::CreateJob { id, tenant, spec }, _) => {
            job(tenant, "job.create", id, format!("name {:?}", spec.name))
        }
        (CommandBody::UpdateJob { id, tenant, patch }, _) => {
            job(tenant, "job.update", id, format!("fields {}", patch.fields().join(",")))
        }
        (CommandBody::DeleteJob { id, tenant }, _) => job(tenant, "job.delete", id, String::new()),
        (CommandBody::Trigger { id, tenant, .. }, _) => job(tenant, "job.trigger", id, String::new()),
        (CommandBody::CreateKey { record, .. }, _) => Some((
            record.tenant.clone(),
            "key.create",
            record.id.to_string(),
            format!(
                "name {:?} kind {} scopes {}",
                record.name,
                record.kind.as_str(),
                record.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",")
            ),
        )),
        (CommandBody::UpdateKey { id, tenant, patch }, _) => {
            Some((tenant.clone(), "key.update", id.to_string(), format!("fields {}", patch.fields().join(","))))
        }
        (CommandBody::RevokeKey { id, tenant }, _) => {
            Some((tenant.clone(), "key.revoke", id.to_string(), String::new()))
        }
        (CommandBody::BootstrapAdminKey { id, .. }, CommandResult::AdminKeyBootstrapped { created: true }) => {
            Some((TenantId::default_tenant(), "key.bootstrap", id.to_string(), "the first admin key".into()))
        }
        (CommandBody::CreateTenant { record }, _) => {
            Some((record.id.clone(), "tenant.create", record.id.to_string(), format!("name {:?}", record.name)))
        }
        (CommandBody::UpdateTenant { id, patch }, _) => {
            Some((id.clone(), "tenant.update", id.to_string(), format!("fields {}", patch.fields().join(","))))
        }
        (CommandBody::DeleteTenant { id }, _) => Some((id.clone(), "tenant.delete", id.to_string(), String::new())),
        _ => None,
    }
}

/// Appends the audit entry for `body` if it is a change to keys, tenants or jobs that took
/// effect, and drops the entry that falls out of the kept window.
pub fn audit(
    view: &impl StateRead,
    batch: &mut Batch,
    now: i64,
    actor: Option<&Actor>,
    body: &CommandBody,
    result: &CommandResult,
) -> Result<(), StateError> {
    let Some((tenant, action, target_id, detail)) = describe(body, result) else {
        return Ok(());
    };
    let seq = get_value::<u64>(view, Table::SmMeta, keys::AUDIT_SEQ)?.unwrap_or(0) + 1;
    let actor = actor.cloned().unwrap_or_else(Actor::system);
    let entry = AuditRecord { seq, at_ms: now, actor, tenant, action: action.into(), target_id, detail };
    batch.put_value(Table::Audit, keys::audit(seq), &entry)?;
    batch.put_value(Table::SmMeta, keys::AUDIT_SEQ.to_vec(), &seq)?;
    if seq > AUDIT_KEPT {
        batch.delete(Table::Audit, keys::audit(seq - AUDIT_KEPT));
    }
    Ok(())
}
