//! The scale scenario (local clusters only): load N idle jobs, then measure the load rate, RSS
//! and data directory of every node, the size of a snapshot, how long a restarted follower
//! takes to be ready, how long the whole cluster takes to write and fire again after every
//! node was stopped (SIGTERM) and started, then again after every node was killed (SIGKILL: no
//! memtable flush, the store replays its write-ahead log), and how long a new, empty member
//! takes to catch up.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use raftcron_client::CreateJob;

use crate::api::idle_job;
use crate::load;
use crate::local::LocalCluster;
use crate::nodes::Nodes;
use crate::procfs::{dir_size, rss_kib};
use crate::progress::note;
use crate::report::Row;
use crate::sink::{now_us, Sink};

/// Longest wait for a restarted node to be ready, or a new one to catch up.
const READY_LIMIT: Duration = Duration::from_secs(600);

const MIB: f64 = 1024.0 * 1024.0;

/// Every-second jobs that show when a restarted cluster fires again.
const RESTART_FIRE_JOBS: u64 = 16;

pub async fn run(c: &mut LocalCluster, sink: &Sink, jobs: u64, concurrency: usize, rows: &mut Vec<Row>) -> Result<()> {
    let nodes = Nodes::of_local(c);
    let clients = nodes.clients()?;
    let out =
        load::run(&format!("scale: loading {jobs} jobs"), concurrency, Duration::from_secs(3600), jobs, move |w, n| {
            let client = clients[w % clients.len()].clone();
            async move { client.create_job(&idle_job(n)).await.map(|_| ()).map_err(|e| e.to_string()) }
        })
        .await;
    let mut row = out.row("scale", format!("load {jobs} jobs c={concurrency}"));
    let ids = c.running();
    for id in &ids {
        if let Some(k) = c.pid(*id).and_then(rss_kib) {
            row.extra.insert(format!("rss_mib_n{id}"), (k / 1024).into());
        }
        if let Some(d) = c.data_dir(*id) {
            row.extra.insert(format!("data_mib_n{id}"), (dir_size(&d) as f64 / MIB).into());
            // docs/design/storage.md: the latest snapshot is one file in the data dir.
            if let Ok(m) = std::fs::metadata(d.join("snapshots").join("current.snap")) {
                row.extra.insert(format!("snapshot_file_mib_n{id}"), (m.len() as f64 / MIB).into());
            }
        }
    }
    let t = Instant::now();
    match nodes.any()?.snapshot_to_writer(&mut std::io::sink()).await {
        Ok(bytes) => {
            row.extra.insert("snapshot_mib".into(), (bytes as f64 / MIB).into());
            row.extra.insert("snapshot_download_s".into(), t.elapsed().as_secs_f64().into());
        }
        Err(e) => note(&format!("  snapshot download failed (the file sizes are reported instead): {e}")),
    }

    // Restart a follower: SIGTERM, start again, time until it answers /readyz.
    let leader = nodes.leader_index().await.ok().and_then(|i| ids.get(i).copied());
    if let Some(&follower) = ids.iter().find(|id| Some(**id) != leader) {
        c.terminate(follower)?;
        let t = Instant::now();
        c.spawn(follower)?;
        let ready = wait_ready(c, follower).await?;
        row.extra.insert("restart_ready_s".into(), ready.duration_since(t).as_secs_f64().into());
        if let Some(k) = c.pid(follower).and_then(rss_kib) {
            row.extra.insert(format!("rss_after_restart_mib_n{follower}"), (k / 1024).into());
        }
        note(&format!(
            "  follower node {follower} ready {:.2} s after its restart",
            ready.duration_since(t).as_secs_f64()
        ));
    }

    whole_cluster_restart(c, &nodes, sink, &mut row, Stop::Terminate).await?;
    whole_cluster_restart(c, &nodes, sink, &mut row, Stop::Kill).await?;

    // A new member: empty data dir, added through the API; time until it applied the log.
    let new_id = ids.iter().max().copied().unwrap_or(0) + 1;
    let addr = c.spawn_idle(new_id)?;
    let target = nodes.any()?.cluster().await?.last_log_index.unwrap_or(0);
    let t = Instant::now();
    let any = nodes.any()?;
    let add = tokio::spawn(async move { any.add_node(new_id, &addr.to_string()).await });
    let newbie = c.client(new_id)?;
    let mut caught_up = None;
    for _ in 0..(READY_LIMIT.as_millis() / 50) {
        if let Ok(s) = newbie.cluster().await {
            if s.applied_index.unwrap_or(0) >= target {
                caught_up = Some(t.elapsed());
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    match add.await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => note(&format!("  adding node {new_id} answered: {e}")),
        Err(e) => note(&format!("  adding node {new_id} failed: {e}")),
    }
    match caught_up {
        Some(d) => {
            row.extra.insert("catch_up_s".into(), d.as_secs_f64().into());
            note(&format!("  new node {new_id} applied index {target} {:.2} s after it was added", d.as_secs_f64()));
        }
        None => note(&format!("  new node {new_id} did not catch up in {READY_LIMIT:?}")),
    }
    if let Some(k) = c.pid(new_id).and_then(rss_kib) {
        row.extra.insert(format!("rss_mib_n{new_id}"), (k / 1024).into());
    }
    rows.push(row);
    crate::print_last(rows);
    Ok(())
}

/// How every node is stopped before a whole-cluster restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// SIGTERM: a clean shutdown flushes the memtables.
    Terminate,
    /// SIGKILL: nothing flushed; the next start replays the write-ahead log.
    Kill,
}

/// Stops every node (`how`), starts them all again, and times from the start: the first
/// acknowledged write, the first fire of an every-second job, and every node ready.
async fn whole_cluster_restart(
    c: &mut LocalCluster,
    nodes: &Nodes,
    sink: &Sink,
    row: &mut Row,
    how: Stop,
) -> Result<()> {
    let client = nodes.any()?;
    let mut jobs = HashSet::new();
    let tag = match how {
        Stop::Terminate => "",
        Stop::Kill => "-kill",
    };
    for n in 0..RESTART_FIRE_JOBS {
        let job = CreateJob {
            name: format!("bench-scale-restart{tag}-{n}"),
            url: sink.url("restart"),
            method: "POST".into(),
            cron_expression: "* * * * * *".into(),
            timeout_seconds: Some(5),
            max_retries: Some(0),
            ..CreateJob::default()
        };
        jobs.insert(client.create_job(&job).await?.id.to_string());
    }
    let since = now_us();
    for _ in 0..3000 {
        if sink.first_after(since, |j| jobs.contains(j)).is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ids = c.running();
    for id in &ids {
        match how {
            Stop::Terminate => c.terminate(*id)?,
            Stop::Kill => c.kill(*id)?,
        }
    }
    let (t0, t0_us) = (Instant::now(), now_us());
    for id in &ids {
        c.spawn(*id)?;
    }
    let clients = nodes.clients()?;
    let (mut write, mut fire, mut ready) = (None, None, None);
    for n in 0..(READY_LIMIT.as_millis() / 10) as u64 {
        if write.is_none() {
            let client = &clients[n as usize % clients.len()];
            let r = tokio::time::timeout(Duration::from_secs(1), client.create_job(&idle_job(n))).await;
            if matches!(r, Ok(Ok(_))) {
                write = Some(t0.elapsed());
            }
        }
        if fire.is_none() {
            fire = sink.first_after(t0_us, |j| jobs.contains(j)).map(|us| Duration::from_micros((us - t0_us) as u64));
        }
        if ready.is_none() {
            let mut all = true;
            for id in &ids {
                let up = match c.client(*id) {
                    Ok(cl) => cl.readyz(&c.url(*id)).await.is_ok_and(|h| h.status == "ready"),
                    Err(_) => false,
                };
                all &= up;
            }
            if all {
                ready = Some(t0.elapsed());
            }
        }
        if write.is_some() && fire.is_some() && ready.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let secs = |d: Option<Duration>| d.map_or("none".to_string(), |d| format!("{:.2} s", d.as_secs_f64()));
    let (stopped, suffix) = match how {
        Stop::Terminate => ("stopped (SIGTERM)", ""),
        Stop::Kill => ("killed (SIGKILL)", "_after_kill"),
    };
    note(&format!(
        "  whole cluster {stopped} and restarted: first write after {}, first fire after {}, every node ready after {}",
        secs(write),
        secs(fire),
        secs(ready)
    ));
    for (key, d) in
        [("cluster_restart_write_s", write), ("cluster_restart_fire_s", fire), ("cluster_restart_ready_s", ready)]
    {
        if let Some(d) = d {
            row.extra.insert(format!("{key}{suffix}"), d.as_secs_f64().into());
        }
    }
    Ok(())
}

async fn wait_ready(c: &LocalCluster, id: u64) -> Result<Instant> {
    let client = c.client(id)?;
    let url = c.url(id);
    for _ in 0..(READY_LIMIT.as_millis() / 10) {
        if let Ok(h) = client.readyz(&url).await {
            if h.status == "ready" {
                return Ok(Instant::now());
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    bail!("node {id} was not ready within {READY_LIMIT:?}")
}
