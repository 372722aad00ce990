//! Crashes at the worst moments, on real processes, through the node's failpoints (built with
//! `--features raftcron-node/failpoints`, as `make test` does; armed with `FAILPOINTS`):
//! - after a claim batch is committed and before its slots are sent: every slot still arrives,
//!   none of that batch twice (the next owner sends the claimed slots; an at-most-once job records
//!   them `unknown` instead); only a slot of an earlier batch in flight at the exit is re-sent;
//! - after a slot was sent and before its result is recorded: the slot is re-sent once, with the
//!   same `Idempotency-Key` (as is any other slot the process had sent without recording it),
//!   and nothing else is duplicated or lost;
//! - a claim batch committed but its answer lost on the way back (the leader died right after
//!   the commit): its slots are still sent, once each, by the node that claimed them;
//! - before a Raft append is synced: no acknowledged write is lost;
//! - a leader's entry sent eagerly to the followers, then lost from its own log before its sync
//!   (a power cut): the nodes still agree on one history holding every acknowledged write;
//! - midway through a snapshot install: the node finishes the install when it restarts.
//!
//! And one failpoint that makes a node tell its peers an older release level
//! (`advertise-level`): the cluster refuses what that release could not read (a schedule's
//! millisecond offset) until the node is upgraded, and does not let such a node join.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Context, Result};
use axum::http::HeaderMap;
use chrono::DateTime;
use common::*;
use serde_json::{json, Value};

/// The exit status of a node stopped by a failpoint (`raftcron_node::failpoint::EXIT_CODE`).
const FAILPOINT_EXIT: i32 = 111;

/// One delivery at the sink: its `Idempotency-Key`, its scheduled instant and when it arrived
/// (all in ms since the epoch).
#[derive(Clone, Debug)]
struct Hit {
    key: String,
    at: i64,
    arrived: i64,
}

type Hits = Arc<Mutex<Vec<Hit>>>;

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

async fn start_sink() -> Result<(SocketAddr, Hits, tokio::task::JoinHandle<()>)> {
    let hits: Hits = Arc::default();
    let h = hits.clone();
    let app = axum::Router::new().route(
        "/hit",
        axum::routing::any(move |headers: HeaderMap| {
            let h = h.clone();
            async move {
                let get = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
                let at = DateTime::parse_from_rfc3339(&get("x-raftcron-scheduled-at")).map(|t| t.timestamp_millis());
                if let Ok(mut v) = h.lock() {
                    v.push(Hit { key: get("idempotency-key"), at: at.unwrap_or(0), arrived: now_ms() });
                }
                "ok"
            }
        }),
    );
    let (addr, task) = serve_local(app).await?;
    Ok((addr, hits, task))
}

/// The node that fired the job's latest run.
async fn owner_of(api: &Api, job: &str) -> Result<u64> {
    let (api, job) = (api.clone(), job.to_string());
    wait_until("the job to have fired", WAIT, || {
        let (api, job) = (api.clone(), job.clone());
        async move {
            let runs = api.get(&format!("/api/v1/jobs/{job}/runs?page_size=5")).await?.expect(200)?.json;
            runs["runs"]
                .as_array()
                .and_then(|r| r.iter().find_map(|r| r["node_id"].as_u64()))
                .context("no run with a node yet")
        }
    })
    .await
}

/// What a crash of a job's owner at a failpoint left behind.
struct Crashed {
    /// Every delivery the sink saw.
    hits: Vec<Hit>,
    /// The first and last scheduled instants judged.
    first: i64,
    last: i64,
    /// When the exit of the crashed process was seen (every send of that process came before).
    crashed_at: i64,
    /// The job's runs, as the cluster recorded them.
    runs: Vec<Value>,
}

/// Arms `point` on the node that fires the job and restarts it cleanly (fast enough to keep its
/// shards), waits for the failpoint to stop it, restarts it unarmed, and returns the sink's hits
/// and the crash instant.
async fn crash_owner_at(point: &str, delivery: &str) -> Result<Crashed> {
    let (sink, hits, sink_task) = start_sink().await?;
    let mut c = TestCluster::start_with(3, &["--allow-private-targets"]).await?;
    let api = c.client(c.leader().await?);
    let mut body = job(&format!("crash at {point}"));
    body["url"] = json!(format!("http://{sink}/hit"));
    body["cron_expression"] = json!("* * * * * *");
    body["max_retries"] = json!(0);
    body["delivery"] = json!(delivery);
    let made = api.create_job(&body).await?;
    let id = job_id(&made);
    let first =
        DateTime::parse_from_rfc3339(made["created_at"].as_str().unwrap_or_default())?.timestamp_millis() / 1000 * 1000
            + 1000;
    let owner = owner_of(&api, &id).await?;
    c.node_env.insert(owner, vec![("FAILPOINTS".into(), format!("{point}=1*return"))]);
    // Stopped cleanly, so that no slot of its own is left in a crash window: the one crash the
    // test judges is the failpoint's (a kill here could leave a sent slot without its result,
    // and the armed process would then crash on re-sending that very slot).
    c.terminate(owner).await?;
    c.restart(owner)?;
    let code = c.wait_exit(owner, Duration::from_secs(60)).await?;
    let crashed_at = now_ms();
    ensure!(code == FAILPOINT_EXIT, "node {owner} exited with {code}, not at the failpoint");
    ensure!(c.log_text(owner).contains(&format!("failpoint {point} reached")), "no failpoint line in the log");
    eprintln!("[failpoints] node {owner} stopped at {point}");
    c.node_env.remove(&owner);
    c.restart(owner)?;
    c.wait_ready(FORM_TIMEOUT).await?;
    tokio::time::sleep(Duration::from_secs(14)).await;
    let leader = c.client(c.leader().await?);
    let runs = leader.get(&format!("/api/v1/jobs/{id}/runs?page_size=100")).await?.expect(200)?.json;
    let runs = runs["runs"].as_array().cloned().unwrap_or_default();
    let hits = hits.lock().map(|h| h.clone()).unwrap_or_default();
    ensure!(c.panics_in_logs().is_empty(), "panics: {:?}", c.panics_in_logs());
    c.stop()?;
    sink_task.abort();
    let last = (now_ms() - 4000) / 1000 * 1000;
    eprintln!("[failpoints] judged {} s, the crash {} s in", (last - first) / 1000, (crashed_at - first) / 1000);
    Ok(Crashed { hits, first, last, crashed_at, runs })
}

/// Per scheduled instant from `first` to `last`, its deliveries in order of arrival.
fn tally(c: &Crashed) -> BTreeMap<i64, Vec<&Hit>> {
    let mut out: BTreeMap<i64, Vec<&Hit>> = (c.first..=c.last).step_by(1000).map(|t| (t, Vec::new())).collect();
    for h in &c.hits {
        if let Some(e) = out.get_mut(&h.at) {
            e.push(h);
        }
    }
    for hits in out.values_mut() {
        hits.sort_by_key(|h| h.arrived);
    }
    out
}

/// Instants that never arrived, and instants that arrived more than once.
fn gaps_and_repeats(c: &Crashed) -> (Vec<i64>, BTreeMap<i64, Vec<&Hit>>) {
    let counts = tally(c);
    let gaps = counts.iter().filter(|(_, h)| h.is_empty()).map(|(t, _)| *t).collect();
    (gaps, counts.into_iter().filter(|(_, h)| h.len() > 1).collect())
}

/// A repeat the crash explains: the crashed process sent the slot (it arrived before the exit),
/// and it was sent once more after, under the same key. A slot whose result was recorded, or one
/// the crashed process never sent, may not arrive twice.
fn is_crash_resend(c: &Crashed, hits: &[&Hit]) -> bool {
    matches!(hits, [a, b] if a.key == b.key && a.arrived <= c.crashed_at && b.arrived > c.crashed_at)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_claiming_and_before_sending_loses_and_repeats_nothing() -> Result<()> {
    let c = crash_owner_at("claim-committed-before-send", "at_least_once").await?;
    let (gaps, repeats) = gaps_and_repeats(&c);
    let slots = (c.last - c.first) / 1000 + 1;
    eprintln!("[failpoints] claim-committed-before-send: {slots} slots, gaps {gaps:?}, repeats {repeats:?}");
    ensure!(slots >= 8, "too short to judge: {slots} slots");
    // The slots claimed in that batch were never sent: none of them may arrive twice. A slot of
    // an earlier batch that was in flight when the process exited is the ordinary crash window:
    // re-sent once, with the same key.
    ensure!(gaps.is_empty(), "gaps {gaps:?}");
    let unexplained: Vec<_> = repeats.iter().filter(|(_, h)| !is_crash_resend(&c, h)).collect();
    ensure!(unexplained.is_empty(), "repeats the crash does not explain: {unexplained:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_sending_repeats_that_slot_once_with_the_same_key() -> Result<()> {
    let c = crash_owner_at("fire-after-send", "at_least_once").await?;
    let (gaps, repeats) = gaps_and_repeats(&c);
    eprintln!(
        "[failpoints] fire-after-send: {} slots, gaps {gaps:?}, re-sends {repeats:?}",
        (c.last - c.first) / 1000 + 1
    );
    ensure!(gaps.is_empty(), "gaps {gaps:?}");
    // The slot sent just before the exit is re-sent. So is any other slot the process had sent
    // without recording its result yet (a restart that found several slots due sends them at
    // once), and nothing else.
    ensure!(!repeats.is_empty(), "the slot cut off by the crash was not re-sent");
    let unexplained: Vec<_> = repeats.iter().filter(|(_, h)| !is_crash_resend(&c, h)).collect();
    ensure!(unexplained.is_empty(), "repeats the crash does not explain (or under another key): {unexplained:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_at_most_once_job_records_unknown_instead_of_resending() -> Result<()> {
    let c = crash_owner_at("fire-after-send", "at_most_once").await?;
    let (_, repeats) = gaps_and_repeats(&c);
    ensure!(repeats.is_empty(), "an at-most-once slot arrived twice: {repeats:?}");
    // The slot cut off by the crash was delivered once, and its run says its outcome is unknown.
    let unknown = c.runs.iter().filter(|r| r["status"] == "unknown").count();
    ensure!(unknown >= 1, "no run recorded as unknown: {:?}", c.runs);
    eprintln!(
        "[failpoints] at_most_once: {} slots, no duplicate, {unknown} run(s) recorded unknown",
        (c.last - c.first) / 1000 + 1
    );
    Ok(())
}

/// Found by the chaos suite (a kill of the leader right after it committed a claim batch left
/// every slot of that batch neither sent nor recorded as missed): the claimant took the lost
/// answer for "not claimed", and later took its own claim in flight for "already being sent".
/// Every node here loses the answers of two claim rounds; every slot still arrives, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_whose_answer_was_lost_is_still_sent_once() -> Result<()> {
    const JOBS: usize = 8;
    let (sink, hits, sink_task) = start_sink().await?;
    let c = TestCluster::start_with_env(
        3,
        &["--allow-private-targets"],
        &[("FAILPOINTS", "claim-answer-lost=4*off->2*return->4*off->1*return")],
    )
    .await?;
    let api = c.client(c.leader().await?);
    let mut first = 0;
    let mut ids = Vec::new();
    for i in 0..JOBS {
        let mut body = job(&format!("lost answer {i}"));
        body["url"] = json!(format!("http://{sink}/hit?job={i}"));
        body["cron_expression"] = json!("* * * * * *");
        body["max_retries"] = json!(0);
        let made = api.create_job(&body).await?;
        let created = DateTime::parse_from_rfc3339(made["created_at"].as_str().unwrap_or_default())?;
        first = first.max(created.timestamp_millis() / 1000 * 1000 + 1000);
        ids.push(job_id(&made));
    }
    tokio::time::sleep(Duration::from_secs(20)).await;
    let last = (now_ms() - 4000) / 1000 * 1000;
    let lost: usize = (1..=3).map(|id| c.log_text(id).matches("failpoint claim-answer-lost").count()).sum();
    let hits = hits.lock().map(|h| h.clone()).unwrap_or_default();
    ensure!(c.panics_in_logs().is_empty(), "panics: {:?}", c.panics_in_logs());
    c.stop()?;
    sink_task.abort();
    ensure!(lost >= 2, "the failpoint fired {lost} times; the test judged nothing");
    // Per job (the key names the job and the instant), per instant: exactly one delivery.
    let mut per_slot: BTreeMap<(String, i64), usize> = BTreeMap::new();
    for h in &hits {
        *per_slot.entry((h.key.clone(), h.at)).or_default() += 1;
    }
    let mut per_instant: BTreeMap<i64, usize> = BTreeMap::new();
    for (_, at) in per_slot.keys() {
        *per_instant.entry(*at).or_default() += 1;
    }
    let dups: Vec<_> = per_slot.iter().filter(|(_, n)| **n > 1).collect();
    let gaps: Vec<_> =
        (first..=last).step_by(1000).filter(|t| per_instant.get(t).copied().unwrap_or(0) < JOBS).collect();
    eprintln!(
        "[failpoints] {lost} claim answers lost; {} s judged, {} deliveries, {} gaps, {} duplicates",
        (last - first) / 1000,
        hits.len(),
        gaps.len(),
        dups.len()
    );
    ensure!(last - first >= 10_000, "judged only {} ms", last - first);
    ensure!(gaps.is_empty(), "instants where some job's slot never arrived: {gaps:?}");
    ensure!(dups.is_empty(), "slots delivered twice: {dups:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_before_a_log_append_is_synced_loses_no_acknowledged_write() -> Result<()> {
    let mut c = TestCluster::start(3).await?;
    let leader = c.leader().await?;
    let victim = c.followers().await?.into_iter().next().context("no follower")?;
    c.node_env.insert(victim, vec![("FAILPOINTS".into(), "log-append-before-sync=1*off->1*return".into())]);
    c.kill(victim)?;
    c.restart(victim)?;
    let api = c.client(leader);
    let mut acked = Vec::new();
    // Writes one by one until the follower stops at the failpoint (bounded).
    for i in 0..60 {
        acked.push(job_id(&api.create_job(&job(&format!("durable-{i}"))).await?));
        if i >= 5 && c.wait_exit(victim, Duration::from_millis(200)).await.is_ok() {
            break;
        }
    }
    for i in 0..5 {
        acked.push(job_id(&api.create_job(&job(&format!("after-{i}"))).await?));
    }
    let code = FAILPOINT_EXIT * i32::from(c.running().len() == 2) + i32::from(c.running().len() != 2);
    ensure!(code == FAILPOINT_EXIT, "node {victim} exited with {code}");
    c.node_env.remove(&victim);
    c.restart(victim)?;
    c.wait_ready(FORM_TIMEOUT).await?;
    let v = c.client(victim);
    wait_until("the restarted node to hold every acknowledged job", WAIT, || {
        let (v, acked) = (v.clone(), acked.clone());
        async move {
            let have: Vec<String> = v.all_jobs(true).await?.iter().map(job_id).collect();
            let missing: Vec<&String> = acked.iter().filter(|a| !have.contains(a)).collect();
            ensure!(missing.is_empty(), "missing {missing:?}");
            Ok(())
        }
    })
    .await?;
    c.stop()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_loses_an_entry_it_sent_eagerly_leaves_one_history() -> Result<()> {
    let mut c = TestCluster::start(3).await?;
    let first = c.leader().await?;
    let mut acked = Vec::new();
    for i in 0..5 {
        acked.push(job_id(&c.client(first).create_job(&job(&format!("before-{i}"))).await?));
    }
    // Arm both followers (restarted one at a time, so the leader keeps its quorum), then kill
    // the leader: the next leader is armed, and its first lone command entry goes out eagerly,
    // then vanishes from its own log as a power cut before the sync would take it.
    let armed = c.followers().await?;
    for &f in &armed {
        c.node_env.insert(f, vec![("FAILPOINTS".into(), "log-append-sent-then-lost=1*return".into())]);
        c.kill(f)?;
        c.restart(f)?;
        c.wait_ready(FORM_TIMEOUT).await?;
    }
    c.kill(first)?;
    let mut crashed = None;
    'writes: for i in 0..100 {
        for &f in &armed {
            let r = c
                .client(f)
                .with_timeout(Duration::from_secs(2))
                .post("/api/v1/jobs", &job(&format!("during-{i}")))
                .await;
            if let Ok(r) = r {
                if r.status == 201 {
                    acked.push(job_id(&r.field("job")?));
                }
            }
            if let Ok(code) = c.wait_exit(f, Duration::from_millis(100)).await {
                crashed = Some((f, code));
                break 'writes;
            }
        }
    }
    let (victim, code) = crashed.context("no armed leader reached the failpoint in 100 rounds of writes")?;
    ensure!(code == FAILPOINT_EXIT, "node {victim} exited with {code}");
    // Everyone back, unarmed: the entry the victim lost is either in every log or in none.
    for &f in &armed {
        c.node_env.remove(&f);
        if c.running().contains(&f) {
            c.kill(f)?;
        }
    }
    for id in 1..=3 {
        c.restart(id)?;
    }
    let leader = c.wait_ready(FORM_TIMEOUT).await?;
    acked.push(job_id(&c.client(leader).create_job(&job("after")).await?));
    let clients = c.clients();
    wait_until("every node to hold the same jobs, every acknowledged one among them", WAIT, || {
        let (clients, acked) = (clients.clone(), acked.clone());
        async move {
            let mut lists = Vec::new();
            for api in &clients {
                let mut have: Vec<String> = api.all_jobs(true).await?.iter().map(job_id).collect();
                have.sort();
                let missing: Vec<&String> = acked.iter().filter(|a| !have.contains(a)).collect();
                ensure!(missing.is_empty(), "node {} misses {missing:?}", api.node_id);
                lists.push(have);
            }
            ensure!(lists.windows(2).all(|w| w[0] == w[1]), "the nodes disagree: {lists:?}");
            Ok(())
        }
    })
    .await?;
    c.stop()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_midway_through_a_snapshot_install_is_finished_on_restart() -> Result<()> {
    let mut c = TestCluster::start_with(3, &["--snapshot-every", "20"]).await?;
    let api = c.client(c.leader().await?);
    for i in 0..60 {
        api.create_job(&job(&format!("snap-{i}"))).await?;
    }
    let mut n = 0;
    wait_until("the leader to purge its log", WAIT, || {
        let api = api.clone();
        n += 1;
        async move {
            api.create_job(&job(&format!("nudge-{n}"))).await?;
            let s: Value = api.cluster_status().await?;
            ensure!(s["purged_index"].as_u64().unwrap_or(0) >= 40, "purged {}", s["purged_index"]);
            Ok(())
        }
    })
    .await?;
    let total = api.all_jobs(false).await?.len();
    c.node_env.insert(4, vec![("FAILPOINTS".into(), "snapshot-install-midway=1*return".into())]);
    c.start_idle(4).await?;
    let add = json!({"node_id": 4, "addr": c.addr(4).to_string()});
    let _ = api.with_timeout(Duration::from_secs(30)).post("/api/v1/cluster/nodes", &add).await;
    let code = c.wait_exit(4, Duration::from_secs(60)).await?;
    ensure!(code == FAILPOINT_EXIT, "node 4 exited with {code}");
    c.node_env.remove(&4);
    c.restart(4)?;
    ensure!(
        wait_until("node 4 to resume its install", WAIT, || {
            let log = c.log_text(4);
            async move {
                ensure!(log.contains("finishing an interrupted snapshot install"), "not yet");
                Ok(())
            }
        })
        .await
        .is_ok(),
        "no resumed install in node 4's log"
    );
    // The failed add left node 4 out of the membership: add it again; it catches up.
    api.with_timeout(Duration::from_secs(60)).post("/api/v1/cluster/nodes", &add).await?.expect(200)?;
    let four = c.client(4);
    wait_until("node 4 to hold every job after finishing the install", WAIT, || {
        let four = four.clone();
        async move {
            let n = four.all_jobs(true).await?.len();
            ensure!(n >= total, "node 4 has {n} of {total}");
            Ok(())
        }
    })
    .await?;
    c.stop()?;
    Ok(())
}

/// A node of an older release (it tells its peers level 1) holds back what it could not read:
/// a schedule with a millisecond offset is refused with 409 naming it, on create and update,
/// through the leader and through a follower, while everything else is written; once it is
/// upgraded, the same create succeeds and the cluster's level is raised. A node of an older
/// release is not added to the cluster. Once the level is raised, a stopped member holds nothing
/// back, and the stopped node cannot come back with the older release.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_of_an_older_release_holds_back_offsets_until_it_is_upgraded_and_cannot_join() -> Result<()> {
    const OLDER: &str = "advertise-level=return(1)";
    let old = 3;
    let mut c = TestCluster::start_with_env_on(3, &[], &[old], &[("FAILPOINTS", OLDER)]).await?;
    let (leader, other) = (c.leader().await?, c.followers().await?[0]);
    let mut offset = job("every minute at +250ms");
    offset["cron_expression"] = json!("0 * * * * * +250ms");
    let needle = format!("node {old} runs an older release (level 1)");
    for at in [leader, other] {
        let api = c.client(at);
        // The leader learns its followers' levels from their first answers.
        let r = wait_until("the older node's level to be known", WAIT, || {
            let (api, offset) = (api.clone(), offset.clone());
            async move {
                let r = api.post("/api/v1/jobs", &offset).await?;
                ensure!(!r.message().contains("has not answered"), "{}", r.text);
                Ok(r)
            }
        })
        .await?;
        let r = r.expect_error(409, "CONFLICT")?;
        ensure!(r.message().contains(&needle), "through node {at}: {}", r.text);
    }
    let api = c.client(other);
    let plain = api.create_job(&job("a plain schedule")).await?;
    let id = job_id(&plain);
    let r = api.patch(&format!("/api/v1/jobs/{id}"), &json!({"cron_expression": "0 * * * * +5ms"})).await?;
    ensure!(r.expect_error(409, "CONFLICT")?.message().contains(&needle), "update");
    ensure!(api.all_jobs(false).await?.len() == 1, "a refused write changed something");

    // Upgraded: the same create is written.
    c.node_env.remove(&old);
    c.terminate(old).await?;
    c.restart(old)?;
    c.wait_ready(FORM_TIMEOUT).await?;
    let created = wait_until("the upgraded node's level to be known", WAIT, || {
        let (api, offset) = (api.clone(), offset.clone());
        async move { Ok(api.post("/api/v1/jobs", &offset).await?.expect(201)?.json) }
    })
    .await?;
    ensure!(created["job"]["cron_expression"] == "0 * * * * * +250ms", "{created}");

    // A node of an older release asks to join: refused, and not left a member.
    c.node_env.insert(4, vec![("FAILPOINTS".into(), OLDER.into())]);
    c.start_idle(4).await?;
    let add = json!({"node_id": 4, "addr": c.addr(4).to_string()});
    let r = api.with_timeout(Duration::from_secs(60)).post("/api/v1/cluster/nodes", &add).await?;
    let r = r.expect_error(409, "CONFLICT")?;
    ensure!(r.message().contains("node 4 runs an older release (level 1)"), "{}", r.text);
    let status = api.cluster_status().await?;
    ensure!(member_ids(&status) == vec![1, 2, 3], "members after the refusal: {status}");

    // Every member runs level 2: the cluster's level was raised, on every node.
    for n in [1, 2, 3] {
        let api = c.client(n);
        wait_until("the cluster's level to reach every node", WAIT, || {
            let api = api.clone();
            async move {
                let s = api.cluster_status().await?;
                ensure!(s["cluster_level"] == 2 && s["release_level"] == 2, "node {n}: {s}");
                Ok(())
            }
        })
        .await?;
    }
    // So a stopped member no longer holds an offset back.
    c.terminate(old).await?;
    let survivor = c.client(1);
    let mut second = offset.clone();
    second["name"] = json!("while node 3 is down");
    second["cron_expression"] = json!("30 * * * * * +750ms");
    let created = wait_until("an offset written with node 3 stopped", WAIT, || {
        let (api, second) = (survivor.clone(), second.clone());
        async move { Ok(api.post("/api/v1/jobs", &second).await?.expect(201)?.json) }
    })
    .await?;
    ensure!(created["job"]["cron_expression"] == "30 * * * * * +750ms", "{created}");
    // And node 3 cannot come back with the older release: it stops at once, saying why.
    c.node_env.insert(old, vec![("FAILPOINTS".into(), OLDER.into())]);
    c.restart(old)?;
    let code = c.wait_exit(old, Duration::from_secs(30)).await?;
    ensure!(code != 0, "node 3 of level 1 exited with {code} on a level-2 state");
    let log = c.log_text(old);
    ensure!(log.contains("the cluster's data is of level 2"), "node 3's log: {log}");
    ensure!(c.panics_in_logs().is_empty(), "panics: {:?}", c.panics_in_logs());
    c.stop()?;
    Ok(())
}
