//! The harness itself: real programs are present and a loopback CA issues usable certs.
mod support;

#[test]
fn required_programs_are_installed() {
    for tool in [
        "docker-registry",
        "notary-server",
        "notary-signer",
        "notary",
        "skopeo",
        "containerd",
        "ctr",
        "podman",
    ] {
        let p = support::require_tool(tool);
        assert!(p.exists(), "{tool} at {}", p.display());
    }
}

#[test]
fn test_ca_issues_loopback_certificates() {
    let dir = support::tempdir();
    let ca = support::pki::TestCa::new("trustgate test CA");
    let issued = ca.issue(dir.path(), "server");
    let out = std::process::Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(&issued.ca_path)
        .arg(&issued.cert_path)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
