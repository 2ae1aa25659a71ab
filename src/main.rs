//! The `trustgate` command line: parse arguments, load the configuration, start logging,
//! and hand over to the library. No logic lives here.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use tokio::net::TcpListener;
use trustgate::config::{Config, LogFormat};
use trustgate::policy::{Policy, PolicyHandle, DEFAULT_WATCH_INTERVAL};

#[derive(Parser)]
#[command(
    name = "trustgate",
    version,
    about = "A registry proxy that enforces signed images"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy (with no --config: the embedded default, see `Config::embedded_default`).
    Serve {
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Overrides the configuration's `state_dir` (persisted trust state).
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
    },
    /// Look up tags in a repository's trust data, verified as the proxy verifies it.
    Trust(trustgate::trust::cli::TrustArgs),
    /// Check policy files and explain decisions.
    Policy(trustgate::policy::cli::PolicyArgs),
    /// Work with configuration files.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a configuration file and print every problem found.
    Check { file: PathBuf },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Config {
            command: ConfigCommand::Check { file },
        } => match Config::load(&file) {
            // The TLS material is loaded as the server will load it: a certificate or key
            // that does not parse must fail here, not at the first handshake (PROXY-REVIEW D11).
            Ok(cfg) => match cfg
                .tls
                .as_ref()
                .map(|t| trustgate::server::tls_acceptor(t, cfg.client_auth.as_ref()))
                .transpose()
            {
                Ok(_) => {
                    println!("{}: ok", file.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{}: tls: {e}", file.display());
                    ExitCode::from(2)
                }
            },
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        },
        Command::Policy(args) => match trustgate::policy::cli::run(&args) {
            Ok(out) => {
                print!("{out}");
                if !out.is_empty() && !out.ends_with('\n') {
                    println!();
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprint!("{e}");
                if !e.ends_with('\n') {
                    eprintln!();
                }
                ExitCode::from(2)
            }
        },
        Command::Trust(args) => {
            let rt = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(trustgate::trust::cli::run(&args)) {
                Ok(out) => {
                    print!("{out}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::from(e.exit_code())
                }
            }
        }
        Command::Serve { config, state_dir } => {
            let cfg = match config {
                Some(path) => match Config::load(&path) {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("{e}");
                        return ExitCode::from(2);
                    }
                },
                None => Config::embedded_default(),
            };
            let mut cfg = cfg;
            if let Some(dir) = state_dir {
                cfg.state_dir = dir;
            }
            init_tracing(cfg.log_format);
            let rt = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(serve(cfg)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e}");
                    eprintln!("trustgate: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour codes only for a terminal: log files and collectors get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn serve(cfg: Config) -> Result<(), Box<dyn std::error::Error>> {
    let addrs = cfg.listen.clone();
    // Refuse to start on TLS material that does not load: otherwise each listener task fails
    // on its own and the process stays up serving nothing (PROXY-REVIEW D11).
    if let Some(tls) = &cfg.tls {
        trustgate::server::tls_acceptor(tls, cfg.client_auth.as_ref())?;
    }
    let policy = Arc::new(match &cfg.policy {
        Some(path) => PolicyHandle::load(path.clone())?,
        None => PolicyHandle::fixed(Policy::embedded_default()),
    });
    tracing::info!(policy = policy.current().origin(), "policy loaded");
    let state = trustgate::proxy::AppState::with_policy(cfg, policy.clone())?;
    let (tx, rx) = tokio::sync::watch::channel(false);
    if policy.path().is_some() {
        let mut rx = rx.clone();
        policy.spawn_watcher(DEFAULT_WATCH_INTERVAL, async move {
            let _ = rx.wait_for(|stop| *stop).await;
        })?;
    } else {
        // SIGHUP's default action ends the process, and systemd's ExecReload sends it: with
        // nothing to reload it must be a logged no-op, never a silent exit (PROXY-REVIEW D15).
        ignore_hangups()?;
    }
    let mut tasks = tokio::task::JoinSet::new();
    for addr in state.config.ops_listen.clone() {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot listen on {addr} (ops_listen): {e}"))?;
        tracing::info!(%addr, "ops endpoints listening");
        let mut rx = rx.clone();
        let shutdown = async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        tasks.spawn(trustgate::server::run_ops(
            state.clone(),
            listener,
            shutdown,
        ));
    }
    {
        let mut rx = rx.clone();
        tokio::spawn(trustgate::proxy::maintenance::run(
            state.clone(),
            trustgate::proxy::maintenance::EVERY,
            async move {
                let _ = rx.wait_for(|stop| *stop).await;
            },
        ));
    }
    // One set of connection slots for every registry listener: max_connections is the
    // process's bound, not each listener's (PROXY-REVIEW D21).
    let slots = trustgate::server::ConnectionSlots::new(
        state.config.limits.max_connections,
        state.config.limits.max_connections_per_peer,
    );
    for addr in addrs {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        tracing::info!(%addr, "listening");
        let mut rx = rx.clone();
        let shutdown = async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        tasks.spawn(trustgate::server::run_with(
            state.clone(),
            listener,
            slots.clone(),
            shutdown,
        ));
    }
    // A listener that stops on its own is an error now, not at shutdown.
    tokio::select! {
        () = wait_for_signal() => tracing::info!("shutdown requested"),
        Some(done) = tasks.join_next() => {
            let _ = tx.send(true);
            done??;
            return Err("a listener stopped unexpectedly".into());
        }
    }
    let _ = tx.send(true);
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(())
}

fn ignore_hangups() -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: no policy file is configured, nothing to reload");
        }
    });
    Ok(())
}

async fn wait_for_signal() {
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
