//! Snapshots on real processes: with a short snapshot interval the leader purges its log behind
//! snapshots, so a member added later can only catch up by installing a streamed snapshot.

mod common;

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_member_catches_up_from_a_snapshot_after_the_log_was_purged() -> Result<()> {
    let mut c = TestCluster::start_with(3, &["--snapshot-every", "20"]).await?;
    let leader = c.leader().await?;
    let api = c.client(leader);
    let mut ids = Vec::new();
    for i in 0..60 {
        ids.push(job_id(&api.create_job(&job(&format!("snap-{i}"))).await?));
    }
    // The leader built a snapshot and purged its log behind it.
    let leader_dir = c.data_dir(leader).context("leader dir")?;
    wait_for_snapshot_file(&leader_dir).await?;

    // The leader purges when replication no longer uses those entries: keep writing until it did.
    let mut extra = 0u32;
    wait_until("the leader to purge its log behind the snapshot", WAIT, || {
        let api = api.clone();
        extra += 1;
        async move {
            api.create_job(&job(&format!("nudge-{extra}"))).await?;
            let s = api.cluster_status().await?;
            let purged = s["purged_index"].as_u64().unwrap_or(0);
            ensure!(purged >= 40, "purged up to {purged}: {s}");
            Ok(())
        }
    })
    .await?;
    c.start_idle(4).await?;
    let add = json!({"node_id": 4, "addr": c.addr(4).to_string()});
    c.client(leader).with_timeout(Duration::from_secs(60)).post("/api/v1/cluster/nodes", &add).await?.expect(200)?;
    let api4 = c.client(4);
    let all = wait_until("node 4 to hold every job (stale read)", WAIT, || {
        let api = api4.clone();
        async move {
            let jobs = api.all_jobs(true).await?;
            ensure!(jobs.len() >= 60 + extra as usize, "node 4 has {} jobs", jobs.len());
            Ok(jobs)
        }
    })
    .await?;
    for id in &ids {
        ensure!(all.iter().any(|j| job_id(j) == *id), "job {id} missing on node 4");
    }
    let log4 = c.log_text(4);
    ensure!(log4.contains("snapshot installed"), "node 4 caught up without installing a snapshot");
    let snap4 = c.data_dir(4).context("node 4 dir")?.join("snapshots").join("current.snap");
    ensure!(snap4.exists(), "node 4 has no snapshot file");

    // Node 4 keeps up after the install, and a restart reopens the installed state.
    let later = api.create_job(&job("after-install")).await?;
    api4.get_job(&job_id(&later), false).await?.expect(200)?;
    c.kill(4)?;
    c.restart(4)?;
    let again = c.client(4);
    wait_until("node 4 to serve every job after its restart", WAIT, || {
        let api = again.clone();
        async move {
            let jobs = api.all_jobs(true).await?;
            ensure!(jobs.len() == 61 + extra as usize, "node 4 has {} jobs", jobs.len());
            Ok(())
        }
    })
    .await?;
    c.stop()
}

#[tokio::test]
async fn snapshots_follow_the_commands_applied_when_entries_hold_batches() -> Result<()> {
    // 400 concurrent creates share few log entries; the snapshot comes after 200 commands, not
    // after 200 entries.
    let c = TestCluster::start_with(3, &["--snapshot-every", "200"]).await?;
    let leader = c.leader().await?;
    let api = c.client(leader);
    let creates = (0..400).map(|i| {
        let api = api.clone();
        async move { api.create_job(&job(&format!("batched-{i}"))).await }
    });
    for r in futures::future::join_all(creates).await {
        r?;
    }
    let status = api.cluster_status().await?;
    let last = status["last_log_index"].as_u64().unwrap_or(u64::MAX);
    ensure!(last < 200, "the 400 creates took {last} entries: too few shared one for this test");
    let leader_dir = c.data_dir(leader).context("leader dir")?;
    wait_for_snapshot_file(&leader_dir).await?;
    c.stop()
}

/// Waits until the node with data dir `dir` wrote a snapshot file.
async fn wait_for_snapshot_file(dir: &std::path::Path) -> Result<()> {
    wait_until("the leader to write a snapshot file", WAIT, || {
        let path = dir.join("snapshots").join("current.snap");
        async move {
            ensure!(path.exists(), "no {}", path.display());
            Ok(())
        }
    })
    .await
}
