#!/usr/bin/env python3
"""Writes k8s/components/prometheus-operator/prometheusrule.yaml from grafana/alerts.yml, so
prometheus-operator users load exactly the rules that `promtool test rules` checks.
Run after editing grafana/alerts.yml; the ops tests fail while the two differ."""
import pathlib
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
RULES = ROOT / "grafana" / "alerts.yml"
TARGET = ROOT / "k8s" / "components" / "prometheus-operator" / "prometheusrule.yaml"

HEADER = """\
# Generated from grafana/alerts.yml by ops/prometheusrule.py: edit that file, then run this script.
"""


def render() -> str:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    rule = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "chat-engine",
            # kube-prometheus-stack selects rules by its release label; adjust to yours.
            "labels": {"release": "kube-prometheus-stack"},
        },
        "spec": {"groups": groups},
    }
    return HEADER + yaml.safe_dump(rule, sort_keys=False, allow_unicode=True, width=100)


if __name__ == "__main__":
    if sys.argv[1:] == ["--check"]:
        sys.exit(0 if TARGET.read_text() == render() else 1)
    TARGET.write_text(render())
