"""The Prometheus alert rules in packaging/prometheus: valid for promtool, proved by their own
promtool unit tests (each alert fires on its bad series and stays silent on healthy ones), and
written against the metric names the daemon and bird_exporter really expose.

Needs promtool (Debian package `prometheus`) and python3-yaml; no root, no etcd, no BIRD.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path


from tests import prereq

REPO = Path(__file__).resolve().parent.parent
RULES_DIR = REPO / "packaging" / "prometheus"
RULES = RULES_DIR / "calico-routereflector.rules.yml"
TESTS = RULES_DIR / "calico-routereflector.tests.yml"
GROUP = "calico-routereflector"

# The contract with the daemon's [metrics] endpoint: every calico_rr_* series it exposes, with
# its labels (label -> allowed values, None: any value). A histogram's series are its
# _bucket (le), _sum and _count.
CALICO_RR_METRICS: dict[str, dict[str, object]] = {
    "calico_rr_build_info": {"version": None, "flavour": None},
    "calico_rr_datastore_connected": {},
    "calico_rr_datastore_events_total": {},
    "calico_rr_datastore_resyncs_total": {},
    "calico_rr_applies_total": {"config": {"bird", "bird6"},
                                "result": {"applied", "unchanged", "rejected", "error"}},
    "calico_rr_apply_duration_seconds_bucket": {"le": None},
    "calico_rr_apply_duration_seconds_sum": {},
    "calico_rr_apply_duration_seconds_count": {},
    "calico_rr_last_apply_success_timestamp_seconds": {},
    "calico_rr_config_rejected": {},
    "calico_rr_drop_guard_holding": {},
    "calico_rr_drop_guard_holds_total": {},
    "calico_rr_plan_blocked": {},
    "calico_rr_sessions": {"family": {"ipv4", "ipv6"}, "role": {"mesh", "peer", "client"}},
}
# Labels Prometheus adds to every scraped series.
TARGET_LABELS = {"job", "instance"}

# What Debian's prometheus-bird-exporter 1.4.1 exposed per BIRD protocol, measured against
# BIRD 1.6.8 and 2.0.12 (README.md): the series the rules may use, and their fixed labels;
# -format.description-labels adds one label per key=value of the protocol's description.
BIRD_EXPORTER_METRICS = {
    "bird_protocol_up", "bird_protocol_uptime", "bird_protocol_prefix_import_count",
    "bird_protocol_prefix_export_count", "bird_protocol_prefix_filter_count",
    "bird_protocol_prefix_preferred_count",
    # 1.4.2 (Debian 13) only, one per exporter with no labels of its own: whether its query of
    # BIRD's socket worked (measured with trixie's exporter; README.md).
    "bird_socket_query_success",
}
BIRD_EXPORTER_LABELS = {"name", "proto", "ip_version", "import_filter", "export_filter", "state",
                        "role", "node"}  # the last two from `description "role=... node=..."`

_SELECTOR_RE = re.compile(r"\b((?:calico_rr|bird)_[A-Za-z0-9_]+)(?:\{([^}]*)\})?")
_MATCHER_RE = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        prereq.missing("promtool is not installed (apt install --no-install-recommends prometheus)")
    return path


def yaml_module():
    return prereq.import_or_missing("yaml", "python3-yaml is not installed")


def run_promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([promtool(), *args], cwd=RULES_DIR, capture_output=True, text=True, timeout=120)


def shown(result: subprocess.CompletedProcess) -> str:
    return f"promtool exited {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


def alerts() -> list[dict]:
    doc = yaml_module().safe_load(RULES.read_text())
    groups = doc["groups"]
    assert [g["name"] for g in groups] == [GROUP]
    return [rule for rule in groups[0]["rules"] if "alert" in rule]


def test_promtool_check_rules():
    result = run_promtool("check", "rules", str(RULES))
    assert result.returncode == 0, shown(result)
    assert "SUCCESS: 8 rules found" in result.stdout, shown(result)


def test_promtool_test_rules():
    result = run_promtool("test", "rules", str(TESTS))
    assert result.returncode == 0, shown(result)
    assert "SUCCESS" in result.stdout and "FAILED" not in result.stdout, shown(result)


def test_every_alert_has_for_severity_summary_description():
    rules = alerts()
    assert len(rules) == 8
    for rule in rules:
        name = rule["alert"]
        assert re.fullmatch(r"CalicoRR[A-Za-z]+", name), name
        assert re.fullmatch(r"\d+[smh]", str(rule.get("for", ""))), f"{name}: no for:"
        assert rule.get("labels", {}).get("severity") in ("warning", "critical"), f"{name}: severity"
        annotations = rule.get("annotations", {})
        for key in ("summary", "description"):
            text = annotations.get(key, "")
            assert text.strip(), f"{name}: no {key}"
            assert "{{" in text and "$labels." in text, f"{name}: {key} names no label"


def test_every_alert_is_tested_firing_and_silent():
    tests = yaml_module().safe_load(TESTS.read_text())
    fires, silent = set(), set()
    for case in tests["tests"]:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else silent).add(check["alertname"])
    names = {rule["alert"] for rule in alerts()}
    assert names - fires == set(), "never seen firing"
    assert names - silent == set(), "never seen silent"
    assert fires | silent <= names, "a test names an alert that does not exist"


def _selectors(text: str):
    for match in _SELECTOR_RE.finditer(text):
        matchers = dict(_MATCHER_RE.findall(match.group(2) or ""))
        yield match.group(1), matchers


def _texts_using_metrics() -> dict[str, str]:
    """Where the files name series: the rules' expressions and annotations, the tests' input
    series and expressions (comments may mention anything)."""
    texts = {}
    for rule in alerts():
        texts[f"{RULES.name} {rule['alert']}"] = "\n".join([rule["expr"], *rule.get("annotations", {}).values()])
    for case in yaml_module().safe_load(TESTS.read_text())["tests"]:
        texts[f"{TESTS.name} {case.get('name')}"] = "\n".join(
            [s["series"] for s in case.get("input_series", [])] + [e["expr"] for e in case.get("promql_expr_test", [])])
    return texts


def test_metric_names_and_labels_are_the_contract():
    texts = _texts_using_metrics()
    used = set()
    for source, text in texts.items():
        for metric, matchers in _selectors(text):
            used.add(metric)
            if metric.startswith("calico_rr_"):
                assert metric in CALICO_RR_METRICS, f"{source}: {metric} is not a metric calico-rr exposes"
                allowed = CALICO_RR_METRICS[metric]
                for label, value in matchers.items():
                    if label in TARGET_LABELS:
                        continue
                    assert label in allowed, f"{source}: {metric} has no label {label}"
                    if allowed[label] is not None:
                        assert value in allowed[label], f"{source}: {metric}{{{label}={value!r}}}"
            else:
                assert metric in BIRD_EXPORTER_METRICS, f"{source}: bird_exporter 1.4.1/1.4.2 exposes no {metric}"
                assert set(matchers) <= BIRD_EXPORTER_LABELS | TARGET_LABELS, f"{source}: {metric} {matchers}"
    assert "bird_protocol_up" in used and len(used & set(CALICO_RR_METRICS)) >= 5


def test_naive_session_rule_would_miss_the_flap(tmp_path):
    """The flapping-session test has teeth: without max without (state), the state label
    that changes every minute restarts `for:` and the alert never fires."""
    text = RULES.read_text()
    good = 'max without (state) (bird_protocol_up{proto="BGP"}) == 0'
    assert good in text
    (tmp_path / RULES.name).write_text(text.replace(good, 'bird_protocol_up{proto="BGP"} == 0'))
    (tmp_path / TESTS.name).write_text(TESTS.read_text())
    result = subprocess.run([promtool(), "test", "rules", TESTS.name], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0, shown(result)
    failed = re.findall(r"name: (.*),\n\s*alertname: (\w+)", result.stdout + result.stderr)
    assert failed and {alert for _, alert in failed} == {"CalicoRRBGPSessionDown"}, shown(result)
    assert any("flapping" in name for name, _ in failed), shown(result)
