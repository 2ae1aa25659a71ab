//! Text for the `trustgate policy check` and `trustgate policy explain` commands.

use std::fmt::Write as _;
use std::path::Path;

use super::model::{Combine, Requirement, Verifier, VerifierKind};
use super::Policy;

/// An image string as the CLI takes it: `registry/repository[:tag|@digest]`. The first path
/// segment is always the registry (no Docker Hub shorthand), so what is explained is exactly
/// what the proxy decides for `?ns=<registry>` and `<repository>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl ImageRef {
    pub fn parse(image: &str) -> Result<ImageRef, String> {
        let (name, digest) = match image.split_once('@') {
            Some((n, d)) => (n, Some(d.to_string())),
            None => (image, None),
        };
        let last_slash = name.rfind('/').unwrap_or(0);
        let (name, tag) = match name[last_slash..].find(':') {
            Some(i) => (
                &name[..last_slash + i],
                Some(name[last_slash + i + 1..].to_string()),
            ),
            None => (name, None),
        };
        let Some((registry, repository)) = name.split_once('/') else {
            return Err(format!(
                "{image:?}: expected registry/repository[:tag|@digest], e.g. docker.io/library/alpine:3.20"
            ));
        };
        if registry.is_empty() || repository.is_empty() || repository.split('/').any(str::is_empty)
        {
            return Err(format!(
                "{image:?}: empty registry or repository path segment"
            ));
        }
        if tag.as_deref() == Some("") || digest.as_deref() == Some("") {
            return Err(format!("{image:?}: empty tag or digest"));
        }
        Ok(ImageRef {
            registry: registry.to_string(),
            repository: repository.to_string(),
            tag,
            digest,
        })
    }
}

/// `trustgate policy check FILE`: a one-line summary, or every error (one per line).
pub fn check_file(path: &Path) -> Result<String, String> {
    let policy = Policy::load(path).map_err(|e| e.to_string())?;
    Ok(format!(
        "{}: OK: {} rule(s), {} trust server(s); default: {}",
        path.display(),
        policy.rules().len(),
        policy.trust_servers().len(),
        policy.default_rule().requirement().kind()
    ))
}

/// `trustgate policy explain FILE IMAGE`.
pub fn explain_file(path: &Path, image: &str) -> Result<String, String> {
    let policy = Policy::load(path).map_err(|e| e.to_string())?;
    explain(&policy, image)
}

/// Which rule applies to `image` under `policy`, why, and what it requires.
pub fn explain(policy: &Policy, image: &str) -> Result<String, String> {
    let img = ImageRef::parse(image)?;
    let d = policy.decide(&img.registry, &img.repository);
    let mut out = String::new();
    let _ = writeln!(out, "image:        {image}");
    let _ = writeln!(out, "policy:       {}", policy.origin());
    let rule = match d.pattern() {
        Some(p) => format!("{} {:?} (scope {p})", d.rule_id(), d.rule_name()),
        None => "default".to_string(),
    };
    let _ = writeln!(out, "rule:         {rule}");
    let _ = writeln!(out, "why:          {}", d.why());
    let _ = writeln!(out, "requirement:  {}", d.requirement().kind());
    match d.requirement() {
        Requirement::Allow => {}
        Requirement::Reject { message } => {
            if let Some(m) = message {
                let _ = writeln!(out, "  message:    {m}");
            }
        }
        Requirement::Signed(s) => {
            let names: Vec<&str> = s.verifiers().iter().map(|v| v.name()).collect();
            let how = match names.as_slice() {
                [one] => one.to_string(),
                _ => format!("{} [{}]", s.combine(), names.join(", ")),
            };
            let _ = writeln!(out, "  signed by:  {how}");
            for v in s.verifiers() {
                let _ = writeln!(out, "  verifier {} ({}):", v.name(), v.type_name());
                verifier(&mut out, v, &img);
            }
        }
    }
    let _ = writeln!(out, "mode:         {}", d.mode());
    let _ = writeln!(out, "digest pulls: {}", d.digest_pulls());
    let _ = write!(out, "effect:       {}", effect(&d, &img));
    Ok(out)
}

fn verifier(out: &mut String, v: &Verifier, img: &ImageRef) {
    match v.kind() {
        VerifierKind::Notary(n) => {
            let srv = n.trust_server();
            let _ = writeln!(out, "  trust server: {} ({})", srv.name(), srv.url());
            let gun = n.gun(&img.registry, &img.repository);
            let _ = writeln!(out, "  GUN:          {gun}");
            let _ = writeln!(out, "  roles:        {}", n.roles());
            let _ = writeln!(out, "  root trust:   {}", n.pinning().pin_for(&gun));
        }
        VerifierKind::Notation(n) => {
            let _ = writeln!(
                out,
                "  signatures:   Notation JWS or COSE envelopes with the tag's digest as subject (tag sha256-<hex>)"
            );
            let _ = writeln!(out, "  config:       {}", n.dir().display());
            let scope = format!("{}/{}", img.registry, img.repository);
            match n.config().policy.applicable(&scope) {
                Ok(st) => {
                    let _ = writeln!(out, "  statement:    {:?}", st.name);
                }
                Err(e) => {
                    let _ = writeln!(out, "  statement:    none applies ({e})");
                }
            }
        }
        VerifierKind::Cosign(c) if c.keyless().is_some() => {
            if let Some(k) = c.keyless() {
                let _ = writeln!(
                    out,
                    "  signatures:   keyless: Sigstore bundle referrers, then tag sha256-<hex>.sig; transparency log {}, SCT {}",
                    if k.tlog { "required" } else { "not required (a TSA timestamp must date the signature)" },
                    if k.sct { "required" } else { "not required" },
                );
                let _ = writeln!(out, "  requires:     {}", k.describe());
            }
        }
        VerifierKind::Cosign(c) => {
            let _ = writeln!(
                out,
                "  signatures:   simple-signing, tag sha256-<hex>.sig of the digest the tag resolves to; no transparency log"
            );
            for k in c.keys() {
                let _ = writeln!(
                    out,
                    "  key:          {} {} ({})",
                    k.key().algorithm(),
                    k.key().fingerprint(),
                    k.path().display()
                );
            }
        }
    }
}

fn effect(d: &super::Decision, img: &ImageRef) -> String {
    use super::model::{DigestPulls, Mode};
    let by_digest = img.digest.is_some();
    let base = match (d.requirement(), by_digest, d.digest_pulls()) {
        (Requirement::Allow, _, _) => "served without a signature check".to_string(),
        (Requirement::Reject { .. }, _, _) => "refused (403 DENIED)".to_string(),
        (Requirement::Signed(_), true, DigestPulls::Allow) => {
            "a pull by digest is served without a signature (Docker's semantics)".to_string()
        }
        (Requirement::Signed(_), true, DigestPulls::SignedOnly) => {
            "a pull by digest is served only if that digest was reached through a verified tag"
                .to_string()
        }
        (Requirement::Signed(s), false, _) => format!(
            "tag {:?} is served only as the digest {}",
            img.tag.as_deref().unwrap_or("latest"),
            match (s.combine(), s.verifiers().len()) {
                (_, 1) => "its signers signed",
                (Combine::AnyOf, _) =>
                    "that one of the verifiers (asked in this order) vouches for",
                (Combine::AllOf, _) => "that every verifier vouches for",
            }
        ),
    };
    match (d.mode(), d.requirement()) {
        (Mode::Audit, Requirement::Allow) => base,
        (Mode::Audit, _) => {
            format!("{base}; audit mode: a violation is served anyway, logged and sent a Warning: 299 header")
        }
        (Mode::Enforce, _) => base,
    }
}

#[cfg(test)]
mod tests {
    use super::ImageRef;

    #[test]
    fn parses_image_strings() {
        let i = ImageRef::parse("127.0.0.1:5000/org/app:1.0").unwrap();
        assert_eq!(
            (i.registry.as_str(), i.repository.as_str(), i.tag.as_deref()),
            ("127.0.0.1:5000", "org/app", Some("1.0"))
        );
        let i = ImageRef::parse("docker.io/library/alpine@sha256:abc").unwrap();
        assert_eq!(i.digest.as_deref(), Some("sha256:abc"));
        assert_eq!(i.tag, None);
        assert!(ImageRef::parse("alpine").is_err());
        assert!(ImageRef::parse("r.io//x").is_err());
    }
}
