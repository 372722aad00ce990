//! API keys, tenants and the audit trail: `/api/v1/keys`, `/api/v1/tenants`, `/api/v1/audit`.

use reqwest::Method;
use serde::de::IgnoredAny;

use super::jobs::list_qs;
use super::{decode, error_chain, segment, Client, ClientError};
use crate::access::*;
use crate::types::ListQuery;

/// The header of a key write's answer that names the members that did not confirm it in time.
pub const UNCONFIRMED_NODES: &str = "raftcron-unconfirmed-nodes";

/// The node ids in an answer's [`UNCONFIRMED_NODES`] header (empty when it is absent).
pub fn unconfirmed_nodes(headers: &reqwest::header::HeaderMap) -> Vec<u64> {
    headers
        .get(UNCONFIRMED_NODES)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// What `DELETE /api/v1/keys/{id}` reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Revoked {
    /// Members that had not applied the revocation when the answer came (empty: every member
    /// refuses the key).
    pub unconfirmed_nodes: Vec<u64>,
}

impl Client {
    /// `GET /api/v1/keys`: one page of the tenant's keys (never the keys themselves).
    pub async fn list_keys(&self, query: &ListQuery) -> Result<KeyList, ClientError> {
        self.get(&format!("/api/v1/keys{}", list_qs(query))).await
    }

    /// `POST /api/v1/keys` (201): the answer is the only time the full key is shown.
    pub async fn create_key(&self, req: &CreateKey) -> Result<CreatedKey, ClientError> {
        let env: CreatedKeyEnvelope = self.call(Method::POST, "/api/v1/keys", Some(req)).await?;
        Ok(env.api_key)
    }

    /// `GET /api/v1/keys/{id}`.
    pub async fn get_key(&self, id: &str) -> Result<ApiKey, ClientError> {
        let env: KeyEnvelope = self.get(&format!("/api/v1/keys/{}", segment(id))).await?;
        Ok(env.api_key)
    }

    /// `PATCH /api/v1/keys/{id}`.
    pub async fn update_key(&self, id: &str, patch: &UpdateKey) -> Result<ApiKey, ClientError> {
        let env: KeyEnvelope = self.call(Method::PATCH, &format!("/api/v1/keys/{}", segment(id)), Some(patch)).await?;
        Ok(env.api_key)
    }

    /// `DELETE /api/v1/keys/{id}` (204). The answer comes once every member applied the
    /// revocation; the members that did not confirm it in time (down or cut off) are named in
    /// [`Revoked::unconfirmed_nodes`]: they refuse the key once they hear from the leader.
    pub async fn revoke_key(&self, id: &str) -> Result<Revoked, ClientError> {
        let resp = self.send(&Method::DELETE, &format!("/api/v1/keys/{}", segment(id)), None, None).await?;
        let unconfirmed_nodes = unconfirmed_nodes(resp.headers());
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| ClientError::Unknown(error_chain(&e)))?;
        let _: IgnoredAny = decode(status, &bytes)?;
        Ok(Revoked { unconfirmed_nodes })
    }

    /// `GET /api/v1/tenants`.
    pub async fn list_tenants(&self, query: &ListQuery) -> Result<TenantList, ClientError> {
        self.get(&format!("/api/v1/tenants{}", list_qs(query))).await
    }

    /// `POST /api/v1/tenants` (201).
    pub async fn create_tenant(&self, req: &CreateTenant) -> Result<Tenant, ClientError> {
        let env: TenantEnvelope = self.call(Method::POST, "/api/v1/tenants", Some(req)).await?;
        Ok(env.tenant)
    }

    /// `GET /api/v1/tenants/{id}`.
    pub async fn get_tenant(&self, id: &str) -> Result<Tenant, ClientError> {
        let env: TenantEnvelope = self.get(&format!("/api/v1/tenants/{}", segment(id))).await?;
        Ok(env.tenant)
    }

    /// `PATCH /api/v1/tenants/{id}`.
    pub async fn update_tenant(&self, id: &str, patch: &UpdateTenant) -> Result<Tenant, ClientError> {
        let path = format!("/api/v1/tenants/{}", segment(id));
        let env: TenantEnvelope = self.call(Method::PATCH, &path, Some(patch)).await?;
        Ok(env.tenant)
    }

    /// `DELETE /api/v1/tenants/{id}`.
    pub async fn delete_tenant(&self, id: &str) -> Result<(), ClientError> {
        let path = format!("/api/v1/tenants/{}", segment(id));
        let _: IgnoredAny = self.call::<(), _>(Method::DELETE, &path, None).await?;
        Ok(())
    }

    /// `GET /api/v1/audit`: one page of the audit trail, newest first.
    pub async fn list_audit(&self, query: &ListQuery) -> Result<AuditList, ClientError> {
        self.get(&format!("/api/v1/audit{}", list_qs(query))).await
    }
}
