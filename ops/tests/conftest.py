"""Shared fixtures for the operations tests: the repository's files, a real `chat-engine` process, a
real Prometheus scraping it, and a little real WebSocket traffic between them.

Everything started here is stopped in the fixtures' teardown, also when a test fails;
scripts/test.d/ops additionally kills this process group on exit."""

import asyncio
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
ENGINE_BIN = pathlib.Path(os.environ.get("ENGINE_BIN", ROOT / "target" / "debug" / "chat-engine"))
# The job name the alert rules select on (compose and the ServiceMonitor use it too).
JOB = "chat-engine"
# Environment fallbacks of the engine's flags: cleared so only the flags given here apply.
ENGINE_ENV = ["BIND", "DATABASE_URL", "REDIS_URL", "ALLOWED_ORIGINS", "ADMIN_TOKEN", "LOG_FORMAT",
              "SHUTDOWN_GRACE", "SEND_RATE", "SEND_BURST", "ROOM_IDLE", "OUTBOUND_QUEUE",
              "STORE_TIMEOUT", "MAX_CONNECTIONS", "MAX_CONNECTIONS_PER_IP", "JOINS_PER_IP",
              "JOIN_BURST_PER_IP", "SEND_RATE_PER_IP", "SEND_BURST_PER_IP", "ROOM_SEND_RATE",
              "ROOM_SEND_BURST", "TRUSTED_PROXIES", "METRICS_BIND", "RUST_LOG"]
STARTUP_TIMEOUT = 30.0


def load_yaml_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def free_port():
    """A port the kernel just handed out on 127.0.0.1 (for tools that cannot listen on port 0 and report it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, timeout=5.0):
    """(status, body) of a GET; HTTP errors are answers too."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def wait_until(what, check, timeout=STARTUP_TIMEOUT, every=0.1):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not so after {timeout} s")
        time.sleep(every)


def stop_process(proc, name, grace=15.0):
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        print(f"{name} did not stop within {grace} s of SIGTERM: killing it")
        proc.kill()
        proc.wait(timeout=5)


class Engine:
    def __init__(self, proc, addr, metrics_addr, log_path):
        self.proc = proc
        self.addr = addr
        self.url = f"http://{addr}"
        self.ws_url = f"ws://{addr}"
        # /metrics is on its own address (--metrics-bind), as in compose and k8s.
        self.metrics_addr = metrics_addr
        self.log_path = log_path

    def metrics(self):
        status, body = http_get(f"http://{self.metrics_addr}/metrics")
        assert status == 200, f"/metrics answered {status}"
        return body

    def sample(self, name, **labels):
        """The value of one series in the engine's own /metrics, or None."""
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        key = f"{name}{{{want}}}" if want else name
        for line in self.metrics().splitlines():
            if line.startswith(key + " "):
                return float(line.split()[-1])
        return None


@pytest.fixture(scope="session")
def engine(tmp_path_factory):
    """A real chat-engine on a free port with its own SQLite file, metrics on another free port."""
    assert ENGINE_BIN.exists(), f"{ENGINE_BIN} missing: build it with `cargo build -p chat-engine`"
    work = tmp_path_factory.mktemp("engine")
    env = {k: v for k, v in os.environ.items() if k not in ENGINE_ENV}
    log_path = work / "engine.log"
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [str(ENGINE_BIN), "--bind", "127.0.0.1:0", "--database-url", f"sqlite://{work}/chat.db",
         "--log-format", "json", "--send-burst", "100", "--shutdown-grace", "5",
         "--metrics-bind", "127.0.0.1:0"],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=work)

    def listening():
        assert proc.poll() is None, f"engine exited with {proc.returncode}: {log_path.read_text()}"
        for line in log_path.read_text().splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("message") == "listening":
                return event["addr"], event["metrics"]
        return None

    try:
        addr, metrics_addr = wait_until("engine logs its address", listening)
        engine = Engine(proc, addr, metrics_addr, log_path)
        wait_until("engine /readyz 200", lambda: http_get(f"{engine.url}/readyz")[0] == 200)
        yield engine
    finally:
        stop_process(proc, "engine")
        log.close()


class Prometheus:
    def __init__(self, proc, url):
        self.proc = proc
        self.url = url

    def api(self, path, **params):
        status, body = http_get(f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}")
        answer = json.loads(body)
        answer["http_status"] = status
        return answer

    def query(self, expr, **params):
        return self.api("query", query=expr, **params)

    def value(self, expr):
        """The single value of an instant query, or None when it returns nothing."""
        answer = self.query(expr)
        assert answer["status"] == "success", answer
        result = answer["data"]["result"]
        return float(result[0]["value"][1]) if result else None


@pytest.fixture(scope="session")
def prometheus(engine, tmp_path_factory):
    """A real Prometheus (Debian package) scraping the engine every second, with the alert rules loaded."""
    binary = shutil.which("prometheus")
    assert binary, "prometheus missing: scripts/test.d/ops installs the Debian package"
    work = tmp_path_factory.mktemp("prometheus")
    shutil.copy(ROOT / "grafana" / "alerts.yml", work / "alerts.yml")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
        "rule_files": ["alerts.yml"],
        "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": [engine.metrics_addr]}]}],
    }
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = open(work / "prometheus.log", "w")
    proc = subprocess.Popen(
        [binary, f"--config.file={work}/prometheus.yml", f"--storage.tsdb.path={work}/data",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=log, stderr=subprocess.STDOUT, cwd=work)
    url = f"http://127.0.0.1:{port}"
    try:
        def ready():
            assert proc.poll() is None, f"prometheus exited: {(work / 'prometheus.log').read_text()}"
            try:
                return http_get(f"{url}/-/ready", timeout=1)[0] == 200
            except OSError:
                return False
        wait_until("prometheus ready", ready)
        yield Prometheus(proc, url)
    finally:
        stop_process(proc, "prometheus")
        log.close()


@pytest.fixture(scope="session")
def live(engine, prometheus):
    """Engine and Prometheus after a little traffic has been scraped: every panel and rule has had
    a chance to see data. Readers stay connected until the session ends."""
    from traffic import Traffic

    # At least two scrapes before the traffic, so rate() over the window sees the increase.
    wait_until("two scrapes of the idle engine",
               lambda: (prometheus.value(f'count_over_time(up{{job="{JOB}"}}[5m])') or 0) >= 2)
    counters = [("chat_messages_total", {"result": "stored"}), ("chat_messages_total", {"result": "duplicate"}),
                ("chat_messages_total", {"result": "rate_limited"}), ("chat_joins_total", {})]
    before = {(n, tuple(l.items())): engine.sample(n, **l) or 0 for n, l in counters}
    traffic = Traffic(engine.ws_url, engine.url)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        summary = asyncio.run_coroutine_threadsafe(traffic.run(), loop).result(timeout=60)
        print(f"traffic: {summary}")
        # Prometheus has scraped everything the traffic produced once its view of the counters
        # equals the engine's own.
        for name, labels in [("chat_messages_total", {"result": "stored"}),
                             ("chat_messages_total", {"result": "rate_limited"}),
                             ("chat_joins_total", {}),
                             ("chat_frames_delivered_total", {})]:
            sel = ",".join([f'job="{JOB}"'] + [f'{k}="{v}"' for k, v in labels.items()])
            want = engine.sample(name, **labels)
            wait_until(f"prometheus sees {name}{labels} = {want}",
                       lambda: prometheus.value(f"{name}{{{sel}}}") == want, timeout=20)
        # One more scrape after that, so the gauges show the connected readers too.
        scraped = prometheus.value(f'timestamp(up{{job="{JOB}"}})')
        wait_until("one more scrape", lambda: prometheus.value(f'timestamp(up{{job="{JOB}"}})') > scraped,
                   timeout=20)
        # Rules evaluated at least once after the traffic.
        evaluated_after = time.time()
        def rules_evaluated():
            groups = prometheus.api("rules")["data"]["groups"]
            return groups and all(
                g["lastEvaluation"] and _ts(g["lastEvaluation"]) > evaluated_after for g in groups)
        wait_until("alert rules evaluated after the traffic", rules_evaluated, timeout=20)
        yield {"engine": engine, "prometheus": prometheus, "traffic": summary, "before": before}
    finally:
        asyncio.run_coroutine_threadsafe(traffic.close(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)


def _ts(rfc3339):
    """Seconds since the epoch of a Prometheus RFC 3339 timestamp (nanosecond digits, Z or offset)."""
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)", rfc3339)
    assert m, f"unexpected timestamp {rfc3339!r}"
    zone = "+00:00" if m.group(3) == "Z" else m.group(3)
    return datetime.fromisoformat(m.group(1) + zone).timestamp() + float(m.group(2) or 0)
