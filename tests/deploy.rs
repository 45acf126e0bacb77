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

#[test]
fn configmap_holds_a_valid_config_for_the_example_dgd() {
    let cm = &docs("configmap.yaml")[0];
    let text = cm["data"]["config.yaml"].as_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, text).unwrap();
    let cfg =
        sla_planner::live::config::RunConfig::load(&path).expect("the shipped config is valid");
    let dgd = &docs("dgd-example.yaml")[0];
    assert_eq!(dgd["kind"], "DynamoGraphDeployment");
    assert_eq!(
        dgd["metadata"]["name"].as_str().unwrap(),
        cfg.kubernetes.dgd
    );
    let services = dgd["spec"]["services"].as_object().unwrap();
    for role in ["prefill", "decode"] {
        let (_, svc) = services
            .iter()
            .find(|(_, v)| v["subComponentType"] == role)
            .unwrap_or_else(|| panic!("a {role} service"));
        assert_eq!(
            svc["scalingAdapter"]["enabled"], true,
            "{role} has a scaling adapter"
        );
    }
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
