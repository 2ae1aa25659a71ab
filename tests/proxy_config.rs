//! `trustgate config check` names every problem (file, field, what was expected), and
//! `trustgate serve` runs from a config file and stops cleanly on SIGTERM.
mod support;

use std::process::Command;
use std::time::Duration;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_trustgate")
}

fn check(text: &str) -> (bool, String, String) {
    let dir = support::tempdir();
    let file = dir.path().join("trustgate.toml");
    std::fs::write(&file, text).unwrap();
    let o = Command::new(bin())
        .args(["config", "check"])
        .arg(&file)
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stderr).to_string(),
        file.display().to_string(),
    )
}

/// Each case: a config with one wrong field, and the field name that must appear.
#[test]
fn each_wrong_field_is_named_with_the_file() {
    let up = "[[upstream]]\nname = \"r.test\"\nurl = \"http://127.0.0.1:1\"\n";
    let cases: Vec<(String, &str, &str)> = vec![
        (format!("listen = [\"not-an-address\"]\n{up}"), "listen[0]", "socket address"),
        (format!("log_format = \"xml\"\n{up}"), "log_format", "\"text\" or \"json\""),
        (format!("default_upstream = \"nope\"\n{up}"), "default_upstream", "configured [[upstream]]"),
        (format!("{up}url2 = \"x\"\n"), "upstream[0]", "unknown field `url2`"),
        ("[[upstream]]\nname = \"a\"\nurl = \"ftp://x\"\n".into(), "upstream[0].url", "http:// or https://"),
        ("[[upstream]]\nname = \"a/b\"\nurl = \"http://x\"\n".into(), "upstream[0].name", "registry host name"),
        (format!("{up}request_timeout = \"soon\"\n"), "upstream[0].request_timeout", "duration"),
        (format!("{up}ca_file = \"/nonexistent/ca.pem\"\n"), "upstream[0].ca_file", "does not exist"),
        (
            format!("{up}[upstream.credentials]\nusername = \"u\"\n"),
            "upstream[0].credentials",
            "password_env or password_file",
        ),
        (
            format!("{up}[upstream.credentials]\nusername = \"u\"\npassword_env = \"TRUSTGATE_TEST_NOT_SET\"\n"),
            "upstream[0].credentials.password_env",
            "TRUSTGATE_TEST_NOT_SET",
        ),
        (format!("{up}[limits]\nmanifest_max_bytes = 0\n"), "limits.manifest_max_bytes", "positive"),
        (format!("{up}[limits]\nmax_connection = 5\n"), "limits", "unknown field `max_connection`"),
        (format!("{up}[limits]\nmax_buffered_bytes = 1024\n"), "limits.max_buffered_bytes", "at least limits.manifest_max_bytes"),
        (format!("{up}[limits]\nmax_connections_per_peer = 0\n"), "limits.max_connections_per_peer", "positive"),
        (format!("{up}[cache]\nmemory_max_bytes = 0\n"), "cache.memory_max_bytes", "positive"),
        (format!("ops_listen = [\"nowhere\"]\n{up}"), "ops_listen[0]", "socket address"),
        (format!("{up}[tls]\ncert = \"/nonexistent.crt\"\nkey = \"/nonexistent.key\"\n"), "tls.cert", "does not exist"),
        ("listen = [\"127.0.0.1:5000\"]\n".into(), "upstream", "at least one"),
        ("lissen = 3\n".into(), "line 1", "unknown field `lissen`"),
    ];
    for (text, field, expected) in cases {
        let (ok, stderr, file) = check(&text);
        assert!(!ok, "accepted:\n{text}");
        let line = stderr
            .lines()
            .find(|l| l.starts_with(&format!("{file}: {field}: ")))
            .unwrap_or_else(|| panic!("no line for {field} in:\n{stderr}\nconfig:\n{text}"));
        assert!(line.contains(expected), "{line:?} lacks {expected:?}");
    }
}

#[test]
fn every_problem_is_printed_at_once() {
    let (ok, stderr, _) = check(
        "listen = [\"x\"]\nlog_format = \"xml\"\n[[upstream]]\nname = \"a\"\nurl = \"bad\"\n[limits]\nidle_timeout = \"1d\"\n",
    );
    assert!(!ok);
    for f in [
        "listen[0]",
        "log_format",
        "upstream[0].url",
        "limits.idle_timeout",
    ] {
        assert!(
            stderr.contains(&format!(": {f}: ")),
            "{f} missing:\n{stderr}"
        );
    }
}

#[test]
fn a_good_file_passes_and_secrets_are_not_printed() {
    let dir = support::tempdir();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "hunter2\n").unwrap();
    let text = format!(
        "listen = [\"127.0.0.1:5000\", \"[::1]:5000\"]\nlog_format = \"json\"\n[[upstream]]\nname = \"docker.io\"\nurl = \"https://registry-1.docker.io\"\n[upstream.credentials]\nusername = \"me\"\npassword_file = {:?}\n",
        pw.display().to_string()
    );
    let (ok, stderr, _) = check(&text);
    assert!(ok, "{stderr}");
    let c = trustgate::config::Config::from_toml_str(&text, "x").unwrap();
    let dbg = format!("{c:?}");
    assert!(!dbg.contains("hunter2"), "{dbg}");
    assert_eq!(
        c.upstreams[0].credentials.as_ref().unwrap().password,
        "hunter2"
    );
}

#[test]
fn serve_runs_from_a_file_and_stops_on_sigterm() {
    let dir = support::tempdir();
    let port = support::free_port();
    let file = dir.path().join("t.toml");
    // An allow-all policy: this test is about serving and the upstream error, not trust.
    let policy = dir.path().join("allow.toml");
    std::fs::write(&policy, "version = 1\n[default]\nrequire = \"allow\"\n").unwrap();
    std::fs::write(
        &file,
        format!(
            "listen = [\"127.0.0.1:{port}\"]\nlog_format = \"json\"\npolicy = {:?}\nstate_dir = {:?}\n[[upstream]]\nname = \"r.test\"\nurl = \"http://127.0.0.1:1\"\n",
            policy.display().to_string(),
            dir.path().join("state").display().to_string()
        ),
    )
    .unwrap();
    let mut cmd = Command::new(bin());
    cmd.args(["serve", "--config"]).arg(&file);
    let mut g = support::proc::ChildGuard::spawn("trustgate", cmd, &dir.path().join("log"));
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    support::wait_for_tcp(addr, Duration::from_secs(10));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let status = rt.block_on(async {
        let r = reqwest::get(format!("http://{addr}/v2/x/manifests/v1"))
            .await
            .unwrap();
        r.status().as_u16()
    });
    assert_eq!(status, 502, "{}", g.log_text());
    g.signal("TERM");
    std::thread::sleep(Duration::from_millis(500));
    let log = g.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("\"request_id\"") && l.contains("\"status\""))
        .unwrap_or_else(|| panic!("json request log missing:\n{log}"));
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    let f = &v["fields"];
    assert_eq!(f["method"], "GET", "{line}");
    assert_eq!(f["path"], "/v2/x/manifests/v1", "{line}");
    assert_eq!(f["upstream"], "r.test", "{line}");
    assert_eq!(f["status"], 502, "{line}");
    for k in ["bytes", "duration_ms", "client", "outcome"] {
        assert!(!f[k].is_null(), "{k} missing: {line}");
    }
    assert!(log.contains("shutdown requested"), "{log}");
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "still listening after SIGTERM"
    );
    g.stop();
}

/// A config whose `[tls]` files exist but do not hold a certificate and a key.
fn config_with_broken_tls(dir: &std::path::Path, port: u16) -> std::path::PathBuf {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, "not a certificate\n").unwrap();
    std::fs::write(&key, "not a key\n").unwrap();
    let file = dir.join("t.toml");
    std::fs::write(
        &file,
        format!(
            "listen = [\"127.0.0.1:{port}\"]\nstate_dir = {:?}\n[tls]\ncert = {:?}\nkey = {:?}\n[[upstream]]\nname = \"r.test\"\nurl = \"http://127.0.0.1:1\"\n",
            dir.join("state").display().to_string(),
            cert.display().to_string(),
            key.display().to_string()
        ),
    )
    .unwrap();
    file
}

/// PROXY-REVIEW D11: `config check` said ok to TLS material the server cannot load.
#[test]
fn config_check_loads_the_tls_material() {
    let dir = support::tempdir();
    let file = config_with_broken_tls(dir.path(), 1);
    let o = Command::new(bin())
        .args(["config", "check"])
        .arg(&file)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "config check passed broken TLS: {err}");
    assert!(err.contains("cert.pem"), "names the file: {err}");
    assert!(err.contains("tls"), "names the section: {err}");
}

/// PROXY-REVIEW D11: the process stayed up serving nothing until shutdown.
#[test]
fn serve_refuses_to_start_on_unloadable_tls() {
    let dir = support::tempdir();
    let file = config_with_broken_tls(dir.path(), support::free_port());
    let mut child = Command::new(bin())
        .args(["serve", "--config"])
        .arg(&file)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("serve kept running on a TLS key it cannot load");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(!status.success(), "{err}");
    assert!(err.contains("cert.pem"), "{err}");
}

/// PROXY-REVIEW D15: with no policy file, SIGHUP (systemd's ExecReload) ended the process.
#[test]
fn sighup_without_a_policy_file_is_harmless() {
    let dir = support::tempdir();
    let port = support::free_port();
    let file = dir.path().join("t.toml");
    std::fs::write(
        &file,
        format!(
            "listen = [\"127.0.0.1:{port}\"]\nstate_dir = {:?}\n[[upstream]]\nname = \"r.test\"\nurl = \"http://127.0.0.1:1\"\n",
            dir.path().join("state").display().to_string()
        ),
    )
    .unwrap();
    let mut cmd = Command::new(bin());
    cmd.args(["serve", "--config"]).arg(&file);
    let mut g = support::proc::ChildGuard::spawn("trustgate", cmd, &dir.path().join("log"));
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    support::wait_for_tcp(addr, Duration::from_secs(10));
    g.signal("HUP");
    std::thread::sleep(Duration::from_millis(500));
    g.assert_running();
    assert!(
        std::net::TcpStream::connect(addr).is_ok(),
        "stopped listening after SIGHUP"
    );
    assert!(
        g.log_text().contains("nothing to reload"),
        "{}",
        g.log_text()
    );
    g.stop();
}

/// PROXY-REVIEW D18: registry credentials over plain http:// to another machine were accepted.
#[test]
fn credentials_need_https_off_loopback() {
    let dir = support::tempdir();
    let secret = dir.path().join("pw");
    std::fs::write(&secret, "hunter2\n").unwrap();
    let conf = |url: &str| {
        format!(
            "[[upstream]]\nname = \"r.example\"\nurl = \"{url}\"\n[upstream.credentials]\nusername = \"u\"\npassword_file = {:?}\n",
            secret.display().to_string()
        )
    };
    let (ok, stderr, file) = check(&conf("http://registry.example"));
    assert!(!ok, "accepted credentials over plain http");
    assert!(
        stderr.contains(&format!("{file}: upstream[0].credentials: an https://")),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
    for url in ["https://registry.example", "http://127.0.0.1:5000"] {
        let (ok, stderr, _) = check(&conf(url));
        assert!(ok, "{url}: {stderr}");
    }
}

/// Issue 8: upstream credentials on a listener off loopback lend them to anyone; the start
/// needs [client_auth] or an explicit `anonymous = true`.
#[test]
fn credentials_on_an_open_listener_need_client_auth_or_an_opt_in() {
    let dir = support::tempdir();
    let secret = dir.path().join("pw");
    std::fs::write(&secret, "hunter2\n").unwrap();
    let base = format!(
        "listen = [\"0.0.0.0:5000\"]\n[[upstream]]\nname = \"r.example\"\nurl = \"https://registry.example\"\n[upstream.credentials]\nusername = \"u\"\npassword_file = {:?}\n",
        secret.display().to_string()
    );
    let (ok, stderr, file) = check(&base);
    assert!(!ok, "started open with upstream credentials");
    assert!(
        stderr.contains(&format!("{file}: client_auth: a [client_auth] section")),
        "{stderr}"
    );
    let (ok, stderr, _) = check(&format!("{base}[client_auth]\nanonymous = true\n"));
    assert!(ok, "{stderr}");
    let loopback = base.replace("0.0.0.0:5000", "127.0.0.1:5000");
    let (ok, stderr, _) = check(&loopback);
    assert!(ok, "{stderr}");
    let (ok, stderr, _) = check(&format!("{loopback}[client_auth]\n"));
    assert!(
        !ok && stderr.contains("client_auth: client_ca, htpasswd or tokens"),
        "{stderr}"
    );
    let (ok, stderr, _) = check(&format!(
        "{loopback}[client_auth]\nhtpasswd = \"/nonexistent\"\n"
    ));
    assert!(!ok && stderr.contains("client_auth.htpasswd"), "{stderr}");
}

/// `[[client_auth.access]]`: each bad identity or scope is named by its index, and access
/// entries next to `anonymous = true` (which authenticates nobody) are refused.
#[test]
fn access_entries_are_checked_entry_by_entry() {
    let dir = support::tempdir();
    let htpasswd = dir.path().join("htpasswd");
    std::fs::write(&htpasswd, format!("a:{}\n", bcrypt::hash("x", 4).unwrap())).unwrap();
    let base = format!(
        "[[upstream]]\nname = \"r.example\"\nurl = \"https://registry.example\"\n[client_auth]\nhtpasswd = {:?}\n",
        htpasswd.display().to_string()
    );
    let (ok, stderr, _) = check(&format!(
        "{base}[[client_auth.access]]\nidentities = [\"user:a\"]\nscopes = [\"r.example/**\"]\n"
    ));
    assert!(ok, "{stderr}");
    let (ok, stderr, file) = check(&format!(
        "{base}[[client_auth.access]]\nidentities = [\"user:a\", \"alice\"]\nscopes = [\"r.example/team-*\"]\n\
         [[client_auth.access]]\nidentities = []\nscopes = [\"r.example/x\"]\n"
    ));
    assert!(!ok, "accepted bad access entries");
    for want in [
        format!("{file}: client_auth.access[0].identities[1]: user:NAME"),
        format!("{file}: client_auth.access[0].scopes[0]:"),
        format!("{file}: client_auth.access[1].identities: at least one identity"),
    ] {
        assert!(stderr.contains(&want), "missing {want:?} in {stderr}");
    }
    let (ok, stderr, _) = check(
        "[[upstream]]\nname = \"r.example\"\nurl = \"https://registry.example\"\n[client_auth]\nanonymous = true\n\
         [[client_auth.access]]\nidentities = [\"user:a\"]\nscopes = [\"r.example/x\"]\n",
    );
    assert!(
        !ok && stderr.contains("client_auth.access: authentication methods"),
        "{stderr}"
    );
}
