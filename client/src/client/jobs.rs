//! Jobs, their runs and manual triggers: `/api/v1/jobs[/{id}[/runs|/trigger]]`.

use reqwest::Method;
use serde::de::IgnoredAny;
use uuid::Uuid;

use super::{query_string, Client, ClientError};
use crate::types::*;

/// Upper bound of pages [`Client::list_all_jobs`] reads (at 500 jobs a page: a million jobs).
pub const MAX_PAGES: u32 = 2000;

/// The page size [`Client::list_all_jobs`] asks for (the node's largest).
pub const ALL_PAGE_SIZE: u32 = 500;

/// `?page=&page_size=&consistency=` of a list route.
pub(crate) fn list_qs(q: &ListQuery) -> String {
    query_string(&[
        ("page", q.page.map(|v| v.to_string())),
        ("page_size", q.page_size.map(|v| v.to_string())),
        ("consistency", q.consistency.map(|c| c.as_str().to_string())),
    ])
}

impl Client {
    /// `GET /api/v1/jobs`: one page of the caller's jobs.
    pub async fn list_jobs(&self, query: &ListQuery) -> Result<JobList, ClientError> {
        self.get(&format!("/api/v1/jobs{}", list_qs(query))).await
    }

    /// Every job, page after page (at most 2000 pages of 500), as one list. Jobs created or deleted
    /// while paging may be missed or seen twice; use `consistency` for each page's freshness.
    pub async fn list_all_jobs(&self, consistency: Option<Consistency>) -> Result<Vec<Job>, ClientError> {
        let mut out = Vec::new();
        for page in 1..=MAX_PAGES {
            let q = ListQuery { page: Some(page), page_size: Some(ALL_PAGE_SIZE), consistency };
            let list = self.list_jobs(&q).await?;
            let done = list.jobs.is_empty() || (out.len() + list.jobs.len()) as u64 >= list.total_count;
            out.extend(list.jobs);
            if done {
                return Ok(out);
            }
        }
        Err(ClientError::Decode(format!("more than {MAX_PAGES} pages of jobs")))
    }

    /// `GET /api/v1/jobs/{id}` (linearizable).
    pub async fn get_job(&self, id: Uuid) -> Result<Job, ClientError> {
        self.get_job_with(id, &ReadQuery::default()).await
    }

    /// `GET /api/v1/jobs/{id}?consistency=...`
    pub async fn get_job_with(&self, id: Uuid, query: &ReadQuery) -> Result<Job, ClientError> {
        let qs = query_string(&[("consistency", query.consistency.map(|c| c.as_str().to_string()))]);
        let env: JobEnvelope = self.get(&format!("/api/v1/jobs/{id}{qs}")).await?;
        Ok(env.job)
    }

    /// `POST /api/v1/jobs` (201).
    pub async fn create_job(&self, job: &CreateJob) -> Result<Job, ClientError> {
        let env: JobEnvelope = self.call(Method::POST, "/api/v1/jobs", Some(job)).await?;
        Ok(env.job)
    }

    /// `PATCH /api/v1/jobs/{id}`: absent fields keep their value.
    pub async fn update_job(&self, id: Uuid, patch: &UpdateJob) -> Result<Job, ClientError> {
        let env: JobEnvelope = self.call(Method::PATCH, &format!("/api/v1/jobs/{id}"), Some(patch)).await?;
        Ok(env.job)
    }

    /// Pauses (`active: false`) or resumes (`active: true`) a job.
    pub async fn set_job_active(&self, id: Uuid, active: bool) -> Result<Job, ClientError> {
        self.update_job(id, &UpdateJob { is_active: Some(active), ..UpdateJob::default() }).await
    }

    /// `DELETE /api/v1/jobs/{id}`.
    pub async fn delete_job(&self, id: Uuid) -> Result<(), ClientError> {
        let _: IgnoredAny = self.call::<(), _>(Method::DELETE, &format!("/api/v1/jobs/{id}"), None).await?;
        Ok(())
    }

    /// `GET /api/v1/jobs/{id}/runs`: one page of the job's runs, newest first.
    pub async fn list_runs(&self, id: Uuid, query: &ListQuery) -> Result<RunList, ClientError> {
        self.get(&format!("/api/v1/jobs/{id}/runs{}", list_qs(query))).await
    }

    /// `POST /api/v1/jobs/{id}/trigger` (202): runs the job now; the answer is the new run.
    pub async fn trigger_job(&self, id: Uuid) -> Result<Run, ClientError> {
        let env: RunEnvelope = self.call::<(), _>(Method::POST, &format!("/api/v1/jobs/{id}/trigger"), None).await?;
        Ok(env.run)
    }
}
