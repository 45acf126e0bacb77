//! The manifests in deploy/: valid against the Kubernetes schemas (offline, with the
//! `kubernetes-validate` package that scripts/deps.sh installs), hardened, and consistent
//! with each other and with the config format.

mod common;

use std::path::PathBuf;
use std::process::Command;

use serde::Deserialize;

fn deploy(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(name)
}

fn docs(name: &str) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(deploy(name)).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde_json::Value::deserialize(d).unwrap())
        .collect()
}

#[test]
fn manifests_validate_against_the_kubernetes_schemas() {
    for name in [
        "serviceaccount.yaml",
        "rbac.yaml",
        "configmap.yaml",
        "configmap-aggregated.yaml",
        "deployment.yaml",
        "service.yaml",
    ] {
        let out = Command::new("kubernetes-validate")
            .args(["--strict", "--quiet"])
            .arg(deploy(name))
            .output()
            .expect("kubernetes-validate is installed by scripts/deps.sh");
        assert!(
            out.status.success(),
            "{name}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn deployment_is_hardened_and_probed() {
    let d = &docs("deployment.yaml")[0];
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["serviceAccountName"], "sla-planner");
    let c = &pod["containers"][0];
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert!(
        c["resources"]["requests"]["memory"].is_string()
            && c["resources"]["requests"]["cpu"].is_string()
    );
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        &args[..3],
        ["run", "--config", "/etc/sla-planner/config.yaml"]
    );
}

/// The run config a ConfigMap in deploy/ holds, loaded and checked as `run` would.
fn shipped_config(configmap: &str) -> sla_planner::live::config::RunConfig {
    let cm = &docs(configmap)[0];
    let text = cm["data"]["config.yaml"].as_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, text).unwrap();
    sla_planner::live::config::RunConfig::load(&path)
        .unwrap_or_else(|e| panic!("{configmap} holds a valid config: {e}"))
}

#[test]
fn each_configmap_holds_a_valid_config_for_its_example_dgd() {
    use sla_planner::scaler::kube::{discover, Topology};
    for (configmap, example) in [
        ("configmap.yaml", "dgd-example.yaml"),
        ("configmap-aggregated.yaml", "dgd-aggregated-example.yaml"),
    ] {
        let cfg = shipped_config(configmap);
        let dgd = &docs(example)[0];
        assert_eq!(dgd["kind"], "DynamoGraphDeployment");
        assert_eq!(
            dgd["metadata"]["name"].as_str().unwrap(),
            cfg.kubernetes.dgd
        );
        // The services `run` would scale, found by its own discovery; each has an adapter.
        let topology = discover(dgd, cfg.planner.mode, &cfg.kubernetes)
            .unwrap_or_else(|e| panic!("{configmap} on {example}: {e}"));
        let scaled: Vec<&str> = match &topology {
            Topology::Disaggregated { prefill, decode } => vec![prefill, decode],
            Topology::Aggregated { worker } => vec![worker],
        };
        for svc in scaled {
            assert_eq!(
                dgd["spec"]["services"][svc]["scalingAdapter"]["enabled"], true,
                "{example}: {svc} has a scaling adapter"
            );
        }
    }
    // Each config refuses the other example: the graph's shape is checked at start.
    let pools = shipped_config("configmap.yaml");
    let workers = &docs("dgd-aggregated-example.yaml")[0];
    assert!(discover(workers, pools.planner.mode, &pools.kubernetes)
        .unwrap_err()
        .contains("planner.mode: aggregated"));
    let agg = shipped_config("configmap-aggregated.yaml");
    let disagg = &docs("dgd-example.yaml")[0];
    assert!(discover(disagg, agg.planner.mode, &agg.kubernetes)
        .unwrap_err()
        .contains("is disaggregated"));
}

#[test]
fn the_podmonitor_scrapes_the_planners_metrics_port() {
    let pm = &docs("podmonitor.yaml")[0];
    assert_eq!(pm["kind"], "PodMonitor");
    let pod = &docs("deployment.yaml")[0]["spec"]["template"];
    assert_eq!(
        pm["spec"]["selector"]["matchLabels"], pod["metadata"]["labels"],
        "it selects the planner's pods"
    );
    let endpoint = &pm["spec"]["podMetricsEndpoints"][0];
    assert_eq!(endpoint["path"], "/metrics");
    let ports = pod["spec"]["containers"][0]["ports"].as_array().unwrap();
    assert!(
        ports.iter().any(|p| p["name"] == endpoint["port"]),
        "{} is a port of the planner's container",
        endpoint["port"]
    );
}

#[test]
fn role_grants_exactly_the_declared_calls() {
    assert_eq!(
        common::role_rules(),
        common::declared_calls(),
        "deploy/rbac.yaml against scaler::kube::API_CALLS"
    );
    let text = std::fs::read_to_string(deploy("rbac.yaml")).unwrap();
    for (g, r, v) in sla_planner::scaler::kube::FALLBACK_CALLS {
        let documented = text.contains(&format!("#   resources: [\"{r}\"]"))
            && text.contains(&format!("#   verbs: [\"{v}\"]"))
            && text.contains(&format!("# - apiGroups: [\"{g}\"]"));
        assert!(documented, "the fallback rule is documented, commented out");
    }
}
