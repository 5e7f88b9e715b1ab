"""The dashboard and the alert rules against the real thing: promtool on the rules and on the
engine's exposition, and every panel query, variable query and alert expression run through a real
Prometheus that scraped a real engine under a little traffic."""

import json
import math
import re
import subprocess
import time

import pytest
import yaml

from conftest import JOB, ROOT, load_yaml_docs

DASHBOARD = ROOT / "grafana" / "chat-engine.json"
ALERTS = ROOT / "grafana" / "alerts.yml"
ALERT_TESTS = ROOT / "grafana" / "alerts.test.yml"
PROMETHEUS_RULE = ROOT / "k8s" / "components" / "prometheus-operator" / "prometheusrule.yaml"

# Metrics the engine does not export yet, and why. Queries that use only these must be valid PromQL
# but may return nothing; everything else must return data. (Empty now: the bus metrics arrived.)
NOT_EXPORTED_YET = {}
# Series from other exporters that the alert rules use; absent in this test's Prometheus.
OTHER_EXPORTERS = {
    "kube_pod_status_ready": "kube-state-metrics, which runs in a Kubernetes cluster, not here",
}
# Alerts whose compared series only exist after an event this test cannot cause: their metric
# families must exist and the expression must be valid; the selected series may be empty.
EVENT_ONLY_ALERTS = {
    "ChatEngineInternalErrors": 'chat_errors_total{code="internal"} appears with the first internal error',
    "ChatEngineBusDown": "only jobs whose pods had Redis connected count; the test engine runs without "
                         "REDIS_URL (in-process bus)",
}
# Panels that are valid PromQL but empty (or NaN only) here, and why.
REDIS_NEEDED = ("needs REDIS_URL and a second pod (cross-pod delivery); the test engine runs alone with "
                "the in-process bus, so the histogram has no observations")
EXPECTED_EMPTY_PANELS = {
    "Cross-pod delivery lag p50 / p99": REDIS_NEEDED,
    "Webhook request p50 / p99": "needs --webhook-url; the test engine posts no webhooks, so the "
                                 "histogram has no observations",
}

PROMQL_KEYWORDS = {"sum", "min", "max", "avg", "count", "rate", "increase", "by", "without", "on",
                   "ignoring", "group_left", "group_right", "histogram_quantile", "clamp_min", "clamp_max",
                   "timestamp", "time", "le", "and", "or", "unless", "bool", "offset", "abs", "absent",
                   "count_over_time", "label_values", "instance", "job", "result", "code", "condition",
                   "pod", "namespace", "inf", "nan"}


def dashboard():
    return json.loads(DASHBOARD.read_text())


def panels():
    """Every panel that queries (rows' nested panels included)."""
    out = []
    for panel in dashboard()["panels"]:
        out.extend(panel.get("panels", []))
        if panel["type"] != "row":
            out.append(panel)
    return out


def panel_targets():
    return [(p["title"], t["refId"], t["expr"]) for p in panels() for t in p["targets"]]


def alert_rules():
    return [r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"] if "alert" in r]


def metric_names(expr):
    """Metric names an expression selects (label names and functions left out), histogram
    suffixes folded to the family name."""
    expr = re.sub(r'"[^"]*"', '""', expr)               # label values
    expr = re.sub(r"\{[^}]*\}", "{}", expr)              # matchers
    expr = re.sub(r"\[[^\]]*\]", "[]", expr)             # ranges
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", expr)
    names = set()
    expr = re.sub(r"[a-zA-Z_]+\s*\(", "(", expr)     # function names
    for name in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr):
        if name.lower() in PROMQL_KEYWORDS or re.fullmatch(r"\d+[smhdwy]", name):
            continue
        names.add(re.sub(r"_(bucket|sum|count)$", "", name) if name.startswith("chat_") else name)
    return names


def concrete(expr, live):
    """A panel query with Grafana's variables replaced by values a user could pick."""
    return (expr.replace("$__rate_interval", "5m")
            .replace("$job", JOB)
            .replace("$instance", live["engine"].metrics_addr))


def exported_families(exposition):
    return {line.split()[2] for line in exposition.splitlines() if line.startswith("# TYPE ")}


# ---------------------------------------------------------------- promtool, offline


def test_promtool_check_rules():
    out = subprocess.run(["promtool", "check", "rules", str(ALERTS)], capture_output=True, text=True)
    print(out.stdout, out.stderr)
    assert out.returncode == 0


def test_promtool_test_rules():
    out = subprocess.run(["promtool", "test", "rules", str(ALERT_TESTS)], capture_output=True, text=True)
    print(out.stdout, out.stderr)
    assert out.returncode == 0


def test_every_alert_has_a_unit_test_that_fires_it():
    fired = set()
    for case in yaml.safe_load(ALERT_TESTS.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            if check.get("exp_alerts"):
                fired.add(check["alertname"])
    missing = {r["alert"] for r in alert_rules()} - fired
    assert not missing, f"alerts without a unit test that fires them: {sorted(missing)}"


def test_every_alert_has_severity_and_description():
    for rule in alert_rules():
        assert rule["labels"]["severity"] in ("page", "ticket"), rule["alert"]
        assert rule["annotations"].get("summary") and rule["annotations"].get("description"), rule["alert"]


def test_prometheusrule_matches_alerts_file():
    [rule] = load_yaml_docs(PROMETHEUS_RULE)
    assert rule["spec"]["groups"] == yaml.safe_load(ALERTS.read_text())["groups"], \
        "k8s/components/prometheus-operator/prometheusrule.yaml is stale: run ops/prometheusrule.py"


# ---------------------------------------------------------------- dashboard, offline


def test_dashboard_is_importable():
    d = dashboard()
    assert d["uid"] and d["title"] and d["schemaVersion"] >= 36
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert variables["instance"]["type"] == "query", "per-pod variable"
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
            # Per pod: every query honours the pod selection.
            assert 'instance=~"$instance"' in target["expr"], (panel["title"], target["expr"])
        g = panel["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, panel["title"]


def test_dashboard_covers_what_on_call_needs():
    used = set()
    for _, _, expr in panel_targets():
        used |= metric_names(expr)
    needed = {"chat_connections", "chat_rooms_active", "chat_joins_total", "chat_messages_total",
              "chat_frames_delivered_total", "chat_send_broadcast_seconds", "chat_commit_seconds",
              "chat_commit_batch_size", "chat_slow_consumer_closes_total", "chat_errors_total",
              "chat_bus_up", "chat_bus_lag_seconds", "chat_bus_dropped_total", "chat_store_repairs_total",
              "chat_store_errors_total", "process_cpu_seconds_total",
              "process_resident_memory_bytes", "process_open_fds"}
    assert not needed - used, f"no panel for {sorted(needed - used)}"


# ---------------------------------------------------------------- against the running engine


def test_promtool_check_metrics(engine):
    exposition = engine.metrics()
    out = subprocess.run(["promtool", "check", "metrics"], input=exposition, capture_output=True, text=True)
    print(out.stdout, out.stderr)
    assert out.returncode == 0 and not out.stdout.strip() and not out.stderr.strip(), "promtool found problems"


def test_dashboard_and_alerts_use_only_exported_metrics(live):
    """Offline twin of the live checks: every metric name in a panel or an alert is one the engine
    exports, or one listed above as not exported yet (with the reason), or `up`."""
    exported = exported_families(live["engine"].metrics())
    allowed = exported | set(NOT_EXPORTED_YET) | set(OTHER_EXPORTERS) | {"up"}
    exprs = [e for _, _, e in panel_targets()] + [r["expr"] for r in alert_rules()]
    unknown = {n for e in exprs for n in metric_names(e)} - allowed
    assert not unknown, f"metrics the engine does not export: {sorted(unknown)}"


def test_engine_saw_the_traffic(live):
    """The engine's own counters moved by exactly what the traffic did (other tests share the engine)."""
    engine, summary, before = live["engine"], live["traffic"], live["before"]

    def delta(name, **labels):
        return engine.sample(name, **labels) - before[(name, tuple(labels.items()))]
    assert engine.sample("chat_connections") == summary["joined"]
    assert delta("chat_joins_total") == summary["joined"]
    assert delta("chat_messages_total", result="stored") == summary["stored"]
    assert delta("chat_messages_total", result="duplicate") == summary["duplicate"]
    assert delta("chat_messages_total", result="rate_limited") == summary["rate_limited"]
    for code, n in summary["errors"].items():
        assert engine.sample("chat_errors_total", code=code) >= n, code


@pytest.mark.parametrize("title,ref,expr", panel_targets(), ids=[f"{t} {r}" for t, r, _ in panel_targets()])
def test_panel_query(live, title, ref, expr):
    prometheus = live["prometheus"]
    query = concrete(expr, live)
    # Grafana runs time series panels as range queries: that form must be valid too.
    now = time.time()
    ranged = prometheus.api("query_range", query=query, start=now - 300, end=now, step=15)
    assert ranged["status"] == "success", (query, ranged)
    answer = prometheus.query(query)
    assert answer["status"] == "success", (query, answer)
    result = answer["data"]["result"]
    if title in EXPECTED_EMPTY_PANELS:
        finite = [s for s in result if math.isfinite(float(s["value"][1]))]
        print(f"expected empty until Redis: {title}: {EXPECTED_EMPTY_PANELS[title]}; valid PromQL, "
              f"{len(result)} series, {len(finite)} with a finite value")
        if finite:
            print(f"NOTE: {title} returns data now: take it off EXPECTED_EMPTY_PANELS")
        return
    assert result, f"panel {title!r} ({ref}) returns no data: {query}"
    values = [float(s["value"][1]) for s in result]
    assert any(math.isfinite(v) for v in values), f"panel {title!r} ({ref}) returns only NaN/Inf: {query} → {values}"


def test_variable_queries(live):
    prometheus = live["prometheus"]
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] != "query":
            continue
        m = re.fullmatch(r"label_values\((?:(.+),\s*)?(\w+)\)", variable["query"]["query"])
        assert m, variable["query"]
        selector, label = m.group(1), m.group(2)
        params = {"match[]": concrete(selector, live)} if selector else {}
        answer = prometheus.api(f"label/{label}/values", **params)
        assert answer["status"] == "success" and answer["data"], (variable["name"], answer)
        print(f"${variable['name']}: {answer['data']}")


@pytest.mark.parametrize("rule", alert_rules(), ids=[r["alert"] for r in alert_rules()])
def test_alert_expression(live, rule):
    """The expression is valid, and the series it compares exist unless listed above as not
    exported yet, from another exporter, or created by the first such event."""
    prometheus = live["prometheus"]
    answer = prometheus.query(rule["expr"])
    assert answer["status"] == "success", (rule["alert"], answer)
    if answer["data"]["result"]:
        # Possible on a slow machine (e.g. p99 latency of a debug build under the burst): the
        # rule's `for` keeps it pending, and test_rules_loaded_and_healthy checks it is not firing.
        print(f"{rule['alert']} is true right now: {answer['data']['result']}")
    missing = metric_names(rule["expr"]) & (set(NOT_EXPORTED_YET) | set(OTHER_EXPORTERS))
    m = re.fullmatch(r"(.*\S)\s*(==|!=|>=|<=|>|<)\s*[0-9.e+-]+", rule["expr"].strip(), re.S)
    assert m, f"{rule['alert']}: expected `<expression> <comparison> <threshold>`"
    lhs = prometheus.query(m.group(1))
    assert lhs["status"] == "success", (rule["alert"], lhs)
    if missing:
        reasons = {n: {**NOT_EXPORTED_YET, **OTHER_EXPORTERS}[n] for n in missing}
        print(f"{rule['alert']}: expected no series here: {reasons}; valid PromQL")
        return
    for name in metric_names(rule["expr"]):
        family = prometheus.query(f'count({{__name__=~"{name}|{name}_bucket", job="{JOB}"}})')
        assert family["data"]["result"], f"{rule['alert']}: no series of {name}"
    if rule["alert"] in EVENT_ONLY_ALERTS:
        print(f"{rule['alert']}: {EVENT_ONLY_ALERTS[rule['alert']]}; the family exists, valid PromQL")
        return
    assert lhs["data"]["result"], f"{rule['alert']}: `{m.group(1)}` matches no series"


def test_rules_loaded_and_healthy_in_prometheus(live):
    groups = live["prometheus"].api("rules")["data"]["groups"]
    loaded = {r["name"]: r for g in groups for r in g["rules"]}
    assert set(loaded) == {r["alert"] for r in alert_rules()}
    for name, rule in loaded.items():
        assert rule["health"] == "ok", (name, rule.get("lastError"))
        assert rule["state"] in ("inactive", "pending"), (name, rule["state"])
