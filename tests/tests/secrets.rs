//! Secrets at rest and in transit, on real processes: no canary key or header value in any file a
//! node writes; master-key rotation without losing a secret; nodes with unrelated master keys
//! refuse each other; HTTPS and mutual TLS between nodes.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use axum::http::HeaderMap;
use common::*;
use serde_json::{json, Value};

/// Headers each request to the sink carried: (authorization, body).
type Seen = Arc<Mutex<Vec<(String, String)>>>;

async fn start_sink() -> Result<(SocketAddr, Seen, tokio::task::JoinHandle<()>)> {
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::any(move |headers: HeaderMap, body: String| {
            let s = s.clone();
            async move {
                let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                if let Ok(mut v) = s.lock() {
                    v.push((auth, body));
                }
                "ok"
            }
        }),
    );
    let (addr, task) = serve_local(app).await?;
    Ok((addr, seen, task))
}

/// Every file under `dir` that contains `needle`, bytewise.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    // Bounded: data dirs hold at most a few hundred files.
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    hits.push(p.display().to_string());
                }
            }
        }
    }
    hits
}

fn canary_job(sink: SocketAddr, tag: &str) -> Value {
    json!({
        "name": format!("canary {tag}"),
        "url": format!("http://{sink}/hook"),
        "method": "POST",
        "cron_expression": "* * * * * *",
        "headers": {"Authorization": format!("Bearer canary-header-{tag}")},
        "body": format!("canary-body-{tag}"),
        "max_retries": 0,
    })
}

/// Waits until the sink received `tag`'s header value and body in clear.
async fn wait_delivered(seen: &Seen, tag: &str) -> Result<()> {
    let (seen, tag) = (seen.clone(), tag.to_string());
    wait_until("the sink to receive the job's secrets in clear", WAIT, || {
        let (seen, tag) = (seen.clone(), tag.clone());
        async move {
            let got = seen.lock().map(|v| v.clone()).unwrap_or_default();
            ensure!(
                got.iter()
                    .any(|(a, b)| *a == format!("Bearer canary-header-{tag}") && *b == format!("canary-body-{tag}")),
                "not yet ({} requests)",
                got.len()
            );
            Ok(())
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_canary_secret_lies_in_any_file_after_snapshots_and_purges() -> Result<()> {
    let (sink, seen, sink_task) = start_sink().await?;
    let c = TestCluster::start_with(3, &["--snapshot-every", "20", "--allow-private-targets"]).await?;
    let api = c.client(c.leader().await?);
    let tag = format!("{:x}", std::process::id());
    let made = api.create_job(&canary_job(sink, &tag)).await?;
    ensure!(made["headers"]["Authorization"] == "********", "{made}");
    ensure!(made["body"] == format!("canary-body-{tag}").as_str(), "the API shows the body: {made}");
    let created = api.post("/api/v1/keys", &json!({"name": "canary", "scopes": ["jobs:read"]})).await?.expect(201)?;
    let canary_key = created.json["api_key"]["key"].as_str().context("key")?.to_string();
    api.with_auth(Auth::Bearer(canary_key.clone())).get("/api/v1/jobs").await?.expect(200)?;
    wait_delivered(&seen, &tag).await?;
    // Enough writes for snapshots and log purges on every node.
    let mut n = 0u32;
    wait_until("every node to purge its log behind a snapshot", Duration::from_secs(60), || {
        let (api, clients) = (api.clone(), c.clients());
        n += 1;
        async move {
            for _ in 0..10 {
                api.create_job(&job(&format!("filler-{n}"))).await?;
            }
            for a in clients {
                let s = a.cluster_status().await?;
                ensure!(
                    s["purged_index"].as_u64().unwrap_or(0) > 20,
                    "node {} purged {}",
                    a.node_id,
                    s["purged_index"]
                );
            }
            Ok(())
        }
    })
    .await?;
    let dirs: Vec<_> = c.running().iter().filter_map(|id| c.data_dir(*id)).collect();
    let logs: Vec<String> = c.running().iter().map(|id| c.log_text(*id)).collect();
    c.stop()?;
    sink_task.abort();
    let needles = [canary_key.clone(), format!("canary-header-{tag}"), format!("canary-body-{tag}")];
    let mut found = Vec::new();
    for dir in &dirs {
        for needle in &needles {
            found
                .extend(files_containing(dir, needle.as_bytes()).into_iter().map(|f| format!("{needle:.20}.. in {f}")));
        }
    }
    for (i, log) in logs.iter().enumerate() {
        for needle in &needles {
            if log.contains(needle.as_str()) {
                found.push(format!("{needle:.20}.. in the log of node {}", i + 1));
            }
        }
    }
    ensure!(found.is_empty(), "canaries in plain text: {found:?}");
    eprintln!("[secrets] searched {} data dirs and their logs: no canary key, header value or body", dirs.len());
    Ok(())
}

/// Rotation in three rolling restarts: add the new key as readable, make it current (the leader
/// re-seals every job), then drop the old one. The job keeps firing with its secrets throughout.
/// A node holding an unrelated key is refused by the cluster, with a clear log line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_keys_rotate_and_strangers_are_refused() -> Result<()> {
    let (sink, seen, sink_task) = start_sink().await?;
    let mut c = TestCluster::start_with(3, &["--allow-private-targets"]).await?;
    let (old, new) = (c.master_key.clone(), random_master_key());
    let api = c.client(c.leader().await?);
    let tag = "rotation";
    let id = job_id(&api.create_job(&canary_job(sink, tag)).await?);
    let old_id = api.cluster_status().await?["master_key_id"].as_str().context("master_key_id")?.to_string();

    // A stranger with an unrelated key is refused.
    c.node_env.insert(4, vec![("RAFTCRON_MASTER_KEY".into(), random_master_key())]);
    c.start_idle(4).await?;
    let add = json!({"node_id": 4, "addr": c.addr(4).to_string()});
    let r = api.with_timeout(Duration::from_secs(40)).post("/api/v1/cluster/nodes", &add).await?;
    ensure!(r.status != 200, "a node with another master key joined: {}", r.text);
    let refused = wait_until("a refusal naming the master key in a log", WAIT, || {
        let logs: Vec<String> = (1..=4).map(|i| c.log_text(i)).collect();
        async move {
            let line = logs.iter().flat_map(|l| l.lines()).find(|l| l.contains("same master key")).map(str::to_string);
            line.context("no refusal yet")
        }
    })
    .await?;
    eprintln!("[secrets] stranger refused: {}", truncate(&refused, 300));
    c.kill(4)?;
    let _ = api.delete("/api/v1/cluster/nodes/4").await?;

    let roll = |c: &mut TestCluster, current: &str, previous: Option<&str>| {
        for id in 1..=3 {
            let mut env = vec![("RAFTCRON_MASTER_KEY".to_string(), current.to_string())];
            if let Some(p) = previous {
                env.push(("RAFTCRON_PREVIOUS_MASTER_KEYS".to_string(), p.to_string()));
            }
            c.node_env.insert(id, env);
        }
    };
    // 1: the new key becomes readable everywhere; 2: it becomes current; 3: the old one goes.
    for (step, current, previous) in [(1, &old, Some(&new)), (2, &new, Some(&old))] {
        roll(&mut c, current, previous.map(String::as_str));
        for id in 1..=3 {
            c.kill(id)?;
            c.restart(id)?;
            c.wait_ready(FORM_TIMEOUT).await.with_context(|| format!("step {step}, node {id}"))?;
        }
        eprintln!("[secrets] rotation step {step} rolled over 3 nodes");
    }
    let leader = c.client(c.leader().await?);
    let new_id = leader.cluster_status().await?["master_key_id"].as_str().unwrap_or_default().to_string();
    ensure!(new_id != old_id, "the master key id did not change");
    wait_until("the leader to re-seal every job under the new key", Duration::from_secs(60), || {
        let leader = leader.clone();
        async move {
            let s = leader.cluster_status().await?;
            ensure!(s["secrets_to_reseal"] == 0, "secrets_to_reseal: {}", s["secrets_to_reseal"]);
            Ok(())
        }
    })
    .await?;
    roll(&mut c, &new, None);
    for id in 1..=3 {
        c.kill(id)?;
        c.restart(id)?;
    }
    c.wait_ready(FORM_TIMEOUT).await?;
    // Only the new key is left, and the job's secrets still open: on answers and when sent.
    let api = c.client(c.leader().await?);
    let got = api.get_job(&id, false).await?.expect(200)?;
    ensure!(got.json["job"]["body"] == "canary-body-rotation", "{}", got.text);
    seen.lock().map(|mut v| v.clear()).ok();
    wait_delivered(&seen, tag).await?;
    ensure!(c.panics_in_logs().is_empty(), "panics: {:?}", c.panics_in_logs());
    c.stop()?;
    sink_task.abort();
    Ok(())
}

/// A CA, and node certificates for 127.0.0.1 signed by it (server and client use).
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Result<Pki> {
        use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType};
        let dir = tempfile::tempdir()?;
        let ca_key = KeyPair::generate()?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key)?;
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let node_key = KeyPair::generate()?;
        let mut node = CertificateParams::new(vec!["localhost".to_string()])?;
        node.subject_alt_names.push(SanType::IpAddress("127.0.0.1".parse()?));
        node.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        let node_cert = node.signed_by(&node_key, &issuer)?;
        std::fs::write(dir.path().join("ca.pem"), ca_cert.pem())?;
        std::fs::write(dir.path().join("node.pem"), node_cert.pem())?;
        std::fs::write(dir.path().join("node.key"), node_key.serialize_pem())?;
        Ok(Pki { dir })
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_api_and_mutual_tls_between_nodes() -> Result<()> {
    let pki = Pki::new()?;
    let (cert, key, ca) = (pki.path("node.pem"), pki.path("node.key"), pki.path("ca.pem"));
    let args = ["--tls-cert", &cert, "--tls-key", &key, "--peer-ca", &ca, "--peer-cert", &cert, "--peer-key", &key];
    let ca_pem = std::fs::read(&ca)?;
    let c = TestCluster::start_tls(3, &args, &ca_pem).await?;
    let leader = c.leader().await?;
    let api = c.client(leader);
    // Writes through a follower travel node to node over mutual TLS.
    let follower = c.follower().await?;
    let made = c.client(follower).create_job(&job("over tls")).await?;
    api.get_job(&job_id(&made), false).await?.expect(200)?;
    let addr = c.addr(leader);
    // Plain HTTP to a TLS node gets no answer.
    let plain = reqwest::Client::builder().no_proxy().timeout(PROBE_TIMEOUT).build()?;
    ensure!(plain.get(format!("http://{addr}/healthz")).send().await.is_err(), "plain HTTP was served");
    // The cluster secret alone does not open /internal: a client certificate from the CA must come too.
    let https = reqwest::Client::builder()
        .no_proxy()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca_pem)?)
        .timeout(PROBE_TIMEOUT)
        .build()?;
    let r = https
        .post(format!("https://{addr}/internal/forward"))
        .header("x-raftcron-cluster-token", &c.cluster_secret)
        .body(Vec::new())
        .send()
        .await?;
    ensure!(r.status() == 401, "internal route without a client certificate: {}", r.status());
    let mut statuses = BTreeMap::new();
    for a in c.clients() {
        statuses.insert(a.node_id, a.cluster_status().await?["leader_id"].clone());
    }
    ensure!(statuses.values().all(|l| *l == json!(leader)), "{statuses:?}");
    c.stop()?;
    Ok(())
}
