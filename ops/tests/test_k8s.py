"""The Kubernetes manifests: rendered by the real kustomize (kubectl kustomize), every object
validated strictly against the Kubernetes schemas (kubernetes-validate) of pinned versions, the
prometheus-operator objects against models generated from its CRDs, and the operational properties
the engine relies on checked on the rendered output."""

import functools
import ipaddress
import re
import subprocess

import pytest
import yaml

from conftest import ENGINE_BIN, ROOT, load_yaml_docs

K8S = ROOT / "k8s"
OVERLAYS = ["dev", "prod"]
# The oldest and the newest Kubernetes release we validate against.
KUBERNETES_VERSIONS = ["1.30.0", "1.37.0"]
CRD_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor"), ("monitoring.coreos.com/v1", "PrometheusRule")}
# Variables the engine is about to read (none pending).
ENV_COMING = set()
# Read by the process but not a flag.
ENV_OTHER = {"RUST_LOG", "TMPDIR"}


@functools.cache
def render(overlay):
    out = subprocess.run(["kubectl", "kustomize", str(K8S / "overlays" / overlay)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def by_kind(objects, kind):
    return [o for o in objects if o["kind"] == kind]


def one(objects, kind):
    [found] = by_kind(objects, kind)
    return found


def engine_env_names():
    """Environment variables the engine reads, from its own --help."""
    out = subprocess.run([str(ENGINE_BIN), "--help"], capture_output=True, text=True, check=True).stdout
    return set(re.findall(r"\[env: ([A-Z_]+)", out))


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request, tmp_path_factory):
    objects = render(request.param)
    path = tmp_path_factory.mktemp("k8s") / f"{request.param}.yaml"
    path.write_text(yaml.safe_dump_all(objects))
    return request.param, objects, path


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_objects_match_kubernetes_schemas(rendered, version, tmp_path):
    overlay, objects, _ = rendered
    files = []
    for i, obj in enumerate(objects):
        if (obj["apiVersion"], obj["kind"]) in CRD_KINDS:
            continue  # checked against the operator's models below
        path = tmp_path / f"{i:02d}-{obj['kind']}.yaml"
        path.write_text(yaml.safe_dump(obj))
        files.append(str(path))
    out = subprocess.run(["kubernetes-validate", "--strict", "--kubernetes-version", version, *files],
                         capture_output=True, text=True)
    print(out.stdout, out.stderr)
    assert out.returncode == 0, f"{overlay} against Kubernetes {version}"
    assert "INFO" in out.stdout and "WARN" not in out.stdout and "ERROR" not in out.stdout


def test_secret_example_matches_schema():
    out = subprocess.run(["kubernetes-validate", "--strict", "--kubernetes-version", KUBERNETES_VERSIONS[-1],
                          str(K8S / "base" / "secret.example.yaml")], capture_output=True, text=True)
    print(out.stdout, out.stderr)
    assert out.returncode == 0 and "WARN" not in out.stdout
    [secret] = load_yaml_docs(K8S / "base" / "secret.example.yaml")
    assert set(secret["stringData"]) == {"DATABASE_URL", "REDIS_URL", "ADMIN_TOKEN"}
    assert secret["stringData"]["DATABASE_URL"].startswith("postgres://")
    assert secret["stringData"]["REDIS_URL"].startswith("redis://")


def test_prometheus_operator_objects_match_crd_models(rendered):
    """kubernetes-validate has no schemas for CRDs: ServiceMonitor and PrometheusRule are parsed by
    pydantic models generated from prometheus-operator's CRDs (types, enums, required fields), and a
    round trip must give back every field (an unknown or misspelt field would be dropped)."""
    from cloudcoil.models.prometheus_operator import v1

    overlay, objects, _ = rendered
    crds = [o for o in objects if (o["apiVersion"], o["kind"]) in CRD_KINDS]
    if overlay == "dev":
        assert not crds, "dev must apply on clusters without prometheus-operator"
        return
    assert {o["kind"] for o in crds} == {"ServiceMonitor", "PrometheusRule"}
    for obj in crds:
        model = getattr(v1, obj["kind"]).model_validate(obj)
        assert model.model_dump(by_alias=True, exclude_unset=True, mode="json") == obj, obj["kind"]


def test_deployment_serves_drains_and_is_locked_down(rendered):
    overlay, objects, _ = rendered
    deployment = one(objects, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    config = {}
    for ref in container.get("envFrom", []):
        if "configMapRef" in ref:
            config = next(c for c in by_kind(objects, "ConfigMap") if c["metadata"]["name"] == ref["configMapRef"]["name"])["data"]

    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert config["BIND"].endswith(":8080") and ports["http"] == 8080
    # /metrics only on its own port, which the probes and the Ingress do not use.
    assert config["METRICS_BIND"] == f"0.0.0.0:{ports['metrics']}" and ports["metrics"] != ports["http"]

    # The Service drops the pod during the preStop sleep; then SIGTERM drains for SHUTDOWN_GRACE.
    pre_stop = container["lifecycle"]["preStop"]
    sleep = int(pre_stop["exec"]["command"][1]) if "exec" in pre_stop else pre_stop["sleep"]["seconds"]
    assert sleep >= 5
    assert pod["terminationGracePeriodSeconds"] > sleep + int(config["SHUTDOWN_GRACE"])

    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert pod["topologySpreadConstraints"]

    resources = container["resources"]
    assert resources["requests"]["memory"] and resources["limits"]["memory"]
    # ~8 MiB + 7.8 KiB per reader at MAX_CONNECTIONS + the ring budget must fit the limit.
    limit_mib = int(resources["limits"]["memory"].removesuffix("Mi"))
    ring_mib = int(config["RING_MEMORY"]) / (1024 * 1024)
    assert 8 + int(config["MAX_CONNECTIONS"]) * 7.8 / 1024 + ring_mib < limit_mib

    # The ingress controller is believed about client addresses (per-client limits): CIDRs, and
    # none so wide that clients on the internet would be believed too.
    proxies = [ipaddress.ip_network(c.strip()) for c in config["TRUSTED_PROXIES"].split(",")]
    assert proxies and all(net.is_private for net in proxies), proxies

    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert "/tmp" in mounts, "SQLite and the engine need a writable /tmp with a read-only root"

    # Every variable handed to the engine is one it reads.
    env_names = set(config) | {e["name"] for e in container.get("env", [])}
    unknown = env_names - engine_env_names() - ENV_COMING - ENV_OTHER
    assert not unknown, f"variables chat-engine does not read: {sorted(unknown)}"


def test_dev_is_one_pod_on_sqlite():
    objects = render("dev")
    deployment = one(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    assert not by_kind(objects, "HorizontalPodAutoscaler") and not by_kind(objects, "PodDisruptionBudget")
    config = one(objects, "ConfigMap")["data"]
    assert config["DATABASE_URL"] == "sqlite:///data/chat.db" and "REDIS_URL" not in config
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert "/data" in {m["mountPath"] for m in container["volumeMounts"]}
    claim = deployment["spec"]["template"]["spec"]["volumes"]
    assert any(v.get("persistentVolumeClaim", {}).get("claimName") == one(objects, "PersistentVolumeClaim")["metadata"]["name"]
               for v in claim)


def test_prod_is_several_pods_on_postgres_and_redis():
    objects = render("prod")
    deployment = one(objects, "Deployment")
    assert deployment["spec"]["replicas"] >= 2
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    for name in ("DATABASE_URL", "REDIS_URL"):
        assert env[name]["valueFrom"]["secretKeyRef"] == {"name": "chat-engine", "key": name}
    hpa = one(objects, "HorizontalPodAutoscaler")
    assert hpa["spec"]["minReplicas"] >= 2 and hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    pdb = one(objects, "PodDisruptionBudget")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    policy = one(objects, "NetworkPolicy")
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    egress_ports = {p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]}
    assert {53, 5432, 6379} <= egress_ports
    monitor = one(objects, "ServiceMonitor")
    service = one(objects, "Service")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics"
    assert {p["name"]: p["targetPort"] for p in service["spec"]["ports"]}["metrics"] == "metrics"


def metrics_port(objects):
    [container] = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    return {p["name"]: p["containerPort"] for p in container["ports"]}["metrics"]


def test_metrics_are_not_public(rendered):
    _, objects, _ = rendered
    port = metrics_port(objects)
    # The Ingress routes only to the Service's public port.
    service_ports = {p["name"]: p for p in one(objects, "Service")["spec"]["ports"]}
    for rule in one(objects, "Ingress")["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]["port"]
            target = service_ports[backend["name"]] if "name" in backend else next(
                p for p in service_ports.values() if p["port"] == backend["number"])
            assert target["targetPort"] == "http", f"the Ingress reaches {target}"
    # The NetworkPolicy lets only Prometheus pods reach the metrics port.
    rules = [r for r in one(objects, "NetworkPolicy")["spec"]["ingress"]
             if any(p["port"] in (port, "metrics") for p in r["ports"])]
    assert rules, "no rule admits Prometheus to the metrics port"
    for rule in rules:
        assert rule.get("from"), f"metrics port open to everyone: {rule}"
        for peer in rule["from"]:
            assert peer["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "prometheus"}, peer


def test_ingress_keeps_websockets_open(rendered):
    _, objects, _ = rendered
    annotations = one(objects, "Ingress")["metadata"]["annotations"]
    for key in ("proxy-read-timeout", "proxy-send-timeout"):
        assert int(annotations[f"nginx.ingress.kubernetes.io/{key}"]) >= 3600, key
    # No affinity by default: any pod serves any room.
    assert "nginx.ingress.kubernetes.io/affinity" not in annotations


def test_scrape_annotations(rendered):
    _, objects, _ = rendered
    annotations = one(objects, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(metrics_port(objects)) and annotations["prometheus.io/path"] == "/metrics"


def test_yamllint():
    paths = [str(p) for p in [ROOT / "docker-compose.yml", ROOT / "k8s", ROOT / "grafana", ROOT / "ops" / "compose"]]
    out = subprocess.run(["yamllint", "--strict", "-c", str(ROOT / "ops" / "yamllint.yml"), *paths],
                         capture_output=True, text=True)
    print(out.stdout, out.stderr)
    assert out.returncode == 0
