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

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let _failpoints = raftcron_node::failpoint::setup();
    let result = match cli.command {
        Command::Serve(args) => {
            let admin_key = std::env::var("RAFTCRON_ADMIN_KEY").ok().filter(|k| !k.is_empty());
            match args.resolve(admin_key) {
                Ok(cfg) => {
                    init_tracing(cfg.log_format);
                    raftcron_node::server::run(cfg, raftcron_node::server::signal(), None).await
                }
                Err(e) => {
                    eprintln!("raftcron: {e}");
                    return std::process::ExitCode::from(2);
                }
            }
        }
        Command::Keygen => {
            println!("{}", raftcron_node::crypto::MasterKey::generate().to_base64().as_str());
            Ok(())
        }
        Command::Restore(args) => {
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
        Command::Dev(args) => {
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
