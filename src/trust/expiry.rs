//! Expiry early warning: when does the trust data held for each GUN stop verifying? The
//! earliest of the held timestamp, snapshot, targets and delegation metadata's `expires`, the
//! root's own `expires`, and the root certificates' notAfter. Notary fails a pull hard once
//! any of them passes (a root certificate past notAfter: "unable to retrieve valid leaf
//! certificates"; Docker Official Images' DCT certificates did so in August 2025), so an
//! operator wants to be told days before. Read from the persisted state only: no trust
//! server is asked, nothing is verified (the files were verified when stored).

use std::path::{Path, PathBuf};

use serde::Deserialize;
use time::OffsetDateTime;

use super::keys::PublicKey;
use super::roles::ROOT;
use super::store::TrustedState;
use super::wire::{self, Expires};

/// One thing that expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expiry {
    /// What expires: a role name (`timestamp`, `targets/releases`, `root`) or
    /// `root certificate <keyid prefix> (CN <cn>)`.
    pub what: String,
    pub at: OffsetDateTime,
}

/// The earliest expiry held for one GUN, and where its state lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GunExpiry {
    pub gun: String,
    /// The state file it was read from.
    pub file: PathBuf,
    /// `None`: nothing in the state carries an expiry (a state file with no root).
    pub earliest: Option<Expiry>,
}

impl GunExpiry {
    /// Seconds from `now` until the earliest expiry (negative once past).
    pub fn seconds_left(&self, now: OffsetDateTime) -> Option<i64> {
        self.earliest.as_ref().map(|e| (e.at - now).whole_seconds())
    }
}

#[derive(Deserialize)]
struct JustExpires {
    expires: Expires,
}

/// Every expiry in one GUN's state, earliest first.
pub fn expiries(state: &TrustedState) -> Vec<Expiry> {
    let mut out = Vec::new();
    for role in state.metadata.keys() {
        let Some(bytes) = state.bytes(role) else {
            continue;
        };
        let Ok(env) = wire::Envelope::parse(role, &bytes) else {
            continue;
        };
        if let Ok(e) = serde_json::from_value::<JustExpires>(env.signed.clone()) {
            out.push(Expiry {
                what: role.clone(),
                at: e.expires.0,
            });
        }
        if role == ROOT {
            out.extend(root_cert_expiries(&env));
        }
    }
    out.sort_by_key(|e| e.at);
    out
}

/// notAfter of the certificates the root role lists (`ecdsa-x509`/`rsa-x509` keys).
fn root_cert_expiries(env: &wire::Envelope) -> Vec<Expiry> {
    let Ok(root) = env.typed::<wire::Root>(ROOT, "Root") else {
        return Vec::new();
    };
    let Some(role) = root.roles.get(ROOT) else {
        return Vec::new();
    };
    role.keyids
        .iter()
        .filter_map(|id| {
            let key = PublicKey::from_tuf(root.keys.get(id)?).ok()?;
            let cert = key.cert()?;
            Some(Expiry {
                what: format!(
                    "root certificate {} (CN {})",
                    &id[..id.len().min(12)],
                    cert.common_name.as_deref().unwrap_or("-")
                ),
                at: cert.not_after,
            })
        })
        .collect()
}

/// The state files under `dir`: `<sha256>.json` directly in it (the CLI's state directory, or
/// one trust server's directory of the proxy), or one or two levels down (the proxy's
/// `state_dir/trust/<server>/`, or `state_dir` itself).
pub fn state_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    collect(dir, 0, &mut out)?;
    out.sort();
    Ok(out)
}

fn collect(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let ty = entry.file_type()?;
        if ty.is_file() && is_state_name(&name) {
            out.push(path);
        } else if ty.is_dir() && depth < 2 && !name.starts_with('.') {
            collect(&path, depth + 1, out)?;
        }
    }
    Ok(())
}

fn is_state_name(name: &str) -> bool {
    name.strip_suffix(".json")
        .is_some_and(|stem| stem.len() == 64 && stem.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The earliest expiry of every GUN held under `dir` (see [`state_files`]), soonest first. A
/// file that cannot be read or parsed is an error naming it: a monitoring answer must not
/// silently leave a GUN out.
pub fn held(dir: &Path) -> Result<Vec<GunExpiry>, String> {
    let files = state_files(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut out = Vec::new();
    for file in files {
        let bytes = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        let state: TrustedState = serde_json::from_slice(&bytes)
            .map_err(|e| format!("{}: not a trust state file: {e}", file.display()))?;
        let earliest = expiries(&state).into_iter().next();
        out.push(GunExpiry {
            gun: state.gun,
            file,
            earliest,
        });
    }
    out.sort_by_key(|g| g.earliest.as_ref().map(|e| e.at));
    // Entries without any expiry last.
    out.sort_by_key(|g| g.earliest.is_none());
    Ok(out)
}

/// Text for `trustgate trust status`: one line per GUN, soonest first:
/// `<gun> <seconds left>s <what> expires <RFC 3339>` (or `EXPIRED <n>s ago`).
pub fn render(held: &[GunExpiry], now: OffsetDateTime) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    if held.is_empty() {
        out.push_str("no trust data held\n");
    }
    for g in held {
        let Some(e) = &g.earliest else {
            let _ = writeln!(out, "{} - nothing that expires is held", g.gun);
            continue;
        };
        let left = (e.at - now).whole_seconds();
        let at =
            e.at.format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
        if left > 0 {
            let _ = writeln!(out, "{} {left}s {} expires {at}", g.gun, e.what);
        } else {
            let _ = writeln!(
                out,
                "{} EXPIRED {}s ago: {} expired {at}",
                g.gun, -left, e.what
            );
        }
    }
    out
}
