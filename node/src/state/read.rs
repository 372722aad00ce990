//! Read views over the applied state, used by the API. They never write.

use crate::ids::{JobId, TenantId};
use crate::model::apikey::{ApiKeyRecord, KeyHash};
use crate::model::job::JobRecord;
use crate::state::{keys, StateError};
use crate::store::{decode, Store, Table};

pub fn job(store: &Store, tenant: &TenantId, id: JobId) -> Result<Option<JobRecord>, StateError> {
    Ok(store.get_value(Table::Jobs, &keys::job(tenant, id))?)
}

/// One page of a tenant's jobs in id order, and the tenant's job count.
pub fn jobs_page(
    store: &Store,
    tenant: &TenantId,
    page: u32,
    page_size: u32,
) -> Result<(Vec<JobRecord>, u64), StateError> {
    let prefix = keys::tenant_prefix(tenant);
    let skip = (page.saturating_sub(1) as usize).saturating_mul(page_size as usize);
    let rows = store.scan(Table::Jobs, &prefix, &prefix, skip.saturating_add(page_size as usize))?;
    let mut jobs = Vec::with_capacity(page_size as usize);
    for (_, v) in rows.into_iter().skip(skip) {
        jobs.push(decode(&v)?);
    }
    let total = store.get_value(Table::SmMeta, &keys::job_count(tenant))?.unwrap_or(0);
    Ok((jobs, total))
}

pub fn key_by_hash(store: &Store, hash: &KeyHash) -> Result<Option<ApiKeyRecord>, StateError> {
    Ok(store.get_value(Table::Keys, &keys::key_by_hash(hash))?)
}

/// True once the first admin key is in the replicated state.
pub fn admin_bootstrapped(store: &Store) -> Result<bool, StateError> {
    Ok(store.get(Table::SmMeta, keys::ADMIN_BOOTSTRAPPED)?.is_some())
}

/// A job's firing state, if it has one.
pub fn fire_state(
    store: &Store,
    tenant: &TenantId,
    id: JobId,
) -> Result<Option<crate::model::run::FireState>, StateError> {
    Ok(store.get_value(Table::FireState, &keys::job(tenant, id))?)
}

/// One page of a job's runs, newest first, and how many are kept.
pub fn runs_page(
    store: &Store,
    tenant: &TenantId,
    id: JobId,
    page: u32,
    page_size: u32,
) -> Result<(Vec<crate::model::run::RunRecord>, u64), StateError> {
    let prefix = keys::job(tenant, id);
    let skip = (page.saturating_sub(1) as usize).saturating_mul(page_size as usize);
    let rows = store.scan(Table::Runs, &prefix, &prefix, skip.saturating_add(page_size as usize))?;
    let runs = rows.into_iter().skip(skip).map(|(_, v)| decode(&v)).collect::<Result<Vec<_>, _>>()?;
    let total = fire_state(store, tenant, id)?.map_or(0, |f| u64::from(f.runs_kept));
    Ok((runs, total))
}

/// Every key of `tenant` (all tenants when `None`), oldest first. Keys are few: a scan is fine.
pub fn keys_of(store: &Store, tenant: Option<&TenantId>) -> Result<Vec<ApiKeyRecord>, StateError> {
    let mut out = Vec::new();
    for (_, v) in store.scan(Table::Keys, keys::KEY_RECORDS, keys::KEY_RECORDS, usize::MAX)? {
        let r: ApiKeyRecord = decode(&v)?;
        if tenant.is_none_or(|t| &r.tenant == t) {
            out.push(r);
        }
    }
    out.sort_by_key(|k| (k.created_at_ms, k.id));
    Ok(out)
}

/// A key by its public id.
pub fn key_by_id(store: &Store, id: crate::ids::KeyId) -> Result<Option<ApiKeyRecord>, StateError> {
    Ok(crate::state::access::key_by_id(store, id)?.map(|(_, r)| r))
}

pub fn tenant(store: &Store, id: &TenantId) -> Result<Option<crate::model::tenant::TenantRecord>, StateError> {
    crate::state::access::tenant(store, id)
}

/// Every tenant, in id order.
pub fn tenants(store: &Store) -> Result<Vec<crate::model::tenant::TenantRecord>, StateError> {
    store.scan(Table::Tenants, &[], &[], usize::MAX)?.into_iter().map(|(_, v)| Ok(decode(&v)?)).collect()
}

/// A tenant's job count.
pub fn job_count(store: &Store, tenant: &TenantId) -> Result<u64, StateError> {
    Ok(store.get_value(Table::SmMeta, &keys::job_count(tenant))?.unwrap_or(0))
}

/// One page of the audit trail, newest first, optionally of one tenant, and the matching count.
pub fn audit_page(
    store: &Store,
    tenant: Option<&TenantId>,
    page: u32,
    page_size: u32,
) -> Result<(Vec<crate::model::audit::AuditRecord>, u64), StateError> {
    let mut all: Vec<crate::model::audit::AuditRecord> = Vec::new();
    for (_, v) in store.scan(Table::Audit, &[], &[], usize::MAX)? {
        let e: crate::model::audit::AuditRecord = decode(&v)?;
        if tenant.is_none_or(|t| &e.tenant == t) {
            all.push(e);
        }
    }
    all.reverse();
    let total = all.len() as u64;
    let skip = (page.saturating_sub(1) as usize).saturating_mul(page_size as usize);
    Ok((all.into_iter().skip(skip).take(page_size as usize).collect(), total))
}
