//! Crashes (SIGKILL): of the leader, then of the whole cluster. Acknowledged writes survive both.

mod common;

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use common::{job, job_id, wait_until, TestCluster, FORM_TIMEOUT, WAIT};

#[tokio::test]
async fn leader_kill_minus_9_then_writes_continue_and_restart_catches_up() -> Result<()> {
    let mut c = TestCluster::start(3).await?;
    let old_leader = c.leader().await?;
    let mut created = Vec::new();
    for i in 0..5 {
        created.push(c.client(old_leader).create_job(&job(&format!("before-kill-{i}"))).await?);
    }

    c.kill(old_leader)?;
    let killed_at = Instant::now();
    let survivors: Vec<_> = c.clients();
    assert_eq!(survivors.len(), 2);

    // Keep writing through the survivors (alternating) until one write succeeds.
    let mut attempt = 0usize;
    let first = wait_until("a write through a survivor after the leader died", WAIT, || {
        attempt += 1;
        let api = survivors[attempt % 2].with_timeout(Duration::from_secs(8));
        let body = job(&format!("during-failover-{attempt}"));
        async move {
            let r = api.post("/api/v1/jobs", &body).await?;
            r.expect(201)?.field("job")
        }
    })
    .await?;
    let to_first_write = killed_at.elapsed();
    eprintln!("leader {old_leader} killed: first successful write after {to_first_write:.2?} ({attempt} attempts)");
    created.push(first);

    let new_leader = c.leader().await?;
    ensure!(new_leader != old_leader, "the dead node {old_leader} is still named leader");
    for i in 0..5 {
        let api = &survivors[i % 2];
        created.push(api.create_job(&job(&format!("after-kill-{i}"))).await?);
    }
    let want: Vec<String> = {
        let mut ids: Vec<String> = created.iter().map(job_id).collect();
        ids.sort();
        ids
    };
    // What the survivors hold (possibly more: a write whose answer was lost may have committed).
    let reference = c.client(new_leader).all_jobs(false).await?;
    let reference_ids: Vec<String> = reference.iter().map(job_id).collect();
    for id in &want {
        ensure!(reference_ids.contains(id), "acknowledged job {id} missing on the new leader");
    }

    // The killed node comes back with its data dir and catches up.
    c.restart(old_leader)?;
    let back = c.client(old_leader);
    let restarted_at = Instant::now();
    let jobs = wait_until(&format!("node {old_leader} to catch up (stale list)"), Duration::from_secs(60), || {
        let (api, n) = (back.clone(), reference.len());
        async move {
            let jobs = api.all_jobs(true).await?;
            ensure!(jobs.len() >= n, "node has {} of {n} jobs", jobs.len());
            Ok(jobs)
        }
    })
    .await?;
    eprintln!("node {old_leader} caught up {:.2?} after its restart", restarted_at.elapsed());
    for j in &reference {
        let same = jobs.iter().find(|k| job_id(k) == job_id(j));
        assert_eq!(same, Some(j), "the restarted node's copy of job {} differs from the leader's", job_id(j));
    }
    c.wait_ready(FORM_TIMEOUT).await?;
    for j in &created {
        let got = back.get_job(&job_id(j), true).await?.expect(200)?.field("job")?;
        assert_eq!(&got, j);
    }
    c.stop()
}

#[tokio::test]
async fn data_survives_a_whole_cluster_restart() -> Result<()> {
    let mut c = TestCluster::start(3).await?;
    let mut expected = Vec::new();
    for i in 0..6u64 {
        let via = c.client(i % 3 + 1);
        expected.push(via.create_job(&job(&format!("durable-{i}"))).await?);
    }
    // An update and a delete must survive too.
    let updated = c
        .client(2)
        .patch(
            &format!("/api/v1/jobs/{}", job_id(&expected[0])),
            &serde_json::json!({"name": "durable-renamed", "max_retries": 7}),
        )
        .await?
        .expect(200)?
        .field("job")?;
    expected[0] = updated;
    let deleted = expected.remove(5);
    c.client(3).delete(&format!("/api/v1/jobs/{}", job_id(&deleted))).await?.expect(200)?;
    expected.sort_by_key(job_id);
    assert_eq!(c.client(1).all_jobs(false).await?, expected);

    for id in 1..=3 {
        c.kill(id)?;
    }
    for id in 1..=3 {
        c.restart(id)?;
    }
    let restarted_at = Instant::now();
    let leader = c.wait_ready(FORM_TIMEOUT).await?;
    eprintln!("whole cluster back (leader {leader}) {:.2?} after the restart", restarted_at.elapsed());

    for api in c.clients() {
        assert_eq!(api.all_jobs(false).await?, expected, "node {} (linearizable)", api.node_id);
        let (probe, want) = (api.clone(), expected.clone());
        wait_until(&format!("node {} to hold every job (stale read)", api.node_id), WAIT, || {
            let (api, want) = (probe.clone(), want.clone());
            async move {
                let got = api.all_jobs(true).await?;
                ensure!(got == want, "stale list: {} jobs, want {}", got.len(), want.len());
                Ok(())
            }
        })
        .await?;
        api.get_job(&job_id(&deleted), false).await?.expect_error(404, "NOT_FOUND")?;
    }
    // And the cluster takes writes again.
    let more = c.client(leader).create_job(&job("after-restart")).await?;
    for api in c.clients() {
        assert_eq!(api.get_job(&job_id(&more), false).await?.expect(200)?.field("job")?, more);
    }
    c.stop()
}

/// A frozen leader (SIGSTOP) keeps the follower's forwarded write waiting on a silent
/// connection, as a leader cut off by a partition does. Once the follower follows the newly
/// elected leader it answers "outcome unknown" instead of waiting out its whole write timeout
/// (10 s), so callers (API clients, the owner's result recorder) retry on the new leader early.
#[tokio::test]
async fn a_write_forwarded_to_a_frozen_leader_gives_up_once_a_new_leader_is_elected() -> Result<()> {
    let mut c = TestCluster::start(3).await?;
    let old_leader = c.leader().await?;
    let follower = c.followers().await?[0];
    c.client(follower).create_job(&job("before-freeze")).await?;
    c.pause(old_leader)?;
    let frozen_at = Instant::now();
    let r = c.client(follower).with_timeout(Duration::from_secs(30)).post("/api/v1/jobs", &job("during-freeze")).await;
    let answered = frozen_at.elapsed();
    let status = c.client(follower).cluster_status().await;
    c.resume(old_leader)?;
    let r = r?;
    eprintln!("forwarded write answered {} after {answered:.2?}", r.status);
    ensure!(
        r.status == 201 || r.error_code() == Some("OUTCOME_UNKNOWN"),
        "a forwarded write to a frozen leader must succeed or be unknown, got {} {}",
        r.status,
        r.message()
    );
    let new_leader = status.ok().as_ref().and_then(common::leader_of);
    ensure!(new_leader.is_some_and(|l| l != old_leader), "no new leader while node {old_leader} was frozen");
    // Well inside the 10 s write timeout: the answer came with the new leader, not the timeout.
    ensure!(answered < Duration::from_secs(8), "the forwarded write waited {answered:.2?} on the frozen leader");
    // And the next write succeeds through the same follower.
    c.client(follower).create_job(&job("after-freeze")).await?;
    c.stop()
}

/// A follower whose leader's process is gone campaigns as soon as the leader's lease ran out,
/// without waiting out its own drawn election timeout too: it finds the leader's address
/// refusing connections (`raft::leader_watch`). A frozen leader's kernel does not refuse
/// connections, so its followers wait for their normal timers, and an early campaign there
/// would be a mistake the test catches.
#[tokio::test]
async fn followers_campaign_early_when_the_leaders_process_is_gone_and_not_when_it_is_frozen() -> Result<()> {
    const EARLY: &str = "campaigning early";
    let mut c = TestCluster::start(3).await?;

    // A frozen leader: a new one is elected by the normal timers.
    let frozen = c.leader().await?;
    let others: Vec<u64> = c.running().into_iter().filter(|id| *id != frozen).collect();
    c.pause(frozen)?;
    let apis: Vec<_> = others.iter().map(|id| c.client(*id)).collect();
    let elected = wait_until("a new leader while the old one is frozen", WAIT, || {
        let apis = apis.clone();
        async move {
            for api in &apis {
                let status = api.with_timeout(Duration::from_secs(2)).cluster_status().await?;
                if let Some(l) = common::leader_of(&status).filter(|l| *l != frozen) {
                    return Ok(l);
                }
            }
            anyhow::bail!("no leader other than the frozen node {frozen} yet")
        }
    })
    .await;
    c.resume(frozen)?;
    let elected = elected?;
    for id in &others {
        ensure!(
            !c.log_text(*id).contains(EARLY),
            "node {id} campaigned early against a frozen leader (its address does not refuse connections)"
        );
    }
    eprintln!("node {frozen} frozen: node {elected} elected by the normal timers");

    // A dead leader: a survivor campaigns early.
    let dead = c.leader().await?;
    c.kill(dead)?;
    let killed_at = Instant::now();
    let survivors: Vec<u64> = c.running();
    let next = c.leader().await?;
    eprintln!("node {dead} killed: node {next} leads after {:.2?}", killed_at.elapsed());
    let early: Vec<u64> = survivors.iter().copied().filter(|id| c.log_text(*id).contains(EARLY)).collect();
    ensure!(!early.is_empty(), "no survivor of the dead leader {dead} campaigned early");
    for id in &early {
        for line in c.log_text(*id).lines().filter(|l| l.contains(EARLY)) {
            eprintln!("node {id}: {line}");
        }
    }
    let metrics = c.client(early[0]).anonymous().get("/metrics").await?.expect(200)?;
    ensure!(
        metrics.text.lines().any(|l| l.starts_with("raftcron_raft_early_campaigns_total ") && !l.ends_with(" 0")),
        "node {} logged an early campaign but its counter did not move",
        early[0]
    );
    c.client(next).create_job(&job("after-the-early-election")).await?;
    c.stop()
}
