//! `raftcronctl keys ...`, `tenants ...` and `audit`.

use raftcron_client::*;

use crate::args::{KeysCommand, Paging, QuotaArgs, TenantsCommand};
use crate::exit::{CliError, Context};
use crate::render::{note, paging_note};
use crate::{views, Ctx};

fn query(p: Paging) -> ListQuery {
    ListQuery { page: p.page, page_size: p.page_size, consistency: None }
}

/// The warning printed with a new key: it is shown only this once.
pub const STORE_KEY_WARNING: &str =
    "warning: store this key now (e.g. in your secrets manager): it is shown only once and cannot be retrieved";

pub async fn keys(ctx: &Ctx, cmd: KeysCommand) -> Result<(), CliError> {
    let c = &ctx.client;
    match cmd {
        KeysCommand::List { paging } => {
            let list = c.list_keys(&query(paging)).await.context("listing API keys")?;
            ctx.out.emit(&list, || views::keys(&list.api_keys))?;
            if ctx.out.is_table() {
                paging_note("keys", list.page, list.page_size, list.api_keys.len(), list.total_count);
            }
            Ok(())
        }
        KeysCommand::Create { name, kind, scopes, allowed_cidrs, expires_at, tenant } => {
            let req = CreateKey {
                name,
                kind,
                scopes: (!scopes.is_empty()).then_some(scopes),
                allowed_cidrs: (!allowed_cidrs.is_empty()).then_some(allowed_cidrs),
                expires_at,
                tenant,
            };
            let created = c.create_key(&req).await.context("creating the API key")?;
            note(STORE_KEY_WARNING);
            let env = CreatedKeyEnvelope { api_key: created };
            ctx.out.emit(&env, || created_key_table(&env.api_key))
        }
        KeysCommand::Get { id } => {
            let env = KeyEnvelope { api_key: c.get_key(&id).await.context(format!("reading API key {id}"))? };
            ctx.out.emit(&env, || views::key(&env.api_key))
        }
        KeysCommand::Update { id, name, scopes, allowed_cidrs, allow_anywhere, expires_at, no_expiry } => {
            let patch = key_patch(name, scopes, allowed_cidrs, allow_anywhere, expires_at, no_expiry)?;
            let key = c.update_key(&id, &patch).await.context(format!("updating API key {id}"))?;
            let env = KeyEnvelope { api_key: key };
            ctx.out.emit(&env, || views::key(&env.api_key))
        }
        KeysCommand::Revoke { id } => {
            let revoked = c.revoke_key(&id).await.context(format!("revoking API key {id}"))?;
            if !revoked.unconfirmed_nodes.is_empty() {
                eprintln!(
                    "warning: nodes {:?} had not applied the revocation yet; they refuse the key once they hear from the leader",
                    revoked.unconfirmed_nodes
                );
            }
            ctx.out.emit(&OkResponse { ok: true }, || format!("revoked API key {id}"))
        }
    }
}

/// The new key's details, then the key itself on a line of its own (easy to copy).
pub fn created_key_table(k: &CreatedKey) -> String {
    format!("{}\n\nkey: {}", views::key(&k.api_key), k.key)
}

/// The body of `PATCH /api/v1/keys/{id}`.
pub fn key_patch(
    name: Option<String>,
    scopes: Vec<String>,
    allowed_cidrs: Vec<String>,
    allow_anywhere: bool,
    expires_at: Option<chrono::DateTime<chrono::Utc>>,
    no_expiry: bool,
) -> Result<UpdateKey, CliError> {
    let patch = UpdateKey {
        name,
        scopes: (!scopes.is_empty()).then_some(scopes),
        allowed_cidrs: if allow_anywhere {
            Some(Vec::new())
        } else {
            (!allowed_cidrs.is_empty()).then_some(allowed_cidrs)
        },
        expires_at: if no_expiry { Some(None) } else { expires_at.map(Some) },
    };
    if patch == UpdateKey::default() {
        return Err(CliError::usage_hint(
            "nothing to change",
            "give --name, --scope, --allow-cidr, --allow-anywhere, --expires-at or --no-expiry",
        ));
    }
    Ok(patch)
}

pub async fn tenants(ctx: &Ctx, cmd: TenantsCommand) -> Result<(), CliError> {
    let c = &ctx.client;
    match cmd {
        TenantsCommand::List { paging } => {
            let list = c.list_tenants(&query(paging)).await.context("listing tenants")?;
            ctx.out.emit(&list, || views::tenants(&list.tenants))?;
            if ctx.out.is_table() {
                paging_note("tenants", list.page, list.page_size, list.tenants.len(), list.total_count);
            }
            Ok(())
        }
        TenantsCommand::Create { id, name, quotas } => {
            let req = CreateTenant {
                id,
                name,
                max_jobs: quotas.max_jobs,
                min_interval_seconds: quotas.min_interval_seconds,
                rate_limit_per_minute: quotas.rate_limit_per_minute,
            };
            let env = TenantEnvelope { tenant: c.create_tenant(&req).await.context("creating the tenant")? };
            ctx.out.emit(&env, || views::tenant(&env.tenant))
        }
        TenantsCommand::Get { id } => {
            let env = TenantEnvelope { tenant: c.get_tenant(&id).await.context(format!("reading tenant {id}"))? };
            ctx.out.emit(&env, || views::tenant(&env.tenant))
        }
        TenantsCommand::Update { id, name, quotas, unset } => {
            let patch = tenant_patch(name, quotas, &unset)?;
            let tenant = c.update_tenant(&id, &patch).await.context(format!("updating tenant {id}"))?;
            let env = TenantEnvelope { tenant };
            ctx.out.emit(&env, || views::tenant(&env.tenant))
        }
        TenantsCommand::Delete { id } => {
            c.delete_tenant(&id).await.context(format!("deleting tenant {id}"))?;
            ctx.out.emit(&OkResponse { ok: true }, || format!("deleted tenant {id}"))
        }
    }
}

/// The body of `PATCH /api/v1/tenants/{id}`: a quota is set, removed (`--unset`) or kept.
pub fn tenant_patch(name: Option<String>, q: QuotaArgs, unset: &[String]) -> Result<UpdateTenant, CliError> {
    let pick = |value: Option<u32>, flag: &str| -> Result<Option<Option<u32>>, CliError> {
        match (value, unset.iter().any(|u| u == flag)) {
            (Some(_), true) => Err(CliError::usage(format!("--{flag} and --unset {flag} contradict each other"))),
            (Some(v), false) => Ok(Some(Some(v))),
            (None, true) => Ok(Some(None)),
            (None, false) => Ok(None),
        }
    };
    let patch = UpdateTenant {
        name,
        max_jobs: pick(q.max_jobs, "max-jobs")?,
        min_interval_seconds: pick(q.min_interval_seconds, "min-interval")?,
        rate_limit_per_minute: pick(q.rate_limit_per_minute, "rate-limit")?,
    };
    if patch == UpdateTenant::default() {
        return Err(CliError::usage_hint(
            "nothing to change",
            "give --name, --max-jobs, --min-interval, --rate-limit or --unset QUOTA",
        ));
    }
    Ok(patch)
}

pub async fn audit(ctx: &Ctx, paging: Paging) -> Result<(), CliError> {
    let list = ctx.client.list_audit(&query(paging)).await.context("reading the audit trail")?;
    ctx.out.emit(&list, || views::audit(&list.entries))?;
    if ctx.out.is_table() {
        paging_note("entries", list.page, list.page_size, list.entries.len(), list.total_count);
    }
    Ok(())
}
