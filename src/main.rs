//! The `gateway` command line: `run`, `check`, `hash-password`.
//!
//! Exit codes: 0 success, 1 runtime failure, 2 invalid configuration or usage.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use gateway::config;
use gateway::telemetry::{self, LogFormat};

#[derive(Parser)]
#[command(
    name = "gateway",
    version,
    about = "JWT auth gateway: issues tokens, verifies them, forwards with X-Identity"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve with a config file.
    Run {
        #[arg(long, default_value = "gateway.toml")]
        config: PathBuf,
        /// Overrides `[logging] format` (default human).
        #[arg(long, value_enum)]
        log_format: Option<LogFormat>,
    },
    /// Validate a config file and print every problem; exits 2 if there is any.
    Check {
        #[arg(long, default_value = "gateway.toml")]
        config: PathBuf,
    },
    /// Read a password on stdin and print its argon2id hash for `[[users]] password_hash`.
    HashPassword,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config, log_format } => run(&config, log_format),
        Command::Check { config } => check(&config),
        Command::HashPassword => match hash_password() {
            Ok(h) => {
                println!("{h}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn check(path: &Path) -> ExitCode {
    match config::load(path) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                eprintln!("warning: {w}");
            }
            println!(
                "{}: ok ({} route(s), {} user(s))",
                path.display(),
                loaded.config.routes.len(),
                loaded.config.users.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprint!("{}: {e}", path.display());
            ExitCode::from(2)
        }
    }
}

fn run(path: &Path, log_format: Option<LogFormat>) -> ExitCode {
    let loaded = match config::load(path) {
        Ok(l) => l,
        Err(e) => {
            // Logging is not set up yet: its format comes from this very file.
            eprint!("{}: {e}", path.display());
            return ExitCode::from(2);
        }
    };
    telemetry::init(log_format.unwrap_or(loaded.config.logging.format));
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    let cfg = loaded.config;
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = cfg.server.workers {
        rt.worker_threads(n);
    }
    let rt = match rt.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result: anyhow::Result<()> = rt.block_on(async {
        let started = gateway::start_file(path, &cfg, shutdown_signal())
            .await
            .map_err(anyhow::Error::msg)?;
        tracing::info!(addr = %started.addr, admin = ?started.admin_addr, routes = cfg.routes.len(), "listening");
        let drained = started.serving.await;
        tracing::info!(?drained, "stopped");
        Ok(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("shutdown signal received");
}

fn hash_password() -> anyhow::Result<String> {
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .context("reading the password from stdin")?;
    let password = input
        .strip_suffix('\n')
        .map(|p| p.strip_suffix('\r').unwrap_or(p))
        .unwrap_or(&input);
    anyhow::ensure!(!password.is_empty(), "empty password on stdin");
    gateway::auth::users::hash_password(password.as_bytes())
        .map_err(|e| anyhow::anyhow!("hashing failed: {e}"))
}
