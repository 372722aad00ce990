//! The firing jobs: every-second and every-few-seconds jobs that target the sink and carry a
//! canary `Authorization` header. They are created once, before any fault, and never changed
//! until the end of the run, when they are paused so the run lists stop growing while the
//! checkers read them.
//!
//! The expected slots of a job are a pure function of its period, its millisecond offset and
//! the checked window ([`FiringJob::slots`]); periods divide 60, so `*/k` in the seconds field
//! is every k seconds of Unix time. Every other periodic job carries a millisecond offset
//! (`+<n>ms`), so its slots fall inside the second, where faults land at other moments of a
//! send than on the whole second.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use raftcron_client::{CreateJob, JobEnvelope, UpdateJob};
use rand::seq::SliceRandom;
use reqwest::Method;
use serde::Serialize;

use crate::api::NodeApi;
use crate::config::Profile;
use crate::rng;

/// Periods (seconds) of the periodic jobs; each divides 60.
const PERIODS: [u32; 6] = [2, 3, 4, 5, 6, 10];

/// A job whose slots the checkers judge.
#[derive(Debug, Clone, Serialize)]
pub struct FiringJob {
    pub id: String,
    pub period_s: u32,
    /// Milliseconds after the whole second (the schedule's `+<n>ms`; 0: none).
    #[serde(default)]
    pub offset_ms: u32,
    pub created_ms: i64,
}

impl FiringJob {
    /// The job's slots (Unix ms) in `[from_ms, to_ms]`.
    pub fn slots(&self, from_ms: i64, to_ms: i64) -> Vec<i64> {
        let p = i64::from(self.period_s.max(1)) * 1000;
        let offset = i64::from(self.offset_ms);
        let mut t = (from_ms - offset).div_euclid(p) * p + offset;
        if t < from_ms {
            t += p;
        }
        let mut out = Vec::new();
        while t <= to_ms {
            out.push(t);
            t += p;
        }
        out
    }

    /// Fires per second.
    pub fn rate(&self) -> f64 {
        1.0 / f64::from(self.period_s.max(1))
    }
}

/// The canary prefix of a run: it appears in every job's header value and nowhere else.
pub fn canary_prefix(seed: u64) -> String {
    format!("canary-{seed}-")
}

/// Creates the firing jobs, trying the nodes in turn; any unclear outcome fails the setup.
pub async fn create(apis: &[NodeApi], profile: &Profile, seed: u64, sink_url: &str) -> Result<Vec<FiringJob>> {
    let mut rng = rng::stream(seed, "firing-jobs");
    let mut schedules: Vec<(u32, u32)> = vec![(1, 0); profile.every_second_jobs as usize];
    for n in 0..profile.periodic_jobs {
        use rand::Rng;
        let period = *PERIODS.choose(&mut rng).unwrap_or(&5);
        let offset = if n % 2 == 1 { rng.gen_range(1..1000) } else { 0 };
        schedules.push((period, offset));
    }
    let mut out = Vec::new();
    for (i, (period, offset_ms)) in schedules.into_iter().enumerate() {
        let fields = if period == 1 { "* * * * * *".to_string() } else { format!("*/{period} * * * * *") };
        let cron = if offset_ms == 0 { fields } else { format!("{fields} +{offset_ms}ms") };
        let mut headers = BTreeMap::new();
        headers.insert(
            "Authorization".to_string(),
            format!("Bearer {}{i}-{:016x}", canary_prefix(seed), {
                use rand::Rng;
                rng.gen::<u64>()
            }),
        );
        let body = CreateJob {
            name: format!("fire-{seed}-{i}"),
            url: sink_url.to_string(),
            method: "POST".into(),
            cron_expression: cron,
            headers: Some(headers),
            timeout_seconds: Some(5),
            max_retries: Some(0),
            ..CreateJob::default()
        };
        let job = create_one(apis, &body, i).await?;
        out.push(FiringJob {
            id: job.job.id.to_string(),
            period_s: period,
            offset_ms,
            created_ms: job.job.created_at.timestamp_millis(),
        });
    }
    Ok(out)
}

async fn create_one(apis: &[NodeApi], body: &CreateJob, i: usize) -> Result<JobEnvelope> {
    let mut last = String::new();
    for attempt in 0..(apis.len() * 5) {
        let api = &apis[attempt % apis.len()];
        match api.request(Method::POST, "/api/v1/jobs", Some(body), Duration::from_secs(15), None).await {
            Ok(a) if a.status == 201 => return a.json(),
            Ok(a) if a.status == 503 || a.status == 429 => last = format!("{} {}", a.status, a.text),
            Ok(a) => bail!("creating firing job {i} on node {}: {} {}", api.id, a.status, a.text),
            Err(crate::api::SendError::NotSent(e)) => last = e,
            Err(e) => bail!("creating firing job {i} on node {}: {e} (outcome unknown)", api.id),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    bail!("creating firing job {i}: no node accepted it; last: {last}")
}

/// Pauses every firing job (`is_active: false`) so their run lists stop growing.
pub async fn pause_all(apis: &[NodeApi], jobs: &[FiringJob]) -> Result<()> {
    let patch = UpdateJob { is_active: Some(false), ..UpdateJob::default() };
    for job in jobs {
        let mut done = false;
        for attempt in 0..(apis.len() * 5) {
            let api = &apis[attempt % apis.len()];
            let path = format!("/api/v1/jobs/{}", job.id);
            match api.request(Method::PATCH, &path, Some(&patch), Duration::from_secs(15), None).await {
                Ok(a) if a.is_success() => {
                    done = true;
                    break;
                }
                _ => tokio::time::sleep(Duration::from_millis(300)).await,
            }
        }
        if !done {
            bail!("could not pause firing job {}", job.id);
        }
    }
    Ok(())
}

/// Fires per second the jobs should produce together.
pub fn planned_rate(jobs: &[FiringJob]) -> f64 {
    jobs.iter().map(FiringJob::rate).sum()
}

/// Checks a job list answer has every firing job (used before the window opens).
pub fn all_present(jobs: &[FiringJob], listed: &[raftcron_client::Job]) -> Result<()> {
    for j in jobs {
        listed.iter().find(|l| l.id.to_string() == j.id).with_context(|| format!("firing job {} missing", j.id))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_the_period() {
        let j = FiringJob { id: "x".into(), period_s: 5, offset_ms: 0, created_ms: 0 };
        assert_eq!(j.slots(1_000, 16_000), vec![5_000, 10_000, 15_000]);
        assert_eq!(j.slots(5_000, 5_000), vec![5_000]);
        let s = FiringJob { id: "y".into(), period_s: 1, offset_ms: 0, created_ms: 0 };
        assert_eq!(s.slots(999, 3_000), vec![1_000, 2_000, 3_000]);
        assert!(s.slots(3_001, 3_999).is_empty());
        let o = FiringJob { id: "z".into(), period_s: 5, offset_ms: 250, created_ms: 0 };
        assert_eq!(o.slots(1_000, 15_250), vec![5_250, 10_250, 15_250]);
        assert_eq!(o.slots(5_251, 10_249), Vec::<i64>::new());
        assert_eq!(o.slots(-1_000, 300), vec![250]);
    }
}
