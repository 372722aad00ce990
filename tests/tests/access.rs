//! Keys, scopes, tenants, allowlists, rate limits and the audit trail, on real processes.
//!
//! One 3-node cluster carries most checks (each in its own function, run in order); a 1-node
//! cluster behind a "trusted proxy" (the test itself, on 127.0.0.1) checks `X-Forwarded-For`
//! and IPv6 allowlists, and another checks the per-address failed-authentication limit.

mod common;

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use base64::Engine;
use common::*;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Every scope, as the API names them.
const SCOPES: [&str; 8] = [
    "jobs:read",
    "jobs:write",
    "jobs:trigger",
    "runs:read",
    "keys:read",
    "keys:write",
    "cluster:read",
    "cluster:admin",
];

/// The many failing requests of these tests must not trip the failed-authentication limit,
/// except in the test of that limit.
const GENEROUS: &[&str] = &["--auth-failures-per-minute", "100000", "--allow-private-targets"];

fn b64(s: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// `POST /api/v1/keys` as `api`, expecting 201 -> (full key, key object).
async fn make_key(api: &Api, body: Value) -> Result<(String, Value)> {
    let r = api.post("/api/v1/keys", &body).await?.expect(201)?;
    let k = r.field("api_key")?;
    let key = k["key"].as_str().context("no key in the create answer")?.to_string();
    Ok((key, k))
}

async fn custom_key(api: &Api, scopes: &[&str]) -> Result<(String, Value)> {
    make_key(api, json!({"name": format!("k {}", scopes.join(" ")), "scopes": scopes})).await
}

fn bearer(api: &Api, key: &str) -> Api {
    api.with_auth(Auth::Bearer(key.to_string()))
}

/// Sends raw bytes as one HTTP/1.1 request and returns the status code of the answer.
async fn raw_status(addr: std::net::SocketAddr, request: &[u8]) -> Result<u16> {
    let mut s = tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(addr)).await??;
    s.write_all(request).await?;
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(PROBE_TIMEOUT, s.read(&mut buf)).await??;
    let head = String::from_utf8_lossy(&buf[..n]);
    let code = head.split_whitespace().nth(1).and_then(|c| c.parse().ok());
    code.with_context(|| format!("no status line in {head:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_scopes_tenants_and_the_audit_trail() -> Result<()> {
    let mut cluster = TestCluster::start_with(3, GENEROUS).await?;
    let admin = cluster.client(cluster.leader().await?);
    auth_schemes_and_malformed_credentials(&cluster, &admin).await?;
    key_lifecycle_and_revocation(&cluster, &admin).await?;
    scope_matrix(&admin).await?;
    escalation_is_refused(&admin).await?;
    tenants_isolate_and_limit(&cluster, &admin).await?;
    audit_trail_and_key_use(&admin).await?;
    revocation_with_a_member_paused(&mut cluster, &admin).await?;
    ensure!(cluster.panics_in_logs().is_empty(), "panics: {:?}", cluster.panics_in_logs());
    cluster.stop()?;
    Ok(())
}

async fn auth_schemes_and_malformed_credentials(cluster: &TestCluster, admin: &Api) -> Result<()> {
    let (key, _) = custom_key(admin, &["jobs:read"]).await?;
    for auth in
        [Auth::Bearer(key.clone()), Auth::ApiKey(key.clone()), Auth::XApiKey(key.clone()), Auth::Basic(key.clone())]
    {
        admin.with_auth(auth.clone()).get("/api/v1/jobs").await?.expect(200).with_context(|| format!("{auth:?}"))?;
    }
    let mut typo = key.clone().into_bytes();
    typo[8] = if typo[8] == b'a' { b'b' } else { b'a' };
    let typo = String::from_utf8(typo)?;
    let big = "k".repeat(64 * 1024);
    let unknown = {
        // A well-formed key nobody holds: create one and revoke it.
        let (k, obj) = custom_key(admin, &["jobs:read"]).await?;
        admin.delete(&format!("/api/v1/keys/{}", obj["id"].as_str().unwrap_or_default())).await?.expect(204)?;
        k
    };
    // (headers, expected status)
    let cases: Vec<(Vec<(&str, String)>, u16)> = vec![
        (vec![], 401),
        (vec![("Authorization", "Bearer".into())], 401),
        (vec![("Authorization", "Bearer ".into())], 401),
        (vec![("Authorization", format!("bearer {key}"))], 401),
        (vec![("Authorization", format!("BEARER {key}"))], 401),
        (vec![("Authorization", format!("Bearer  {key} extra"))], 401),
        (vec![("Authorization", format!("Bearer\t{key}"))], 401),
        (vec![("Authorization", "Basic !!!".into())], 401),
        (vec![("Authorization", "Basic".into())], 401),
        (vec![("Authorization", format!("Basic {}", b64(key.as_bytes())))], 401),
        (vec![("Authorization", format!("Basic {}", b64(b":")))], 401),
        (vec![("Authorization", format!("Basic {}", b64(format!(":{key}").as_bytes())))], 401),
        (vec![("Authorization", format!("Basic {}", b64(&[0xff, 0xfe, b':'])))], 401),
        (vec![("Authorization", format!("basic {}", b64(format!("{key}:").as_bytes())))], 401),
        (vec![("Authorization", "Digest username=x".into())], 401),
        (vec![("Authorization", "Token abc".into())], 401),
        (vec![("Authorization", "ApiKey".into())], 401),
        (vec![("Authorization", ", ".into())], 401),
        (vec![("Authorization", format!("Bearer {typo}"))], 401),
        (vec![("Authorization", "Bearer rcn_".into())], 401),
        (vec![("Authorization", format!("Bearer {big}"))], 401),
        (vec![("Authorization", format!("Bearer {unknown}"))], 401),
        (vec![("X-Api-Key", String::new())], 401),
        (vec![("X-Api-Key", "   ".into())], 401),
        (vec![("X-Api-Key", format!("{key}\u{e9}"))], 401),
        (vec![("X-Api-Key", key.clone()), ("Authorization", format!("Bearer {unknown}"))], 400),
        (vec![("Authorization", format!("Bearer {key}")), ("Authorization", format!("ApiKey {unknown}"))], 400),
    ];
    let anon = admin.anonymous();
    for (i, (headers, want)) in cases.iter().enumerate() {
        let mut req = RawRequest { method: "GET".into(), path: "/api/v1/jobs".into(), ..RawRequest::default() };
        req.headers = headers.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        let r = anon.raw(req).await?;
        let code = if *want == 401 { "AUTHENTICATION_REQUIRED" } else { "BAD_REQUEST" };
        r.expect_error(*want, code).with_context(|| format!("malformed case {i}"))?;
    }
    for q in ["api_key", "token", "apikey", "access_token"] {
        anon.get(&format!("/api/v1/jobs?{q}={key}")).await?.expect_error(400, "BAD_REQUEST")?;
    }
    // Bytes no HTTP client would send: NUL, a bare CR, non-UTF-8 and a folded header line.
    let addr = cluster.addr(admin.node_id);
    let head = "GET /api/v1/jobs HTTP/1.1\r\nHost: x\r\nConnection: close\r\n";
    let raw: Vec<Vec<u8>> = vec![
        format!("{head}Authorization: Bearer a\0b\r\n\r\n").into_bytes(),
        format!("{head}Authorization: Bearer a\rb\r\n\r\n").into_bytes(),
        [head.as_bytes(), b"X-Api-Key: \xff\xfe\xfd\r\n\r\n"].concat(),
        format!("{head}Authorization: Bearer\r\n {key}\r\n\r\n").into_bytes(),
        format!("{head}Authorization: Bearer {key}\r\n\r\n").replace("Bearer ", "Bearer \u{00e9}").into_bytes(),
        format!("{head}X-Api-Key: {key}\x7f\r\n\r\n").into_bytes(),
    ];
    for (i, req) in raw.iter().enumerate() {
        let status = raw_status(addr, req).await?;
        ensure!(status == 400 || status == 401, "raw case {i}: status {status}");
    }
    eprintln!("[access] {} malformed credentials refused with 400/401", cases.len() + 4 + raw.len());
    Ok(())
}

/// Revokes key `id` (the secret `key`) through `via`, then checks at once, without retrying,
/// that every node refuses it and that the answer names no unconfirmed member.
async fn revoke_and_check_everywhere(cluster: &TestCluster, via: &Api, id: &str, key: &str) -> Result<()> {
    let r = via.delete(&format!("/api/v1/keys/{id}")).await?.expect(204)?;
    ensure!(r.headers.get("raftcron-unconfirmed-nodes").is_none(), "unconfirmed members: {:?}", r.headers);
    // All nodes at once, the moment the answer came.
    let asks = cluster
        .clients()
        .into_iter()
        .map(|api| async move { bearer(&api, key).get("/api/v1/jobs?consistency=stale").await.map(|r| r.status) });
    for (i, status) in futures::future::join_all(asks).await.into_iter().enumerate() {
        let status = status?;
        ensure!(status == 401, "node {} answered {status} to a key revoked before the request", i + 1);
    }
    Ok(())
}

/// A member that cannot apply the revocation (frozen) is named in the answer, which still
/// comes (bounded); once it runs again it refuses the key.
async fn revocation_with_a_member_paused(cluster: &mut TestCluster, admin: &Api) -> Result<()> {
    let (key, created) = custom_key(admin, &["jobs:read"]).await?;
    let id = created["id"].as_str().context("id")?.to_string();
    let frozen = cluster.follower().await?;
    let frozen_api = cluster.client(frozen);
    wait_until("the new key works on the follower", Duration::from_secs(5), || {
        let api = bearer(&frozen_api, &key);
        async move { api.get("/api/v1/jobs?consistency=stale").await?.expect(200).map(|_| ()) }
    })
    .await?;
    cluster.pause(frozen)?;
    let started = Instant::now();
    let r = admin.with_timeout(Duration::from_secs(15)).delete(&format!("/api/v1/keys/{id}")).await;
    let took = started.elapsed();
    cluster.resume(frozen)?;
    let r = r?.expect(204)?;
    let named = r.headers.get("raftcron-unconfirmed-nodes").and_then(|v| v.to_str().ok()).map(str::to_string);
    ensure!(named.as_deref() == Some(frozen.to_string().as_str()), "header {named:?}, frozen node {frozen}");
    ensure!(took < Duration::from_secs(10), "the revocation waited {took:?} for a frozen member");
    wait_until("the thawed member refuses the revoked key", Duration::from_secs(10), || {
        let api = bearer(&frozen_api, &key);
        async move { api.get("/api/v1/jobs?consistency=stale").await?.expect(401).map(|_| ()) }
    })
    .await?;
    eprintln!("[access] with node {frozen} frozen the revocation answered in {took:.1?}, naming it; thawed, it refuses the key");
    Ok(())
}

async fn key_lifecycle_and_revocation(cluster: &TestCluster, admin: &Api) -> Result<()> {
    let (key, created) = make_key(
        admin,
        json!({"name": "ci pipeline", "scopes": ["jobs:read", "runs:read"], "allowed_cidrs": ["127.0.0.0/8", "::1"]}),
    )
    .await?;
    ensure!(key.starts_with("rcn_") && key.len() >= 40, "key format: {key}");
    let id = created["id"].as_str().context("id")?.to_string();
    ensure!(key.starts_with(created["prefix"].as_str().unwrap_or("-")), "prefix is the start of the key");
    ensure!(created["kind"] == "custom" && created["immutable"] == false, "{created}");
    ensure!(created["allowed_cidrs"] == json!(["127.0.0.0/8", "::1/128"]), "{created}");
    // The full key is never shown again: not by get, not by list.
    let got = admin.get(&format!("/api/v1/keys/{id}")).await?.expect(200)?;
    ensure!(!got.text.contains(&key) && got.json["api_key"].get("key").is_none(), "{}", got.text);
    let list = admin.get("/api/v1/keys").await?.expect(200)?;
    ensure!(!list.text.contains(&key), "the list shows the key");
    ensure!(list.json["api_keys"].as_array().is_some_and(|ks| ks.iter().any(|k| k["id"] == id.as_str())));
    // Every node accepts it; once the DELETE answers, every node refuses it: no window in
    // which a follower that has not applied the revocation lets it through.
    for api in cluster.clients() {
        bearer(&api, &key).get("/api/v1/jobs?consistency=stale").await?.expect(200)?;
    }
    admin.patch(&format!("/api/v1/keys/{id}"), &json!({"name": "renamed"})).await?.expect(200)?;
    revoke_and_check_everywhere(cluster, admin, &id, &key).await?;
    // The same through every node, not only the leader: the answer waits for all members.
    for api in cluster.clients().into_iter().cycle().take(9) {
        let (k, created) = custom_key(admin, &["jobs:read"]).await?;
        let kid = created["id"].as_str().context("id")?.to_string();
        for other in cluster.clients() {
            bearer(&other, &k).get("/api/v1/jobs?consistency=stale").await?.expect(200)?;
        }
        revoke_and_check_everywhere(cluster, &api, &kid, &k).await?;
    }
    eprintln!("[access] 10 revoked keys were refused by every node as soon as the DELETE answered");
    admin.delete(&format!("/api/v1/keys/{id}")).await?.expect_error(404, "NOT_FOUND")?;

    // An expired key is refused; a past expiry is refused at creation.
    let soon = chrono::Utc::now() + chrono::Duration::milliseconds(1500);
    let (expiring, _) =
        make_key(admin, json!({"name": "short", "scopes": ["jobs:read"], "expires_at": soon.to_rfc3339()})).await?;
    bearer(admin, &expiring).get("/api/v1/jobs").await?.expect(200)?;
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let r = bearer(admin, &expiring).get("/api/v1/jobs").await?.expect_error(401, "AUTHENTICATION_REQUIRED")?;
    ensure!(r.message().contains("expired"), "{}", r.text);
    let past = json!({"name": "p", "scopes": ["jobs:read"], "expires_at": "2020-01-01T00:00:00Z"});
    admin.post("/api/v1/keys", &past).await?.expect_error(400, "VALIDATION_ERROR")?;
    // Telemetry keys have fixed scopes and are immutable.
    let (tele, t) = make_key(admin, json!({"name": "grafana", "kind": "telemetry"})).await?;
    ensure!(t["immutable"] == true && t["scopes"] == json!(["runs:read", "cluster:read"]), "{t}");
    let tid = t["id"].as_str().unwrap_or_default();
    admin
        .patch(&format!("/api/v1/keys/{tid}"), &json!({"scopes": ["jobs:read"]}))
        .await?
        .expect_error(409, "CONFLICT")?;
    bearer(admin, &tele).get("/api/v1/cluster").await?.expect(200)?;
    bearer(admin, &tele).get("/api/v1/jobs").await?.expect_error(403, "ACCESS_DENIED")?;
    // Bad requests say what is wrong.
    for (body, field) in [
        (json!({"name": "x"}), "scopes"),
        (json!({"name": "x", "scopes": []}), "scopes"),
        (json!({"name": "x", "scopes": ["jobs:delete"]}), "jobs:delete"),
        (json!({"name": "", "scopes": ["jobs:read"]}), "name"),
        (json!({"name": "x", "kind": "sdk", "scopes": ["jobs:read"]}), "kind"),
        (json!({"name": "x", "kind": "telemetry", "scopes": ["jobs:read"]}), "scopes"),
        (json!({"name": "x", "scopes": ["jobs:read"], "allowed_cidrs": ["10.0.0.0/33"]}), "allowed_cidrs"),
        (json!({"name": "x", "scopes": ["jobs:read"], "allowed_cidrs": ["nope"]}), "allowed_cidrs"),
    ] {
        let r = admin.post("/api/v1/keys", &body).await?.expect_error(400, "VALIDATION_ERROR")?;
        ensure!(r.message().contains(field), "{body}: {}", r.text);
    }
    admin.post("/api/v1/keys", &json!({"name": "x", "scopes": ["jobs:read"], "bogus": 1})).await?.expect(400)?;
    Ok(())
}

/// Every route against a key holding each single scope: allowed only with the route's scope.
async fn scope_matrix(admin: &Api) -> Result<()> {
    let jid = job_id(&admin.create_job(&job("matrix")).await?);
    let (_, some_key) = custom_key(admin, &["jobs:read"]).await?;
    let kid = some_key["id"].as_str().unwrap_or_default().to_string();
    let missing = "00000000-0000-4000-8000-000000000000";
    let routes: Vec<(&str, String, Option<Value>, &str)> = vec![
        ("GET", "/api/v1/jobs".into(), None, "jobs:read"),
        ("GET", format!("/api/v1/jobs/{jid}"), None, "jobs:read"),
        ("POST", "/api/v1/jobs".into(), Some(job("matrix-made")), "jobs:write"),
        ("PATCH", format!("/api/v1/jobs/{jid}"), Some(json!({"name": "matrix-renamed"})), "jobs:write"),
        ("DELETE", format!("/api/v1/jobs/{missing}"), None, "jobs:write"),
        ("POST", format!("/api/v1/jobs/{jid}/trigger"), Some(json!({})), "jobs:trigger"),
        ("GET", format!("/api/v1/jobs/{jid}/runs"), None, "runs:read"),
        ("GET", "/api/v1/keys".into(), None, "keys:read"),
        ("GET", format!("/api/v1/keys/{kid}"), None, "keys:read"),
        ("PATCH", format!("/api/v1/keys/{missing}"), Some(json!({"name": "n"})), "keys:write"),
        ("DELETE", format!("/api/v1/keys/{missing}"), None, "keys:write"),
        ("GET", "/api/v1/cluster".into(), None, "cluster:read"),
        ("GET", "/api/v1/cluster/shards".into(), None, "cluster:read"),
        ("POST", "/api/v1/cluster/nodes".into(), Some(json!({"node_id": 0, "addr": "127.0.0.1:1"})), "cluster:admin"),
        ("DELETE", "/api/v1/cluster/nodes/not-a-node".into(), None, "cluster:admin"),
        ("GET", "/api/v1/tenants".into(), None, "cluster:admin"),
        ("POST", "/api/v1/tenants".into(), Some(json!({"id": "-bad", "name": "x"})), "cluster:admin"),
        ("GET", "/api/v1/tenants/default".into(), None, "cluster:admin"),
        ("PATCH", "/api/v1/tenants/no-such-tenant".into(), Some(json!({"name": "x"})), "cluster:admin"),
        ("DELETE", "/api/v1/tenants/no-such-tenant".into(), None, "cluster:admin"),
        ("GET", "/api/v1/audit".into(), None, "cluster:admin"),
    ];
    let mut checked = 0;
    for scope in SCOPES {
        let (key, _) = custom_key(admin, &[scope]).await?;
        let api = bearer(admin, &key);
        for (method, path, body, needs) in &routes {
            let r = api.send(method, path, body.as_ref()).await?;
            if *needs == scope {
                ensure!(r.status != 403 && r.status < 500, "{scope}: {method} {path} answered {} {}", r.status, r.text);
            } else {
                r.expect_error(403, "ACCESS_DENIED").with_context(|| format!("{scope}: {method} {path}"))?;
            }
            checked += 1;
        }
        // Creating a key with exactly its own scope is allowed to keys:write only.
        let r = api.post("/api/v1/keys", &json!({"name": "same", "scopes": [scope]})).await?;
        let want = if scope == "keys:write" { 201 } else { 403 };
        ensure!(r.status == want, "{scope}: POST /api/v1/keys answered {} {}", r.status, r.text);
    }
    eprintln!("[access] scope matrix: {checked} route x scope checks");
    Ok(())
}

async fn escalation_is_refused(admin: &Api) -> Result<()> {
    let (writer, _) = custom_key(admin, &["keys:write", "keys:read", "jobs:read"]).await?;
    let w = bearer(admin, &writer);
    let r = w.post("/api/v1/keys", &json!({"name": "wider", "scopes": ["cluster:admin"]})).await?;
    r.expect_error(403, "ACCESS_DENIED")?;
    w.post("/api/v1/keys", &json!({"name": "adm", "kind": "admin"})).await?.expect_error(403, "ACCESS_DENIED")?;
    let (_, mine) = make_key(&w, json!({"name": "narrow", "scopes": ["jobs:read"]})).await?;
    let mid = mine["id"].as_str().unwrap_or_default();
    w.patch(&format!("/api/v1/keys/{mid}"), &json!({"scopes": ["jobs:read", "jobs:write"]}))
        .await?
        .expect_error(403, "ACCESS_DENIED")?;
    // A key cannot touch a key that holds more than it does (the admin key, another wide key).
    let (_, wide) = custom_key(admin, &["cluster:admin", "jobs:read"]).await?;
    let wid = wide["id"].as_str().unwrap_or_default();
    w.delete(&format!("/api/v1/keys/{wid}")).await?.expect_error(403, "ACCESS_DENIED")?;
    w.patch(&format!("/api/v1/keys/{wid}"), &json!({"name": "pwned"})).await?.expect_error(403, "ACCESS_DENIED")?;
    // Nor act in another tenant.
    w.get("/api/v1/keys?tenant=default").await?.expect(200)?;
    admin.post("/api/v1/tenants", &json!({"id": "other", "name": "Other"})).await?.expect(201)?;
    w.get("/api/v1/keys?tenant=other").await?.expect_error(403, "ACCESS_DENIED")?;
    w.post("/api/v1/keys", &json!({"name": "x", "scopes": ["jobs:read"], "tenant": "other"}))
        .await?
        .expect_error(403, "ACCESS_DENIED")?;
    Ok(())
}

async fn tenants_isolate_and_limit(cluster: &TestCluster, admin: &Api) -> Result<()> {
    let t = json!({"id": "team-a", "name": "Team A", "max_jobs": 2, "min_interval_seconds": 60, "rate_limit_per_minute": 20});
    let r = admin.post("/api/v1/tenants", &t).await?.expect(201)?;
    ensure!(r.json["tenant"]["max_jobs"] == 2 && r.json["tenant"]["job_count"] == 0, "{}", r.text);
    admin.post("/api/v1/tenants", &t).await?.expect_error(409, "CONFLICT")?;
    admin.post("/api/v1/tenants", &json!({"id": "team-b", "name": "Team B"})).await?.expect(201)?;
    for bad in [
        json!({"id": "Team", "name": "x"}),
        json!({"id": "t", "name": ""}),
        json!({"id": "t", "name": "x", "max_jobs": 0}),
    ] {
        admin.post("/api/v1/tenants", &bad).await?.expect_error(400, "VALIDATION_ERROR")?;
    }
    let all = ["jobs:read", "jobs:write", "jobs:trigger", "runs:read", "keys:read", "keys:write"];
    let (ka, _) = make_key(admin, json!({"name": "a", "scopes": all, "tenant": "team-a"})).await?;
    let (kb, _) = make_key(admin, json!({"name": "b", "scopes": all, "tenant": "team-b"})).await?;
    let (a, b) = (bearer(admin, &ka), bearer(admin, &kb));

    // Quotas: the interval first, then the job count.
    let mut every_second = job("too-often");
    every_second["cron_expression"] = json!("* * * * * *");
    a.post("/api/v1/jobs", &every_second).await?.expect_error(403, "INTERVAL_TOO_SHORT")?;
    let j1 = a.create_job(&job("a1")).await?;
    let id1 = job_id(&j1);
    a.patch(&format!("/api/v1/jobs/{id1}"), &json!({"cron_expression": "*/10 * * * * *"}))
        .await?
        .expect_error(403, "INTERVAL_TOO_SHORT")?;
    a.create_job(&job("a2")).await?;
    a.post("/api/v1/jobs", &job("a3")).await?.expect_error(403, "PLAN_LIMIT_REACHED")?;

    // Isolation: team b sees none of team a's jobs or keys.
    b.get(&format!("/api/v1/jobs/{id1}")).await?.expect_error(404, "NOT_FOUND")?;
    b.patch(&format!("/api/v1/jobs/{id1}"), &json!({"name": "x"})).await?.expect_error(404, "NOT_FOUND")?;
    b.delete(&format!("/api/v1/jobs/{id1}")).await?.expect_error(404, "NOT_FOUND")?;
    b.get(&format!("/api/v1/jobs/{id1}/runs")).await?.expect_error(404, "NOT_FOUND")?;
    b.post(&format!("/api/v1/jobs/{id1}/trigger"), &json!({})).await?.expect_error(404, "NOT_FOUND")?;
    let listed = b.get("/api/v1/jobs").await?.expect(200)?;
    ensure!(listed.json["total_count"] == 0, "team b lists {}", listed.text);
    let keys_b = b.get("/api/v1/keys").await?.expect(200)?;
    ensure!(keys_b.json["api_keys"].as_array().is_some_and(|k| k.len() == 1), "{}", keys_b.text);
    let a_keys = a.get("/api/v1/keys").await?.expect(200)?;
    let a_key_id = a_keys.json["api_keys"][0]["id"].as_str().unwrap_or_default().to_string();
    b.get(&format!("/api/v1/keys/{a_key_id}")).await?.expect_error(404, "NOT_FOUND")?;
    b.delete(&format!("/api/v1/keys/{a_key_id}")).await?.expect_error(404, "NOT_FOUND")?;
    // The default tenant's admin sees its own jobs only, too.
    let mine = admin.get("/api/v1/jobs?page_size=500").await?.expect(200)?;
    ensure!(!mine.text.contains(&id1), "the admin's tenant lists team a's job");

    // A non-empty tenant is not deleted; the default tenant never.
    admin.delete("/api/v1/tenants/team-a").await?.expect_error(409, "CONFLICT")?;
    admin.delete("/api/v1/tenants/default").await?.expect_error(409, "CONFLICT")?;
    // Its keys go with it, on every node by the time the answer comes.
    let gone = admin.delete("/api/v1/tenants/team-b").await?.expect(204)?;
    ensure!(gone.headers.get("raftcron-unconfirmed-nodes").is_none(), "{:?}", gone.headers);
    let asks = cluster.clients().into_iter().map(|api| {
        let kb = kb.clone();
        async move { bearer(&api, &kb).get("/api/v1/jobs?consistency=stale").await }
    });
    for r in futures::future::join_all(asks).await {
        r?.expect_error(401, "AUTHENTICATION_REQUIRED")?;
    }

    // The tenant's rate: 20 a minute for its key, then 429 with Retry-After.
    let mut limited = None;
    for i in 0..40 {
        let r = a.get("/api/v1/jobs?consistency=stale").await?;
        if r.status == 429 {
            limited = Some((i, r));
            break;
        }
        r.expect(200)?;
    }
    let (at, r) = limited.context("no 429 within 40 requests at 20 a minute")?;
    let r = r.expect_error(429, "RATE_LIMIT_EXCEEDED")?;
    ensure!(r.json["retry_after"].as_u64().is_some_and(|s| s >= 1), "{}", r.text);
    eprintln!("[access] team-a's key was limited after {at} requests; retry_after {}", r.json["retry_after"]);
    let raw = a
        .raw(RawRequest {
            method: "GET".into(),
            path: "/api/v1/jobs?consistency=stale".into(),
            ..RawRequest::default()
        })
        .await?;
    ensure!(raw.status == 429, "still limited");
    let patch = json!({"rate_limit_per_minute": null});
    admin.patch("/api/v1/tenants/team-a", &patch).await?.expect(200)?;
    Ok(())
}

async fn audit_trail_and_key_use(admin: &Api) -> Result<()> {
    let (reader, obj) = custom_key(admin, &["jobs:read"]).await?;
    let id = obj["id"].as_str().unwrap_or_default().to_string();
    ensure!(obj["last_used_at"].is_null(), "{obj}");
    bearer(admin, &reader).get("/api/v1/jobs").await?.expect(200)?;
    let r = admin.get("/api/v1/audit?page_size=500").await?.expect(200)?;
    let entries = r.json["entries"].as_array().cloned().unwrap_or_default();
    let actions: Vec<&str> = entries.iter().filter_map(|e| e["action"].as_str()).collect();
    for want in [
        "key.bootstrap",
        "key.create",
        "key.update",
        "key.revoke",
        "job.create",
        "job.update",
        "job.trigger",
        "tenant.create",
        "tenant.update",
        "tenant.delete",
    ] {
        ensure!(actions.contains(&want), "no {want} in the audit trail: {actions:?}");
    }
    let create = entries
        .iter()
        .find(|e| e["action"] == "key.create" && e["target_id"] == id.as_str())
        .context("this key's creation")?;
    ensure!(
        create["client_ip"] == "127.0.0.1" && create["actor_prefix"].as_str().is_some_and(|p| !p.is_empty()),
        "{create}"
    );
    ensure!(entries.windows(2).all(|w| w[0]["seq"].as_u64() > w[1]["seq"].as_u64()), "not newest first");
    ensure!(!r.text.contains(&reader), "the audit trail shows a key");
    // last_used_at arrives within the flush interval.
    let got = wait_until("last_used_at to be recorded", Duration::from_secs(40), || {
        let (admin, id) = (admin.clone(), id.clone());
        async move {
            let k = admin.get(&format!("/api/v1/keys/{id}")).await?.expect(200)?.field("api_key")?;
            ensure!(!k["last_used_at"].is_null(), "not yet");
            Ok(k)
        }
    })
    .await?;
    eprintln!("[access] last_used_at recorded: {}", got["last_used_at"]);
    Ok(())
}

/// Behind a trusted proxy: `X-Forwarded-For` decides the client's address, so IPv4, IPv6 and
/// IPv4-mapped allowlists can be checked from loopback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowlists_through_a_trusted_proxy() -> Result<()> {
    let mut args = GENEROUS.to_vec();
    args.extend(["--trusted-proxy", "127.0.0.1"]);
    let cluster = TestCluster::start_with(1, &args).await?;
    let admin = cluster.client(1);
    let key_for = |cidrs: Value| {
        let admin = admin.clone();
        async move { make_key(&admin, json!({"name": "net", "scopes": ["jobs:read"], "allowed_cidrs": cidrs})).await }
    };
    let (v4, _) = key_for(json!(["10.0.0.0/8"])).await?;
    let (v6, _) = key_for(json!(["2001:db8::/32"])).await?;
    let (mapped, _) = key_for(json!(["198.51.100.0/24"])).await?;
    let (open, _) = key_for(json!([])).await?;
    let cases: Vec<(&str, Option<&str>, u16)> = vec![
        (&v4, None, 403),
        (&v4, Some("10.1.2.3"), 200),
        (&v4, Some("10.1.2.3, 127.0.0.1"), 200),
        (&v4, Some("10.1.2.3, 192.0.2.1"), 403),
        (&v4, Some("11.0.0.1"), 403),
        (&v6, Some("2001:db8::5"), 200),
        (&v6, Some("2001:db9::1"), 403),
        (&v6, None, 403),
        (&mapped, Some("::ffff:198.51.100.7"), 200),
        (&mapped, Some("198.51.100.200"), 200),
        (&mapped, Some("::ffff:198.51.101.7"), 403),
        (&open, Some("2001:db8::5"), 200),
        (&open, None, 200),
    ];
    for (i, (key, xff, want)) in cases.iter().enumerate() {
        let mut req = RawRequest { method: "GET".into(), path: "/api/v1/jobs".into(), ..RawRequest::default() };
        req.headers.push(("Authorization".into(), format!("Bearer {key}")));
        if let Some(x) = xff {
            req.headers.push(("X-Forwarded-For".into(), x.to_string()));
        }
        let r = admin.anonymous().raw(req).await?;
        if *want == 200 {
            r.expect(200).with_context(|| format!("case {i}"))?;
        } else {
            r.expect_error(403, "ACCESS_DENIED").with_context(|| format!("case {i}"))?;
        }
    }
    cluster.stop()?;
    Ok(())
}

/// Without a trusted proxy, `X-Forwarded-For` is ignored; and failed authentications from one
/// address get 429 once past the budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_are_ignored_from_untrusted_peers_and_failures_are_limited() -> Result<()> {
    let cluster = TestCluster::start_with(1, &["--auth-failures-per-minute", "10"]).await?;
    let admin = cluster.client(1);
    let (v4, _) =
        make_key(&admin, json!({"name": "net", "scopes": ["jobs:read"], "allowed_cidrs": ["10.0.0.0/8"]})).await?;
    let mut req = RawRequest { method: "GET".into(), path: "/api/v1/jobs".into(), ..RawRequest::default() };
    req.headers.push(("Authorization".into(), format!("Bearer {v4}")));
    req.headers.push(("X-Forwarded-For".into(), "10.1.2.3".into()));
    admin.anonymous().raw(req).await?.expect_error(403, "ACCESS_DENIED")?;

    let bad = bearer(&admin, "rcn_this-is-not-a-key-at-all-0000000000");
    // The harness's own probes while the cluster formed may have used part of the budget.
    let mut statuses = Vec::new();
    for _ in 0..15 {
        statuses.push(bad.get("/api/v1/jobs").await?.status);
    }
    let first_429 = statuses.iter().position(|s| *s == 429).context(format!("never limited: {statuses:?}"))?;
    ensure!(first_429 >= 1 && statuses[..first_429].iter().all(|s| *s == 401), "{statuses:?}");
    ensure!(statuses[first_429..].iter().all(|s| *s == 429), "{statuses:?}");
    let r = bad.get("/api/v1/jobs").await?.expect_error(429, "RATE_LIMIT_EXCEEDED")?;
    ensure!(r.json["retry_after"].as_u64().is_some_and(|s| s >= 1), "{}", r.text);
    // A valid key from the same address still works.
    admin.get("/api/v1/jobs").await?.expect(200)?;
    cluster.stop()?;
    Ok(())
}
