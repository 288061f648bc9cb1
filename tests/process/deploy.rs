//! The files in `deploy/`, checked offline: Kubernetes manifests against the Kubernetes
//! schemas (`kubernetes-validate`, PyPI) and our invariants, the compose topology, every
//! shipped `gateway.toml` through the real config loader, the systemd unit
//! (`systemd-analyze` when present), HAProxy/nginx configs by their own `-c`/`-t`, the
//! Dockerfile's shape, and the Grafana dashboard's PromQL against the metric names we export.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(deploy_dir().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs `tests/deploy/check_manifests.py WHAT deploy/` and returns its "ok:" lines.
fn check_manifests(what: &str) -> Vec<String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/deploy/check_manifests.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(what)
        .arg(deploy_dir())
        .output()
        .expect("python3 with PyYAML and kubernetes-validate is needed (tests/requirements.txt)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "deploy checks failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("ok: ").map(str::to_string))
        .collect()
}

#[test]
fn kubernetes_manifests_match_the_schema_and_our_invariants() {
    let ok = check_manifests("kubernetes");
    let schema_checked = ok
        .iter()
        .filter(|l| l.contains("is valid for Kubernetes"))
        .count();
    // ConfigMap, Secret, Deployment, two Services, HPA, PDB.
    assert_eq!(schema_checked, 7, "{ok:#?}");
    for must in [
        "the Deployment runs 3 replicas",
        "readinessProbe is GET /readyz on the admin port",
        "livenessProbe is GET /healthz on the admin port",
        "readOnlyRootFilesystem",
        "runAsNonRoot",
        "no privilege escalation",
        "every capability dropped, none added",
        "the validator refuses a Deployment with a misspelled field",
    ] {
        assert!(ok.iter().any(|l| l == must), "missing check {must:?}");
    }
    assert!(
        ok.iter()
            .any(|l| l.starts_with("terminationGracePeriodSeconds")),
        "{ok:#?}"
    );
}

#[test]
fn compose_runs_three_instances_behind_haproxy() {
    let ok = check_manifests("compose");
    assert!(ok.len() >= 20, "{ok:#?}");
    assert!(ok
        .iter()
        .any(|l| l == "compose.yaml runs three gateway instances"));
}

/// Loads a deploy `gateway.toml` with the real loader, its `secret_file` replaced by a
/// file holding `secret`.
fn load_with_secret(rel: &str, secret: &[u8]) -> Result<gateway::load::Loaded, String> {
    let text = read(rel);
    let line = text
        .lines()
        .find(|l| l.starts_with("secret_file = "))
        .unwrap_or_else(|| panic!("{rel} has no secret_file"));
    assert_eq!(text.matches(line).count(), 1);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hmac"), secret).unwrap();
    // As mounted secrets are: readable by the owner only.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        dir.path().join("hmac"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let mut text = text.replace(line, "secret_file = \"hmac\"");
    // The Redis URL and password files of [store], like the HMAC secret, are mounted
    // secrets: stand-ins next to the config (the store connects lazily, never at load).
    for (key, name, value) in [
        ("url_file", "redis-url", "redis://127.0.0.1:6379/0"),
        ("password_file", "redis-password", "stand-in"),
    ] {
        let prefix = format!("{key} = ");
        if let Some(line) = text
            .lines()
            .find(|l| l.starts_with(&prefix))
            .map(str::to_string)
        {
            std::fs::write(dir.path().join(name), value).unwrap();
            text = text.replace(&line, &format!("{key} = \"{name}\""));
        }
    }
    gateway::load::from_str(&text, dir.path()).map_err(|e| e.to_string())
}

#[test]
fn every_deploy_config_loads_with_the_real_loader() {
    for rel in [
        "kubernetes/gateway.toml",
        "compose/gateway.toml",
        "systemd/gateway.toml",
    ] {
        let loaded =
            load_with_secret(rel, crate::support::SECRET).unwrap_or_else(|e| panic!("{rel}: {e}"));
        let warnings = format!("{:?}", loaded.warnings);
        assert!(!warnings.contains("secret"), "{rel}: {warnings}");
        assert_eq!(loaded.config.server.shutdown_grace.as_secs(), 30, "{rel}");
        assert!(!loaded.config.routes.is_empty(), "{rel}");
        // The instances of compose and Kubernetes share their login limits in Redis.
        let shared = matches!(
            loaded.config.store.backend,
            gateway::config::StoreBackend::Redis(_)
        );
        assert_eq!(shared, !rel.starts_with("systemd"), "{rel}");
        let table: toml::Table = read(rel).parse().unwrap();
        let admin = table["admin"]["listen"].as_str().unwrap();
        assert!(admin.ends_with(":9901"), "{rel}: admin on {admin}");
        assert_eq!(
            table["tokens"]["missing_secret"].as_str(),
            Some("refuse"),
            "{rel}"
        );
    }
}

#[test]
fn the_kubernetes_secret_placeholder_cannot_start_a_gateway() {
    let secret = read("kubernetes/secret.yaml");
    let placeholder = secret
        .lines()
        .find_map(|l| l.trim().strip_prefix("hmac: "))
        .expect("secret.yaml has an hmac key");
    let err = load_with_secret("kubernetes/gateway.toml", placeholder.as_bytes())
        .expect_err("the placeholder secret must be refused");
    assert!(err.contains("tokens.secret_file"), "{err}");
    assert!(err.contains("at least 32 are required"), "{err}");
    assert!(err.contains("well-known secrets"), "{err}");
    assert!(err.starts_with("2 problem(s)"), "{err}");
}

#[test]
fn the_configmap_embeds_kubernetes_gateway_toml_verbatim() {
    let toml = read("kubernetes/gateway.toml");
    let configmap = read("kubernetes/configmap.yaml");
    let mut block = String::from("  gateway.toml: |\n");
    for line in toml.lines() {
        if line.is_empty() {
            block.push('\n');
        } else {
            block.push_str("    ");
            block.push_str(line);
            block.push('\n');
        }
    }
    assert!(
        configmap.ends_with(&block),
        "configmap.yaml does not end with kubernetes/gateway.toml indented under data"
    );
}

/// `key=value` lines of one section of a unit file (repeated keys kept in order).
fn unit_section(unit: &str, section: &str) -> Vec<(String, String)> {
    let header = format!("[{section}]");
    unit.lines()
        .skip_while(|l| *l != header)
        .skip(1)
        .take_while(|l| !l.starts_with('['))
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn the_systemd_unit_checks_reloads_drains_and_is_hardened() {
    let unit = read("gateway.service");
    let service = unit_section(&unit, "Service");
    let get = |k: &str| -> Vec<&str> {
        service
            .iter()
            .filter(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    assert_eq!(
        get("ExecStartPre"),
        ["/usr/local/bin/gateway check --config /etc/gateway/gateway.toml"]
    );
    assert_eq!(get("ExecReload"), ["/bin/kill -HUP $MAINPID"]);
    assert_eq!(get("KillSignal"), ["SIGTERM"]);
    let stop = get("TimeoutStopSec");
    let stop: u64 = stop[0].trim_end_matches('s').parse().unwrap();
    let grace = load_with_secret("systemd/gateway.toml", crate::support::SECRET)
        .unwrap()
        .config
        .server
        .shutdown_grace;
    assert!(stop > grace.as_secs(), "TimeoutStopSec {stop} <= {grace:?}");
    for (k, v) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("DynamicUser", "yes"),
        ("CapabilityBoundingSet", ""),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("SystemCallFilter", "@system-service"),
        ("LoadCredential", "hmac:/etc/gateway/hmac"),
    ] {
        assert!(get(k).contains(&v), "{k}={v} missing");
    }
    assert_eq!(
        unit_section(&unit, "Install"),
        [("WantedBy".to_string(), "multi-user.target".to_string())]
    );

    if !have("systemd-analyze") {
        eprintln!("systemd-analyze not installed: verified the keys only");
        return;
    }
    // systemd-analyze checks that the executables exist: point them at the built binary.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/gateway", env!("CARGO_BIN_EXE_gateway")),
    )
    .unwrap();
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        verify.status.success() && verify.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&verify.stderr)
    );
    // Exposure score 0.0 (locked down) .. 10.0 (unprotected); the threshold is in tenths.
    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--threshold=20", "--no-pager"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        security.status.success(),
        "exposure above 2.0:\n{}",
        String::from_utf8_lossy(&security.stdout)
    );
}

#[test]
fn haproxy_and_nginx_accept_the_compose_configs() {
    let haproxy = Command::new("haproxy")
        .arg("-c")
        .arg("-f")
        .arg(deploy_dir().join("compose/haproxy.cfg"))
        .output()
        .expect("haproxy is needed (apt-get install haproxy)");
    assert!(
        haproxy.status.success(),
        "{}",
        String::from_utf8_lossy(&haproxy.stderr)
    );
    // backend.conf is a conf.d server block: wrap it the way the nginx image includes it.
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "pid {}/nginx.pid;\nevents {{}}\nhttp {{\n    include {};\n}}\n",
            dir.path().display(),
            deploy_dir().join("compose/backend.conf").display()
        ),
    )
    .unwrap();
    let nginx = Command::new("nginx")
        .arg("-t")
        .arg("-p")
        .arg(dir.path())
        .arg("-e")
        .arg(dir.path().join("error.log"))
        .arg("-c")
        .arg(&conf)
        .output()
        .expect("nginx is needed (apt-get install nginx)");
    assert!(
        nginx.status.success(),
        "{}",
        String::from_utf8_lossy(&nginx.stderr)
    );
}

#[test]
fn the_dockerfile_builds_in_one_stage_and_runs_non_root_in_another() {
    let dockerfile = read("Dockerfile");
    // Instructions with their continuation lines joined.
    let joined = dockerfile.replace("\\\n", " ");
    let instructions: Vec<&str> = joined
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let from: Vec<&&str> = instructions
        .iter()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert_eq!(from.len(), 2, "{from:?}");
    assert!(from[0].starts_with("FROM rust:") && from[0].ends_with(" AS build"));
    assert!(instructions
        .iter()
        .any(|l| l.contains("cargo build --release --locked")));
    // Everything after the runtime FROM: a numeric non-root user and a /healthz check.
    let runtime: Vec<&&str> = instructions
        .iter()
        .skip_while(|l| **l != *from[1])
        .collect();
    let user: Vec<&&&str> = runtime.iter().filter(|l| l.starts_with("USER ")).collect();
    assert_eq!(user.len(), 1);
    let uid = user[0]["USER ".len()..].split(':').next().unwrap();
    assert!(uid.parse::<u32>().unwrap() > 0, "{uid}");
    let health: Vec<&&&str> = runtime
        .iter()
        .filter(|l| l.starts_with("HEALTHCHECK "))
        .collect();
    assert_eq!(health.len(), 1);
    assert!(health[0].contains("http://127.0.0.1:9901/healthz"));
    assert!(runtime.iter().any(|l| l.contains("curl")));
    assert!(runtime.iter().any(|l| l.starts_with("COPY --from=build ")));
    assert!(runtime.iter().any(|l| **l
        == r#"CMD ["run", "--config", "/etc/gateway/gateway.toml", "--log-format", "json"]"#));
    // The admin port in the HEALTHCHECK is the one the compose and Kubernetes configs use.
    for rel in ["compose/gateway.toml", "kubernetes/gateway.toml"] {
        assert!(
            read(rel).contains("[admin]\nlisten = \"0.0.0.0:9901\""),
            "{rel}"
        );
    }
}

/// The metrics the gateway exports (the admin listener's `/metrics`).
const METRICS: &[(&str, &[&str])] = &[
    ("gateway_requests_total", &["route", "method", "status"]),
    ("gateway_request_duration_seconds", &[]),
    ("gateway_upstream_duration_seconds", &[]),
    ("gateway_token_rejections_total", &["reason"]),
    ("gateway_logins_total", &["outcome"]),
    ("gateway_upstream_server_up", &["upstream", "server"]),
    ("gateway_upstream_ejections_total", &["upstream", "server"]),
    ("gateway_open_connections", &[]),
    ("gateway_config_reloads_total", &["outcome"]),
    ("gateway_build_info", &["version"]),
];
const HISTOGRAMS: &[&str] = &[
    "gateway_request_duration_seconds",
    "gateway_upstream_duration_seconds",
];

/// Identifiers in a PromQL expression (label values in quotes skipped).
fn identifiers(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = expr.chars().peekable();
    let mut current = String::new();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        if quoted {
            if c == '\\' {
                chars.next();
            } else if c == '"' {
                quoted = false;
            }
            continue;
        }
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            current.push(c);
            continue;
        }
        if !current.is_empty() {
            out.push(std::mem::take(&mut current));
        }
        if c == '"' {
            quoted = true;
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// The series name a PromQL identifier refers to (`_bucket`/`_sum`/`_count` of a histogram).
fn base_metric(name: &str) -> &str {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if HISTOGRAMS.contains(&base) {
                return base;
            }
        }
    }
    name
}

/// Label names grouped by in `by (...)` clauses.
fn grouping_labels(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("by (") {
        let after = &rest[i + 4..];
        let end = after.find(')').expect("unclosed by (");
        out.extend(after[..end].split(',').map(|l| l.trim().to_string()));
        rest = &after[end..];
    }
    out
}

#[test]
fn the_grafana_dashboard_queries_only_metrics_we_export() {
    let dashboard: Value = serde_json::from_str(&read("grafana-dashboard.json")).unwrap();
    assert!(dashboard["schemaVersion"].as_u64().unwrap() >= 30);
    assert!(!dashboard["uid"].as_str().unwrap().is_empty());
    let known: BTreeSet<&str> = METRICS.iter().map(|(m, _)| *m).collect();
    let labels: BTreeSet<&str> = METRICS
        .iter()
        .flat_map(|(_, l)| l.iter().copied())
        .chain(["le", "instance", "job"])
        .collect();
    let panels = dashboard["panels"].as_array().unwrap();
    let mut ids = BTreeSet::new();
    let mut used = BTreeSet::new();
    let mut exprs = 0;
    for panel in panels {
        let title = panel["title"].as_str().unwrap();
        assert!(
            ids.insert(panel["id"].as_u64().unwrap()),
            "duplicate id: {title}"
        );
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title} has no query");
        for t in targets {
            let expr = t["expr"].as_str().unwrap();
            exprs += 1;
            let metrics: Vec<String> = identifiers(expr)
                .into_iter()
                .filter(|i| i.starts_with("gateway_"))
                .collect();
            assert!(!metrics.is_empty(), "{title}: no gateway metric in {expr}");
            for m in &metrics {
                let base = base_metric(m);
                assert!(known.contains(base), "{title}: unknown metric {m}");
                if HISTOGRAMS.contains(&base) {
                    assert!(m.ends_with("_bucket"), "{title}: use the buckets of {base}");
                }
                used.insert(base.to_string());
            }
            for l in grouping_labels(expr) {
                assert!(labels.contains(l.as_str()), "{title}: unknown label {l}");
            }
        }
    }
    assert!(exprs >= 10);
    // Every exported metric has a panel.
    let all: BTreeSet<String> = known.iter().map(|m| m.to_string()).collect();
    assert_eq!(used, all);
    // The panels the issue asks for.
    let titles: Vec<&str> = panels
        .iter()
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    for t in [
        "Request rate by status",
        "Request latency p50 / p99",
        "Token rejections by reason",
        "Logins by outcome",
        "Upstream servers up",
        "Config reloads by outcome",
    ] {
        assert!(titles.contains(&t), "no panel {t:?}");
    }
}

#[test]
fn promql_scanning_finds_metrics_and_skips_label_values() {
    let expr = concat!(
        "sum by (le, route) ",
        r#"(rate(gateway_request_duration_seconds_bucket{status=~"gateway_x"}[5m]))"#,
    );
    let ids = identifiers(expr);
    assert!(ids.contains(&"gateway_request_duration_seconds_bucket".to_string()));
    assert!(!ids.contains(&"gateway_x".to_string()));
    assert_eq!(grouping_labels(expr), ["le", "route"]);
    assert_eq!(
        base_metric("gateway_request_duration_seconds_bucket"),
        "gateway_request_duration_seconds"
    );
    assert_eq!(
        base_metric("gateway_requests_total_count"),
        "gateway_requests_total_count"
    );
}
