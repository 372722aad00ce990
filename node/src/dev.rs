//! `raftcron dev`: a local cluster of N nodes in one process, on 127.0.0.1, for trying raftcron.
//!
//! It keeps its cluster secret and admin key in the data directory (mode 0600) so a restart
//! reuses them and the cluster's data. Private targets are allowed. Not for production.

use std::path::Path;

use anyhow::Context;

use crate::config::{DevArgs, ServeArgs};
use crate::model::apikey;

fn read_or_create(path: &Path, make: impl FnOnce() -> String) -> anyhow::Result<String> {
    if let Ok(s) = std::fs::read_to_string(path) {
        return Ok(s.trim().to_string());
    }
    let value = make();
    std::fs::write(path, format!("{value}\n")).with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(value)
}

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir).with_context(|| format!("creating {}", args.data_dir.display()))?;
    let secret = read_or_create(&args.data_dir.join("cluster-secret"), apikey::generate)?;
    let admin_key = read_or_create(&args.data_dir.join("admin-key"), apikey::generate)?;
    let master_key_path = args.data_dir.join("master-key");
    let master_key =
        read_or_create(&master_key_path, || crate::crypto::MasterKey::generate().to_base64().as_str().to_owned())?;
    tracing::warn!(
        path = %master_key_path.display(),
        "dev mode keeps a generated master key next to the data; a real cluster takes RAFTCRON_MASTER_KEY"
    );
    let port = |i: u64| u64::from(args.port) + i - 1;
    if port(args.nodes) > u64::from(u16::MAX) {
        anyhow::bail!("--port {} leaves no room for {} nodes", args.port, args.nodes);
    }
    let initial: Vec<String> = (1..=args.nodes).map(|i| format!("{i}=127.0.0.1:{}", port(i))).collect();
    let (stop_tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let mut tasks = Vec::new();
    for i in 1..=args.nodes {
        let cfg = ServeArgs {
            node_id: Some(i),
            listen: Some(format!("127.0.0.1:{}", port(i))),
            data_dir: Some(args.data_dir.join(format!("node-{i}"))),
            initial_cluster: Some(initial.join(",")),
            cluster_secret: Some(secret.clone()),
            master_key: Some(master_key.clone()),
            allow_private_targets: Some(true),
            log_format: Some(args.log_format),
            ..ServeArgs::default()
        }
        .resolve(Some(admin_key.clone()))?;
        let mut stop = stop_tx.subscribe();
        let span = tracing::info_span!("node", id = i);
        tasks.push(tokio::spawn(tracing::Instrument::instrument(
            crate::server::run(
                cfg,
                async move {
                    let _ = stop.recv().await;
                },
                None,
            ),
            span,
        )));
    }
    println!("raftcron dev cluster: {} nodes, data in {}", args.nodes, args.data_dir.display());
    for i in 1..=args.nodes {
        println!("  node {i}: http://127.0.0.1:{}", port(i));
    }
    println!("admin API key: {admin_key}");
    println!("try: curl -H \"Authorization: Bearer {admin_key}\" http://127.0.0.1:{}/api/v1/cluster", args.port);
    println!("jobs may target private addresses in dev mode. Ctrl-C stops the cluster; data is kept.");
    crate::server::signal().await;
    let _ = stop_tx.send(());
    for t in tasks {
        match t.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "node failed"),
            Err(e) => tracing::error!(error = %e, "node task failed"),
        }
    }
    Ok(())
}
