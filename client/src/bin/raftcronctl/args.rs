//! The command line: every command, flag and environment variable of `raftcronctl` (clap).
//!
//! This module only describes the arguments; it does no I/O. Values the API validates (cron
//! expressions, URLs, CIDRs) pass through unchecked, so the node's message explains a mistake.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand, ValueEnum};
use uuid::Uuid;

/// Command-line client of a raftcron cluster.
///
/// Exit codes: 0 ok, 1 the API refused the request (4xx) or failed, 2 usage error or bad input,
/// 3 no node reachable or the cluster unavailable (no leader), 4 a write's outcome is unknown
/// (read before retrying), 5 a local file could not be read or written.
#[derive(Debug, Parser)]
#[command(name = "raftcronctl", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub struct Global {
    /// Base URL of a node, e.g. http://127.0.0.1:7001 (repeat for failover; env: comma-separated).
    #[arg(long = "url", env = "RAFTCRON_URL", value_delimiter = ',', global = true, value_name = "URL")]
    pub urls: Vec<String>,
    /// API key. Prefer the environment or --api-key-file: a flag is visible to other local users.
    #[arg(long, env = "RAFTCRON_API_KEY", hide_env_values = true, global = true, value_name = "KEY")]
    pub api_key: Option<String>,
    /// File holding the API key (its first line).
    #[arg(long, env = "RAFTCRON_API_KEY_FILE", global = true, value_name = "FILE", conflicts_with = "api_key")]
    pub api_key_file: Option<PathBuf>,
    /// Output format.
    #[arg(short, long, env = "RAFTCRON_OUTPUT", value_enum, default_value_t = Format::Table, global = true)]
    pub output: Format,
    /// Seconds one request to one node may take.
    #[arg(long, default_value_t = 15, global = true, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout: u64,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// The API's JSON answer, pretty-printed, for scripts.
    Json,
    /// The same as YAML.
    Yaml,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, inspect, change, run and delete jobs.
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// Manage API keys (scopes, IP allowlists, expiry).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Manage tenants and their quotas (needs cluster:admin).
    #[command(subcommand)]
    Tenants(TenantsCommand),
    /// Show the audit trail of changes, newest first.
    Audit(Paging),
    /// Inspect the cluster and change its membership.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Download a snapshot of the replicated state.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Print a shell completion script (e.g. `raftcronctl completions bash > /etc/bash_completion.d/raftcronctl`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// `--page` and `--page-size` of list commands.
#[derive(Debug, Clone, Copy, Args)]
pub struct Paging {
    /// Page to show (from 1).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub page: Option<u32>,
    /// Entries per page (1-500; the node's default is 50).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=500))]
    pub page_size: Option<u32>,
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// List jobs.
    #[command(visible_alias = "ls")]
    List {
        #[command(flatten)]
        paging: Paging,
        /// Every job, page after page (ignores --page).
        #[arg(long, conflicts_with = "page")]
        all: bool,
        /// Read this node's state without a leader round trip (may lag behind).
        #[arg(long)]
        stale: bool,
    },
    /// Show one job.
    Get {
        /// The job's id (a UUID, as `jobs list` shows).
        id: Uuid,
        /// Read this node's state without a leader round trip (may lag behind).
        #[arg(long)]
        stale: bool,
    },
    /// Create a job from flags, a JSON or YAML file, or both (flags win).
    Create(JobSpecArgs),
    /// Change some fields of a job (from flags, a file, or both; absent fields keep their value).
    Update {
        /// The job's id (a UUID, as `jobs list` shows).
        id: Uuid,
        #[command(flatten)]
        spec: JobSpecArgs,
    },
    /// Delete a job and its run history.
    #[command(visible_alias = "rm")]
    Delete {
        /// The job's id (a UUID, as `jobs list` shows).
        id: Uuid,
    },
    /// Stop scheduling a job (its definition and runs are kept).
    Pause {
        /// The job's id (a UUID, as `jobs list` shows).
        id: Uuid,
    },
    /// Schedule a paused job again.
    Resume {
        /// The job's id (a UUID, as `jobs list` shows).
        id: Uuid,
    },
    /// Run a job now, once, besides its schedule.
    Trigger {
        /// The job's id (a UUID, as `jobs list` shows).
        id: Uuid,
    },
    /// List a job's runs, newest first.
    Runs {
        /// The job's id (a UUID, as `jobs list` shows).
        id: Uuid,
        #[command(flatten)]
        paging: Paging,
        /// Read this node's state without a leader round trip (may lag behind).
        #[arg(long)]
        stale: bool,
    },
}

/// The fields of a job as flags; with `-f`, the file is the base and flags override it.
#[derive(Debug, Default, Args)]
pub struct JobSpecArgs {
    /// JSON or YAML file with the job's fields (`-` reads standard input).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Name of the job (up to 100 characters).
    #[arg(long)]
    pub name: Option<String>,
    /// The URL the job calls (http or https); `url` in a file. (`--url` is the node's URL.)
    #[arg(long = "target", value_name = "URL")]
    pub url: Option<String>,
    /// HTTP method (default GET on create).
    #[arg(long, value_parser = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"], ignore_case = true)]
    pub method: Option<String>,
    /// Five-field cron expression, e.g. "*/5 * * * *".
    #[arg(long = "cron", visible_alias = "schedule", value_name = "EXPR")]
    pub cron_expression: Option<String>,
    /// IANA time zone of the schedule, e.g. Europe/Berlin (default UTC).
    #[arg(long, visible_alias = "tz")]
    pub timezone: Option<String>,
    /// Request header `Name: value` (repeatable; on update the given headers replace all).
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// Request body (`--body ""` on update clears it).
    #[arg(long, conflicts_with = "body_file")]
    pub body: Option<String>,
    /// File whose content is the request body.
    #[arg(long, value_name = "FILE")]
    pub body_file: Option<PathBuf>,
    /// Seconds one attempt may take (1-120).
    #[arg(long = "timeout-seconds", value_name = "SECONDS")]
    pub timeout_seconds: Option<u32>,
    /// Retries after a failed attempt (0-10).
    #[arg(long, value_name = "N")]
    pub max_retries: Option<u32>,
    /// Seconds between attempts (10-3600).
    #[arg(long = "retry-delay", value_name = "SECONDS")]
    pub retry_delay_seconds: Option<u32>,
    /// Whether the job is scheduled (`false`: created paused).
    #[arg(long, value_name = "BOOL")]
    pub active: Option<bool>,
    /// Whether failures are notified.
    #[arg(long, value_name = "BOOL")]
    pub notify_on_failure: Option<bool>,
    /// Consecutive failures before a notification (1-10).
    #[arg(long, value_name = "N")]
    pub notify_after_failures: Option<u32>,
    /// Slots older than this when their owner gets to them are recorded as missed (10-86400).
    #[arg(long = "starting-deadline", value_name = "SECONDS")]
    pub starting_deadline_seconds: Option<u32>,
    /// Whether a slot may start while the previous run is still running.
    #[arg(long, value_name = "POLICY", value_parser = ["allow", "forbid"])]
    pub concurrency_policy: Option<String>,
    /// What happens to a slot whose sender died mid-request.
    #[arg(long, value_name = "GUARANTEE", value_parser = ["at_least_once", "at_most_once"])]
    pub delivery: Option<String>,
    /// Redirects one attempt follows (0-5).
    #[arg(long, value_name = "N")]
    pub follow_redirects: Option<u32>,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// List API keys (never the keys themselves).
    #[command(visible_alias = "ls")]
    List {
        #[command(flatten)]
        paging: Paging,
    },
    /// Create an API key; the key is printed once, store it right away.
    Create {
        /// A name to tell keys apart (e.g. "CI deploy").
        #[arg(long)]
        name: String,
        /// admin, custom (default) or telemetry.
        #[arg(long, value_parser = ["admin", "custom", "telemetry"])]
        kind: Option<String>,
        /// Scope of a custom key (repeatable), e.g. jobs:read; see `raftcronctl keys create --help`.
        #[arg(long = "scope", value_name = "SCOPE", long_help = scopes_help())]
        scopes: Vec<String>,
        /// CIDR the key may be used from (repeatable); none: anywhere.
        #[arg(long = "allow-cidr", value_name = "CIDR")]
        allowed_cidrs: Vec<String>,
        /// When the key stops working (RFC 3339, e.g. 2027-01-01T00:00:00Z).
        #[arg(long, value_name = "TIME")]
        expires_at: Option<DateTime<Utc>>,
        /// Tenant of the key (another tenant only with cluster:admin).
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Show one API key.
    Get {
        /// The key's id (as `keys list` shows; not the key itself).
        id: String,
    },
    /// Change an API key's name, scopes, allowlist or expiry.
    Update {
        /// The key's id (as `keys list` shows; not the key itself).
        id: String,
        /// New name.
        #[arg(long)]
        name: Option<String>,
        /// The new scopes (repeatable; replaces them all).
        #[arg(long = "scope", value_name = "SCOPE")]
        scopes: Vec<String>,
        /// The new allowlist (repeatable; replaces it).
        #[arg(long = "allow-cidr", value_name = "CIDR", conflicts_with = "allow_anywhere")]
        allowed_cidrs: Vec<String>,
        /// Clear the allowlist: the key works from anywhere.
        #[arg(long)]
        allow_anywhere: bool,
        /// New expiry (RFC 3339).
        #[arg(long, value_name = "TIME", conflicts_with = "no_expiry")]
        expires_at: Option<DateTime<Utc>>,
        /// Remove the expiry.
        #[arg(long)]
        no_expiry: bool,
    },
    /// Revoke an API key: it stops working at once.
    #[command(visible_alias = "delete")]
    Revoke {
        /// The key's id (as `keys list` shows; not the key itself).
        id: String,
    },
}

fn scopes_help() -> String {
    format!(
        "Scope of a custom key (repeatable). Scopes: {}. Telemetry keys have {} only.",
        raftcron_client::SCOPES.join(", "),
        raftcron_client::TELEMETRY_SCOPES.join(" and ")
    )
}

#[derive(Debug, Subcommand)]
pub enum TenantsCommand {
    /// List tenants.
    #[command(visible_alias = "ls")]
    List {
        #[command(flatten)]
        paging: Paging,
    },
    /// Create a tenant.
    Create {
        /// Tenant id: a-z, 0-9 and '-', 1 to 63 characters.
        id: String,
        /// Display name.
        #[arg(long)]
        name: String,
        #[command(flatten)]
        quotas: QuotaArgs,
    },
    /// Show one tenant.
    Get {
        /// The tenant's id.
        id: String,
    },
    /// Change a tenant's name or quotas.
    Update {
        /// The tenant's id.
        id: String,
        /// New display name.
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        quotas: QuotaArgs,
        /// Remove a quota (repeatable): max-jobs, min-interval or rate-limit.
        #[arg(long = "unset", value_name = "QUOTA", value_parser = ["max-jobs", "min-interval", "rate-limit"])]
        unset: Vec<String>,
    },
    /// Delete a tenant.
    #[command(visible_alias = "rm")]
    Delete {
        /// The tenant's id.
        id: String,
    },
}

/// A tenant's quotas.
#[derive(Debug, Clone, Copy, Args)]
pub struct QuotaArgs {
    /// Most jobs the tenant may have.
    #[arg(long, value_name = "N")]
    pub max_jobs: Option<u32>,
    /// Shortest interval between two runs of a job, in seconds.
    #[arg(long = "min-interval", value_name = "SECONDS")]
    pub min_interval_seconds: Option<u32>,
    /// API requests per minute.
    #[arg(long = "rate-limit", value_name = "PER_MINUTE")]
    pub rate_limit_per_minute: Option<u32>,
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// The answering node's view: leader, term, log indexes and members.
    Status,
    /// The members, their roles and shard counts.
    Members,
    /// Add a node that was started without --initial-cluster.
    Add {
        node_id: u64,
        /// The new node's HOST:PORT as the other nodes reach it.
        addr: String,
    },
    /// Remove a node from the cluster.
    #[command(visible_alias = "rm")]
    Remove { node_id: u64 },
    /// Shards per node, or (--all) every shard's owner.
    Shards {
        #[arg(long)]
        all: bool,
    },
    /// /healthz and /readyz of every --url (exit 3 when one is not ready).
    Health,
}

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Save the latest snapshot to FILE (`-`: standard output).
    Save { file: PathBuf },
}
