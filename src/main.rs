//! The `gateway` command line: `run`, `check`, `hash-password`, `keygen`, `token ...`.
//!
//! Exit codes: 0 success, 1 runtime failure (or `token verify`: token refused), 2 invalid
//! configuration or usage.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use gateway::auth::{authority::Authority, inspect, keygen, login::Issuer, users::Users};
use gateway::config;
use gateway::config::UserId;
use gateway::telemetry::{self, LogFormat};
use serde_json::Value;

// The request path makes many small, short-lived allocations (hyper, http, serde_json);
// mimalloc serves them in far fewer instructions than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Generate a key for the [[keys]] keyring: a PEM pair (or an HMAC secret) in DIR.
    Keygen {
        /// HS256/384/512, RS256/384/512, PS256/384/512, ES256, ES384 or EdDSA.
        #[arg(long)]
        algorithm: String,
        /// Directory to write `<id>.private.pem` and `<id>.public.pem` (or `<id>.secret`) into.
        #[arg(long)]
        out: PathBuf,
        /// The key id (kid); default: a prefix of the key's RFC 7638 thumbprint.
        #[arg(long)]
        id: Option<String>,
    },
    /// Revoke every token of a user, or one token by its jti, on every instance sharing
    /// the configured Redis store (needs `[revocation]` and `[store] backend = "redis"`).
    #[command(group(clap::ArgGroup::new("what").required(true).args(["user", "jti"])))]
    Revoke {
        #[arg(long, default_value = "gateway.toml")]
        config: PathBuf,
        /// The user: an integer, or any other text as a string. Cuts every token of
        /// theirs issued until now.
        #[arg(long)]
        user: Option<String>,
        /// One token's jti.
        #[arg(long)]
        jti: Option<String>,
    },
    /// Mint, verify or inspect tokens (operator tools).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Sign a token with the configured signing key and print it.
    Mint {
        #[arg(long, default_value = "gateway.toml")]
        config: PathBuf,
        /// The identity: an integer, or any other text as a string.
        #[arg(long)]
        identity: String,
        /// An extra claim `name=value`; the value is JSON if it parses, else a string.
        #[arg(long = "claim", value_name = "NAME=VALUE")]
        claims: Vec<String>,
    },
    /// Verify a token as the gateway would (our keys and every [[issuers]] entry); prints
    /// the verdict and the precise reason. Exits 0 when valid, 1 when refused.
    Verify {
        #[arg(long, default_value = "gateway.toml")]
        config: PathBuf,
        token: String,
    },
    /// Decode a token's header and payload WITHOUT verifying it.
    Inspect { token: String },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config, log_format } => run(&config, log_format),
        Command::Check { config } => check(&config),
        Command::Keygen { algorithm, out, id } => report(keygen(&algorithm, &out, id)),
        Command::Revoke { config, user, jti } => revoke(&config, user.as_deref(), jti.as_deref()),
        Command::Token { command } => match command {
            TokenCommand::Mint {
                config,
                identity,
                claims,
            } => report(mint(&config, &identity, &claims)),
            TokenCommand::Verify { config, token } => verify(&config, &token),
            TokenCommand::Inspect { token } => report(inspect(&token)),
        },
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

/// Prints an error for a failed command; exit 2 (usage/config) or 0.
fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn check(path: &Path) -> ExitCode {
    // The same load as `run`: the config checks, then the keyring and TLS configs built.
    match gateway::load::load(path) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                eprintln!("warning: {w}");
            }
            println!(
                "{}: ok ({} route(s), {} user(s), {} key(s), {} issuer(s))",
                path.display(),
                loaded.config.routes.len(),
                loaded.config.users.len(),
                loaded.config.tokens.keys.len(),
                loaded.config.issuers.len()
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
    let loaded = match gateway::load::load(path) {
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
    // Requests run on the server's worker threads (one runtime each); this runtime only
    // drives start-up, signals, reloads, the admin listener and background refreshes.
    let Some(rt) = runtime() else {
        return ExitCode::FAILURE;
    };
    let result: anyhow::Result<()> = rt.block_on(async {
        let started = gateway::start_file(path, &loaded, shutdown_signal())
            .await
            .map_err(anyhow::Error::msg)?;
        let routes = loaded.config.routes.len();
        tracing::info!(addr = %started.addr, admin = ?started.admin_addr, routes, "listening");
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

/// A current-thread runtime, or `None` after saying why it could not start.
fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            None
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

fn keygen(algorithm: &str, out: &Path, id: Option<String>) -> anyhow::Result<()> {
    let alg = config::parse_algorithm(algorithm)
        .with_context(|| format!("unsupported algorithm `{algorithm}`"))?;
    let key = keygen::generate(alg)?;
    let id = id.unwrap_or(key.suggested_id);
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let write = |name: String, text: &str, private: bool| -> anyhow::Result<PathBuf> {
        let path = out.join(name);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        if private {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        #[cfg(not(unix))]
        let _ = private;
        let mut f = options.open(&path).with_context(|| {
            format!(
                "creating {} (existing keys are never overwritten)",
                path.display()
            )
        })?;
        std::io::Write::write_all(&mut f, text.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    };
    let entry = match &key.public {
        None => {
            let path = write(format!("{id}.secret"), &key.private, true)?;
            format!("secret_file = \"{}\"", path.display())
        }
        Some(public) => {
            let private = write(format!("{id}.private.pem"), &key.private, true)?;
            let public = write(format!("{id}.public.pem"), public, false)?;
            format!(
                "private_key_file = \"{}\"   # signing instances\n# public_key_file = \"{}\"   \
                    # verify-only",
                private.display(),
                public.display()
            )
        }
    };
    println!(
        "[[keys]]\nid = \"{id}\"\nalgorithm = \"{algorithm}\"\n{entry}\nsign = false   # \
        true once every instance has the key"
    );
    Ok(())
}

fn load_config(path: &Path) -> anyhow::Result<gateway::load::Loaded> {
    gateway::load::load(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn mint(path: &Path, identity: &str, claims: &[String]) -> anyhow::Result<()> {
    let loaded = load_config(path)?;
    let t = &loaded.config.tokens;
    let issuer = Issuer::new(t, &loaded.built.keyring)?;
    let identity = identity
        .parse::<i64>()
        .map_or_else(|_| UserId::Str(identity.to_string()), UserId::Int);
    let mut extra = Vec::new();
    for c in claims {
        let (name, value) = c
            .split_once('=')
            .with_context(|| format!("--claim `{c}` is not NAME=VALUE"))?;
        anyhow::ensure!(
            !config::is_gateway_claim(name, &t.identity_claim),
            "--claim `{name}` is set by the gateway itself"
        );
        let value = serde_json::from_str(value).unwrap_or_else(|_| Value::from(value));
        extra.push((name.to_string(), value));
    }
    println!("{}", issuer.sign(&identity, unix_now(), &extra)?);
    Ok(())
}

fn verify(path: &Path, token: &str) -> ExitCode {
    let loaded = match load_config(path) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let Some(rt) = runtime() else {
        return ExitCode::FAILURE;
    };
    let verdict = rt.block_on(async {
        let cfg = &loaded.config;
        let authority = Authority::build(cfg, loaded.built.keyring.clone(), Vec::new())?;
        authority.refresh_all().await;
        let all: Vec<usize> = (0..cfg.issuers.len()).collect();
        let result = authority.verify(token.trim(), unix_now(), &all).await;
        let users = Users::new(&cfg.users, 1);
        anyhow::Ok(match result {
            Ok(v)
                if v.issuer.is_none()
                    && !users.is_empty()
                    && !users.contains(&v.claims.identity) =>
            {
                Err(gateway::auth::TokenError::UnknownUser)
            }
            Ok(v) => Ok((v, authority)),
            Err(e) => Err(e),
        })
    });
    match verdict {
        Ok(Ok((v, authority))) => {
            let by = match v.issuer.and_then(|i| authority.issuer(i)) {
                Some(i) => format!("issuer {}", i.issuer),
                None => "this gateway's keyring".to_string(),
            };
            println!("valid: verified by {by}");
            println!("identity: {}", v.claims.identity.to_json());
            println!("exp: {}", v.claims.exp);
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            println!("invalid: {e} [{}]", e.reason());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// `gateway revoke`: writes the revocation to the shared store and announces it.
/// Exit 0 when the store took it, 1 when it did not, 2 for a config or usage problem.
fn revoke(path: &Path, user: Option<&str>, jti: Option<&str>) -> ExitCode {
    use gateway::auth::revocation::{self, Revocation};
    let loaded = match load_config(path) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let cfg = &loaded.config;
    let Some(rc) = cfg.revocation.clone() else {
        eprintln!(
            "error: {}: revocation is off; add a [revocation] table",
            path.display()
        );
        return ExitCode::from(2);
    };
    if cfg.store.backend == config::StoreBackend::Memory {
        eprintln!(
            "error: {}: with [store] backend = \"memory\" each instance keeps its own set; \
             revoke through POST /revocations on that instance's admin listener",
            path.display()
        );
        return ExitCode::from(2);
    }
    let Some(rt) = runtime() else {
        return ExitCode::FAILURE;
    };
    let result = rt.block_on(async {
        let stores = gateway::store::Stores::new();
        let metrics = std::sync::Arc::new(gateway::metrics::Metrics::new());
        // Not started: this process only writes and announces, it never reads the set.
        let mirror = gateway::store::mirror::Mirror::new(
            stores.get(&cfg.store),
            revocation::PREFIX,
            &format!("{}channel", revocation::PREFIX),
            rc.resync,
            metrics.revocation_store_errors.clone(),
        );
        let r = Revocation::new(
            rc,
            mirror,
            revocation::keep_cutoffs(cfg),
            cfg.tokens.leeway,
            metrics,
        );
        match (user, jti) {
            (Some(u), _) => {
                let id = u
                    .parse::<i64>()
                    .map_or_else(|_| UserId::Str(u.to_string()), UserId::Int);
                r.revoke_user(&id, gateway::auth::lifecycle::unix_millis(), "operator")
                    .await
                    .map(|()| {
                        format!(
                            "revoked: every token of user {} issued until now",
                            id.to_json()
                        )
                    })
            }
            (None, Some(j)) => r
                .revoke_jti_unknown_exp(j, "operator")
                .await
                .map(|()| format!("revoked: token {j}")),
            (None, None) => Ok(String::new()),
        }
    });
    match result {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: the store did not take the revocation: {e}");
            ExitCode::FAILURE
        }
    }
}

fn inspect(token: &str) -> anyhow::Result<()> {
    let u = inspect::decode_unverified(token)?;
    println!("UNVERIFIED: decoded without checking the signature; do not trust these values.");
    println!("header:  {}", serde_json::to_string_pretty(&u.header)?);
    println!("payload: {}", serde_json::to_string_pretty(&u.payload)?);
    println!("signature: {} bytes, NOT checked", u.signature_bytes);
    Ok(())
}
