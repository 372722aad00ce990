//! The web dashboard on real processes: its security headers from Rust, then its pages in a real
//! browser. Headless Chromium (Debian's `chromium`) loads `/#key=...&view=...` from a node of a
//! 3-node cluster and the test reads the DOM the page built (`--dump-dom` after a virtual-time
//! budget), retrying under a deadline until the expected rows are there. Anything the page
//! writes to its console (a Content-Security-Policy violation, an uncaught error) fails the test.
//!
//! The browser runs with a fresh temporary profile, background networking off and a host
//! resolver that resolves nothing, so its only traffic is to the node on 127.0.0.1; it is killed
//! (its whole process group) if it outlives its deadline. Without chromium, the tests install it
//! with apt-get when they run as root, and otherwise say loudly what to install and skip the
//! browser part. `RAFTCRON_TEST_CHROMIUM` names another browser binary.

mod common;

use std::fs::File;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use axum::routing::any;
use axum::Router;
use common::*;
use serde_json::{json, Value};

/// Upper bound of one browser run (it normally takes 1 to 3 s).
const BROWSER_DEADLINE: Duration = Duration::from_secs(60);
/// How long the page may run (virtual time: timers skip ahead, network waits are real).
const VIRTUAL_TIME_BUDGET_MS: u64 = 10_000;
/// How long a test keeps reloading the page until the DOM shows what it expects.
const PAGE_WAIT: Duration = Duration::from_secs(120);
/// Upper bound of installing chromium with apt-get.
const INSTALL_DEADLINE: Duration = Duration::from_secs(900);

// ---------------------------------------------------------------------------------------------
// The browser
// ---------------------------------------------------------------------------------------------

/// The browser binary, found or installed once per test binary; `None`: not available here.
fn browser() -> Result<Option<PathBuf>> {
    static BROWSER: OnceLock<Result<Option<PathBuf>, String>> = OnceLock::new();
    BROWSER.get_or_init(|| find_or_install().map_err(|e| format!("{e:#}"))).clone().map_err(|e| anyhow!(e))
}

fn find_browser() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("RAFTCRON_TEST_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser", "google-chrome"].map(|n| dir.join(n)))
        .find(|p| p.is_file())
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn find_or_install() -> Result<Option<PathBuf>> {
    if let Some(p) = find_browser() {
        return Ok(Some(p));
    }
    if !is_root() {
        eprintln!(
            "\n*****************************************************************************\n\
             * SKIPPING THE BROWSER PART OF THE DASHBOARD TESTS: chromium is not installed *\n\
             * and this is not root. Install it with:  sudo apt-get install -y chromium     *\n\
             * (or set RAFTCRON_TEST_CHROMIUM to a Chromium or Chrome binary).             *\n\
             *****************************************************************************\n"
        );
        return Ok(None);
    }
    eprintln!("[dashboard] chromium is missing: installing it with apt-get (once)");
    let apt = |args: &[&str]| -> Result<ExitStatus> {
        let mut child = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .context("running apt-get")?;
        wait_or_kill(&mut child, INSTALL_DEADLINE).with_context(|| format!("apt-get {}", args.join(" ")))
    };
    if !apt(&["install", "-y", "-q", "chromium"])?.success() {
        ensure!(apt(&["update", "-q"])?.success(), "apt-get update failed");
        ensure!(apt(&["install", "-y", "-q", "chromium"])?.success(), "apt-get install -y chromium failed");
    }
    find_browser().map(Some).ok_or_else(|| anyhow!("apt-get installed chromium, but it is not on PATH"))
}

/// Waits for `child` (a process-group leader) at most `deadline`; past it, kills its group.
fn wait_or_kill(child: &mut std::process::Child, deadline: Duration) -> Result<ExitStatus> {
    let until = Instant::now() + deadline;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() >= until {
            let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", child.id())]).status();
            let _ = child.kill();
            let _ = child.wait();
            bail!("still running after {deadline:?}: killed");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Loads `url` in a fresh headless browser and returns the DOM it serialized.
fn dump_dom(browser: &Path, url: &str) -> Result<String> {
    let dir = tempfile::Builder::new().prefix("raftcron-chromium-").tempdir()?;
    let (dom_path, log_path) = (dir.path().join("dom.html"), dir.path().join("chromium.log"));
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-sync",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-default-apps",
            "--disable-domain-reliability",
            "--disable-breakpad",
            "--no-pings",
            "--no-proxy-server",
            // The page's console (CSP violations, uncaught errors) goes to the log.
            "--enable-logging=stderr",
            "--v=0",
            // Every host but 127.0.0.1 fails to resolve.
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            &format!("--virtual-time-budget={VIRTUAL_TIME_BUDGET_MS}"),
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", dir.path().join("profile").display()))
        .arg(url)
        .env("HOME", dir.path())
        .stdin(Stdio::null())
        .stdout(File::create(&dom_path)?)
        .stderr(File::create(&log_path)?)
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {}", browser.display()))?;
    let status = wait_or_kill(&mut child, BROWSER_DEADLINE).context("the browser")?;
    let dom = std::fs::read_to_string(&dom_path)?;
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    if !status.success() || dom.is_empty() {
        bail!("the browser exited with {status} and {} bytes of DOM; its log:\n{}", dom.len(), tail(&log, 3000));
    }
    // A refused request (401, 403) is expected; anything else the page logs is not.
    let console: Vec<&str> =
        log.lines().filter(|l| l.contains(":CONSOLE") && !l.contains("Failed to load resource")).collect();
    ensure!(console.is_empty(), "the page wrote to the console (CSP violation or error?):\n{}", console.join("\n"));
    Ok(dom)
}

fn tail(s: &str, max: usize) -> &str {
    let mut start = s.len().saturating_sub(max);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// Loads `url` until `check` accepts the DOM (each load in a fresh browser), under [`PAGE_WAIT`].
async fn load_until(browser: &Path, url: &str, what: &str, check: impl Fn(&str) -> Result<()>) -> Result<String> {
    let start = Instant::now();
    let mut last = anyhow!("not loaded yet");
    let mut attempts = 0;
    while start.elapsed() < PAGE_WAIT && attempts < 20 {
        attempts += 1;
        let (b, u) = (browser.to_path_buf(), url.to_string());
        let dom = tokio::task::spawn_blocking(move || dump_dom(&b, &u)).await??;
        match check(&dom) {
            Ok(()) => return Ok(dom),
            Err(e) => last = anyhow!("{e:#}\n--- DOM (end) ---\n{}", tail(&dom, 4000)),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    bail!("the dashboard did not show {what} after {attempts} loads in {:.1?}: {last:#}", start.elapsed())
}

/// `http://<node>/#<fragment>`: the key travels in the fragment, which never reaches the server.
fn page(addr: SocketAddr, fragment: &[(&str, &str)]) -> String {
    let f: Vec<String> = fragment.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("http://{addr}/#{}", f.join("&"))
}

fn has(dom: &str, needle: &str) -> Result<()> {
    ensure!(dom.contains(needle), "the DOM has no {needle:?}");
    Ok(())
}

/// No node's log contains any of `secrets`.
fn logs_are_clean(c: &TestCluster, secrets: &[&str]) -> Result<()> {
    for id in 1..=3 {
        let log = c.log_text(id);
        ensure!(!log.is_empty(), "node {id} has no log");
        for s in secrets {
            ensure!(!log.contains(s), "node {id}'s log contains a key used by the dashboard");
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

/// `/` and its assets are served without a key, with a strict CSP, nosniff, no referrer and
/// revalidation by ETag; the page signs in from the fragment and lists the members and the
/// leader; a wrong key brings back the sign-in form with the API's message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_signs_in_and_shows_the_cluster() -> Result<()> {
    let c = TestCluster::start(3).await?;
    let http = reqwest::Client::builder().no_proxy().timeout(REQUEST_TIMEOUT).build()?;
    let base = format!("http://{}", c.addr(2));

    let r = http.get(format!("{base}/")).send().await?;
    ensure!(r.status() == 200, "GET / answered {}", r.status());
    let h = r.headers().clone();
    let header = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    ensure!(header("content-type").starts_with("text/html"), "content-type {:?}", header("content-type"));
    let csp = header("content-security-policy");
    for part in ["default-src 'self'", "script-src 'self'", "form-action 'none'", "frame-ancestors 'none'"] {
        ensure!(csp.contains(part), "the CSP {csp:?} lacks {part:?}");
    }
    ensure!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "the CSP allows inline code: {csp:?}");
    ensure!(header("x-content-type-options") == "nosniff", "no nosniff");
    ensure!(header("referrer-policy") == "no-referrer", "referrer-policy {:?}", header("referrer-policy"));
    ensure!(!header("cache-control").is_empty(), "no cache-control");
    let etag = header("etag");
    ensure!(etag.starts_with('"'), "no strong etag: {etag:?}");
    let html = r.text().await?;
    ensure!(html.contains("<script src=\"/ui/app.js\"") && !html.contains("<script>"), "the page has inline script");

    let again = http.get(format!("{base}/")).header("if-none-match", &etag).send().await?;
    ensure!(again.status() == 304, "a matching If-None-Match answered {}", again.status());
    ensure!(again.headers().contains_key("content-security-policy"), "a 304 without the CSP");

    for (path, ty) in
        [("/ui/app.js", "text/javascript"), ("/ui/style.css", "text/css"), ("/ui/icon.svg", "image/svg+xml")]
    {
        let r = http.get(format!("{base}{path}")).send().await?;
        ensure!(r.status() == 200, "GET {path} answered {}", r.status());
        let ct = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        ensure!(ct.starts_with(ty), "GET {path}: content-type {ct:?}");
        ensure!(r.headers().get("x-content-type-options").is_some_and(|v| v == "nosniff"), "GET {path}: no nosniff");
        let body = r.text().await?;
        ensure!(!body.contains("https://") && !body.contains("//cdn"), "{path} names another origin");
    }
    c.client(1).anonymous().get("/ui/missing.js").await?.expect_error(404, "NOT_FOUND")?;

    let Some(browser) = browser()? else { return c.stop() };
    let leader = c.leader().await?;
    let follower = c.follower().await?;
    let addrs: Vec<String> = (1..=3).map(|id| c.addr(id).to_string()).collect();
    // Served by a follower: any node serves the dashboard and the API behind it.
    let url = page(c.addr(follower), &[("key", &c.admin_key), ("view", "cluster")]);
    let dom = load_until(&browser, &url, "the three members and the leader", |dom| {
        has(dom, "data-auth=\"signed-in\"")?;
        has(dom, "id=\"panel-members\" data-state=\"ready\"")?;
        has(dom, "id=\"panel-shards\" data-state=\"ready\"")?;
        for (id, addr) in (1..=3).zip(&addrs) {
            has(dom, &format!("data-node-id=\"{id}\""))?;
            has(dom, addr)?;
        }
        has(dom, &format!("data-node-id=\"{leader}\" data-role=\"leader\""))?;
        has(dom, &format!("data-leader-id=\"{leader}\""))?;
        ensure!(dom.matches("data-role=\"leader\"").count() == 1, "not exactly one leader row");
        ensure!(dom.matches("data-role=\"follower\"").count() == 2, "not two follower rows");
        has(dom, "Updated at ")
    })
    .await?;
    ensure!(!dom.contains(&c.admin_key), "the key is in the page");

    let wrong = "rcn_0000000000000000000000000000000000000a";
    let url = page(c.addr(leader), &[("key", wrong), ("view", "cluster")]);
    let dom = load_until(&browser, &url, "the sign-in form with the API's message", |dom| {
        has(dom, "data-auth=\"signed-out\"")?;
        has(dom, "<section id=\"signin\" class=\"panel signin\">")?;
        has(dom, "invalid API key")?;
        ensure!(!dom.contains("data-node-id="), "members are shown to a wrong key");
        Ok(())
    })
    .await?;
    ensure!(!dom.contains(wrong), "the wrong key is in the page");

    logs_are_clean(&c, &[&c.admin_key, wrong])?;
    c.stop()
}

/// Two jobs created through the API appear with their schedules; a key without `cluster:read`
/// sees the API's 403 message in place of the cluster panels; the keys view lists the keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_lists_jobs_and_keys_and_shows_missing_scopes() -> Result<()> {
    let Some(browser) = browser()? else { return Ok(()) };
    let c = TestCluster::start(3).await?;
    let api = c.client(1);
    let mut nightly = job("nightly-report");
    nightly["cron_expression"] = json!("15 3 * * *");
    nightly["timezone"] = json!("Europe/Paris");
    let mut sync = job("hourly-sync");
    sync["cron_expression"] = json!("0 * * * *");
    let nightly = api.create_job(&nightly).await?;
    let sync = api.create_job(&sync).await?;
    let reader = api
        .post("/api/v1/keys", &json!({"name": "dashboard-reader", "kind": "custom", "scopes": ["jobs:read"]}))
        .await?
        .expect(201)?
        .field("api_key")?;
    let reader_key = reader["key"].as_str().context("the created key")?.to_string();
    let reader_prefix = reader["prefix"].as_str().context("the key's prefix")?.to_string();

    let url = page(c.addr(3), &[("key", &c.admin_key), ("view", "jobs")]);
    load_until(&browser, &url, "both jobs with their schedules", |dom| {
        has(dom, "id=\"panel-jobs\" data-state=\"ready\"")?;
        for (j, name, schedule) in [(&nightly, "nightly-report", "15 3 * * *"), (&sync, "hourly-sync", "0 * * * *")] {
            has(dom, &format!("data-job-id=\"{}\"", job_id(j)))?;
            has(dom, &format!(">{name}</a>"))?;
            has(dom, &format!(">{schedule}</td>"))?;
        }
        has(dom, ">Europe/Paris</td>")?;
        has(dom, "(2 jobs)")
    })
    .await?;

    let url = page(c.addr(2), &[("key", &reader_key), ("view", "cluster")]);
    load_until(&browser, &url, "the missing scope in place of the cluster panels", |dom| {
        has(dom, "data-auth=\"signed-in\"")?;
        has(dom, "id=\"panel-members\" data-state=\"forbidden\"")?;
        has(dom, "id=\"panel-shards\" data-state=\"forbidden\"")?;
        has(dom, "lacks the cluster:read scope")?;
        ensure!(!dom.contains("data-node-id="), "members are shown without cluster:read");
        Ok(())
    })
    .await?;

    let url = page(c.addr(1), &[("key", &c.admin_key), ("view", "keys")]);
    load_until(&browser, &url, "the keys", |dom| {
        has(dom, "id=\"panel-keys\" data-state=\"ready\"")?;
        has(dom, ">dashboard-reader</td>")?;
        has(dom, &format!(">{reader_prefix}</td>"))?;
        has(dom, ">jobs:read</td>")
    })
    .await?;

    logs_are_clean(&c, &[&c.admin_key, &reader_key])?;
    c.stop()
}

/// A job that fires every second at a sink in this test: its page shows succeeded runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_a_jobs_run_history() -> Result<()> {
    let Some(browser) = browser()? else { return Ok(()) };
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let sink = Router::new().route(
        "/hit",
        any(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                "ok"
            }
        }),
    );
    let (sink_addr, sink_task) = serve_local(sink).await?;

    let c = TestCluster::start_with(3, &["--allow-private-targets"]).await?;
    let api = c.client(1);
    let mut body = job("every-second");
    body["url"] = json!(format!("http://{sink_addr}/hit"));
    body["method"] = json!("GET");
    body["cron_expression"] = json!("* * * * * *");
    let id = job_id(&api.create_job(&body).await?);

    let runs_path = format!("/api/v1/jobs/{id}/runs");
    wait_until("three succeeded runs", WAIT, || {
        let (api, path) = (api.clone(), runs_path.clone());
        async move {
            let runs = api.get(&path).await?.expect(200)?.field("runs")?;
            let ok = runs.as_array().map_or(0, |r| r.iter().filter(|r| r["status"] == "succeeded").count());
            ensure!(ok >= 3, "{ok} succeeded runs so far");
            Ok(())
        }
    })
    .await?;
    ensure!(hits.load(Ordering::SeqCst) >= 3, "the sink saw fewer requests than the runs recorded");

    let url = page(c.addr(2), &[("key", &c.admin_key), ("view", "job"), ("job", &id)]);
    load_until(&browser, &url, "succeeded runs of the job", |dom| {
        has(dom, "id=\"panel-job\" data-state=\"ready\"")?;
        has(dom, "id=\"panel-runs\" data-state=\"ready\"")?;
        has(dom, ">every-second</dd>")?;
        let rows = dom.matches("data-status=\"succeeded\"").count();
        ensure!(rows >= 3, "{rows} succeeded rows");
        has(dom, ">succeeded</span>")?;
        has(dom, ">200</td>")
    })
    .await?;

    let runs: Value = api.get(&runs_path).await?.expect(200)?.json;
    ensure!(runs["runs"].as_array().is_some_and(|r| !r.is_empty()), "no runs");
    api.delete(&format!("/api/v1/jobs/{id}")).await?.expect(200)?;
    sink_task.abort();
    logs_are_clean(&c, &[&c.admin_key])?;
    c.stop()
}
