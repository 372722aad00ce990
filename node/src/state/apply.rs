//! Applying one command to the state.

use crate::model::apikey::ApiKeyRecord;
use crate::model::job::JobRecord;
use crate::model::tenant::TenantRecord;
use crate::state::command::{Command, CommandBody, CommandResult, Rejection};
use crate::state::overlay::Overlay;
use crate::state::{access, firing, keys, StateError};
use crate::store::{decode, Batch, Pair, Table};

/// Read access to the current state, as of the start of the command.
pub trait StateRead {
    fn get(&self, t: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StateError>;
    /// Up to `limit` pairs whose keys start with `prefix`, in key order.
    fn scan_prefix(&self, t: Table, prefix: &[u8], limit: usize) -> Result<Vec<Pair>, StateError>;
}

impl StateRead for crate::store::Store {
    fn get(&self, t: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        Ok(crate::store::Store::get(self, t, key)?)
    }

    fn scan_prefix(&self, t: Table, prefix: &[u8], limit: usize) -> Result<Vec<Pair>, StateError> {
        Ok(self.scan(t, prefix, prefix, limit)?)
    }
}

pub(crate) fn get_value<T: serde::de::DeserializeOwned>(
    view: &impl StateRead,
    t: Table,
    key: &[u8],
) -> Result<Option<T>, StateError> {
    match view.get(t, key)? {
        Some(bytes) => Ok(Some(decode(&bytes)?)),
        None => Ok(None),
    }
}

/// The cluster's release level (`crate::level`): 1 until a [`CommandBody::RaiseLevel`] raised it.
pub fn cluster_level(view: &impl StateRead) -> Result<u32, StateError> {
    Ok(get_value(view, Table::SmMeta, keys::CLUSTER_LEVEL)?.unwrap_or(crate::level::UNLABELLED))
}

fn adjust_count(view: &impl StateRead, batch: &mut Batch, key: Vec<u8>, delta: i64) -> Result<(), StateError> {
    let current: u64 = get_value(view, Table::SmMeta, &key)?.unwrap_or(0);
    let next = current.saturating_add_signed(delta);
    batch.put_value(Table::SmMeta, key, &next)?;
    Ok(())
}

/// Applies `cmd`, adding its effects (and its audit entry) to `batch`. Deterministic: see the
/// module docs of `state`.
pub fn apply(view: &impl StateRead, cmd: &Command, batch: &mut Batch) -> Result<CommandResult, StateError> {
    let result = apply_body(view, cmd, batch)?;
    access::audit(view, batch, cmd.proposed_at_ms, cmd.actor.as_ref(), &cmd.body, &result)?;
    Ok(result)
}

fn apply_body(view: &impl StateRead, cmd: &Command, batch: &mut Batch) -> Result<CommandResult, StateError> {
    let now = cmd.proposed_at_ms;
    match &cmd.body {
        CommandBody::CreateJob { id, tenant, spec } => {
            let key = keys::job(tenant, *id);
            if view.get(Table::Jobs, &key)?.is_some() {
                return Ok(CommandResult::Rejected(Rejection::JobExists { id: *id }));
            }
            // The quota is judged here, in log order, so concurrent creates cannot overshoot it.
            if let Some(max) = access::tenant(view, tenant)?.and_then(|t| t.max_jobs) {
                let count: u64 = get_value(view, Table::SmMeta, &keys::job_count(tenant))?.unwrap_or(0);
                if count >= u64::from(max) {
                    return Ok(CommandResult::Rejected(Rejection::PlanLimitReached { max }));
                }
            }
            let record = JobRecord {
                id: *id,
                tenant: tenant.clone(),
                spec: spec.clone(),
                created_at_ms: now,
                updated_at_ms: now,
            };
            batch.put_value(Table::Jobs, key, &record)?;
            adjust_count(view, batch, keys::job_count(tenant), 1)?;
            firing::on_job_created(view, batch, &record, now)?;
            Ok(CommandResult::Job(Box::new(record)))
        }
        CommandBody::UpdateJob { id, tenant, patch } => {
            let key = keys::job(tenant, *id);
            let Some(mut record) = get_value::<JobRecord>(view, Table::Jobs, &key)? else {
                return Ok(CommandResult::Rejected(Rejection::JobNotFound { id: *id }));
            };
            let before = record.clone();
            record.spec.apply(patch.clone());
            record.updated_at_ms = now.max(record.updated_at_ms);
            batch.put_value(Table::Jobs, key, &record)?;
            firing::on_job_updated(view, batch, &before, &record, now)?;
            Ok(CommandResult::Job(Box::new(record)))
        }
        CommandBody::DeleteJob { id, tenant } => {
            let key = keys::job(tenant, *id);
            if view.get(Table::Jobs, &key)?.is_none() {
                return Ok(CommandResult::Rejected(Rejection::JobNotFound { id: *id }));
            }
            batch.delete(Table::Jobs, key);
            adjust_count(view, batch, keys::job_count(tenant), -1)?;
            firing::on_job_deleted(view, batch, tenant, *id)?;
            Ok(CommandResult::JobDeleted { id: *id })
        }
        CommandBody::BootstrapAdminKey { id, hash, prefix, name, kind } => {
            if view.get(Table::SmMeta, keys::ADMIN_BOOTSTRAPPED)?.is_some() {
                return Ok(CommandResult::AdminKeyBootstrapped { created: false });
            }
            let tenant = TenantRecord::default_record(now);
            if access::tenant(view, &tenant.id)?.is_none() {
                batch.put_value(Table::Tenants, keys::tenant(&tenant.id), &tenant)?;
            }
            let record = ApiKeyRecord {
                id: *id,
                tenant: tenant.id,
                name: name.clone(),
                prefix: prefix.clone(),
                kind: *kind,
                scopes: kind.fixed_scopes().unwrap_or_default(),
                allowed_cidrs: Vec::new(),
                expires_at_ms: None,
                last_used_at_ms: None,
                created_at_ms: now,
                updated_at_ms: now,
            };
            batch.put_value(Table::Keys, keys::key_by_hash(hash), &record)?;
            batch.put_value(Table::Keys, keys::key_by_id(*id), hash)?;
            batch.put_value(Table::SmMeta, keys::ADMIN_BOOTSTRAPPED.to_vec(), &true)?;
            Ok(CommandResult::AdminKeyBootstrapped { created: true })
        }
        CommandBody::InitShards { shard_count, runs_kept } => {
            firing::apply_init_shards(view, batch, *shard_count, *runs_kept, None)
        }
        CommandBody::Form { shard_count, runs_kept, lease_ms } => {
            firing::apply_init_shards(view, batch, *shard_count, *runs_kept, Some(*lease_ms))
        }
        CommandBody::AssignShards { moves } => firing::apply_assign(view, batch, moves),
        CommandBody::Claim { node, incarnation, items } => {
            firing::apply_claims(view, batch, now, *node, *incarnation, items)
        }
        CommandBody::RecordRuns { outcomes } => firing::apply_results(view, batch, outcomes),
        CommandBody::Trigger { id, tenant, trigger } => firing::apply_trigger(view, batch, now, tenant, *id, *trigger),
        CommandBody::ReleaseSlots { node, items } => firing::apply_release(view, batch, *node, items),
        CommandBody::CreateKey { hash, record } => access::create_key(view, batch, now, hash, record),
        CommandBody::UpdateKey { id, tenant, patch } => access::update_key(view, batch, now, *id, tenant, patch),
        CommandBody::RevokeKey { id, tenant } => access::revoke_key(view, batch, *id, tenant),
        CommandBody::TouchKeys { used } => access::touch_keys(view, batch, used),
        CommandBody::CreateTenant { record } => access::create_tenant(view, batch, now, record),
        CommandBody::UpdateTenant { id, patch } => access::update_tenant(view, batch, now, id, patch),
        CommandBody::DeleteTenant { id } => access::delete_tenant(view, batch, id),
        CommandBody::ResealJob { id, tenant, expect_updated_at_ms, headers, body } => {
            let key = keys::job(tenant, *id);
            let Some(mut record) = get_value::<JobRecord>(view, Table::Jobs, &key)? else {
                return Ok(CommandResult::Rejected(Rejection::JobNotFound { id: *id }));
            };
            if record.updated_at_ms != *expect_updated_at_ms || record.spec.headers.len() != headers.len() {
                return Ok(CommandResult::Rejected(Rejection::Outdated));
            }
            record.spec.headers = headers.clone();
            record.spec.body = body.clone();
            batch.put_value(Table::Jobs, key, &record)?;
            Ok(CommandResult::Done)
        }
        CommandBody::Noop => Ok(CommandResult::Done),
        CommandBody::RaiseLevel { level } => {
            if *level > cluster_level(view)? {
                batch.put_value(Table::SmMeta, keys::CLUSTER_LEVEL.to_vec(), level)?;
            }
            Ok(CommandResult::Done)
        }
        CommandBody::Batch(cmds) => {
            let mut overlay = Overlay::new(view);
            let mut results = Vec::with_capacity(cmds.len());
            for cmd in cmds {
                let mut effects = Batch::default();
                results.push(apply(&overlay, cmd, &mut effects)?);
                overlay.record(&effects);
                batch.append(effects);
            }
            // The commands' counters (job count, audit sequence) are written once, not per command.
            batch.keep_last_writes();
            Ok(CommandResult::Batch(results))
        }
    }
}
