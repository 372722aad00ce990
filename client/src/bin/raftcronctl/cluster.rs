//! `raftcronctl cluster ...` and `snapshot save`.

use std::io::IsTerminal;
use std::path::Path;

use raftcron_client::{ClusterEnvelope, HealthStatus, OkResponse};
use serde::Serialize;

use crate::args::{ClusterCommand, SnapshotCommand};
use crate::exit::{CliError, Context, Exit};
use crate::render::{note, table};
use crate::{views, Ctx};

/// One row of `cluster health`.
#[derive(Debug, Serialize)]
struct NodeHealth {
    url: String,
    healthy: bool,
    ready: bool,
    reason: Option<String>,
}

pub async fn run(ctx: &Ctx, cmd: ClusterCommand) -> Result<(), CliError> {
    let c = &ctx.client;
    match cmd {
        ClusterCommand::Status => {
            let env = ClusterEnvelope { cluster: c.cluster().await.context("reading the cluster status")? };
            ctx.out.emit(&env, || views::cluster(&env.cluster))
        }
        ClusterCommand::Members => {
            let status = c.cluster().await.context("reading the cluster members")?;
            ctx.out.emit(&status.members, || views::members(&status.members))
        }
        ClusterCommand::Add { node_id, addr } => {
            let cluster = c.add_node(node_id, &addr).await.context(format!("adding node {node_id}"))?;
            if ctx.out.is_table() {
                note(&format!("added node {node_id} ({addr})"));
            }
            let env = ClusterEnvelope { cluster };
            ctx.out.emit(&env, || views::cluster(&env.cluster))
        }
        ClusterCommand::Remove { node_id } => {
            c.remove_node(node_id).await.context(format!("removing node {node_id}"))?;
            ctx.out.emit(&OkResponse { ok: true }, || format!("removed node {node_id}"))
        }
        ClusterCommand::Shards { all } => {
            let s = c.shards().await.context("reading the shard assignment")?;
            ctx.out.emit(&s, || if all { views::shards(&s) } else { views::shards_per_node(&s) })
        }
        ClusterCommand::Health => health(ctx).await,
    }
}

/// Probes every URL; fails (exit 3) when one is not ready.
async fn health(ctx: &Ctx) -> Result<(), CliError> {
    let mut rows = Vec::new();
    for url in ctx.client.urls() {
        let healthy = ctx.client.healthz(url).await;
        let ready = ctx.client.readyz(url).await;
        let reason = match (&healthy, &ready) {
            (Err(e), _) | (_, Err(e)) => Some(e.to_string()),
            (_, Ok(HealthStatus { reason, .. })) => reason.clone(),
        };
        rows.push(NodeHealth {
            url: url.clone(),
            healthy: healthy.is_ok_and(|h| h.status == "ok"),
            ready: ready.is_ok_and(|h| h.status == "ready"),
            reason,
        });
    }
    ctx.out.emit(&rows, || {
        let yes = |b: bool| if b { "yes" } else { "no" }.to_string();
        let cells = rows
            .iter()
            .map(|r| vec![r.url.clone(), yes(r.healthy), yes(r.ready), r.reason.clone().unwrap_or_else(|| "-".into())])
            .collect();
        table(&["URL", "HEALTHY", "READY", "REASON"], cells)
    })?;
    let not_ready = rows.iter().filter(|r| !r.ready).count();
    if not_ready > 0 {
        return Err(CliError::Failed {
            message: format!("{not_ready} of {} nodes are not ready", rows.len()),
            exit: Exit::Unavailable,
        });
    }
    Ok(())
}

pub async fn snapshot(ctx: &Ctx, cmd: SnapshotCommand) -> Result<(), CliError> {
    let SnapshotCommand::Save { file } = cmd;
    if file == Path::new("-") {
        if std::io::stdout().is_terminal() {
            return Err(CliError::usage_hint(
                "refusing to write a binary snapshot to a terminal",
                "redirect standard output (`raftcronctl snapshot save - > backup.snap`) or give a FILE",
            ));
        }
        let mut out = std::io::stdout().lock();
        let n = ctx.client.snapshot_to_writer(&mut out).await.context("downloading the snapshot")?;
        note(&format!("wrote {n} bytes of snapshot to standard output"));
        return Ok(());
    }
    let n = ctx.client.save_snapshot(&file).await.context("saving the snapshot")?;
    note(&format!("saved the snapshot ({n} bytes) to {}", file.display()));
    Ok(())
}
