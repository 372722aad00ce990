//! A cluster forms and every node serves the API; writes and reads go through any node;
//! membership grows to four nodes and shrinks back.

mod common;

use anyhow::{ensure, Context, Result};
use common::{job, job_id, leader_of, member, member_ids, wait_until, Auth, RawRequest, TestCluster, WAIT};
use serde_json::{json, Value};

#[tokio::test]
async fn cluster_forms_and_serves_from_every_node() -> Result<()> {
    let c = TestCluster::start(3).await?;
    let leader = c.leader().await?;

    for api in c.clients() {
        let id = api.node_id;
        let r = api.anonymous().get("/healthz").await?.expect(200)?;
        assert_eq!(r.json, json!({"status": "ok"}), "node {id} /healthz");
        let r = api.anonymous().get("/readyz").await?.expect(200)?;
        assert_eq!(r.json["status"], "ready", "node {id} /readyz");

        // Every node knows the whole membership and the same leader.
        let s = api.cluster_status().await?;
        assert_eq!(s["node_id"], id, "node {id} status: {s}");
        assert_eq!(leader_of(&s), Some(leader), "node {id} status: {s}");
        assert_eq!(member_ids(&s), vec![1, 2, 3], "node {id} status: {s}");
        for m in 1..=3u64 {
            let mem = member(&s, m).context("member")?;
            assert_eq!(mem["addr"], c.addr(m).to_string(), "node {id} sees member {m}: {mem}");
            assert_eq!(mem["voter"], true, "node {id} sees member {m}: {mem}");
            let role = if m == leader { "leader" } else { "follower" };
            assert_eq!(mem["role"], role, "node {id} sees member {m}: {mem}");
        }
        assert!(s["term"].as_u64().is_some_and(|t| t >= 1), "node {id} term: {s}");
        for k in ["committed_index", "applied_index", "last_log_index"] {
            assert!(s.get(k).is_some(), "node {id} status lacks {k}: {s}");
        }

        // Authentication: none, a wrong key, every accepted scheme, a key in the query string.
        let r = api.anonymous().get("/api/v1/jobs").await?.expect_error(401, "AUTHENTICATION_REQUIRED")?;
        assert!(!r.message().is_empty(), "node {id}: 401 without a message: {}", r.text);
        api.with_auth(Auth::Bearer("not-the-key-0123456789-0123456789-abcdef".into()))
            .get("/api/v1/jobs")
            .await?
            .expect_error(401, "AUTHENTICATION_REQUIRED")?;
        api.with_auth(Auth::Bearer(String::new()))
            .get("/api/v1/cluster")
            .await?
            .expect_error(401, "AUTHENTICATION_REQUIRED")?;
        let key = c.admin_key.clone();
        for auth in
            [Auth::Bearer(key.clone()), Auth::XApiKey(key.clone()), Auth::ApiKey(key.clone()), Auth::Basic(key.clone())]
        {
            let r = api.with_auth(auth.clone()).get("/api/v1/jobs").await?;
            ensure!(r.status == 200, "node {id} with {auth:?}: {} {}", r.status, r.text);
        }
        api.anonymous().get(&format!("/api/v1/jobs?api_key={key}")).await?.expect_error(400, "BAD_REQUEST")?;

        // Node-to-node routes want the cluster token, whatever the body.
        for path in [
            "/internal/raft/append",
            "/internal/raft/vote",
            "/internal/raft/snapshot",
            "/internal/raft/last-log",
            "/internal/forward",
            "/internal/holding",
            "/internal/applied",
        ] {
            for token in [None, Some("wrong-secret-0123456789")] {
                let mut req = RawRequest {
                    method: "POST".into(),
                    path: path.into(),
                    body: Some(b"x".to_vec()),
                    ..Default::default()
                };
                if let Some(t) = token {
                    req.headers.push(("X-Raftcron-Cluster-Token".into(), t.into()));
                }
                let r = api.raw(req).await?;
                ensure!(r.status == 401, "node {id} {path} with token {token:?}: {} {}", r.status, r.text);
            }
        }
    }
    c.stop()
}

#[tokio::test]
async fn write_through_a_follower_read_from_another() -> Result<()> {
    let c = TestCluster::start(3).await?;
    let leader = c.leader().await?;
    let followers = c.followers().await?;
    let (f1, f2) = (followers[0], followers[1]);
    let (l, a1, a2) = (c.client(leader), c.client(f1), c.client(f2));

    // Create on follower 1, read (linearizable) from follower 2 and the leader at once.
    let created = a1.create_job(&job("through-a-follower")).await?;
    let id = job_id(&created);
    ensure!(!id.is_empty(), "no id in {created}");
    for api in [&a2, &l] {
        let got = api.get_job(&id, false).await?.expect(200)?.field("job")?;
        assert_eq!(got, created, "node {} answers another version of the job", api.node_id);
        let listed = api.all_jobs(false).await?;
        assert_eq!(listed, vec![created.clone()], "node {} list", api.node_id);
    }

    // Update through follower 2; follower 1 reads the new version.
    let patched = a2
        .patch(&format!("/api/v1/jobs/{id}"), &json!({"name": "renamed", "is_active": false}))
        .await?
        .expect(200)?
        .field("job")?;
    assert_eq!(patched["name"], "renamed");
    assert_eq!(patched["is_active"], false);
    assert_eq!(patched["next_run_at"], Value::Null, "paused job has a next run: {patched}");
    assert_eq!(patched["id"], created["id"]);
    assert_eq!(patched["created_at"], created["created_at"]);
    assert_eq!(patched["url"], created["url"], "an absent field changed");
    let got = a1.get_job(&id, false).await?.expect(200)?.field("job")?;
    assert_eq!(got, patched, "follower {f1} after the update");

    // Delete through the leader; gone everywhere.
    let r = l.delete(&format!("/api/v1/jobs/{id}")).await?.expect(200)?;
    assert_eq!(r.json, json!({"ok": true}));
    for api in c.clients() {
        api.get_job(&id, false).await?.expect_error(404, "NOT_FOUND")?;
        let listed = api.all_jobs(false).await?;
        assert!(listed.is_empty(), "node {} still lists {listed:?}", api.node_id);
    }
    a1.delete(&format!("/api/v1/jobs/{id}")).await?.expect_error(404, "NOT_FOUND")?;
    c.stop()
}

#[tokio::test]
async fn grow_to_four_then_shrink_back() -> Result<()> {
    let mut c = TestCluster::start(3).await?;
    let leader = c.leader().await?;
    let followers = c.followers().await?;
    let existing = c.client(leader).create_job(&job("before-growing")).await?;

    // Node 4: empty data dir, no --initial-cluster: up, but not ready and not a member.
    c.start_idle(4).await?;
    let api4 = c.client(4);
    let r = api4.anonymous().get("/readyz").await?.expect(503)?;
    assert_eq!(r.json["status"], "not_ready", "{}", r.text);

    // Add it through a follower: the answer comes once node 4 is a voter.
    let started = std::time::Instant::now();
    let add = json!({"node_id": 4, "addr": c.addr(4).to_string()});
    let r = c
        .client(followers[0])
        .with_timeout(std::time::Duration::from_secs(60))
        .post("/api/v1/cluster/nodes", &add)
        .await?;
    let cluster = r.expect(200)?.field("cluster")?;
    eprintln!("adding node 4 took {:.1?}", started.elapsed());
    let m4 = member(&cluster, 4).with_context(|| format!("node 4 missing from the answer {cluster}"))?;
    assert_eq!(m4["voter"], true, "node 4 in the answer: {cluster}");
    assert_eq!(m4["addr"], c.addr(4).to_string());

    // Node 4 sees itself as a voter, and serves the job written before it joined.
    let probe = api4.clone();
    wait_until("node 4 to report itself a voter", WAIT, || {
        let api = probe.clone();
        async move {
            let s = api.cluster_status().await?;
            let me = member(&s, 4).with_context(|| format!("not a member yet: {s}"))?;
            ensure!(me["voter"] == true && me["role"] != "learner", "not a voter yet: {s}");
            ensure!(member_ids(&s) == vec![1, 2, 3, 4], "members: {s}");
            ensure!(leader_of(&s).is_some(), "no leader: {s}");
            Ok(())
        }
    })
    .await?;
    let eid = job_id(&existing);
    let got = wait_until("node 4 to serve the existing job (stale read)", WAIT, || {
        let (api, eid) = (probe.clone(), eid.clone());
        async move { api.get_job(&eid, true).await?.expect(200)?.field("job") }
    })
    .await?;
    assert_eq!(got, existing);
    api4.anonymous().get("/readyz").await?.expect(200)?;

    // A new job, written through the leader, is read from node 4 (linearizable); node 4 writes.
    let new = c.client(leader).create_job(&job("after-growing")).await?;
    let got = api4.get_job(&job_id(&new), false).await?.expect(200)?.field("job")?;
    assert_eq!(got, new);
    let via4 = api4.create_job(&job("written-through-node-4")).await?;
    for id in 1..=3 {
        let got = c.client(id).get_job(&job_id(&via4), false).await?.expect(200)?.field("job")?;
        assert_eq!(got, via4, "node {id}");
    }
    for id in 1..=4 {
        let api = c.client(id);
        wait_until(&format!("node {id} to list 4 members"), WAIT, || {
            let api = api.clone();
            async move {
                let s = api.cluster_status().await?;
                ensure!(member_ids(&s) == vec![1, 2, 3, 4], "members: {s}");
                Ok(())
            }
        })
        .await?;
    }

    // Remove node 4 (through a node of the first three that does not lead).
    let leader_now = c.leader().await?;
    let via = (1..=3).find(|id| *id != leader_now).context("a non-leader")?;
    let r = c
        .client(via)
        .with_timeout(std::time::Duration::from_secs(60))
        .delete("/api/v1/cluster/nodes/4")
        .await?
        .expect(200)?;
    assert_eq!(r.json, json!({"ok": true}));
    for id in 1..=3 {
        let api = c.client(id);
        wait_until(&format!("node {id} to list members 1-3 with a leader among them"), WAIT, || {
            let api = api.clone();
            async move {
                let s = api.cluster_status().await?;
                ensure!(member_ids(&s) == vec![1, 2, 3], "members: {s}");
                ensure!(leader_of(&s).is_some_and(|l| (1..=3).contains(&l)), "leader: {s}");
                Ok(())
            }
        })
        .await?;
    }

    // Writes still work, node 4 still running, then with node 4 gone.
    let after = c.client(via).create_job(&job("after-shrinking")).await?;
    for id in 1..=3 {
        let got = c.client(id).get_job(&job_id(&after), false).await?.expect(200)?.field("job")?;
        assert_eq!(got, after, "node {id}");
    }
    c.kill(4)?;
    let last = c.client(via).create_job(&job("node-4-stopped")).await?;
    let all = c.client(leader_now).all_jobs(false).await?;
    let mut want: Vec<String> = [&existing, &new, &via4, &after, &last].iter().map(|j| job_id(j)).collect();
    want.sort();
    assert_eq!(all.iter().map(job_id).collect::<Vec<_>>(), want);
    c.stop()
}

/// A write sent to a follower is logged on the leader under the request id the client sent
/// (and got back), so one id follows the request across the hop.
#[tokio::test]
async fn concurrent_writes_through_a_follower_each_get_their_own_answer() -> Result<()> {
    // Concurrent writes travel to the leader together and share log entries; each must still
    // get its own answer, and a write must see the ones before it in its entry.
    let c = TestCluster::start(3).await?;
    let leader = c.leader().await?;
    let f = c.client(c.follower().await?);
    let doomed = job_id(&c.client(leader).create_job(&job("doomed")).await?);
    let creates = (0..40).map(|i| {
        let f = f.clone();
        async move { f.post("/api/v1/jobs", &job(&format!("together-{i}"))).await }
    });
    let deletes = (0..10).map(|_| {
        let (f, path) = (f.clone(), format!("/api/v1/jobs/{doomed}"));
        async move { f.delete(&path).await }
    });
    let (created, deleted) = tokio::join!(futures::future::join_all(creates), futures::future::join_all(deletes));
    let mut ids = std::collections::BTreeSet::new();
    for r in created {
        ids.insert(job_id(&r?.expect(201)?.field("job")?));
    }
    ensure!(ids.len() == 40, "{} distinct ids for 40 creates", ids.len());
    let statuses: Vec<u16> = deleted.into_iter().map(|r| r.map(|r| r.status)).collect::<Result<_>>()?;
    ensure!(
        statuses.iter().filter(|s| **s == 200).count() == 1 && statuses.iter().filter(|s| **s == 404).count() == 9,
        "one delete succeeds, nine find nothing: {statuses:?}"
    );
    let listed: std::collections::BTreeSet<String> = f.all_jobs(false).await?.iter().map(job_id).collect();
    ensure!(listed == ids, "listed {} jobs, created {}", listed.len(), ids.len());
    // The leader took some of them into its log together.
    let metrics = c.client(leader).anonymous().get("/metrics").await?.expect(200)?.text;
    let value = |series: &str| {
        metrics.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse::<f64>().ok())
    };
    let (entries, commands) =
        (value("raftcron_raft_proposal_batch_size_count"), value("raftcron_raft_proposal_batch_size_sum"));
    ensure!(
        entries.zip(commands).is_some_and(|(e, c)| c > e),
        "no entry held more than one command: {entries:?} entries, {commands:?} commands"
    );
    // It timed every entry's way through Raft, and its AppendEntries to each follower.
    for series in ["raftcron_raft_write_duration_seconds_count", "raftcron_raft_log_sync_duration_seconds_count"] {
        ensure!(value(series).is_some_and(|n| n >= 1.0), "{series} missing or 0:\n{metrics}");
    }
    for peer in (1..=3u64).filter(|n| *n != leader) {
        let series = format!("raftcron_raft_append_round_trip_seconds_count{{peer=\"{peer}\"}}");
        ensure!(value(&series).is_some_and(|n| n >= 1.0), "{series} missing or 0:\n{metrics}");
    }
    c.stop()
}

#[tokio::test]
async fn a_forwarded_write_keeps_its_request_id_on_the_leader() -> Result<()> {
    let c =
        TestCluster::start_with_env(3, &[], &[("RAFTCRON_LOG", "info,raftcron_node::cluster::forward=debug")]).await?;
    let leader = c.leader().await?;
    let follower = c.follower().await?;
    let body = serde_json::to_vec(&job("traced"))?;
    let r = c
        .client(follower)
        .raw(RawRequest {
            method: "POST".into(),
            path: "/api/v1/jobs".into(),
            headers: vec![
                ("X-Request-Id".into(), "req-forwarded-7".into()),
                ("Content-Type".into(), "application/json".into()),
            ],
            body: Some(body),
        })
        .await?
        .expect(201)?;
    ensure!(r.headers.get("x-request-id").is_some_and(|v| v == "req-forwarded-7"), "{:?}", r.headers);
    let line = c
        .log_text(leader)
        .lines()
        .find(|l| l.contains("forwarded request served") && l.contains("req-forwarded-7"))
        .map(str::to_owned);
    ensure!(
        line.as_deref().is_some_and(|l| l.contains("op=\"write\"") || l.contains("op=write")),
        "leader log: {line:?}"
    );
    c.stop()
}

/// `raftcron_raft_eager_appends_total` of node `id`.
async fn eager_appends(c: &TestCluster, id: u64) -> Result<f64> {
    let metrics = c.client(id).anonymous().get("/metrics").await?.expect(200)?.text;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("raftcron_raft_eager_appends_total ")?.trim().parse::<f64>().ok())
        .context("no raftcron_raft_eager_appends_total")
}

#[tokio::test]
async fn a_lone_writes_entry_goes_to_the_followers_while_the_leader_syncs_unless_switched_off() -> Result<()> {
    for eager in [true, false] {
        let flag = format!("--eager-replication={eager}");
        let c = TestCluster::start_with(3, &[flag.as_str()]).await?;
        let leader = c.leader().await?;
        // Counted from here: a follower may have led for a moment while the cluster formed.
        let mut followers_before = Vec::new();
        for f in c.followers().await? {
            followers_before.push((f, eager_appends(&c, f).await?));
        }
        let before = eager_appends(&c, leader).await?;
        let api = c.client(leader);
        let mut ids = Vec::new();
        for i in 0..20 {
            ids.push(job_id(&api.create_job(&job(&format!("lone-{i}"))).await?));
        }
        let sent = eager_appends(&c, leader).await? - before;
        if eager {
            // One writer: an entry finds at least the follower that answered the last one idle,
            // unless a heartbeat is in flight to it just then.
            ensure!(sent >= 10.0, "{sent} eager AppendEntries for 20 lone writes to 2 followers");
        } else {
            ensure!(sent == 0.0, "{sent} eager AppendEntries with --eager-replication=false");
        }
        ensure!(c.leader().await? == leader, "the leader changed during the writes");
        for (f, before) in followers_before {
            ensure!(eager_appends(&c, f).await? == before, "follower {f} sent entries eagerly");
            let listed: Vec<String> = c.client(f).all_jobs(false).await?.iter().map(job_id).collect();
            ensure!(listed.len() == ids.len() && ids.iter().all(|id| listed.contains(id)), "follower {f}: {listed:?}");
        }
        c.stop()?;
    }
    Ok(())
}
