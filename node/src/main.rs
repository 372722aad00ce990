//! The `raftcron` binary: parse the command line, set up logging, run.

use clap::Parser;
use raftcron_node::config::{Cli, Command, LogFormat};

// A node allocates and frees small buffers on every request, entry and apply; mimalloc's
// per-thread free lists make that cheaper than glibc's malloc (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RAFTCRON_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// The multi-threaded runtime everything runs on: `workers` threads, or one per core.
fn runtime(workers: Option<usize>) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = workers {
        builder.worker_threads(n);
    }
    builder.enable_all().build()
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // `serve` is resolved first: its configuration sizes the runtime.
    let (command, workers) = match cli.command {
        Command::Serve(args) => {
            let admin_key = std::env::var("RAFTCRON_ADMIN_KEY").ok().filter(|k| !k.is_empty());
            match args.resolve(admin_key) {
                Ok(cfg) => {
                    let workers = cfg.worker_threads;
                    (Resolved::Serve(Box::new(cfg)), workers)
                }
                Err(e) => {
                    eprintln!("raftcron: {e}");
                    return std::process::ExitCode::from(2);
                }
            }
        }
        Command::Keygen => (Resolved::Keygen, None),
        Command::Restore(args) => (Resolved::Restore(args), None),
        Command::Dev(args) => (Resolved::Dev(args), None),
    };
    match runtime(workers) {
        Ok(rt) => rt.block_on(run(command)),
        Err(e) => {
            eprintln!("raftcron: starting the async runtime: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// A command ready to run, `serve` with its resolved configuration.
enum Resolved {
    Serve(Box<raftcron_node::config::Config>),
    Keygen,
    Restore(raftcron_node::config::RestoreArgs),
    Dev(raftcron_node::config::DevArgs),
}

async fn run(command: Resolved) -> std::process::ExitCode {
    let _failpoints = raftcron_node::failpoint::setup();
    let result = match command {
        Resolved::Serve(cfg) => {
            init_tracing(cfg.log_format);
            raftcron_node::server::run(*cfg, raftcron_node::server::signal(), None).await
        }
        Resolved::Keygen => {
            println!("{}", raftcron_node::crypto::MasterKey::generate().to_base64().as_str());
            Ok(())
        }
        Resolved::Restore(args) => {
            let source = match (args.from, args.from_data_dir) {
                (Some(f), _) => Ok(raftcron_node::restore::Source::File(f)),
                (None, Some(d)) => Ok(raftcron_node::restore::Source::DataDir(d)),
                (None, None) => Err(anyhow::anyhow!("give --from FILE or --from-data-dir DIR")),
            };
            source
                .and_then(|source| {
                    raftcron_node::restore::restore(&source, &args.data_dir, args.node_id, &args.advertise)
                })
                .map(|r| {
                    println!(
                        "restored {} jobs, {} API keys and {} tenants as of log index {} into {}",
                        r.jobs,
                        r.keys,
                        r.tenants,
                        r.last_index,
                        args.data_dir.display()
                    );
                    println!(
                        "next: raftcron serve --node-id {} --listen {} --data-dir {} (no --initial-cluster), \
                     then add members with POST /api/v1/cluster/nodes",
                        args.node_id,
                        args.advertise,
                        args.data_dir.display()
                    );
                })
        }
        Resolved::Dev(args) => {
            init_tracing(args.log_format);
            raftcron_node::dev::run(args).await
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("raftcron: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
