"""The Kubernetes manifests (docs/deployment.md, "Kubernetes"): `kubectl kustomize` renders the base, every
object is valid against the Kubernetes schemas and the Prometheus Operator's CRDs (vendored in
tests/data, see SOURCE.md there), the PrometheusRule and the dashboard ConfigMap are exactly
the shipped rules and dashboards, and the config finds its keys where the Secret is mounted."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.helpers import readme_section, require_tool, yaml_blocks
from tests.shipping import ROOT, shell_commands

BASE = ROOT / "deploy" / "kubernetes"
CRDS = ROOT / "tests" / "data" / "prometheus-operator-crd"
CRD_FILES = {
    "ServiceMonitor": CRDS / "monitoring.coreos.com_servicemonitors.yaml",
    "PrometheusRule": CRDS / "monitoring.coreos.com_prometheusrules.yaml",
}
IMAGE_USER = 10001
Object = dict[str, Any]


def require_kubectl() -> str:
    return require_tool("kubectl", package="kubernetes-client")


@pytest.fixture(scope="module")
def rendered() -> list[Object]:
    kubectl = require_kubectl()
    result = subprocess.run(
        [kubectl, "kustomize", str(BASE)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return [document for document in yaml.safe_load_all(result.stdout) if document]


def the(objects: list[Object], kind: str, name: str | None = None) -> Object:
    [found] = [
        o
        for o in objects
        if o["kind"] == kind and (name is None or o["metadata"]["name"].startswith(name))
    ]
    return found


def test_kustomize_renders_every_part(rendered: list[Object]) -> None:
    kinds = sorted(o["kind"] for o in rendered)
    assert kinds == [
        "ConfigMap",
        "ConfigMap",
        "Deployment",
        "PrometheusRule",
        "Service",
        "ServiceMonitor",
    ]
    for o in rendered:
        assert o["metadata"]["labels"]["app.kubernetes.io/name"] == "apibalance-exporter", o


def test_every_object_is_valid_kubernetes(rendered: list[Object]) -> None:
    version = kubernetes_validate.latest_version()
    for o in rendered:
        if o["kind"] in CRD_FILES:
            continue
        try:
            kubernetes_validate.validate(o, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{o['kind']} {o['metadata']['name']}: {error.message} at {error.path}")


def crd_schema(kind: str) -> Object:
    crd = yaml.safe_load(CRD_FILES[kind].read_text())
    assert crd["spec"]["names"]["kind"] == kind
    [served] = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    schema: Object = served["schema"]["openAPIV3Schema"]
    return schema


def unknown_fields(value: Any, schema: Object, path: str = "") -> list[str]:
    """Fields the schema does not declare: the API server would silently drop them."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    found: list[str] = []
    if isinstance(value, dict):
        properties = schema.get("properties")
        additional = schema.get("additionalProperties")
        for key, item in value.items():
            if properties is not None:
                if key not in properties:
                    found.append(f"{path}.{key}")
                else:
                    found += unknown_fields(item, properties[key], f"{path}.{key}")
            elif isinstance(additional, dict):
                found += unknown_fields(item, additional, f"{path}.{key}")
    elif isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            found += unknown_fields(item, schema["items"], f"{path}[{index}]")
    return found


@pytest.mark.parametrize("kind", sorted(CRD_FILES))
def test_the_operator_objects_match_the_crd_schemas(rendered: list[Object], kind: str) -> None:
    o = the(rendered, kind)
    assert o["apiVersion"] == "monitoring.coreos.com/v1"
    schema = crd_schema(kind)
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(o), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)
    assert unknown_fields(o, schema) == []


def test_the_crd_check_catches_a_typo(rendered: list[Object]) -> None:
    monitor = json.loads(json.dumps(the(rendered, "ServiceMonitor")))
    monitor["spec"]["endpoints"][0]["scrapeTimout"] = "15s"
    monitor["spec"]["endpoints"][0]["interval"] = "every minute"
    schema = crd_schema("ServiceMonitor")
    assert unknown_fields(monitor, schema) == [".spec.endpoints[0].scrapeTimout"]
    assert list(jsonschema.Draft7Validator(schema).iter_errors(monitor))


def container(rendered: list[Object]) -> Object:
    [only] = the(rendered, "Deployment")["spec"]["template"]["spec"]["containers"]
    found: Object = only
    return found


def test_the_deployment_is_locked_down_and_probed(rendered: list[Object]) -> None:
    pod = the(rendered, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == IMAGE_USER
    assert pod["automountServiceAccountToken"] is False
    exporter = container(rendered)
    assert exporter["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert set(exporter["resources"]) == {"requests", "limits"}
    assert exporter["resources"]["limits"]["memory"]
    ports = {p["name"]: p["containerPort"] for p in exporter["ports"]}
    assert ports == {"http": 9877}
    assert exporter["livenessProbe"]["httpGet"] == {"path": "/-/healthy", "port": "http"}
    assert exporter["readinessProbe"]["httpGet"] == {"path": "/-/ready", "port": "http"}


def mounts(rendered: list[Object]) -> dict[str, tuple[str, Object]]:
    """Volume name -> (mount path, volume) of the exporter container."""
    volumes = {
        v["name"]: v for v in the(rendered, "Deployment")["spec"]["template"]["spec"]["volumes"]
    }
    return {
        m["name"]: (m["mountPath"], volumes[m["name"]]) for m in container(rendered)["volumeMounts"]
    }


def test_the_config_reads_its_keys_from_the_mounted_secret(
    rendered: list[Object], tmp_path: Path
) -> None:
    config_map = the(rendered, "ConfigMap", "apibalance-exporter-config")
    by_volume = mounts(rendered)
    config_dir, config_volume = by_volume["config"]
    keys_dir, keys_volume = by_volume["keys"]
    assert config_volume["configMap"]["name"] == config_map["metadata"]["name"]
    [flag] = container(rendered)["args"]
    config_path = Path(flag.removeprefix("--config.file="))
    assert config_path.parent == Path(config_dir)
    config = yaml.safe_load(config_map["data"][config_path.name])
    key_names = set()
    for account in config["accounts"]:
        key_file = Path(account["api_key_file"])
        assert key_file.parent == Path(keys_dir), account
        key_names.add(key_file.name)
        # Checked here with the keys where this test can put them.
        (tmp_path / key_file.name).write_text(f"key-of-{account['name']}\n")
        (tmp_path / key_file.name).chmod(0o600)
        account["api_key_file"] = str(tmp_path / key_file.name)
    (tmp_path / "apibalance.yml").write_text(yaml.safe_dump(config))
    check = subprocess.run(
        [
            sys.executable,
            "-m",
            "exporter",
            "--config.check",
            "--config.file",
            str(tmp_path / "apibalance.yml"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    # The documented commands create the Secret the Deployment mounts, with every key it
    # needs: in the current namespace for the base, in the overlay's for the overlay.
    creates = secret_commands("apibalance-exporter-keys")
    assert [namespace for namespace, _ in creates] == [None, overlay_namespace()]
    for _, create in creates:
        created = {
            a.removeprefix("--from-file=").split("=")[0]
            for a in create
            if a.startswith("--from-file=")
        }
        assert created == key_names
    assert keys_volume["secret"]["secretName"] == "apibalance-exporter-keys"


def secret_commands(name: str) -> list[tuple[str | None, list[str]]]:
    """The documented `kubectl [-n NS] create secret generic NAME ...`, as (NS, words)."""
    found = []
    for command in shell_commands(readme_section("## Kubernetes")):
        words = shlex.split(command)
        namespace = None
        if words[1:2] == ["-n"]:
            namespace, words = words[2], [words[0], *words[3:]]
        if words[:5] == ["kubectl", "create", "secret", "generic", name]:
            found.append((namespace, words))
    return found


def overlay_namespace() -> str:
    [block] = [b for b in yaml_blocks(readme_section("## Kubernetes")) if "Kustomization" in b]
    namespace: str = yaml.safe_load(block)["namespace"]
    return namespace


def test_api_key_env_accounts_get_the_variables_of_the_documented_secret(
    rendered: list[Object],
) -> None:
    [source] = container(rendered)["envFrom"]
    assert source["secretRef"] == {"name": "apibalance-exporter-env", "optional": True}
    [(namespace, create)] = secret_commands("apibalance-exporter-env")
    assert namespace == overlay_namespace()
    assert any(word.startswith("--from-env-file=") for word in create)


def test_the_prometheus_rule_is_exactly_the_shipped_rules(rendered: list[Object]) -> None:
    shipped = [
        group
        for path in sorted((ROOT / "alerts" / "rules").glob("*.yml"))
        for group in yaml.safe_load(path.read_text())["groups"]
    ]
    groups = the(rendered, "PrometheusRule")["spec"]["groups"]
    assert groups == shipped, "deploy/kubernetes/prometheusrule.yaml is stale: run make kubernetes"


def test_the_dashboard_config_map_is_exactly_the_shipped_dashboards(rendered: list[Object]) -> None:
    config_map = the(rendered, "ConfigMap", "apibalance-exporter-dashboards")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = {
        p.name: json.loads(p.read_text()) for p in (ROOT / "grafana" / "dashboards").glob("*.json")
    }
    data = {name: json.loads(text) for name, text in config_map["data"].items()}
    assert data == shipped, "deploy/kubernetes/dashboards.yaml is stale: run make kubernetes"


def test_the_generated_manifests_are_current() -> None:
    result = subprocess.run(
        [sys.executable, str(BASE / "manifests.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout


def test_the_service_monitor_scrapes_the_service(rendered: list[Object]) -> None:
    service = the(rendered, "Service")
    monitor = the(rendered, "ServiceMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    pod_labels = the(rendered, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_the_readme_overlay_sets_namespace_image_and_config(tmp_path: Path) -> None:
    kubectl = require_kubectl()
    [block] = [b for b in yaml_blocks(readme_section("## Kubernetes")) if "Kustomization" in b]
    overlay = tmp_path / "my-overlay"
    overlay.mkdir()
    kustomization = yaml.safe_load(block)
    [base] = kustomization["resources"]
    assert base.endswith("/deploy/kubernetes")
    kustomization["resources"] = [os.path.relpath(BASE, overlay)]
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    config = yaml.safe_load((BASE / "apibalance.yml").read_text())
    config["accounts"][0]["name"] = "from-the-overlay"
    (overlay / "apibalance.yml").write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [kubectl, "kustomize", str(overlay)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    objects = [o for o in yaml.safe_load_all(result.stdout) if o]
    assert {o["metadata"].get("namespace") for o in objects} == {kustomization["namespace"]}
    [image] = kustomization["images"]
    assert container(objects)["image"] == f"{image['newName']}:{image['newTag']}"
    config_map = the(objects, "ConfigMap", "apibalance-exporter-config")
    [text] = config_map["data"].values()
    assert yaml.safe_load(text)["accounts"][0]["name"] == "from-the-overlay"
    assert mounts(objects)["config"][1]["configMap"]["name"] == config_map["metadata"]["name"]


def test_every_object_fits_kubectl_apply(rendered: list[Object]) -> None:
    """Client-side `kubectl apply` keeps a copy of each object in an annotation, which may not
    exceed 256 KiB: a dashboard ConfigMap growing past that could no longer be applied."""
    for o in rendered:
        size = len(json.dumps(o, separators=(",", ":")).encode())
        assert size < 262144, f"{o['kind']} {o['metadata']['name']} is {size} bytes"
