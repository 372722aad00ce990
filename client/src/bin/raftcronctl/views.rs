//! How each resource looks as a table. Header values are never shown: only header names
//! (the API masks the values anyway, and [`masked`] masks them again before any output).

use raftcron_client::*;

use crate::render::{details, opt, short, table, time};

/// The job with every header value replaced by the mask.
pub fn masked(mut job: Job) -> Job {
    for v in job.headers.values_mut() {
        *v = MASKED_VALUE.to_string();
    }
    job
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_string()
}

pub fn jobs(list: &[Job]) -> String {
    let rows = list
        .iter()
        .map(|j| {
            vec![
                j.id.to_string(),
                short(&j.name, 30),
                j.cron_expression.clone(),
                j.timezone.clone(),
                j.method.clone(),
                short(&j.url, 50),
                yes_no(j.is_active),
                time(j.next_run_at),
                opt(j.last_status.as_deref()),
            ]
        })
        .collect();
    table(&["ID", "NAME", "SCHEDULE", "TZ", "METHOD", "URL", "ACTIVE", "NEXT RUN", "LAST STATUS"], rows)
}

pub fn job(j: &Job) -> String {
    let headers = if j.headers.is_empty() {
        "-".to_string()
    } else {
        j.headers.keys().cloned().collect::<Vec<_>>().join(", ") + " (values hidden)"
    };
    let body = match &j.body {
        Some(b) if !b.is_empty() => format!("{} bytes", b.len()),
        _ => "-".into(),
    };
    details(vec![
        ("id", j.id.to_string()),
        ("name", j.name.clone()),
        ("url", j.url.clone()),
        ("method", j.method.clone()),
        ("schedule", j.cron_expression.clone()),
        ("timezone", j.timezone.clone()),
        ("active", yes_no(j.is_active)),
        ("next run", time(j.next_run_at)),
        ("last run", time(j.last_run_at)),
        ("last status", opt(j.last_status.as_deref())),
        ("consecutive failures", j.consecutive_failures.to_string()),
        ("headers", headers),
        ("body", body),
        ("timeout", format!("{}s", j.timeout_seconds)),
        ("retries", format!("{} (every {}s)", j.max_retries, j.retry_delay_seconds)),
        ("notify on failure", format!("{} (after {})", yes_no(j.notify_on_failure), j.notify_after_failures)),
        ("starting deadline", format!("{}s", j.starting_deadline_seconds)),
        ("concurrency policy", j.concurrency_policy.clone()),
        ("delivery", j.delivery.clone()),
        ("follow redirects", j.follow_redirects.to_string()),
        ("created", time(Some(j.created_at))),
        ("updated", time(Some(j.updated_at))),
    ])
}

pub fn runs(list: &[Run]) -> String {
    let rows = list
        .iter()
        .map(|r| {
            vec![
                r.id.clone(),
                time(Some(r.scheduled_at)),
                r.status.clone(),
                opt(r.http_status),
                r.attempts.to_string(),
                opt(r.duration_ms.map(|d| format!("{d}ms"))),
                opt(r.lateness_ms.map(|d| format!("{d}ms"))),
                opt(r.node_id),
                short(r.error.as_deref().unwrap_or("-"), 60),
            ]
        })
        .collect();
    table(&["RUN", "SCHEDULED", "STATUS", "HTTP", "ATTEMPTS", "DURATION", "LATE", "NODE", "ERROR"], rows)
}

pub fn run(r: &Run) -> String {
    details(vec![
        ("run", r.id.clone()),
        ("scheduled", time(Some(r.scheduled_at))),
        ("status", r.status.clone()),
        ("http status", opt(r.http_status)),
        ("attempts", r.attempts.to_string()),
        ("node", opt(r.node_id)),
        ("error", opt(r.error.as_deref())),
    ])
}

fn list_or_dash(v: &[String]) -> String {
    if v.is_empty() {
        "-".into()
    } else {
        v.join(",")
    }
}

pub fn keys(list: &[ApiKey]) -> String {
    let rows = list
        .iter()
        .map(|k| {
            vec![
                k.id.clone(),
                short(&k.name, 30),
                k.prefix.clone(),
                k.kind.clone(),
                short(&list_or_dash(&k.scopes), 50),
                k.tenant.clone(),
                time(k.expires_at),
                time(k.last_used_at),
            ]
        })
        .collect();
    table(&["ID", "NAME", "PREFIX", "KIND", "SCOPES", "TENANT", "EXPIRES", "LAST USED"], rows)
}

pub fn key(k: &ApiKey) -> String {
    details(vec![
        ("id", k.id.clone()),
        ("name", k.name.clone()),
        ("prefix", k.prefix.clone()),
        ("kind", k.kind.clone()),
        ("scopes", list_or_dash(&k.scopes)),
        ("allowed from", if k.allowed_cidrs.is_empty() { "anywhere".into() } else { k.allowed_cidrs.join(",") }),
        ("immutable", yes_no(k.immutable)),
        ("tenant", k.tenant.clone()),
        ("expires", time(k.expires_at)),
        ("last used", time(k.last_used_at)),
        ("created", time(Some(k.created_at))),
        ("updated", time(Some(k.updated_at))),
    ])
}

pub fn tenants(list: &[Tenant]) -> String {
    let rows = list
        .iter()
        .map(|t| {
            vec![
                t.id.clone(),
                short(&t.name, 30),
                t.job_count.to_string(),
                opt(t.max_jobs),
                opt(t.min_interval_seconds.map(|s| format!("{s}s"))),
                opt(t.rate_limit_per_minute.map(|r| format!("{r}/min"))),
                time(Some(t.created_at)),
            ]
        })
        .collect();
    table(&["ID", "NAME", "JOBS", "MAX JOBS", "MIN INTERVAL", "RATE LIMIT", "CREATED"], rows)
}

pub fn tenant(t: &Tenant) -> String {
    details(vec![
        ("id", t.id.clone()),
        ("name", t.name.clone()),
        ("jobs", t.job_count.to_string()),
        ("max jobs", opt(t.max_jobs)),
        ("min interval", opt(t.min_interval_seconds.map(|s| format!("{s}s")))),
        ("rate limit", opt(t.rate_limit_per_minute.map(|r| format!("{r}/min")))),
        ("created", time(Some(t.created_at))),
        ("updated", time(Some(t.updated_at))),
    ])
}

pub fn audit(list: &[AuditEntry]) -> String {
    let rows = list
        .iter()
        .map(|e| {
            vec![
                e.seq.to_string(),
                time(Some(e.at)),
                e.action.clone(),
                e.target_id.clone(),
                e.actor_prefix.clone(),
                e.tenant.clone(),
                opt(e.client_ip.as_deref()),
                short(&e.detail, 60),
            ]
        })
        .collect();
    table(&["SEQ", "AT", "ACTION", "TARGET", "ACTOR", "TENANT", "CLIENT", "DETAIL"], rows)
}

pub fn cluster(c: &ClusterStatus) -> String {
    let summary = details(vec![
        ("answered by", format!("node {}", c.node_id)),
        ("leader", c.leader_id.map(|l| format!("node {l}")).unwrap_or_else(|| "none".into())),
        ("term", c.term.to_string()),
        ("committed index", opt(c.committed_index)),
        ("applied index", opt(c.applied_index)),
        ("last log index", opt(c.last_log_index)),
        ("snapshot index", opt(c.snapshot_index)),
        ("purged index", opt(c.purged_index)),
        ("release level", format!("{} (this node), {} (cluster)", c.release_level, c.cluster_level)),
    ]);
    format!("{summary}\n\n{}", members(&c.members))
}

fn role(r: MemberRole) -> &'static str {
    match r {
        MemberRole::Leader => "leader",
        MemberRole::Follower => "follower",
        MemberRole::Learner => "learner",
    }
}

pub fn members(list: &[Member]) -> String {
    let rows = list
        .iter()
        .map(|m| {
            vec![
                m.node_id.to_string(),
                m.addr.clone(),
                role(m.role).to_string(),
                yes_no(m.voter),
                m.shards.to_string(),
                opt(m.last_contact_ms.map(|ms| format!("{ms}ms"))),
                opt(m.matched_index),
                opt(m.level),
            ]
        })
        .collect();
    table(&["NODE", "ADDR", "ROLE", "VOTER", "SHARDS", "LAST CONTACT", "MATCHED", "LEVEL"], rows)
}

pub fn shards_per_node(s: &ShardList) -> String {
    let unowned = s.shards.iter().filter(|i| i.node_id.is_none()).count();
    let mut rows: Vec<Vec<String>> = s.per_node.iter().map(|(n, c)| vec![n.to_string(), c.to_string()]).collect();
    if unowned > 0 {
        rows.push(vec!["none".into(), unowned.to_string()]);
    }
    format!("{}\n\n{} shards, {} ms lease", table(&["NODE", "SHARDS"], rows), s.shard_count, s.lease_ms)
}

pub fn shards(s: &ShardList) -> String {
    let rows = s.shards.iter().map(|i| vec![i.shard.to_string(), opt(i.node_id), i.epoch.to_string()]).collect();
    table(&["SHARD", "NODE", "EPOCH"], rows)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::{DateTime, Utc};

    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn sample_job() -> Job {
        Job {
            id: uuid::Uuid::nil(),
            name: "nightly backup".into(),
            url: "https://example.com/backup".into(),
            method: "POST".into(),
            cron_expression: "0 2 * * *".into(),
            timezone: "Europe/Berlin".into(),
            headers: BTreeMap::from([("X-Token".to_string(), "plain-secret".to_string())]),
            body: Some("{}".into()),
            timeout_seconds: 30,
            max_retries: 3,
            retry_delay_seconds: 60,
            is_active: true,
            notify_on_failure: true,
            notify_after_failures: 1,
            next_run_at: Some(at("2026-04-28T00:00:00Z")),
            last_run_at: None,
            last_status: Some("succeeded".into()),
            consecutive_failures: 0,
            starting_deadline_seconds: 300,
            concurrency_policy: "allow".into(),
            delivery: "at_least_once".into(),
            follow_redirects: 0,
            created_at: at("2026-04-27T10:05:00Z"),
            updated_at: at("2026-04-27T10:05:00Z"),
        }
    }

    #[test]
    fn a_job_list_is_one_aligned_row_per_job() {
        let t = jobs(&[sample_job()]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("ID                                    NAME"), "{}", lines[0]);
        assert!(lines[1].contains("nightly backup  0 2 * * *  Europe/Berlin  POST"), "{}", lines[1]);
        assert!(lines[1].ends_with("2026-04-28T00:00:00Z  succeeded"), "{}", lines[1]);
    }

    #[test]
    fn header_values_never_reach_any_output() {
        let job = masked(sample_job());
        assert_eq!(job.headers["X-Token"], MASKED_VALUE);
        let shown = self::job(&job);
        assert!(shown.contains("X-Token (values hidden)"));
        assert!(!shown.contains("plain-secret") && !jobs(&[sample_job()]).contains("plain-secret"));
        assert!(shown.contains("body:                  2 bytes"), "{shown}");
    }

    #[test]
    fn members_and_shards_render() {
        let m = Member {
            node_id: 2,
            addr: "127.0.0.1:7002".into(),
            role: MemberRole::Leader,
            voter: true,
            last_contact_ms: Some(12),
            matched_index: Some(40),
            shards: 128,
            level: Some(2),
        };
        assert_eq!(
            members(&[m]),
            "NODE  ADDR            ROLE    VOTER  SHARDS  LAST CONTACT  MATCHED  LEVEL\n\
             2     127.0.0.1:7002  leader  yes    128     12ms          40       2"
        );
        let s = ShardList {
            shard_count: 2,
            lease_ms: 4000,
            shards: vec![
                ShardInfo { shard: 0, node_id: Some(2), epoch: 3, lease_expires_at: None },
                ShardInfo { shard: 1, node_id: None, epoch: 0, lease_expires_at: None },
            ],
            per_node: BTreeMap::from([(2, 1)]),
        };
        assert_eq!(shards_per_node(&s), "NODE  SHARDS\n2     1\nnone  1\n\n2 shards, 4000 ms lease");
        assert_eq!(shards(&s), "SHARD  NODE  EPOCH\n0      2     3\n1      -     0");
    }

    #[test]
    fn keys_show_their_prefix_never_a_secret() {
        let k = ApiKey {
            id: "k1".into(),
            name: "ci".into(),
            prefix: "rcn_ab12".into(),
            kind: "custom".into(),
            scopes: vec!["jobs:read".into(), "jobs:write".into()],
            allowed_cidrs: vec![],
            immutable: false,
            tenant: "default".into(),
            expires_at: None,
            last_used_at: None,
            created_at: at("2026-04-27T10:05:00Z"),
            updated_at: at("2026-04-27T10:05:00Z"),
        };
        let t = keys(std::slice::from_ref(&k));
        assert!(t.lines().nth(1).unwrap().starts_with("k1  ci    rcn_ab12  custom  jobs:read,jobs:write"), "{t}");
        assert!(key(&k).contains("allowed from:  anywhere"), "{}", key(&k));
    }
}
