//! The files in deploy/ stay well-formed and keep the properties their comments promise.
//! (tests/clients_smoke.rs additionally pulls with real containerd and podman through the
//! client configs; once config and policy loading are merged, trustgate.toml and policy.toml
//! should also go through `Config::load` and `Policy::load` here.)

use std::path::{Path, PathBuf};

fn deploy(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(rel)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(deploy(rel)).unwrap_or_else(|e| panic!("deploy/{rel}: {e}"))
}

fn toml(rel: &str) -> toml::Table {
    read(rel)
        .parse::<toml::Table>()
        .unwrap_or_else(|e| panic!("deploy/{rel} is not valid TOML: {e}"))
}

#[test]
fn containerd_hosts_toml_makes_trustgate_the_server_for_pull_and_resolve_only() {
    let t = toml("containerd/hosts.toml");
    let server = t["server"].as_str().unwrap();
    assert!(server.starts_with("https://"), "{server}");
    let caps: Vec<&str> = t["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(caps, ["pull", "resolve"]);
    assert!(t.get("skip_verify").is_none());
    // Every [host] entry is trustgate itself: nothing to fall back to.
    let hosts = t["host"].as_table().unwrap();
    assert!(!hosts.is_empty(), "containerd 1.6 needs a [host] table");
    for (url, h) in hosts {
        assert_eq!(url, server);
        assert!(h.get("skip_verify").is_none());
    }
}

#[test]
fn registries_conf_remaps_location_without_mirrors() {
    let t = toml("containers/registries.conf");
    for r in t["registry"].as_array().unwrap() {
        let r = r.as_table().unwrap();
        assert!(
            r.get("mirror").is_none(),
            "a mirror falls back past trustgate"
        );
        assert_eq!(r["insecure"].as_bool(), Some(false));
        assert!(r["location"].as_str().unwrap().contains("trustgate"));
    }
}

#[test]
fn kubernetes_config_and_policy_are_toml_and_wired_together() {
    let config = toml("kubernetes/trustgate.toml");
    assert_eq!(
        config["policy"].as_str(),
        Some("/etc/trustgate/config/policy.toml")
    );
    let policy = toml("kubernetes/policy.toml");
    assert_eq!(policy["default"]["require"].as_str(), Some("signed"));
    let deployment = read("kubernetes/deployment.yaml");
    for must in [
        "runAsNonRoot: true",
        "readOnlyRootFilesystem: true",
        "allowPrivilegeEscalation: false",
        "path: /readyz",
        "path: /healthz",
        "mountPath: /etc/trustgate/config",
        "claimName: trustgate-state",
        "\"/etc/trustgate/config/trustgate.toml\"",
    ] {
        assert!(deployment.contains(must), "deployment.yaml lacks `{must}`");
    }
    let kustomization = read("kubernetes/kustomization.yaml");
    for f in [
        "trustgate.toml",
        "policy.toml",
        "deployment.yaml",
        "service.yaml",
        "pvc.yaml",
    ] {
        assert!(kustomization.contains(f), "kustomization.yaml lacks {f}");
    }
}

#[test]
fn systemd_unit_is_hardened() {
    let unit = read("systemd/trustgate.service");
    for must in [
        "DynamicUser=yes",
        "StateDirectory=trustgate",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=\n",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(unit.contains(must), "trustgate.service lacks `{must}`");
    }
}

#[test]
fn kubernetes_policy_and_config_load_with_trustgate_itself() {
    let policy = trustgate::policy::Policy::load(deploy("kubernetes/policy.toml"))
        .unwrap_or_else(|e| panic!("deploy/kubernetes/policy.toml:\n{e}"));
    let d = policy.decide("docker.io", "library/alpine");
    match d.requirement() {
        trustgate::policy::Requirement::Signed(s) => {
            assert_eq!(
                s.notary()
                    .expect("a Notary verifier")
                    .gun("docker.io", "library/alpine"),
                "docker.io/library/alpine"
            )
        }
        other => panic!("expected signed, got {other:?}"),
    }
    // The config names mounted TLS files; point them at real (throwaway) files to load it.
    let dir = tempfile::tempdir().unwrap();
    let ca = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    std::fs::write(dir.path().join("tls.crt"), ca.cert.pem()).unwrap();
    std::fs::write(dir.path().join("tls.key"), ca.key_pair.serialize_pem()).unwrap();
    let text = read("kubernetes/trustgate.toml")
        .replace("/etc/trustgate/tls", &dir.path().display().to_string())
        .replace(
            "/etc/trustgate/config/policy.toml",
            &deploy("kubernetes/policy.toml").display().to_string(),
        );
    let cfg = trustgate::config::Config::from_toml_str(&text, "trustgate.toml")
        .unwrap_or_else(|e| panic!("deploy/kubernetes/trustgate.toml:\n{e}"));
    assert_eq!(cfg.upstreams[0].name, "docker.io");
    assert!(cfg.tls.is_some());
}
