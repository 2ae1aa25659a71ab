//! A scope that requires Notation, end to end: the real docker-registry holds an image and a
//! Notation signature the way `notation sign` stores it there (signature manifest by digest,
//! listed under the `sha256-<hex>` tag), trustgate judges it with a Notation CLI configuration
//! directory (`trustpolicy.oci.json` + `truststore/x509/ca/<name>/`), and skopeo pulls through
//! it: the signed tag is served as its digest; an unsigned tag, and one signed by a leaf of a
//! CA that no trust store holds, are refused with what was expected. And the migration rule:
//! `any_of(notation, …)` is served by the Notation signature alone, `all_of` is not.
mod notation_common;
mod support;

use notation_common::{ca, cose, crl, jws, leaf, payload_for, serial_of, Headers, LeafSpec};
use support::notation::push_signature;
use support::registry::{proxy_config, skopeo_copy, Pusher, Registry, TestProxy, OCI_INDEX};
use trustgate::notation::discover;
use trustgate::notation::TargetDescriptor;

const REPO: &str = "team/app";
/// Under the Notation-only rule (team/app has the any_of rule).
const OTHER: &str = "team/other";

/// A Notation config directory trusting `ca_pem` for `scope`, as the CLI lays it out.
fn notation_config(dir: &std::path::Path, scopes: &str, ca_pem: &str) -> std::path::PathBuf {
    let cfg = dir.join("notation");
    let store = cfg.join("truststore/x509/ca/corp");
    std::fs::create_dir_all(&store).unwrap();
    std::fs::write(store.join("corp-ca.crt"), ca_pem).unwrap();
    std::fs::write(
        cfg.join("trustpolicy.oci.json"),
        format!(
            r#"{{"version":"1.0","trustPolicies":[{{"name":"corp-images","registryScopes":[{scopes}],"signatureVerification":{{"level":"strict","override":{{"revocation":"skip"}}}},"trustStores":["ca:corp"],"trustedIdentities":["*"]}}]}}"#
        ),
    )
    .unwrap();
    cfg
}

async fn get(proxy: &TestProxy, repo: &str, reference: &str) -> (u16, String) {
    let r = reqwest::Client::new()
        .get(format!("{}/v2/{repo}/manifests/{reference}", proxy.url))
        .header("accept", support::registry::OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notation_scope_serves_signed_digests_and_refuses_the_rest() {
    let reg = Registry::start();
    let pusher = Pusher::new(&reg);
    let signed = pusher.image(REPO, "v1", true, 31, 512, "amd64").await;
    let unsigned = pusher
        .image(OTHER, "unsigned", true, 32, 512, "amd64")
        .await;
    let stranger_signed = pusher
        .image(OTHER, "stranger", true, 33, 512, "amd64")
        .await;
    let corp = ca("Corp Signing CA");
    let other = ca("Someone Else CA");
    let signer = leaf(&corp, LeafSpec::default());
    let stranger = leaf(&other, LeafSpec::default());
    let corp_print = trustgate::notation::truststore::thumbprint(corp.cert.der());
    for (repo, img, s, print, cose_envelope) in [
        (REPO, &signed, &signer, &corp_print, true),
        // The annotation lies (it names corp's CA), so the signature is fetched and checked.
        (OTHER, &stranger_signed, &stranger, &corp_print, false),
    ] {
        let target = TargetDescriptor {
            media_type: img.media_type.into(),
            digest: img.digest.clone(),
            size: img.manifest.len() as u64,
        };
        let (envelope, mt) = if cose_envelope {
            (
                cose(s, &payload_for(&target), &Headers::default()),
                "application/cose",
            )
        } else {
            (
                jws(s, &payload_for(&target), &Headers::default()),
                "application/jose+json",
            )
        };
        let entry = push_signature(&pusher, repo, &target, envelope, mt, print).await;
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [entry],
        }))
        .unwrap();
        let tag = discover::fallback_tag(&target.digest).unwrap();
        pusher.manifest(repo, &tag, OCI_INDEX, &index).await;
    }

    let dir = support::tempdir();
    let scopes = format!("\"{h}/{REPO}\",\"{h}/{OTHER}\"", h = reg.host());
    let cfg_dir = notation_config(dir.path(), &scopes, &corp.cert.pem());
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            "version = 1\n[trust_servers.none]\nurl = \"http://127.0.0.1:1\"\n\
             [verifiers.corp]\ntype = \"notation\"\nconfig_dir = {:?}\n\
             [verifiers.dct]\ntype = \"notary\"\ntrust_server = \"none\"\n\
             [[rules]]\nscope = \"{}/team/**\"\nrequire = \"signed\"\nsigned_by = \"corp\"\n\
             [[rules]]\nscope = \"{}/team/app\"\nrequire = \"signed\"\nsigned_by = {{ any_of = [\"dct\", \"corp\"] }}\n\
             [default]\nrequire = \"reject\"\n",
            cfg_dir.display().to_string(),
            reg.host(),
            reg.host()
        ),
    )
    .unwrap();
    let explain = trustgate::policy::Policy::load(&policy).unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        explain.decide(&reg.host(), REPO).requirement(),
        trustgate::policy::Requirement::Signed(_)
    ));
    let cfg = format!(
        "policy = {:?}\n{}",
        policy.display().to_string(),
        proxy_config(&[(&reg.host(), &reg.url)], "")
    );
    let proxy = TestProxy::start(&cfg).await;

    // any_of(dct, corp): the trust server is down, the Notation signature vouches alone.
    let (status, body) = get(&proxy, REPO, "v1").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body.as_bytes(), signed.manifest.as_slice());
    let out = dir.path().join("pulled");
    let src = format!("docker://{}/{REPO}:v1", proxy.addr);
    let o = tokio::task::spawn_blocking(move || skopeo_copy(&src, &out)).await;
    assert!(o.is_ok(), "skopeo could not pull the Notation-signed tag");
    assert_eq!(
        std::fs::read(dir.path().join("pulled/manifest.json")).unwrap(),
        signed.manifest
    );

    let (status, body) = get(&proxy, OTHER, "unsigned").await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("no Notation signature"), "{body}");
    assert!(body.contains(&unsigned.digest), "names the digest: {body}");
    let (status, body) = get(&proxy, OTHER, "stranger").await;
    assert_eq!(
        status, 403,
        "a leaf of an untrusted CA was accepted: {body}"
    );
    assert!(body.contains("verifies under"), "{body}");
    assert!(
        body.contains("corp-images"),
        "names the trust policy statement: {body}"
    );
    proxy.shutdown().await;
}

#[test]
fn a_broken_notation_config_fails_the_policy_load_naming_the_field() {
    let dir = support::tempdir();
    let missing = dir.path().join("no-such-dir");
    let policy = dir.path().join("p.toml");
    std::fs::write(
        &policy,
        format!(
            "version = 1\n[verifiers.corp]\ntype = \"notation\"\nconfig_dir = {:?}\n[default]\nrequire = \"signed\"\nsigned_by = \"corp\"\n",
            missing.display().to_string()
        ),
    )
    .unwrap();
    let e = trustgate::policy::Policy::load(&policy)
        .unwrap_err()
        .to_string();
    assert!(e.contains("verifiers.corp.config_dir"), "{e}");
    assert!(e.contains("no-such-dir"), "{e}");
    let e2 = trustgate::policy::Policy::from_str(
        "version = 1\n[verifiers.corp]\ntype = \"notation\"\n[default]\nrequire = \"reject\"\n",
        "p.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(e2.contains("config_dir"), "{e2}");
}

/// A registry with the OCI 1.1 referrers API and no tag-schema index: the signature is found
/// through `GET /v2/<repo>/referrers/<digest>` alone.
#[derive(Default)]
struct ReferrersRegistry {
    manifests: std::collections::HashMap<String, Vec<u8>>,
    blobs: std::collections::HashMap<String, Vec<u8>>,
    referrers: std::collections::HashMap<String, Vec<u8>>,
    /// Pages after the first (`?page=1`, …), each linked from the one before.
    later_pages: Vec<Vec<u8>>,
    /// Every page links to one more.
    endless: bool,
    referrer_calls: std::sync::atomic::AtomicUsize,
}

impl trustgate::cosign::fetch::Registry for ReferrersRegistry {
    async fn resolve_tag(
        &self,
        tag: &str,
    ) -> Result<trustgate::registry::Digest, trustgate::cosign::fetch::FetchError> {
        self.manifests
            .get(tag)
            .map(|m| trustgate::registry::Digest::sha256_of(m))
            .ok_or(trustgate::cosign::fetch::FetchError::NotFound)
    }
    async fn manifest(
        &self,
        reference: &str,
        _limit: u64,
    ) -> Result<bytes::Bytes, trustgate::cosign::fetch::FetchError> {
        self.manifests
            .get(reference)
            .map(|m| bytes::Bytes::from(m.clone()))
            .ok_or(trustgate::cosign::fetch::FetchError::NotFound)
    }
    async fn blob(
        &self,
        digest: &trustgate::registry::Digest,
        _limit: u64,
    ) -> Result<bytes::Bytes, trustgate::cosign::fetch::FetchError> {
        self.blobs
            .get(&digest.to_string())
            .map(|b| bytes::Bytes::from(b.clone()))
            .ok_or(trustgate::cosign::fetch::FetchError::NotFound)
    }
    async fn referrers(
        &self,
        digest: &trustgate::registry::Digest,
        next: Option<&str>,
        _limit: u64,
    ) -> Result<trustgate::cosign::referrers::ReferrersPage, trustgate::cosign::fetch::FetchError>
    {
        self.referrer_calls
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let empty = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#.to_vec();
        let page: usize = next
            .and_then(|n| n.split_once("?page="))
            .map(|(_, p)| p.parse().unwrap())
            .unwrap_or(0);
        let body = if page == 0 {
            self.referrers
                .get(&digest.to_string())
                .cloned()
                .unwrap_or(empty)
        } else {
            self.later_pages.get(page - 1).cloned().unwrap_or(empty)
        };
        let link = (self.endless || page < self.later_pages.len()).then(|| {
            format!(
                "</v2/team/app/referrers/{digest}?page={}>; rel=\"next\"",
                page + 1
            )
        });
        Ok(trustgate::cosign::referrers::ReferrersPage {
            body: bytes::Bytes::from(body),
            link,
        })
    }
}

/// An image, a JWS signature of it by a leaf of "Corp Signing CA", and the registry holding
/// both (no referrers listed yet); the enforcer trusts that CA for registry.example/team/app.
struct ReferrersCase {
    reg: ReferrersRegistry,
    digest: String,
    sig_entry: serde_json::Value,
    enforcer: trustgate::enforce::Enforcer,
    _dir: tempfile::TempDir,
}

fn referrers_case() -> ReferrersCase {
    referrers_case_with(None)
}

/// With `Some(revoked)`: the statement enforces revocation (plain strict) and the verifier's
/// `crl_dir` holds the CA's CRL, listing the signing leaf when `revoked`.
fn referrers_case_with(with_crl: Option<bool>) -> ReferrersCase {
    let corp = ca("Corp Signing CA");
    let signer = leaf(&corp, LeafSpec::default());
    let print = trustgate::notation::truststore::thumbprint(corp.cert.der());
    let image = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#.to_vec();
    let digest = support::registry::sha256(&image);
    let target = TargetDescriptor {
        media_type: support::registry::OCI_MANIFEST.into(),
        digest: digest.clone(),
        size: image.len() as u64,
    };
    let sig = support::notation::signature_artifact(
        &target,
        jws(&signer, &payload_for(&target), &Headers::default()),
        "application/jose+json",
        &print,
    );
    let mut reg = ReferrersRegistry::default();
    reg.manifests.insert("v1".into(), image.clone());
    reg.manifests.insert(digest.clone(), image.clone());
    reg.manifests
        .insert(sig.digest.clone(), sig.manifest.clone());
    for b in &sig.blobs {
        reg.blobs.insert(b.digest.clone(), b.bytes.clone());
    }
    let dir = support::tempdir();
    let cfg_dir = notation_config(
        dir.path(),
        "\"registry.example/team/app\"",
        &corp.cert.pem(),
    );
    let mut crl_dir = String::new();
    if let Some(revoked) = with_crl {
        let tp = cfg_dir.join("trustpolicy.oci.json");
        let text = std::fs::read_to_string(&tp).unwrap();
        std::fs::write(
            &tp,
            text.replace(r#","override":{"revocation":"skip"}"#, ""),
        )
        .unwrap();
        let crls = dir.path().join("crls");
        std::fs::create_dir(&crls).unwrap();
        let listed = if revoked {
            vec![serial_of(&signer.chain[0])]
        } else {
            vec![]
        };
        let now = time::OffsetDateTime::now_utc();
        std::fs::write(
            crls.join("corp.crl"),
            crl(
                &corp,
                &listed,
                now - time::Duration::hours(1),
                now + time::Duration::days(1),
            ),
        )
        .unwrap();
        crl_dir = format!("crl_dir = {:?}\n", crls.display().to_string());
    }
    let policy = trustgate::policy::Policy::from_str(
        &format!(
            "version = 1\n[verifiers.corp]\ntype = \"notation\"\nconfig_dir = {:?}\n{crl_dir}[default]\nrequire = \"signed\"\nsigned_by = \"corp\"\n",
            cfg_dir.display().to_string()
        ),
        "p.toml",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let enforcer = trustgate::enforce::Enforcer::new(
        std::sync::Arc::new(trustgate::policy::PolicyHandle::fixed(policy)),
        dir.path().join("state"),
        trustgate::cache::TagCacheSettings::default(),
        std::sync::Arc::new(trustgate::metrics::Metrics::new()),
    );
    ReferrersCase {
        reg,
        digest,
        sig_entry: sig.entry,
        enforcer,
        _dir: dir,
    }
}

fn index_of(entries: &[serde_json::Value]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries,
    }))
    .unwrap()
}

/// An unrelated referrer (an SBOM, say), as page fillers.
fn sbom_entry(i: usize) -> serde_json::Value {
    serde_json::json!({
        "mediaType": support::registry::OCI_MANIFEST,
        "digest": format!("sha256:{:064x}", i),
        "size": 500,
        "artifactType": "application/spdx+json",
    })
}

#[tokio::test]
async fn a_signature_on_a_later_referrers_page_is_found() {
    let mut c = referrers_case();
    c.reg.referrers.insert(
        c.digest.clone(),
        index_of(&(0..3).map(sbom_entry).collect::<Vec<_>>()),
    );
    c.reg.later_pages = vec![
        index_of(&(3..6).map(sbom_entry).collect::<Vec<_>>()),
        index_of(&[sbom_entry(6), c.sig_entry.clone()]),
    ];
    let (_, verdict) = c
        .enforcer
        .tag("registry.example", "team/app", "v1", &c.reg)
        .await;
    match verdict {
        trustgate::policy::TagVerdict::Signed(_, proof) => assert_eq!(proof.digest(), c.digest),
        other => panic!("the signature on page 2 was not found: {other:?}"),
    }
    assert_eq!(
        c.reg
            .referrer_calls
            .load(std::sync::atomic::Ordering::SeqCst),
        3
    );
}

#[tokio::test]
async fn endless_referrers_pagination_is_refused_with_a_bound() {
    let mut c = referrers_case();
    // The signature is on the first page, but the listing never ends: the listing is
    // refused as a whole (which page a hostile registry puts it on must not matter).
    c.reg
        .referrers
        .insert(c.digest.clone(), index_of(&[c.sig_entry.clone()]));
    c.reg.endless = true;
    let (_, verdict) = c
        .enforcer
        .tag("registry.example", "team/app", "v1", &c.reg)
        .await;
    let msg = format!("{verdict:?}");
    assert!(
        !matches!(verdict, trustgate::policy::TagVerdict::Signed(..)),
        "{msg}"
    );
    assert!(
        msg.contains("the referrers listing of")
            && msg.contains("the listing has more than 8 pages"),
        "{msg}"
    );
    assert_eq!(
        c.reg
            .referrer_calls
            .load(std::sync::atomic::Ordering::SeqCst),
        8
    );
    // Too many entries over the pages is refused the same way.
    let mut c = referrers_case();
    c.reg.referrers.insert(
        c.digest.clone(),
        index_of(&(0..300).map(sbom_entry).collect::<Vec<_>>()),
    );
    c.reg.later_pages = vec![index_of(&(300..600).map(sbom_entry).collect::<Vec<_>>())];
    let (_, verdict) = c
        .enforcer
        .tag("registry.example", "team/app", "v1", &c.reg)
        .await;
    let msg = format!("{verdict:?}");
    assert!(
        msg.contains("the listing has more than 512 entries"),
        "{msg}"
    );
}

#[tokio::test]
async fn signatures_listed_by_the_referrers_api_are_found() {
    let mut c = referrers_case();
    c.reg
        .referrers
        .insert(c.digest.clone(), index_of(&[c.sig_entry.clone()]));
    let (_, verdict) = c
        .enforcer
        .tag("registry.example", "team/app", "v1", &c.reg)
        .await;
    match verdict {
        trustgate::policy::TagVerdict::Signed(_, proof) => assert_eq!(proof.digest(), c.digest),
        other => panic!("the referrers-listed signature was not found: {other:?}"),
    }
    assert_eq!(
        c.reg
            .referrer_calls
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
}

#[tokio::test]
async fn a_revoked_signer_is_refused_through_the_enforcer() {
    for revoked in [false, true] {
        let mut c = referrers_case_with(Some(revoked));
        c.reg
            .referrers
            .insert(c.digest.clone(), index_of(&[c.sig_entry.clone()]));
        let (_, verdict) = c
            .enforcer
            .tag("registry.example", "team/app", "v1", &c.reg)
            .await;
        let msg = format!("{verdict:?}");
        match (revoked, verdict) {
            (false, trustgate::policy::TagVerdict::Signed(_, proof)) => {
                assert_eq!(proof.digest(), c.digest)
            }
            (true, v) if !matches!(v, trustgate::policy::TagVerdict::Signed(..)) => assert!(
                msg.contains("(revocation)")
                    && msg.contains("is revoked")
                    && msg.contains("corp.crl"),
                "{msg}"
            ),
            (_, _) => panic!("revoked = {revoked}: {msg}"),
        }
    }
}

#[tokio::test]
async fn a_repository_no_statement_covers_is_refused_without_reading_signatures() {
    let mut c = referrers_case();
    c.reg
        .referrers
        .insert(c.digest.clone(), index_of(&[c.sig_entry.clone()]));
    let (_, verdict) = c
        .enforcer
        .tag("registry.example", "team/elsewhere", "v1", &c.reg)
        .await;
    let msg = format!("{verdict:?}");
    assert!(
        msg.contains("no Notation signature can vouch for")
            && msg.contains(
                "no trust policy statement applies to \\\"registry.example/team/elsewhere\\\""
            ),
        "{msg}"
    );
    assert_eq!(
        c.reg
            .referrer_calls
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
}
