//! The API scenarios: job creates at each concurrency (spread over the nodes or aimed at the
//! leader), and single-job gets and list pages, linearizable and stale, per node and spread.
//!
//! Jobs created here target 127.0.0.1:9 (discard) with a yearly schedule, so they never fire
//! during a run.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Result};
use raftcron_client::{Consistency, CreateJob, ListQuery, ReadQuery};
use uuid::Uuid;

use crate::args::{Aim, CreateArgs, ReadArgs};
use crate::load;
use crate::nodes::Nodes;
use crate::procfs::{with_cpu, CpuMeter};
use crate::report::Row;
use crate::CREATE_CONCURRENCY;

/// A job that never fires during a run.
pub fn idle_job(n: u64) -> CreateJob {
    CreateJob {
        name: format!("bench-{n}"),
        url: "http://127.0.0.1:9/bench".into(),
        method: "POST".into(),
        cron_expression: "0 0 1 1 *".into(),
        ..CreateJob::default()
    }
}

pub async fn create(nodes: &Nodes, a: &CreateArgs, duration: Duration, rows: &mut Vec<Row>) -> Result<()> {
    let clients = nodes.clients()?;
    let aims: &[Aim] = match a.aim {
        Aim::Both => &[Aim::Spread, Aim::Leader],
        Aim::Spread => &[Aim::Spread],
        Aim::Leader => &[Aim::Leader],
    };
    for aim in aims {
        for &c in &a.concurrency {
            let leader = nodes.leader_index().await?;
            let (name, idx): (String, Option<usize>) = match aim {
                Aim::Leader => (format!("leader c={c}"), Some(leader)),
                _ => (format!("spread c={c}"), None),
            };
            let cl = clients.clone();
            let term = nodes.term().await;
            let cpu = CpuMeter::start(&nodes.pids);
            let out = load::run(&format!("create {name}"), c, duration, u64::MAX, move |w, n| {
                let client = cl[idx.unwrap_or(w % cl.len())].clone();
                async move { client.create_job(&idle_job(n)).await.map(|_| ()).map_err(|e| e.to_string()) }
            })
            .await;
            let row = with_cpu(out.row("create", name), &cpu);
            rows.push(nodes.with_elections(row, term).await);
            crate::print_last(rows);
        }
    }
    Ok(())
}

/// Creates `n` idle jobs and returns their ids.
pub async fn seed(nodes: &Nodes, n: u64) -> Result<Arc<Vec<Uuid>>> {
    let clients = nodes.clients()?;
    let ids: Arc<Mutex<Vec<Uuid>>> = Arc::default();
    let ids2 = ids.clone();
    let out = load::run("creating jobs to read", CREATE_CONCURRENCY, Duration::from_secs(3600), n, move |w, n| {
        let client = clients[w % clients.len()].clone();
        let ids = ids2.clone();
        async move {
            let job = client.create_job(&idle_job(n)).await.map_err(|e| e.to_string())?;
            if let Ok(mut v) = ids.lock() {
                v.push(job.id);
            }
            Ok(())
        }
    })
    .await;
    let ids = ids.lock().map(|v| v.clone()).unwrap_or_default();
    if ids.is_empty() {
        bail!("no job could be created: {:?}", out.first_error);
    }
    Ok(Arc::new(ids))
}

/// Which read a case makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    Get,
    List,
}

pub async fn reads(nodes: &Nodes, what: Read, a: &ReadArgs, duration: Duration, rows: &mut Vec<Row>) -> Result<()> {
    let ids = seed(nodes, a.jobs).await?;
    let clients = nodes.clients()?;
    let scenario = match what {
        Read::Get => "get",
        Read::List => "list",
    };
    let pages = (ids.len() as u64).div_ceil(50).clamp(1, 20);
    for consistency in [Consistency::Linearizable, Consistency::Stale] {
        for &c in &a.concurrency {
            // Each node alone, then spread over all of them.
            let targets: Vec<Option<usize>> = (0..nodes.urls.len()).map(Some).chain([None]).collect();
            for target in targets {
                let on = target.map(|i| format!("node{}", i + 1)).unwrap_or_else(|| "cluster".into());
                let name = format!("{} {on} c={c}", consistency.as_str());
                let (cl, ids) = (clients.clone(), ids.clone());
                let term = nodes.term().await;
                let cpu = CpuMeter::start(&nodes.pids);
                let seeded = ids.len() as u64;
                let out = load::run(&format!("{scenario} {name}"), c, duration, u64::MAX, move |w, n| {
                    let client = cl[target.unwrap_or(w % cl.len())].clone();
                    // A fixed stride visits every id in a scattered order.
                    let id = ids[(n.wrapping_mul(2_654_435_761) % ids.len() as u64) as usize];
                    let page = 1 + (n % pages) as u32;
                    async move {
                        let r = match what {
                            Read::Get => {
                                let q = ReadQuery { consistency: Some(consistency) };
                                client.get_job_with(id, &q).await.map(|_| ())
                            }
                            Read::List => {
                                let q = ListQuery { page: Some(page), page_size: None, consistency: Some(consistency) };
                                client.list_jobs(&q).await.map(|_| ())
                            }
                        };
                        r.map_err(|e| e.to_string())
                    }
                })
                .await;
                let row = with_cpu(out.row(scenario, name), &cpu).with("jobs", seeded);
                rows.push(nodes.with_elections(row, term).await);
                crate::print_last(rows);
            }
        }
    }
    Ok(())
}
