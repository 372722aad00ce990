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
