//! The `raftcron` binary: parse the command line, set up logging, run.

use clap::Parser;
use raftcron_node::config::{Cli, Command, LogFormat};

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
