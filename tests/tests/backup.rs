//! Backups and recovery on real processes: a snapshot downloaded from the API seeds a new
//! cluster (`raftcron restore --from`), and after the quorum is lost for good one survivor's data
//! seeds a new cluster (`raftcron restore --from-data-dir`) that then grows again.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use common::*;
use serde_json::{json, Value};

/// Runs `raftcron restore` and returns its standard output.
fn restore(args: &[&str], data_dir: &Path) -> Result<String> {
    let out = Command::new(binary())
        .arg("restore")
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .context("running raftcron restore")?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    ensure!(out.status.success(), "restore failed: {text} {}", String::from_utf8_lossy(&out.stderr));
    Ok(text)
}

/// A new cluster of one node seeded by `restore` with the old cluster's keys.
async fn restored_cluster(old: &TestCluster, id: u64, source: &[&str]) -> Result<TestCluster> {
    let mut c = TestCluster::empty()?;
    c.admin_key = old.admin_key.clone();
    c.master_key = old.master_key.clone();
    c.cluster_secret = old.cluster_secret.clone();
    let (addr, dir) = c.add_idle(id)?;
    let mut args = source.to_vec();
    let (node, advertise) = (id.to_string(), addr.to_string());
    args.extend(["--node-id", &node, "--advertise", &advertise]);
    let said = restore(&args, &dir)?;
    eprintln!("[backup] {}", said.lines().next().unwrap_or_default());
    c.launch(id).await?;
    c.wait_ready(FORM_TIMEOUT).await?;
    Ok(c)
}

async fn names(api: &Api) -> Result<Vec<String>> {
    Ok(api.all_jobs(false).await?.iter().filter_map(|j| j["name"].as_str().map(str::to_string)).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_restore_and_quorum_loss_recovery() -> Result<()> {
    let mut a = TestCluster::start_with(3, &["--allow-private-targets"]).await?;
    let api = a.client(a.leader().await?);
    for i in 0..5 {
        api.create_job(&job(&format!("before-{i}"))).await?;
    }
    let mut secret = job("with-secret");
    secret["headers"] = json!({"Authorization": "Bearer restore-canary"});
    secret["body"] = json!("restore-body");
    api.create_job(&secret).await?;
    api.post("/api/v1/tenants", &json!({"id": "team", "name": "Team", "max_jobs": 7})).await?.expect(201)?;
    let made = api.post("/api/v1/keys", &json!({"name": "ci", "scopes": ["jobs:read"]})).await?.expect(201)?;
    let ci_key = made.json["api_key"]["key"].as_str().context("key")?.to_string();

    // Only cluster:admin may take a backup.
    api.with_auth(Auth::Bearer(ci_key.clone()))
        .get("/api/v1/cluster/snapshot")
        .await?
        .expect_error(403, "ACCESS_DENIED")?;
    let resp = reqwest::Client::new()
        .get(format!("http://{}/api/v1/cluster/snapshot", a.addr(a.running()[1])))
        .bearer_auth(&a.admin_key)
        .timeout(REQUEST_TIMEOUT)
        .send()
        .await?;
    ensure!(resp.status() == 200, "snapshot: {}", resp.status());
    ensure!(resp.headers().get("content-type").is_some_and(|v| v == "application/octet-stream"));
    let bytes = resp.bytes().await?;
    ensure!(bytes.starts_with(b"RCSNAP"), "not a snapshot file");
    ensure!(!bytes.windows(15).any(|w| w == b"restore-canary".as_slice() || w == ci_key.as_bytes()[..15].as_ref()));
    let backup_dir = tempfile::tempdir()?;
    let backup = backup_dir.path().join("backup.snap");
    std::fs::write(&backup, &bytes)?;
    eprintln!("[backup] downloaded a {} KiB snapshot", bytes.len() / 1024);
    // A write after the backup: in the survivor's data, not in the backup.
    api.create_job(&job("after-backup")).await?;

    // The quorum is lost for good: two nodes die; the third is stopped.
    let survivor = a.running()[0];
    let survivor_dir = a.data_dir(survivor).context("survivor dir")?;
    for id in a.running() {
        a.kill(id)?;
    }

    // Recovery from the survivor's data: everything acknowledged is there, and it grows again.
    let mut b = restored_cluster(&a, 1, &["--from-data-dir", &survivor_dir.display().to_string()]).await?;
    let bapi = b.client(1);
    let got = names(&bapi).await?;
    ensure!(got.len() == 7 && got.iter().any(|n| n == "after-backup"), "recovered jobs: {got:?}");
    let secret_job =
        bapi.all_jobs(false).await?.into_iter().find(|j| j["name"] == "with-secret").context("secret job")?;
    ensure!(secret_job["body"] == "restore-body", "the sealed body opens with the same master key: {secret_job}");
    bapi.with_auth(Auth::Bearer(ci_key.clone())).get("/api/v1/jobs").await?.expect(200)?;
    let t = bapi.get("/api/v1/tenants/team").await?.expect(200)?;
    ensure!(t.json["tenant"]["max_jobs"] == 7, "{}", t.text);
    let audit = bapi.get("/api/v1/audit").await?.expect(200)?;
    ensure!(audit.json["total_count"].as_u64().unwrap_or(0) >= 8, "{}", truncate(&audit.text, 300));
    b.start_idle(2).await?;
    let add = json!({"node_id": 2, "addr": b.addr(2).to_string()});
    bapi.with_timeout(Duration::from_secs(60)).post("/api/v1/cluster/nodes", &add).await?.expect(200)?;
    let two = b.client(2);
    wait_until("the new member to hold every job", WAIT, || {
        let two = two.clone();
        async move {
            let n = two.all_jobs(true).await?.len();
            ensure!(n == 7, "node 2 has {n} jobs");
            Ok(())
        }
    })
    .await?;
    // The grown cluster takes writes.
    let after: Value = bapi.create_job(&job("after-recovery")).await?;
    two.get_job(&job_id(&after), false).await?.expect(200)?;
    ensure!(b.panics_in_logs().is_empty(), "panics: {:?}", b.panics_in_logs());
    b.stop()?;

    // Restore from the downloaded backup: the state as of the backup, nothing later.
    let c = restored_cluster(&a, 7, &["--from", &backup.display().to_string()]).await?;
    let got = names(&c.client(7)).await?;
    ensure!(got.len() == 6 && !got.iter().any(|n| n == "after-backup"), "restored jobs: {got:?}");
    let st = c.client(7).cluster_status().await?;
    ensure!(st["leader_id"] == 7 && st["members"].as_array().is_some_and(|m| m.len() == 1), "{st}");
    c.stop()?;

    // restore refuses to write over data.
    let err = restore(
        &["--from", &backup.display().to_string(), "--node-id", "1", "--advertise", "127.0.0.1:1"],
        &survivor_dir,
    );
    ensure!(err.is_err(), "restore wrote over a non-empty data dir");
    a.stop()?;
    Ok(())
}
