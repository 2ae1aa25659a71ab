//! `trustgate trust lookup|list|status`: the verifier as a command-line tool, for operators checking
//! what the proxy would trust. Output mirrors `notary lookup` (`<tag> <digest> <size>`) with
//! the signing role appended; a refusal names its precise reason and exits non-zero.
//!
//! main.rs embeds [`TrustArgs`] as the `trust` subcommand and calls [`run`]: print the `Ok`
//! text to stdout; on `Err(e)` print `e` to stderr and exit with [`CliError::exit_code`]
//! (1 = not trusted, 2 = could not ask).
//!
//! Trusted state (roots, versions) persists in `--state-dir` like the notary client's trust
//! dir, so a second lookup is verified against the first one's root (TOFU once, then pinned).

use std::path::PathBuf;
use std::sync::Arc;

use super::fetch::{settings_for, HttpMetadataSource, SettingsError};
use super::{
    default_roles, RefusalReason, TrustClient, TrustError, TrustPinning, TrustSettings,
    VerifiedTarget,
};
use crate::upstream::{Credentials, UpstreamError};

#[derive(Debug, clap::Args)]
pub struct TrustArgs {
    #[command(subcommand)]
    pub command: TrustCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum TrustCommand {
    /// Resolve a tag to the digest its publisher signed (like `notary lookup`).
    Lookup(LookupArgs),
    /// List the tags trusted in the accepted roles (like `notary list`).
    List(ListArgs),
    /// Per GUN held in the state directory: seconds until its trust data stops verifying,
    /// and what expires first (metadata or root certificate). Asks no server.
    Status(StatusArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct StatusArgs {
    /// The CLI's state directory (default: ~/.trustgate/trust), or the proxy's `state_dir`
    /// (its `trust/<server>/` directories are read).
    #[arg(long = "state-dir", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

/// Where the trust data comes from and how it is pinned.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// Trust server URL, e.g. https://notary.docker.io
    #[arg(long, value_name = "URL")]
    pub server: String,
    /// Extra CA certificate (PEM) trusted for the server's TLS certificate.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Pin the repository's root: its root.json must be signed by this certificate (PEM).
    #[arg(long = "root-cert", value_name = "FILE")]
    pub root_cert: Option<PathBuf>,
    /// Directory holding trusted roots and last-seen versions (default: ~/.trustgate/trust).
    #[arg(long = "state-dir", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// User for the trust server's token (or Basic) authentication.
    #[arg(long, value_name = "USER", requires = "password_file")]
    pub username: Option<String>,
    /// File holding the password for --username (kept off the command line).
    #[arg(long = "password-file", value_name = "FILE", requires = "username")]
    pub password_file: Option<PathBuf>,
    /// Accepted signing role, highest priority first; repeatable
    /// (default: targets/releases, then targets).
    #[arg(long = "role", value_name = "ROLE")]
    pub roles: Vec<String>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct LookupArgs {
    /// Globally unique name of the repository, e.g. docker.io/library/alpine
    pub gun: String,
    pub tag: String,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ListArgs {
    pub gun: String,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error("cannot use the trust server: {0}")]
    Client(#[from] UpstreamError),
    #[error("no --state-dir given and $HOME is not set")]
    NoStateDir,
    #[error("cannot read {path}: {reason}")]
    ReadFile { path: PathBuf, reason: String },
    #[error("--root-cert {path}: {reason}")]
    RootCert { path: PathBuf, reason: String },
    #[error("cannot set up trust state: {0}")]
    Setup(Box<TrustError>),
    /// The verifier refused: `reason` is the coarse verdict, `error` the precise one.
    #[error("{gun}{}: not trusted ({reason:?}): {error}", tag.as_deref().map(|t| format!(":{t}")).unwrap_or_default())]
    Refused {
        gun: String,
        tag: Option<String>,
        reason: RefusalReason,
        error: Box<TrustError>,
    },
}

impl CliError {
    /// 1 for a trust refusal (the answer is "no"), 2 when the question could not be asked.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Refused { .. } => 1,
            CliError::Settings(_)
            | CliError::Client(_)
            | CliError::NoStateDir
            | CliError::ReadFile { .. }
            | CliError::RootCert { .. }
            | CliError::Setup(_) => 2,
        }
    }
}

pub async fn run(args: &TrustArgs) -> Result<String, CliError> {
    match &args.command {
        TrustCommand::Lookup(a) => lookup(a).await,
        TrustCommand::List(a) => list(a).await,
        TrustCommand::Status(a) => status(a),
    }
}

/// `trustgate trust status`: [`super::expiry::render`] of what is held.
pub fn status(args: &StatusArgs) -> Result<String, CliError> {
    let dir = match &args.state_dir {
        Some(d) => d.clone(),
        None => default_state_dir()?,
    };
    let held = super::expiry::held(&dir).map_err(|reason| CliError::ReadFile {
        path: dir.clone(),
        reason,
    })?;
    Ok(super::expiry::render(
        &held,
        time::OffsetDateTime::now_utc(),
    ))
}

/// One line: `<tag> <digest> <size> <role>`: `notary lookup`'s three fields, then the role.
pub fn format_target(t: &VerifiedTarget) -> String {
    format!("{} {} {} {}", t.tag(), t.digest(), t.length(), t.role())
}

pub async fn lookup(args: &LookupArgs) -> Result<String, CliError> {
    let client = open_client(&args.gun, &args.server)?;
    let roles = roles_of(&args.server);
    match client.resolve(&args.gun, &args.tag, &roles).await {
        Ok(t) => Ok(format!("{}\n", format_target(&t))),
        Err(error) => Err(CliError::Refused {
            gun: args.gun.clone(),
            tag: Some(args.tag.clone()),
            reason: error.reason(),
            error: Box::new(error),
        }),
    }
}

pub async fn list(args: &ListArgs) -> Result<String, CliError> {
    let client = open_client(&args.gun, &args.server)?;
    let roles = roles_of(&args.server);
    match client.list(&args.gun, &roles).await {
        Ok(targets) => Ok(targets
            .iter()
            .map(|t| format!("{}\n", format_target(t)))
            .collect()),
        Err(error) => Err(CliError::Refused {
            gun: args.gun.clone(),
            tag: None,
            reason: error.reason(),
            error: Box::new(error),
        }),
    }
}

fn roles_of(args: &ServerArgs) -> Vec<String> {
    if args.roles.is_empty() {
        default_roles()
    } else {
        args.roles.clone()
    }
}

fn state_dir(args: &ServerArgs) -> Result<PathBuf, CliError> {
    match &args.state_dir {
        Some(d) => Ok(d.clone()),
        None => default_state_dir(),
    }
}

fn default_state_dir() -> Result<PathBuf, CliError> {
    std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".trustgate").join("trust"))
        .ok_or(CliError::NoStateDir)
}

fn open_client(gun: &str, args: &ServerArgs) -> Result<TrustClient, CliError> {
    let mut settings = settings_for(&args.server, args.ca.clone())?;
    if let (Some(username), Some(path)) = (&args.username, &args.password_file) {
        let password = std::fs::read_to_string(path).map_err(|e| CliError::ReadFile {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        settings.credentials = Some(Credentials {
            username: username.clone(),
            // A trailing newline is what editors and `echo` add, never part of a password.
            password: password.trim_end_matches(['\r', '\n']).to_string(),
        });
    }
    let source = HttpMetadataSource::from_settings(settings)?;
    let mut pinning = TrustPinning::default();
    if let Some(path) = &args.root_cert {
        let pem = std::fs::read(path).map_err(|e| CliError::ReadFile {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let pins = TrustPinning::pins_from_pem(&pem).map_err(|reason| CliError::RootCert {
            path: path.clone(),
            reason,
        })?;
        // An explicit pin replaces trust on first use for this GUN (Notary's
        // `trust_pinning.certs[GUN]`): the root must be signed by this certificate's key.
        pinning.certs.insert(gun.to_string(), pins);
    }
    let settings = TrustSettings {
        pinning,
        state_dir: Some(state_dir(args)?),
        ..TrustSettings::default()
    };
    TrustClient::new(settings, Arc::new(source)).map_err(|e| CliError::Setup(Box::new(e)))
}
