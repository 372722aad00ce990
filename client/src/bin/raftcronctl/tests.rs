//! Argument parsing: global options anywhere, environment fallbacks, and usage errors.

use clap::Parser;

use super::*;
use crate::args::{Format, JobsCommand, KeysCommand, TenantsCommand};

fn parse(argv: &[&str]) -> Result<Cli, clap::Error> {
    let mut full = vec!["raftcronctl"];
    full.extend_from_slice(argv);
    Cli::try_parse_from(full)
}

#[test]
fn the_definition_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn global_options_go_anywhere_and_urls_repeat() {
    let cli = parse(&["jobs", "list", "--url", "http://a:1", "-o", "json", "--url", "b:2,c:3", "--page", "2"]).unwrap();
    assert_eq!(cli.global.output, Format::Json);
    assert_eq!(node_urls(&cli.global.urls).unwrap(), ["http://a:1", "http://b:2", "http://c:3"]);
    match cli.command {
        Command::Jobs(JobsCommand::List { paging, all, stale }) => {
            assert_eq!((paging.page, paging.page_size, all, stale), (Some(2), None, false, false));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn usage_errors_are_exit_code_2() {
    for argv in [
        &["jobs", "get", "not-a-uuid"][..],
        &["jobs", "list", "--page", "0"],
        &["jobs", "list", "--page-size", "501"],
        &["jobs", "frobnicate"],
        &["jobs", "create", "--method", "TRACE"],
        &["keys", "update", "k", "--expires-at", "tomorrow"],
        &["keys", "update", "k", "--expires-at", "2027-01-01T00:00:00Z", "--no-expiry"],
        &["-o", "xml", "cluster", "status"],
    ] {
        let e = parse(argv).unwrap_err();
        assert!(e.use_stderr(), "{argv:?} should be an error");
    }
    assert!(!parse(&["--help"]).unwrap_err().use_stderr());
    assert!(matches!(node_urls(&[]).unwrap_err().exit(), Exit::Usage));
    assert!(matches!(node_urls(&[" ".into()]).unwrap_err().exit(), Exit::Usage));
}

#[test]
fn key_and_tenant_commands_parse_into_patches() {
    let cli = parse(&["keys", "create", "--name", "ci", "--scope", "jobs:read", "--scope", "jobs:write"]).unwrap();
    match cli.command {
        Command::Keys(KeysCommand::Create { name, scopes, kind, .. }) => {
            assert_eq!((name.as_str(), scopes.len(), kind), ("ci", 2, None));
        }
        other => panic!("{other:?}"),
    }
    let patch = access::key_patch(None, vec![], vec![], true, None, true).unwrap();
    assert_eq!(patch.allowed_cidrs, Some(vec![]));
    assert_eq!(patch.expires_at, Some(None));
    let json = serde_json::to_value(&patch).unwrap();
    assert_eq!(json, serde_json::json!({"allowed_cidrs": [], "expires_at": null}));
    assert!(access::key_patch(None, vec![], vec![], false, None, false).is_err());

    let cli = parse(&["tenants", "update", "acme", "--max-jobs", "10", "--unset", "rate-limit"]).unwrap();
    let Command::Tenants(TenantsCommand::Update { name, quotas, unset, .. }) = cli.command else { panic!() };
    let patch = access::tenant_patch(name, quotas, &unset).unwrap();
    let json = serde_json::to_value(&patch).unwrap();
    assert_eq!(json, serde_json::json!({"max_jobs": 10, "rate_limit_per_minute": null}));
    let cli = parse(&["tenants", "update", "acme", "--max-jobs", "10", "--unset", "max-jobs"]).unwrap();
    let Command::Tenants(TenantsCommand::Update { name, quotas, unset, .. }) = cli.command else { panic!() };
    assert!(access::tenant_patch(name, quotas, &unset).is_err());
}

#[test]
fn the_api_key_never_shows_in_help() {
    let help = Cli::command().render_long_help().to_string();
    assert!(help.contains("RAFTCRON_API_KEY"));
    assert!(help.contains("RAFTCRON_URL"));
}

#[test]
fn completions_are_generated_for_every_shell() {
    for shell in [clap_complete::Shell::Bash, clap_complete::Shell::Zsh, clap_complete::Shell::Fish] {
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "raftcronctl", &mut buf);
        assert!(String::from_utf8_lossy(&buf).contains("snapshot"), "{shell}");
    }
}

#[test]
fn a_created_key_is_printed_once_on_its_own_line() {
    let json = serde_json::json!({
        "id": "k1", "name": "ci", "prefix": "rcn_ab12", "kind": "custom", "scopes": ["jobs:read"],
        "allowed_cidrs": [], "immutable": false, "tenant": "default", "expires_at": null,
        "last_used_at": null, "created_at": "2026-04-27T10:05:00Z", "updated_at": "2026-04-27T10:05:00Z",
        "key": "rcn_ab12_full_secret_key"
    });
    let created: raftcron_client::CreatedKey = serde_json::from_value(json).unwrap();
    let table = access::created_key_table(&created);
    assert_eq!(table.matches("rcn_ab12_full_secret_key").count(), 1);
    assert!(table.ends_with("\n\nkey: rcn_ab12_full_secret_key"), "{table}");
    assert!(access::STORE_KEY_WARNING.contains("shown only once"));
}
