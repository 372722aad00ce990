use std::io::Write;

use clap::Parser;

use super::*;

/// A valid master key (32 zero bytes), added unless the test gives its own.
const MASTER: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

fn serve(args: &[&str]) -> ServeArgs {
    let mut argv = vec!["raftcron", "serve"];
    argv.extend_from_slice(args);
    if !args.iter().any(|a| a.starts_with("--master-key") || *a == "--no-master-key") {
        argv.extend_from_slice(&["--master-key", MASTER]);
    }
    argv.retain(|a| *a != "--no-master-key");
    match Cli::try_parse_from(argv).unwrap().command {
        Command::Serve(a) => *a,
        _ => unreachable!(),
    }
}

const VALID: [&str; 8] =
    ["--node-id", "1", "--listen", "127.0.0.1:7001", "--data-dir", "/tmp/x", "--cluster-secret", "0123456789abcdef"];

#[test]
fn the_master_key_is_required_and_checked() {
    let args = |extra: &[&'static str]| [&VALID[..], extra].concat();
    let text = serve(&args(&["--no-master-key"])).resolve(None).unwrap_err().to_string();
    assert!(text.contains("RAFTCRON_MASTER_KEY") && text.contains("raftcron keygen"), "{text}");
    let text = serve(&args(&["--master-key", "c2hvcnQ="])).resolve(None).unwrap_err().to_string();
    assert!(text.contains("32 bytes"), "{text}");
    let text = serve(&args(&["--master-key", MASTER, "--master-key-file", "/nonexistent"]))
        .resolve(None)
        .unwrap_err()
        .to_string();
    assert!(text.contains("not both"), "{text}");
    let cfg =
        serve(&args(&["--previous-master-key", "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="])).resolve(None).unwrap();
    assert_eq!(cfg.keyring.ids().all.len(), 2);
}

const SECRET: &str = "0123456789abcdef";

#[test]
fn a_minimal_valid_config_resolves_with_defaults() {
    let cfg = serve(&[
        "--node-id",
        "2",
        "--listen",
        "127.0.0.1:7002",
        "--data-dir",
        "/tmp/x",
        "--initial-cluster",
        "1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003",
        "--cluster-secret",
        SECRET,
    ])
    .resolve(None)
    .unwrap();
    assert_eq!(cfg.node_id, 2);
    assert_eq!(cfg.advertise, "127.0.0.1:7002");
    assert_eq!(cfg.initial_cluster.len(), 3);
    assert!(!cfg.allow_private_targets);
}

#[test]
fn every_problem_is_reported_at_once() {
    let err = serve(&["--listen", "nope", "--initial-cluster", "1=a"]).resolve(Some("short".into())).unwrap_err();
    let text = err.to_string();
    for needle in ["--node-id", "--listen", "--data-dir", "--initial-cluster", "--cluster-secret", "RAFTCRON_ADMIN_KEY"]
    {
        assert!(text.contains(needle), "{needle} missing from {text}");
    }
}

#[test]
fn flags_win_over_the_file_and_the_file_over_defaults() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(
        file,
        "node_id = 3\nlisten = \"127.0.0.1:9000\"\ndata_dir = \"/tmp/f\"\ncluster_secret = \"{SECRET}\"\nelection_timeout_ms = 900\nallow_private_targets = true"
    )
    .unwrap();
    let path = file.path().to_str().unwrap().to_string();
    let cfg = serve(&["--config", &path, "--listen", "127.0.0.1:9100"]).resolve(None).unwrap();
    assert_eq!(cfg.node_id, 3, "from the file");
    assert_eq!(cfg.listen.port(), 9100, "the flag wins");
    assert_eq!(cfg.tuning.election_timeout.as_millis(), 900);
    assert!(cfg.allow_private_targets);
    assert_eq!(cfg.lease_ms, 1800, "the default lease is at least twice the election timeout");
    assert_eq!(cfg.tuning.keep_after_snapshot, 2_000, "default snapshot interval keeps 2,000 entries");
}

#[test]
fn unknown_file_keys_are_refused() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(file, "nodeid = 3").unwrap();
    let path = file.path().to_str().unwrap().to_string();
    let err = serve(&["--config", &path]).resolve(None).unwrap_err();
    assert!(err.to_string().contains("nodeid"), "{err}");
}

#[test]
fn initial_cluster_parsing() {
    assert!(parse_initial_cluster("1=127.0.0.1:1,2=h:2").is_ok());
    assert!(parse_initial_cluster("1=127.0.0.1:1,1=h:2").is_err());
    assert!(parse_initial_cluster("0=h:1").is_err());
    assert!(parse_initial_cluster("x=h:1").is_err());
    assert!(parse_initial_cluster("1=h").is_err());
    assert!(parse_initial_cluster("").is_err());
}

#[test]
fn formation_settings_have_bounds() {
    let base = ["--node-id", "1", "--listen", "127.0.0.1:7001", "--data-dir", "/tmp/x", "--cluster-secret", SECRET];
    let mut args = base.to_vec();
    args.extend(["--shards", "0", "--run-history", "5", "--lease-ms", "100"]);
    let text = serve(&args).resolve(None).unwrap_err().to_string();
    assert!(text.contains("--shards") && text.contains("--run-history") && text.contains("--lease-ms"), "{text}");
    let mut args = base.to_vec();
    args.extend(["--lease-ms", "800", "--election-timeout-ms", "500"]);
    let text = serve(&args).resolve(None).unwrap_err().to_string();
    assert!(text.contains("--lease-ms: must be at least twice --election-timeout-ms"), "{text}");
    let mut args = base.to_vec();
    args.extend(["--shards", "64", "--run-history", "500", "--lease-ms", "1000"]);
    let cfg = serve(&args).resolve(None).unwrap();
    assert_eq!((cfg.shards, cfg.run_history, cfg.lease_ms), (64, 500, 1000));
    let defaults = serve(&base).resolve(None).unwrap();
    assert_eq!(defaults.lease_ms, 700, "the default lease");
    assert_eq!(defaults.dead_after, std::time::Duration::from_secs(5), "the default patience");
    let mut args = base.to_vec();
    args.extend(["--dead-after-ms", "600001"]);
    let text = serve(&args).resolve(None).unwrap_err().to_string();
    assert!(text.contains("--dead-after-ms: must be at most 600000"), "{text}");
    let mut args = base.to_vec();
    args.extend(["--dead-after-ms", "0"]);
    assert_eq!(serve(&args).resolve(None).unwrap().dead_after, std::time::Duration::ZERO);
}

#[test]
fn worker_threads_default_to_the_cores_and_have_bounds() {
    assert_eq!(serve(&VALID).resolve(None).unwrap().worker_threads, None, "one per core");
    let mut args = VALID.to_vec();
    args.extend(["--worker-threads", "1"]);
    assert_eq!(serve(&args).resolve(None).unwrap().worker_threads, Some(1));
    for bad in ["0", "1025"] {
        let mut args = VALID.to_vec();
        args.extend(["--worker-threads", bad]);
        let text = serve(&args).resolve(None).unwrap_err().to_string();
        assert!(text.contains("--worker-threads: must be between 1 and 1024"), "{text}");
    }
}
