//! The deployment files and the operator docs agree with the binary.
//!
//! - Every YAML and JSON file under `deploy/` parses (Helm templates after a render-free pass,
//!   see [`strip_helm`]).
//! - Every `RAFTCRON_*` variable named anywhere under `deploy/` is one `raftcron serve` reads:
//!   a flag's `[env: ...]` in `raftcron serve --help`, or one of [`ENV_NOT_FLAGS`].
//! - Every flag passed to `raftcron serve` under `deploy/` and in `docs/deploy.md` and
//!   `docs/operations.md` is in `raftcron serve --help`.
//! - Every metric the alert rules and the dashboard query is in [`METRICS`], and
//!   `docs/observability.md` documents exactly those.
//! - `docs/configuration.md` documents exactly the flags (and variables) of `raftcron serve` and
//!   `raftcron dev`.
//!
//! No network and no running node: only files and `--help` of the built binary.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// Variables the node reads that are not flags.
const ENV_NOT_FLAGS: &[&str] = &["RAFTCRON_ADMIN_KEY", "RAFTCRON_MASTER_KEY", "RAFTCRON_LOG"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// The metrics the nodes export at `/metrics`. Alerts and dashboards may use only these.
const METRICS: &[(&str, Kind)] = &[
    ("raftcron_raft_has_leader", Kind::Gauge),
    ("raftcron_raft_is_leader", Kind::Gauge),
    ("raftcron_raft_term", Kind::Gauge),
    ("raftcron_raft_commit_index", Kind::Gauge),
    ("raftcron_raft_applied_index", Kind::Gauge),
    ("raftcron_raft_replication_lag_entries", Kind::Gauge),
    ("raftcron_raft_voters", Kind::Gauge),
    ("raftcron_raft_reachable_voters", Kind::Gauge),
    ("raftcron_raft_proposals_total", Kind::Counter),
    ("raftcron_raft_early_campaigns_total", Kind::Counter),
    ("raftcron_raft_eager_appends_total", Kind::Counter),
    ("raftcron_raft_proposal_batch_size", Kind::Histogram),
    ("raftcron_raft_proposal_wait_seconds", Kind::Histogram),
    ("raftcron_raft_write_duration_seconds", Kind::Histogram),
    ("raftcron_raft_log_sync_duration_seconds", Kind::Histogram),
    ("raftcron_raft_apply_duration_seconds", Kind::Histogram),
    ("raftcron_raft_append_round_trip_seconds", Kind::Histogram),
    ("raftcron_raft_snapshots_total", Kind::Counter),
    ("raftcron_raft_snapshot_duration_seconds", Kind::Histogram),
    ("raftcron_storage_size_bytes", Kind::Gauge),
    ("raftcron_scheduler_shards_owned", Kind::Gauge),
    ("raftcron_scheduler_lease_renewals_total", Kind::Counter),
    ("raftcron_scheduler_lease_lapses_total", Kind::Counter),
    ("raftcron_scheduler_claims_total", Kind::Counter),
    ("raftcron_scheduler_fires_total", Kind::Counter),
    ("raftcron_scheduler_fire_lateness_seconds", Kind::Histogram),
    ("raftcron_executor_request_duration_seconds", Kind::Histogram),
    ("raftcron_executor_retries_total", Kind::Counter),
    ("raftcron_executor_ssrf_refusals_total", Kind::Counter),
    ("raftcron_notify_alerts_total", Kind::Counter),
    ("raftcron_api_requests_total", Kind::Counter),
    ("raftcron_api_request_duration_seconds", Kind::Histogram),
    ("raftcron_api_auth_failures_total", Kind::Counter),
    ("raftcron_api_rate_limited_total", Kind::Counter),
];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

/// Every file under `dir`, sorted.
fn files_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                todo.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn deploy_files() -> Result<Vec<(PathBuf, String)>> {
    let root = repo_root();
    let mut out = Vec::new();
    for path in files_under(&root.join("deploy"))? {
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let rel = path.strip_prefix(&root).unwrap_or(&path).to_path_buf();
        out.push((rel, text));
    }
    Ok(out)
}

fn is_helm_template(path: &Path) -> bool {
    path.components().any(|c| c.as_os_str() == "templates")
}

/// A render-free view of a Helm template, good enough to check its YAML shape without Helm:
/// lines holding only template actions (`{{- if ... }}`, `{{- end }}`, `{{- include ... |
/// nindent 4 }}`, `{{- toYaml ... }}`) are dropped, and every other `{{ ... }}` becomes the
/// scalar `x`. Both branches of an `if`/`else` stay, so the templates keep conditional keys
/// unique (`scheme: {{ upper $scheme }}` rather than two `scheme:` lines); what an `include`
/// or `toYaml` would insert is not checked here. A real render needs Helm, which the tests do
/// not require.
fn strip_helm(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let mut rest = line;
        let mut kept = String::new();
        while let Some(start) = rest.find("{{") {
            kept.push_str(&rest[..start]);
            match rest[start..].find("}}") {
                Some(end) => {
                    kept.push('x');
                    rest = &rest[start + end + 2..];
                }
                None => {
                    rest = "";
                }
            }
        }
        kept.push_str(rest);
        let only_actions = line.contains("{{") && kept.chars().all(|c| c == 'x' || c.is_whitespace());
        if !only_actions {
            out.push_str(&kept);
            out.push('\n');
        }
    }
    out
}

/// Every YAML document in `text`.
fn parse_yaml(text: &str) -> Result<Vec<serde_norway::Value>> {
    let mut docs = Vec::new();
    for doc in serde_norway::Deserializer::from_str(text) {
        docs.push(serde_norway::Value::deserialize(doc)?);
    }
    Ok(docs)
}

fn is_yaml(path: &Path) -> bool {
    matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
}

fn is_json(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()) == Some("json")
}

/// The words in `text` that start with `prefix` followed by characters `keep` accepts, where
/// `prefix` does not continue a longer word.
fn words(text: &str, prefix: &str, keep: impl Fn(char) -> bool) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut from = 0;
    while let Some(i) = text[from..].find(prefix) {
        let start = from + i;
        let before = text[..start].chars().next_back();
        let rest = &text[start + prefix.len()..];
        let len = rest.find(|c: char| !keep(c)).unwrap_or(rest.len());
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') && len > 0 {
            out.insert(format!("{prefix}{}", &rest[..len]));
        }
        from = start + prefix.len();
    }
    out
}

fn env_names(text: &str) -> BTreeSet<String> {
    words(text, "RAFTCRON_", |c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// `--flag` words (a lowercase letter after the dashes, so a Markdown `|---|` is none).
fn long_flags(text: &str) -> BTreeSet<String> {
    let mut flags = words(text, "--", |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    flags.retain(|f| f[2..].starts_with(|c: char| c.is_ascii_lowercase()));
    flags
}

/// The flags and variables a subcommand's `--help` lists (without `--help` and `--version`).
#[derive(Debug, Default)]
struct Help {
    flags: BTreeSet<String>,
    envs: BTreeSet<String>,
}

fn help(subcommand: &str) -> Result<Help> {
    let bin = common::binary();
    let out = Command::new(&bin).args([subcommand, "--help"]).output().with_context(|| format!("running {bin:?}"))?;
    if !out.status.success() {
        bail!("`raftcron {subcommand} --help` failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8(out.stdout)?;
    let mut h = Help::default();
    for line in text.lines() {
        let t = line.trim_start();
        let t = t.strip_prefix("-h, ").or_else(|| t.strip_prefix("-V, ")).unwrap_or(t);
        if t.starts_with("--") {
            let name: String = t.chars().take_while(|c| !c.is_whitespace() && *c != '=').collect();
            if name != "--help" && name != "--version" {
                h.flags.insert(name);
            }
        }
        if let Some((_, env)) = line.split_once("[env: ") {
            h.envs.extend(env_names(env));
        }
    }
    if h.flags.is_empty() {
        bail!("no flags found in `raftcron {subcommand} --help`:\n{text}");
    }
    Ok(h)
}

/// Joins shell continuation lines (`\` at the end) into one line.
fn logical_lines(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        match line.trim_end().strip_suffix('\\') {
            Some(head) => {
                cur.push_str(head);
                cur.push(' ');
            }
            None => {
                cur.push_str(line);
                out.push(std::mem::take(&mut cur));
            }
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The flags given to `raftcron serve` in `text`: on the (continued) line of a `raftcron serve`
/// command, and in YAML sequences such as `args: ["serve", "--flag", ...]`.
fn serve_flags(path: &Path, text: &str) -> Result<BTreeSet<String>> {
    // Template-only lines sit between continued lines of a command in the Helm chart.
    let text = if is_helm_template(path) { strip_helm(text) } else { text.to_string() };
    let mut out = BTreeSet::new();
    for line in logical_lines(&text) {
        if let Some((_, args)) = line.split_once("raftcron serve") {
            out.extend(long_flags(args));
        }
    }
    if is_yaml(path) {
        for doc in parse_yaml(&text)? {
            collect_sequence_flags(&doc, &mut out);
        }
    }
    Ok(out)
}

fn collect_sequence_flags(v: &serde_norway::Value, out: &mut BTreeSet<String>) {
    use serde_norway::Value;
    match v {
        Value::Sequence(items) => {
            let strings: Vec<&str> = items.iter().filter_map(Value::as_str).collect();
            if let Some(at) = strings.iter().position(|s| *s == "serve") {
                for s in &strings[at + 1..] {
                    if let Some(flag) = s.split('=').next().filter(|f| f.starts_with("--")) {
                        out.insert(flag.to_string());
                    }
                }
            }
            items.iter().for_each(|i| collect_sequence_flags(i, out));
        }
        Value::Mapping(m) => m.values().for_each(|i| collect_sequence_flags(i, out)),
        Value::Tagged(t) => collect_sequence_flags(&t.value, out),
        _ => {}
    }
}

fn fail_on(problems: Vec<String>) -> Result<()> {
    if problems.is_empty() {
        return Ok(());
    }
    bail!("{} problem(s):\n  {}", problems.len(), problems.join("\n  "))
}

#[test]
fn every_yaml_and_json_file_under_deploy_parses() -> Result<()> {
    let mut problems = Vec::new();
    let mut checked = 0;
    for (path, text) in deploy_files()? {
        if is_yaml(&path) {
            let text = if is_helm_template(&path) { strip_helm(&text) } else { text };
            match parse_yaml(&text) {
                Ok(docs) if docs.iter().all(|d| !d.is_null()) => checked += 1,
                Ok(_) => problems.push(format!("{}: an empty YAML document", path.display())),
                Err(e) => problems.push(format!("{}: {e}", path.display())),
            }
        } else if is_json(&path) {
            match serde_json::from_str::<serde_json::Value>(&text) {
                Ok(_) => checked += 1,
                Err(e) => problems.push(format!("{}: {e}", path.display())),
            }
        }
    }
    assert!(checked >= 10, "only {checked} YAML/JSON files found under deploy/");
    fail_on(problems)
}

#[test]
fn deploy_files_use_only_variables_the_node_reads() -> Result<()> {
    let h = help("serve")?;
    let mut problems = Vec::new();
    for (path, text) in deploy_files()? {
        for name in env_names(&text) {
            if !h.envs.contains(&name) && !ENV_NOT_FLAGS.contains(&name.as_str()) {
                problems.push(format!("{}: {name} is not read by `raftcron serve`", path.display()));
            }
        }
    }
    fail_on(problems)
}

#[test]
fn deploy_files_and_docs_pass_only_flags_serve_accepts() -> Result<()> {
    let h = help("serve")?;
    let root = repo_root();
    let mut files = deploy_files()?;
    for doc in ["docs/deploy.md", "docs/operations.md"] {
        let text = std::fs::read_to_string(root.join(doc)).with_context(|| format!("reading {doc}"))?;
        files.push((PathBuf::from(doc), text));
    }
    let mut problems = Vec::new();
    let mut used = 0;
    for (path, text) in files {
        for flag in serve_flags(&path, &text)? {
            used += 1;
            if !h.flags.contains(&flag) {
                problems.push(format!("{}: `raftcron serve {flag}` is not in `raftcron serve --help`", path.display()));
            }
        }
    }
    assert!(used > 0, "no `raftcron serve` flags found: the extraction is broken");
    fail_on(problems)
}

/// Metric names in `text`, with a histogram's `_bucket`, `_sum` and `_count` series mapped to
/// the histogram.
fn metric_problems(path: &Path, text: &str) -> (usize, Vec<String>) {
    let names = words(text, "raftcron_", |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    let mut problems = Vec::new();
    for name in &names {
        let known = |n: &str| METRICS.iter().find(|(m, _)| *m == n).map(|(_, k)| *k);
        let ok = known(name).is_some()
            || ["_bucket", "_sum", "_count"]
                .iter()
                .filter_map(|s| name.strip_suffix(s))
                .any(|base| known(base) == Some(Kind::Histogram));
        if !ok {
            problems.push(format!("{}: metric {name} is not one the nodes export", path.display()));
        }
    }
    (names.len(), problems)
}

#[test]
fn alerts_and_dashboard_use_only_exported_metrics() -> Result<()> {
    let mut problems = Vec::new();
    let mut seen = 0;
    for (path, text) in deploy_files()? {
        if !(path.starts_with("deploy/prometheus") || path.starts_with("deploy/grafana")) {
            continue;
        }
        let (n, p) = metric_problems(&path, &text);
        seen += n;
        problems.extend(p);
    }
    assert!(seen >= 10, "only {seen} metric names found in the alerts and dashboard");
    fail_on(problems)
}

#[test]
fn observability_doc_lists_every_exported_metric() -> Result<()> {
    let path = PathBuf::from("docs/observability.md");
    let text = std::fs::read_to_string(repo_root().join(&path))?;
    // Log targets (`raftcron_node::api::auth`) are crate paths, not metrics.
    let (_, mut problems) = metric_problems(&path, &text.replace("raftcron_node::", ""));
    for (name, kind) in METRICS {
        let kind = format!("{kind:?}").to_lowercase();
        if !text.lines().any(|l| l.starts_with(&format!("| `{name}` | {kind} |"))) {
            problems.push(format!("{}: no table row for {name} ({kind})", path.display()));
        }
    }
    fail_on(problems)
}

#[test]
fn alert_rules_are_complete() -> Result<()> {
    let path = repo_root().join("deploy/prometheus/raftcron-alerts.yaml");
    let rules: serde_json::Value = serde_norway::from_str(&std::fs::read_to_string(&path)?)?;
    let mut problems = Vec::new();
    let mut names = BTreeSet::new();
    for group in rules["groups"].as_array().context("groups")? {
        for rule in group["rules"].as_array().context("rules")? {
            let name = rule["alert"].as_str().unwrap_or("?").to_string();
            for field in ["expr", "labels.severity", "annotations.summary", "annotations.description"] {
                let v = field.split('.').fold(rule, |v, k| &v[k]);
                if v.as_str().is_none_or(str::is_empty) {
                    problems.push(format!("alert {name}: no {field}"));
                }
            }
            if !names.insert(name.clone()) {
                problems.push(format!("alert {name}: defined twice"));
            }
        }
    }
    for required in ["RaftcronNoLeader", "RaftcronQuorumLost", "RaftcronReplicationLag", "RaftcronFiresLate"] {
        if !names.contains(required) {
            problems.push(format!("no alert {required}"));
        }
    }
    fail_on(problems)
}

/// The flags documented in the section of `docs/configuration.md` headed `## `raftcron <sub>``:
/// the first cell of each table row.
fn documented_flags(doc: &str, sub: &str) -> Result<(BTreeSet<String>, String)> {
    let heading = format!("## `raftcron {sub}`");
    let start = doc.find(&heading).with_context(|| format!("docs/configuration.md has no heading {heading}"))?;
    let body = &doc[start + heading.len()..];
    let section = &body[..body.find("\n## ").unwrap_or(body.len())];
    let mut flags = BTreeSet::new();
    for row in section.lines().filter(|l| l.starts_with('|')) {
        if let Some(first) = row.split('|').nth(1) {
            flags.extend(long_flags(first));
        }
    }
    Ok((flags, section.to_string()))
}

#[test]
fn configuration_doc_matches_the_flags() -> Result<()> {
    let doc = std::fs::read_to_string(repo_root().join("docs/configuration.md"))?;
    let mut problems = Vec::new();
    for sub in ["serve", "dev"] {
        let h = help(sub)?;
        let (documented, section) = documented_flags(&doc, sub)?;
        for flag in h.flags.difference(&documented) {
            problems.push(format!("`raftcron {sub} {flag}` is not documented in docs/configuration.md"));
        }
        for flag in documented.difference(&h.flags) {
            problems
                .push(format!("docs/configuration.md documents `raftcron {sub} {flag}`, which --help does not list"));
        }
        for env in &h.envs {
            if !env_names(&section).contains(env) {
                problems.push(format!("docs/configuration.md does not name {env} under `raftcron {sub}`"));
            }
        }
    }
    for env in ENV_NOT_FLAGS {
        if !doc.contains(env) {
            problems.push(format!("docs/configuration.md does not document {env}"));
        }
    }
    fail_on(problems)
}

#[test]
fn strip_helm_keeps_the_yaml_shape() -> Result<()> {
    let template = "{{- if .Values.x }}\nmetadata:\n  labels:\n    {{- include \"l\" . | nindent 4 }}\n  name: {{ .Release.Name }}-x\n{{- end }}\n";
    let docs = parse_yaml(&strip_helm(template))?;
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0]["metadata"]["name"].as_str(), Some("x-x"));
    let flags = serve_flags(
        Path::new("deploy/helm/x/templates/s.yaml"),
        "exec raftcron serve \\\n  --a 1 \\\n  {{- if .Values.t }}\n  --b-c x \\\n  {{- end }}\n  --d\n--not-this\n",
    )?;
    assert_eq!(flags, ["--a", "--b-c", "--d"].into_iter().map(String::from).collect());
    Ok(())
}
