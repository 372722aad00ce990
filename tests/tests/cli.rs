//! `raftcronctl` against a real 3-node cluster: the built binary is run as a user would run it
//! (URLs and key from the environment), for every jobs and cluster command, both output formats,
//! and the exit codes of a 404, a 401, an unreachable node and a usage error.
//!
//! The jobs call a local sink on 127.0.0.1 (the nodes run with `--allow-private-targets`), so a
//! manual trigger sends nothing off the machine. Every `raftcronctl` run is bounded by
//! [`CTL_TIMEOUT`] and killed if it overruns.
//!
//! Knob: `RAFTCRONCTL_BIN` (the binary; otherwise found like the harness finds `raftcron`).

mod common;

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, ensure, Context, Result};
use axum::routing::any;
use axum::Router;
use common::*;
use serde_json::Value;
use tokio::io::AsyncWriteExt;

/// Upper bound of one `raftcronctl` run (its own requests time out well before).
const CTL_TIMEOUT: Duration = Duration::from_secs(60);

/// A header value that must never appear in any output.
const SECRET: &str = "s3cr3t-header-value";

/// The `raftcronctl` binary: `RAFTCRONCTL_BIN`, else `$CARGO_TARGET_DIR/debug/raftcronctl`, else
/// next to the test executable.
fn ctl_binary() -> PathBuf {
    workspace_binary("raftcronctl", "RAFTCRONCTL_BIN", "cargo build -p raftcron-client --bin raftcronctl")
}

/// What one run printed and how it exited.
#[derive(Debug)]
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
    args: String,
}

impl Out {
    fn expect(self, code: i32) -> Result<Out> {
        ensure!(
            self.code == code,
            "raftcronctl {}: expected exit {code}, got {}\nstdout:\n{}\nstderr:\n{}",
            self.args,
            self.code,
            truncate(&self.stdout, 2000),
            truncate(&self.stderr, 2000)
        );
        ensure!(!self.stdout.contains(SECRET) && !self.stderr.contains(SECRET), "a header value was printed");
        Ok(self)
    }

    fn json(&self) -> Result<Value> {
        serde_json::from_str(&self.stdout).with_context(|| format!("raftcronctl {}: stdout is not JSON", self.args))
    }
}

/// Runs `raftcronctl` with an environment of its own.
struct Ctl {
    bin: PathBuf,
    env: Vec<(String, String)>,
}

impl Ctl {
    fn with_env(&self, key: &str, value: &str) -> Ctl {
        let mut env: Vec<_> = self.env.iter().filter(|(k, _)| k != key).cloned().collect();
        env.push((key.to_string(), value.to_string()));
        Ctl { bin: self.bin.clone(), env }
    }

    async fn run(&self, args: &[&str]) -> Result<Out> {
        self.run_with_stdin(args, None).await
    }

    async fn run_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> Result<Out> {
        let mut cmd = tokio::process::Command::new(&self.bin);
        cmd.args(args).kill_on_drop(true).stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("RAFTCRON") {
                cmd.env_remove(k);
            }
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let mut child = cmd.spawn().with_context(|| format!("starting {}", self.bin.display()))?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(text.as_bytes()).await?;
            drop(pipe);
        }
        let out = tokio::time::timeout(CTL_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| anyhow!("raftcronctl {args:?} ran longer than {CTL_TIMEOUT:?}"))??;
        Ok(Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            args: args.join(" "),
        })
    }
}

/// A local target counting the requests it gets.
async fn start_sink() -> Result<(SocketAddr, Arc<AtomicUsize>, tokio::task::JoinHandle<()>)> {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let app = Router::new().route(
        "/hook",
        any(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                "ok"
            }
        }),
    );
    let (addr, task) = serve_local(app).await?;
    Ok((addr, hits, task))
}

/// A loopback URL nothing listens on.
fn closed_url() -> Result<String> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    Ok(format!("http://{}", l.local_addr()?))
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Result<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(*p).ok_or_else(|| anyhow!("no {p:?} in {cur}"))?;
    }
    cur.as_str().ok_or_else(|| anyhow!("{path:?} is not a string: {cur}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raftcronctl_drives_jobs_and_the_cluster_with_documented_exit_codes() -> Result<()> {
    let (sink, hits, sink_task) = start_sink().await?;
    let cluster = TestCluster::start_with(3, &["--allow-private-targets"]).await?;
    let urls: Vec<String> = (1..=3).map(|id| format!("http://{}", cluster.addr(id))).collect();
    let ctl = Ctl {
        bin: ctl_binary(),
        env: vec![
            ("RAFTCRON_URL".into(), urls.join(",")),
            ("RAFTCRON_API_KEY".into(), cluster.admin_key.clone()),
            ("NO_COLOR".into(), "1".into()),
        ],
    };
    let target = format!("http://{sink}/hook");

    // Create from flags (table output names the new job on stderr).
    let header = format!("X-Secret: {SECRET}");
    let created = ctl
        .run(&[
            "jobs",
            "create",
            "--name",
            "cli-flags",
            "--target",
            &target,
            "--cron",
            "0 0 1 1 *",
            "--method",
            "post",
            "-H",
            &header,
        ])
        .await?
        .expect(0)?;
    ensure!(created.stdout.contains("name:") && created.stdout.contains("X-Secret (values hidden)"), "{created:?}");
    let id = created.stderr.trim().strip_prefix("created job ").context("no 'created job' note")?.to_string();

    // Create from a YAML file and from JSON on standard input.
    let dir = tempfile::tempdir()?;
    let yaml = dir.path().join("job.yaml");
    std::fs::write(
        &yaml,
        format!("name: cli-yaml\nurl: {target}\nmethod: GET\ncron_expression: '0 0 1 1 *'\nmax_retries: 0\n"),
    )?;
    let from_file =
        ctl.run(&["jobs", "create", "-f", yaml.to_str().context("path")?, "-o", "json"]).await?.expect(0)?;
    ensure!(str_at(&from_file.json()?, &["job", "name"])? == "cli-yaml");
    let json_job =
        format!(r#"{{"name": "cli-stdin", "url": "{target}", "method": "PUT", "cron_expression": "0 0 1 1 *"}}"#);
    let from_stdin =
        ctl.run_with_stdin(&["jobs", "create", "-f", "-", "-o", "json"], Some(&json_job)).await?.expect(0)?;
    let stdin_id = str_at(&from_stdin.json()?, &["job", "id"])?.to_string();

    // List: an aligned table, and JSON for scripts.
    let table = ctl.run(&["jobs", "list"]).await?.expect(0)?;
    let lines: Vec<&str> = table.stdout.lines().collect();
    ensure!(lines.len() == 4, "expected a header and 3 rows:\n{}", table.stdout);
    ensure!(lines[0].starts_with("ID ") && lines[0].contains("NAME"), "{}", lines[0]);
    let name_col = lines[0].find("NAME").context("NAME column")?;
    for row in &lines[1..] {
        ensure!(row.get(name_col..).is_some_and(|r| r.starts_with("cli-")), "misaligned row: {row}");
    }
    let list = ctl.run(&["jobs", "list", "-o", "json", "--page-size", "2"]).await?.expect(0)?.json()?;
    ensure!(list["total_count"] == 3 && list["jobs"].as_array().map(Vec::len) == Some(2), "{list}");
    let all = ctl.run(&["jobs", "list", "--all", "-o", "json", "--stale"]).await?.expect(0)?.json()?;
    ensure!(all["jobs"].as_array().map(Vec::len) == Some(3), "{all}");

    // Get, update, pause and resume.
    let got = ctl.run(&["jobs", "get", &id, "-o", "json"]).await?.expect(0)?.json()?;
    ensure!(
        str_at(&got, &["job", "method"])? == "POST" && str_at(&got, &["job", "headers", "X-Secret"])? == "********"
    );
    let updated =
        ctl.run(&["jobs", "update", &id, "--name", "cli-renamed", "--max-retries", "0", "-o", "json"]).await?;
    let updated = updated.expect(0)?.json()?;
    ensure!(str_at(&updated, &["job", "name"])? == "cli-renamed" && updated["job"]["max_retries"] == 0, "{updated}");
    let paused = ctl.run(&["jobs", "pause", &id, "-o", "json"]).await?.expect(0)?.json()?;
    ensure!(paused["job"]["is_active"] == false && paused["job"]["next_run_at"].is_null(), "{paused}");
    let resumed = ctl.run(&["jobs", "resume", &id, "-o", "json"]).await?.expect(0)?.json()?;
    ensure!(resumed["job"]["is_active"] == true && resumed["job"]["next_run_at"].is_string(), "{resumed}");

    // Trigger: the run is accepted, reaches the sink once, and shows up in `jobs runs`.
    let run = ctl.run(&["jobs", "trigger", &id, "-o", "json"]).await?.expect(0)?.json()?;
    let run_id = str_at(&run, &["run", "id"])?.to_string();
    let ctl_ref = &ctl;
    wait_until("the triggered run to succeed", WAIT, || {
        let (id, run_id) = (id.clone(), run_id.clone());
        async move {
            let runs = ctl_ref.run(&["jobs", "runs", &id, "-o", "json"]).await?.expect(0)?.json()?;
            let found = runs["runs"].as_array().and_then(|rs| rs.iter().find(|r| r["id"] == run_id.as_str()).cloned());
            let status = found.as_ref().and_then(|r| r["status"].as_str()).unwrap_or("absent");
            ensure!(status == "succeeded", "run {run_id} is {status}");
            Ok(())
        }
    })
    .await?;
    ensure!(hits.load(Ordering::SeqCst) == 1, "the sink got {} requests", hits.load(Ordering::SeqCst));
    let runs_table = ctl.run(&["jobs", "runs", &id]).await?.expect(0)?;
    ensure!(runs_table.stdout.starts_with("RUN ") && runs_table.stdout.contains("succeeded"), "{}", runs_table.stdout);

    // Delete; the job is gone (404: exit 1 with a hint).
    let deleted = ctl.run(&["jobs", "delete", &stdin_id]).await?.expect(0)?;
    ensure!(deleted.stdout.contains("deleted job"), "{deleted:?}");
    let gone = ctl.run(&["jobs", "get", &stdin_id]).await?.expect(1)?;
    ensure!(gone.stderr.contains("NOT_FOUND") && gone.stderr.contains("hint:"), "{gone:?}");

    // The cluster.
    let status = ctl.run(&["cluster", "status"]).await?.expect(0)?;
    ensure!(status.stdout.contains("leader:") && status.stdout.contains("NODE  ADDR"), "{}", status.stdout);
    let status = ctl.run(&["cluster", "status", "-o", "json"]).await?.expect(0)?.json()?;
    ensure!(status["cluster"]["leader_id"].is_u64(), "{status}");
    let members = ctl.run(&["cluster", "members", "-o", "json"]).await?.expect(0)?.json()?;
    ensure!(members.as_array().map(Vec::len) == Some(3), "{members}");
    let shards = ctl.run(&["cluster", "shards", "-o", "json"]).await?.expect(0)?.json()?;
    let owned: u64 = shards["per_node"].as_object().context("per_node")?.values().filter_map(Value::as_u64).sum();
    ensure!(shards["shard_count"] == 256 && owned == 256, "{shards}");
    let shards = ctl.run(&["cluster", "shards"]).await?.expect(0)?;
    ensure!(shards.stdout.starts_with("NODE  SHARDS") && shards.stdout.contains("256 shards"), "{}", shards.stdout);
    ctl.run(&["cluster", "health"]).await?.expect(0)?;

    // Failover: a dead URL first is skipped.
    let dead = closed_url()?;
    let failover = ctl.with_env("RAFTCRON_URL", &format!("{dead},{}", urls[1]));
    failover.run(&["jobs", "list"]).await?.expect(0)?;

    // Exit codes: 401, unreachable, usage.
    let bad_key = ctl.with_env("RAFTCRON_API_KEY", "not-a-valid-key-000000000000000000000000");
    let e = bad_key.run(&["jobs", "list"]).await?.expect(1)?;
    ensure!(e.stderr.contains("AUTHENTICATION_REQUIRED") && e.stderr.contains("RAFTCRON_API_KEY"), "{e:?}");
    let e = ctl.with_env("RAFTCRON_URL", &dead).run(&["cluster", "status"]).await?.expect(3)?;
    ensure!(e.stderr.contains("RAFTCRON_URL"), "{e:?}");
    ctl.run(&["jobs", "get", "not-a-uuid"]).await?.expect(2)?;
    ctl.with_env("RAFTCRON_API_KEY", "").run(&["jobs", "list"]).await?.expect(2)?;

    sink_task.abort();
    cluster.stop()
}

/// Keys, tenants, the audit trail and a backup through `raftcronctl`, with `-o json` for checks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raftcronctl_manages_keys_tenants_audit_and_backups() -> Result<()> {
    let mut cluster = TestCluster::start(3).await?;
    let urls: Vec<String> = (1..=3).map(|id| format!("http://{}", cluster.addr(id))).collect();
    let ctl = Ctl {
        bin: ctl_binary(),
        env: vec![
            ("RAFTCRON_URL".into(), urls.join(",")),
            ("RAFTCRON_API_KEY".into(), cluster.admin_key.clone()),
            ("NO_COLOR".into(), "1".into()),
        ],
    };
    // A key, shown once.
    let made = ctl.run(&["-o", "json", "keys", "create", "--name", "ci", "--scope", "jobs:read"]).await?.expect(0)?;
    let made = made.json()?;
    let key = made["key"].as_str().or_else(|| made["api_key"]["key"].as_str()).context("no key printed")?.to_string();
    let id = made["id"].as_str().or_else(|| made["api_key"]["id"].as_str()).context("no id")?.to_string();
    let listed = ctl.run(&["keys", "list"]).await?.expect(0)?;
    ensure!(listed.stdout.contains("ci") && !listed.stdout.contains(&key), "keys list: {}", listed.stdout);
    // The new key works for reads and is refused for writes with exit 1 and a hint.
    let reader = ctl.with_env("RAFTCRON_API_KEY", &key);
    reader.run(&["jobs", "list"]).await?.expect(0)?;
    let denied = reader.run(&["tenants", "list"]).await?.expect(1)?;
    ensure!(denied.stderr.contains("ACCESS_DENIED") || denied.stderr.contains("403"), "{}", denied.stderr);
    ctl.run(&["keys", "update", &id, "--name", "ci renamed"]).await?.expect(0)?;
    let revoked = ctl.run(&["keys", "revoke", &id]).await?.expect(0)?;
    ensure!(!revoked.stderr.contains("warning"), "{}", revoked.stderr);
    reader.run(&["jobs", "list"]).await?.expect(1)?;
    // With a member frozen the revoke still answers, and says which node has not applied it.
    let other =
        ctl.run(&["-o", "json", "keys", "create", "--name", "ci-2", "--scope", "jobs:read"]).await?.expect(0)?;
    let other = other.json()?;
    let other_id = other["id"].as_str().or_else(|| other["api_key"]["id"].as_str()).context("no id")?.to_string();
    let frozen = cluster.followers().await?.into_iter().find(|n| *n != 1).context("a follower other than node 1")?;
    cluster.pause(frozen)?;
    let revoked = ctl.run(&["keys", "revoke", &other_id]).await;
    cluster.resume(frozen)?;
    let revoked = revoked?.expect(0)?;
    ensure!(revoked.stderr.contains(&format!("warning: nodes [{frozen}]")), "{}", revoked.stderr);

    // A tenant with quotas.
    ctl.run(&["tenants", "create", "team", "--name", "Team", "--max-jobs", "3"]).await?.expect(0)?;
    let t = ctl.run(&["-o", "json", "tenants", "get", "team"]).await?.expect(0)?.json()?;
    let max = t["max_jobs"].as_u64().or_else(|| t["tenant"]["max_jobs"].as_u64());
    ensure!(max == Some(3), "{t}");
    ctl.run(&["tenants", "update", "team", "--unset", "max-jobs"]).await?.expect(0)?;
    ctl.run(&["tenants", "delete", "team"]).await?.expect(0)?;
    ctl.run(&["tenants", "get", "team"]).await?.expect(1)?;

    // The audit trail shows what happened, newest first.
    let audit = ctl.run(&["audit"]).await?.expect(0)?;
    for action in ["key.create", "key.revoke", "tenant.create", "tenant.delete"] {
        ensure!(audit.stdout.contains(action), "no {action} in:\n{}", audit.stdout);
    }

    // A backup file from the cluster.
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("backup.snap");
    let file_arg = file.display().to_string();
    ctl.run(&["snapshot", "save", &file_arg]).await?.expect(0)?;
    let bytes = std::fs::read(&file)?;
    ensure!(bytes.starts_with(b"RCSNAP"), "not a snapshot: {} bytes", bytes.len());
    cluster.stop()?;
    Ok(())
}
