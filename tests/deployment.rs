//! The deployment files, validated statically (no Docker engine or cluster here): docker/Dockerfile by
//! hadolint, every YAML file by yamllint, docker/kubernetes/ by kubernetes-validate against Kubernetes
//! 1.31 (the Prometheus operator's kinds by their required fields), docker/compose.yaml by the
//! compose-spec types; and each manifest's configuration through `check-config`, with the ports, probe
//! paths, mounted files and environment keys it implies checked against what the daemon reads.

mod common;

use common::{USER_HASH, *};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

const KUBERNETES_VERSION: &str = "1.31.0";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A tool of scripts/install-python-tools' venv ($PYTHON_TOOLS, or installed now).
fn python_tool(name: &str) -> PathBuf {
    let bin = match std::env::var("PYTHON_TOOLS") {
        Ok(dir) => PathBuf::from(dir),
        Err(_) => {
            let out = run_ok(&mut Command::new(repo("scripts/install-python-tools")));
            PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
        }
    };
    bin.join(name)
}

/// Every document of the YAML files of docker/kubernetes/: (file, document).
fn manifests() -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo("docker/kubernetes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        for doc in serde_norway::Deserializer::from_str(&text) {
            let value: Value = serde::Deserialize::deserialize(doc).unwrap();
            if !value.is_null() {
                out.push((name.clone(), value));
            }
        }
    }
    out
}

fn manifest(kind: &str, name: &str) -> Value {
    manifests()
        .into_iter()
        .map(|(_, m)| m)
        .find(|m| m["kind"] == kind && m["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in docker/kubernetes/"))
}

#[test]
fn the_dockerfile_passes_hadolint_and_builds_a_locked_down_image() {
    let dockerfile = repo("docker/Dockerfile");
    let (ok, text) = output(Command::new(python_tool("hadolint")).arg(&dockerfile));
    assert!(ok, "hadolint:\n{text}");
    let text = std::fs::read_to_string(&dockerfile).unwrap();
    let instructions: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with(' ') && !l.is_empty())
        .collect();
    let froms: Vec<&str> = instructions
        .iter()
        .filter(|l| l.starts_with("FROM "))
        .copied()
        .collect();
    assert!(froms.len() >= 2, "multi-stage: {froms:?}");
    assert!(froms.iter().all(|f| !f.contains(":latest")), "{froms:?}");
    let runtime = froms.last().unwrap();
    assert!(
        runtime.contains("@sha256:"),
        "the runtime image is pinned by digest: {runtime}"
    );
    let has = |prefix: &str| instructions.iter().any(|l| l.starts_with(prefix));
    assert!(has("USER 65532:65532"), "a numeric non-root user");
    assert!(has("STOPSIGNAL SIGTERM"));
    assert!(
        has("VOLUME [\"/var/lib/hestyna-obsd\"]"),
        "the writable path is declared"
    );
    assert!(has("EXPOSE 9464 9465"));
    assert!(text.contains("org.opencontainers.image.source="));
    assert!(text.contains("org.opencontainers.image.revision="));
    // The health check is the binary itself, in exec form: the runtime has no shell.
    assert!(text.contains("CMD [\"/usr/local/bin/hestyna-obsd\", \"healthcheck\""));
    // What it builds with exists: the feature, and the files it copies.
    let manifest = std::fs::read_to_string(repo("Cargo.toml")).unwrap();
    assert!(manifest.contains("static-zlib = [\"rdkafka/libz-static\"]"));
    // Everything the build reads is copied in, jemalloc's compiled-in settings too.
    for read in ["Cargo.toml", "Cargo.lock", "build.rs", ".cargo", "src"] {
        let copied = instructions.iter().any(|l| {
            l.starts_with("COPY ")
                && !l.contains("--from")
                && l.split_whitespace().any(|w| w == read)
        });
        assert!(copied, "the build stage does not copy {read}");
    }
    for line in instructions
        .iter()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let words: Vec<&str> = line.split_whitespace().collect();
        for source in &words[1..words.len() - 1] {
            assert!(repo(source).exists(), "{line}: {source} does not exist");
        }
    }
}

#[test]
fn the_healthcheck_command_probes_a_running_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = generator_config(dir.path(), port, "rate = 10.0");
    let _daemon = Daemon::start(&config, dir.path(), port);
    let probe = |url: String| {
        Command::new(env!("CARGO_BIN_EXE_hestyna-obsd"))
            .args(["healthcheck", "--url", &url])
            .output()
            .unwrap()
    };
    let healthy = probe(format!("http://127.0.0.1:{port}/livez"));
    assert!(healthy.status.success(), "{healthy:?}");
    let unauthenticated = probe(format!("http://127.0.0.1:{port}/metrics"));
    assert_eq!(unauthenticated.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unauthenticated.stderr).contains("401"));
    let closed = probe(format!("http://127.0.0.1:{}/livez", free_port()));
    assert_eq!(closed.status.code(), Some(1));
}

#[test]
fn every_yaml_file_passes_yamllint() {
    let (ok, text) = output(
        Command::new(python_tool("yamllint"))
            .args(["--strict", "."])
            .current_dir(repo("")),
    );
    assert!(ok, "yamllint:\n{text}");
    // It reads the files it must: an error in one is found.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.yaml"), "a: 1\na: 2\n").unwrap();
    let config = repo(".yamllint.yaml");
    let (ok, _) = output(
        Command::new(python_tool("yamllint"))
            .arg("-c")
            .arg(config)
            .arg(dir.path()),
    );
    assert!(!ok, "a duplicate key passed yamllint");
}

#[test]
fn the_kubernetes_manifests_validate_against_kubernetes_1_31() {
    let files: BTreeSet<String> = manifests().into_iter().map(|(f, _)| f).collect();
    let mut command = Command::new(python_tool("kubernetes-validate"));
    command.args(["--strict", "-k", KUBERNETES_VERSION]);
    command.args(
        files
            .iter()
            .map(|f| repo(&format!("docker/kubernetes/{f}"))),
    );
    let (ok, text) = output(&mut command);
    assert!(ok, "kubernetes-validate:\n{text}");
    // Only the Prometheus operator's kinds lack a schema there; they are checked below.
    for line in text.lines().filter(|l| !l.starts_with("INFO")) {
        let operator = line.contains("kind ServiceMonitor") || line.contains("kind PrometheusRule");
        assert!(line.starts_with("WARN") && operator, "{line}");
    }
    let monitor = manifest("ServiceMonitor", "hestyna-obsd");
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert!(monitor["spec"]["selector"]["matchLabels"].is_object());
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert!(endpoint["port"].is_string() && endpoint["interval"].is_string());
    for key in ["username", "password"] {
        assert!(endpoint["basicAuth"][key]["name"].is_string(), "{key}");
        assert!(endpoint["basicAuth"][key]["key"].is_string(), "{key}");
    }
    let rule = manifest("PrometheusRule", "hestyna-obsd");
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    for group in rule["spec"]["groups"].as_array().unwrap() {
        assert!(group["name"].is_string());
        for r in group["rules"].as_array().unwrap() {
            assert!(r["expr"].is_string(), "{r}");
            assert!(r["alert"].is_string() != r["record"].is_string(), "{r}");
        }
    }
}

#[test]
fn the_prometheusrule_holds_exactly_the_rules_file() {
    let rules: Value = serde_norway::from_str(
        &std::fs::read_to_string(repo("config/prometheus/hestyna-obsd.rules.yml")).unwrap(),
    )
    .unwrap();
    let rule = manifest("PrometheusRule", "hestyna-obsd");
    assert!(
        rule["spec"]["groups"] == rules["groups"],
        "docker/kubernetes/prometheusrule.yaml differs from the rules file: run scripts/generate-prometheusrule"
    );
}

/// The pod spec of a Deployment.
fn pod(deployment: &Value) -> &Value {
    &deployment["spec"]["template"]["spec"]
}

fn container<'a>(pod: &'a Value, name: &str) -> &'a Value {
    let containers = pod["containers"].as_array().unwrap();
    containers.iter().find(|c| c["name"] == name).unwrap()
}

#[test]
fn the_pods_are_locked_down_and_drain_before_they_are_killed() {
    for deployment in ["hestyna-obsd", "hestyna-app"] {
        let d = manifest("Deployment", deployment);
        let pod = pod(&d);
        assert_eq!(pod["automountServiceAccountToken"], false, "{deployment}");
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{deployment}");
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"],
            "RuntimeDefault"
        );
        for c in pod["containers"].as_array().unwrap() {
            let name = &c["name"];
            let s = &c["securityContext"];
            assert_eq!(s["allowPrivilegeEscalation"], false, "{name}");
            assert_eq!(s["readOnlyRootFilesystem"], true, "{name}");
            assert_eq!(
                s["capabilities"]["drop"],
                serde_json::json!(["ALL"]),
                "{name}"
            );
            assert!(c["resources"]["requests"]["memory"].is_string(), "{name}");
            assert!(c["resources"]["limits"]["memory"].is_string(), "{name}");
        }
        let obsd = container(pod, "hestyna-obsd");
        assert_eq!(obsd["livenessProbe"]["httpGet"]["path"], "/livez");
        assert_eq!(obsd["readinessProbe"]["httpGet"]["path"], "/readyz");
        // The drain (shutdown.drain_timeout_secs, 30) plus one sink request timeout (30) fit in it.
        let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
        assert!(
            grace > 30 + 30,
            "{deployment}: terminationGracePeriodSeconds {grace}"
        );
    }
    let pdb = manifest("PodDisruptionBudget", "hestyna-obsd");
    let d = manifest("Deployment", "hestyna-obsd");
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        d["spec"]["selector"]["matchLabels"]
    );
    // Only Prometheus reaches the metrics port; the health port stays open to the kubelet.
    let policy = manifest("NetworkPolicy", "hestyna-obsd");
    assert_eq!(policy["spec"]["podSelector"], d["spec"]["selector"]);
    let rules = policy["spec"]["ingress"].as_array().unwrap();
    for rule in rules {
        let ports: Vec<&Value> = rule["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| &p["port"])
            .collect();
        if ports.contains(&&Value::from("metrics")) {
            let from = rule["from"].as_array().unwrap();
            assert_eq!(from.len(), 1, "{rule}");
            assert_eq!(
                from[0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"],
                "prometheus"
            );
        } else {
            assert_eq!(ports, [&Value::from("health")], "{rule}");
        }
    }
}

/// A container's configuration as `check-config` reads it: the ConfigMap's config.toml and every mounted
/// file put under `root` at its mount path (the Secret's placeholders replaced by working values), the
/// container's environment set. The effective configuration `check-config` printed, or its errors.
fn check_config(root: &Path, pod: &Value, container: &Value) -> Result<toml::Value, String> {
    let mut config_text = String::new();
    for mount in container["volumeMounts"].as_array().unwrap() {
        let path = mount["mountPath"].as_str().unwrap();
        let volume = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == mount["name"])
            .unwrap();
        let target = root.join(path.trim_start_matches('/'));
        if let Some(map) = volume["configMap"]["name"].as_str() {
            let data = &manifest("ConfigMap", map)["data"];
            let key = mount["subPath"].as_str().unwrap();
            config_text = data[key].as_str().unwrap().to_owned();
            continue;
        }
        std::fs::create_dir_all(&target).unwrap();
        if let Some(secret) = volume["secret"]["secretName"].as_str() {
            let data = &manifest("Secret", secret)["stringData"];
            for item in volume["secret"]["items"].as_array().unwrap() {
                let key = item["key"].as_str().unwrap();
                let value = data[key].as_str().unwrap();
                let value = value.replace(
                    "$2b$12$REPLACE.WITH.THE.OUTPUT.OF.hestyna-obsd.hash-password",
                    USER_HASH,
                );
                std::fs::write(target.join(item["path"].as_str().unwrap()), value).unwrap();
            }
        }
    }
    let rooted = config_text.replace("\"/", &format!("\"{}/", root.display()));
    let file = root.join("config.toml");
    std::fs::write(&file, rooted).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_hestyna-obsd"));
    command.arg("--config").arg(&file).arg("check-config");
    for var in container["env"].as_array().into_iter().flatten() {
        let value = var["value"].as_str().unwrap_or("from-the-downward-api");
        command.env(var["name"].as_str().unwrap(), value);
    }
    let out = command.output().unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(toml::from_str(&String::from_utf8_lossy(&out.stdout)).unwrap())
}

/// `host:port` -> port.
fn port_of(address: &toml::Value) -> u64 {
    let text = address.as_str().unwrap();
    text.rsplit_once(':').unwrap().1.parse().unwrap()
}

/// Every string of the configuration that names a file under `root`.
fn files_named(value: &toml::Value, root: &str, out: &mut Vec<String>) {
    match value {
        toml::Value::String(s) if s.starts_with(root) => out.push(s[root.len()..].to_owned()),
        toml::Value::Table(t) => t.values().for_each(|v| files_named(v, root, out)),
        toml::Value::Array(a) => a.iter().for_each(|v| files_named(v, root, out)),
        _ => {}
    }
}

#[test]
fn the_manifests_agree_with_the_configuration_the_daemon_reads() {
    for deployment in ["hestyna-obsd", "hestyna-app"] {
        let dir = tempfile::tempdir().unwrap();
        let d = manifest("Deployment", deployment);
        let pod = pod(&d);
        let obsd = container(pod, "hestyna-obsd");
        let config = check_config(dir.path(), pod, obsd)
            .unwrap_or_else(|e| panic!("{deployment}: check-config refused it:\n{e}"));
        let ports: BTreeMap<&str, u64> = obsd["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["name"].as_str().unwrap(),
                    p["containerPort"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            ports["metrics"],
            port_of(&config["http"]["listen"]),
            "{deployment}"
        );
        assert_eq!(
            ports["health"],
            port_of(&config["http"]["health_listen"]),
            "{deployment}"
        );
        for probe in ["livenessProbe", "readinessProbe"] {
            assert_eq!(
                obsd[probe]["httpGet"]["port"], "health",
                "{deployment} {probe}"
            );
        }
        // Every file the configuration names is in a mounted volume, and each mount is used.
        let root = dir.path().display().to_string();
        let mut named = Vec::new();
        files_named(&config, &root, &mut named);
        let mounts: Vec<&str> = obsd["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["mountPath"].as_str().unwrap())
            .filter(|m| !m.ends_with("config.toml"))
            .collect();
        for file in &named {
            assert!(
                mounts.iter().any(|m| file.starts_with(m)),
                "{deployment}: {file} is not mounted"
            );
        }
        for mount in mounts.iter().filter(|m| !m.starts_with("/var/lib")) {
            assert!(
                named.iter().any(|f| f.starts_with(mount)),
                "{deployment}: {mount} unused"
            );
        }
        // The image's arguments read the mounted configuration.
        assert_eq!(obsd["args"][1], "/etc/hestyna-obsd/config.toml");
    }
    // The environment keys are configuration keys: a misspelt one is refused.
    let dir = tempfile::tempdir().unwrap();
    let d = manifest("Deployment", "hestyna-obsd");
    let mut wrong = container(pod(&d), "hestyna-obsd").clone();
    wrong["env"][3]["name"] = "HESTYNA_OBSD__FORWARD__SERVICENAME".into();
    let refused = check_config(dir.path(), pod(&d), &wrong).unwrap_err();
    assert!(
        refused.contains("forward.servicename: unknown key"),
        "{refused}"
    );
    // The Service and the ServiceMonitor reach the metrics port.
    let service = manifest("Service", "hestyna-obsd");
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "metrics");
    assert_eq!(
        service["spec"]["selector"],
        d["spec"]["selector"]["matchLabels"]
    );
    let monitor = manifest("ServiceMonitor", "hestyna-obsd");
    assert_eq!(
        monitor["spec"]["endpoints"][0]["port"],
        service["spec"]["ports"][0]["name"]
    );
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
}

#[test]
fn the_compose_file_is_a_valid_compose_project_whose_files_exist() {
    let text = std::fs::read_to_string(repo("docker/compose.yaml")).unwrap();
    let compose: compose_spec::Compose = serde_norway::from_str(&text)
        .unwrap_or_else(|e| panic!("docker/compose.yaml is not a compose file: {e}"));
    let typo = "services:\n  a:\n    image: busybox:1.36\n    restrat: always\n";
    let refused = serde_norway::from_str::<compose_spec::Compose>(typo);
    assert!(refused.is_err(), "the compose types accept an unknown key");
    let services: BTreeSet<&str> = compose.services.keys().map(|k| k.as_str()).collect();
    for wanted in [
        "kafka",
        "hestyna-obsd",
        "prometheus",
        "alertmanager",
        "grafana",
    ] {
        assert!(services.contains(wanted), "{wanted} missing: {services:?}");
    }
    // Every bind-mounted file exists, relative to docker/.
    let raw: Value = serde_norway::from_str(&text).unwrap();
    for (name, service) in raw["services"].as_object().unwrap() {
        for volume in service["volumes"].as_array().into_iter().flatten() {
            let source = volume.as_str().unwrap().split(':').next().unwrap();
            if source.starts_with('.') {
                let path = repo("docker").join(source);
                assert!(path.exists(), "{name}: {source} does not exist");
            }
        }
        for port in service["ports"].as_array().into_iter().flatten() {
            assert!(
                port.as_str().unwrap().starts_with("127.0.0.1:"),
                "{name}: {port}"
            );
        }
    }
    // The daemon's configuration there is one it accepts.
    let dir = tempfile::tempdir().unwrap();
    let config = std::fs::read_to_string(repo("docker/compose/hestyna-obsd.toml")).unwrap();
    let web = dir.path().join("web-config.yml");
    std::fs::copy(repo("docker/compose/web-config.yml"), &web).unwrap();
    let config = config.replace(
        "/etc/hestyna-obsd/web-config.yml",
        &web.display().to_string(),
    );
    let file = dir.path().join("config.toml");
    std::fs::write(&file, config).unwrap();
    run_ok(
        Command::new(env!("CARGO_BIN_EXE_hestyna-obsd"))
            .arg("--config")
            .arg(&file)
            .arg("check-config"),
    );
    // And Prometheus's: promtool checks it (with the rules where the volume puts them).
    let prometheus = std::fs::read_to_string(repo("docker/compose/prometheus.yml")).unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    let rules_file = rules.join("hestyna-obsd.rules.yml");
    std::fs::copy(repo("config/prometheus/hestyna-obsd.rules.yml"), rules_file).unwrap();
    let prometheus = prometheus.replace("/etc/prometheus/rules", &rules.display().to_string());
    let prom_file = dir.path().join("prometheus.yml");
    std::fs::write(&prom_file, prometheus).unwrap();
    let promtool = std::env::var("PROMTOOL").unwrap_or_else(|_| "promtool".into());
    let (ok, text) = output(
        Command::new(promtool)
            .args(["check", "config"])
            .arg(&prom_file),
    );
    assert!(ok && text.contains("SUCCESS"), "{text}");
}
