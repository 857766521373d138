"""packaging/prometheus/: the alert rules pass promtool's checks and unit tests, each rule has
a test, and every query of the rules and of the Grafana dashboard uses series the daemon serves."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from medianalysed.metrics import Metrics

PROMETHEUS = Path(__file__).resolve().parents[2] / "packaging" / "prometheus"
RULES = PROMETHEUS / "medianalysed.rules.yml"
RULE_TESTS = PROMETHEUS / "medianalysed.rules.test.yml"
DASHBOARD = PROMETHEUS / "grafana-dashboard.json"
# Prometheus' own series about a scrape target, not served by the daemon.
SCRAPE_SERIES = {"up"}
METRIC_NAME = re.compile(r"\b(?:medianalysed|process|python)_[a-z_]+\b|\bup\b")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    assert tool, "promtool is missing: `make deps` installs Debian's prometheus package"
    return subprocess.run(
        [tool, *args], cwd=PROMETHEUS, capture_output=True, text=True, check=False, timeout=60
    )


def served_series() -> set[str]:
    """Sample names of a fresh daemon registry (histograms as _bucket/_count/_sum)."""
    registry = Metrics.create("0.0.0", ["main"]).registry
    return {sample.name for family in registry.collect() for sample in family.samples}


def alert_names(text: str) -> list[str]:
    return re.findall(r"^\s*-?\s*alert(?:name)?: (\w+)", text, re.MULTILINE)


def rule_expressions() -> list[str]:
    """The `expr:` of each rule, folded block scalars included."""
    lines = RULES.read_text(encoding="utf-8").splitlines()
    exprs: list[str] = []
    for index, line in enumerate(lines):
        key, _, rest = line.strip().partition(": ")
        if key != "expr":
            continue
        if rest not in {">-", ">", "|"}:
            exprs.append(rest)
            continue
        indent = len(line) - len(line.lstrip())
        body = []
        for follow in lines[index + 1 :]:
            if follow.strip() and len(follow) - len(follow.lstrip()) <= indent:
                break
            body.append(follow.strip())
        exprs.append(" ".join(body))
    return exprs


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def test_promtool_check_rules_is_clean() -> None:
    checked = promtool("check", "rules", RULES.name)

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 5 rules found" in checked.stdout


def test_promtool_unit_tests_of_the_rules_pass() -> None:
    tested = promtool("test", "rules", RULE_TESTS.name)

    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_has_a_unit_test() -> None:
    rules = alert_names(RULES.read_text(encoding="utf-8"))
    tested = set(alert_names(RULE_TESTS.read_text(encoding="utf-8")))

    assert sorted(rules) == sorted(
        [
            "MedianalysedBatchStalled",
            "MedianalysedDeadLettersGrowing",
            "MedianalysedDown",
            "MedianalysedErrorRateSpike",
            "MedianalysedWorkerRestartStorm",
        ]
    )
    assert set(rules) <= tested


@pytest.mark.parametrize(
    "exprs", [rule_expressions, dashboard_expressions], ids=["rules", "dashboard"]
)
def test_every_query_uses_series_the_daemon_serves(exprs: Callable[[], list[str]]) -> None:
    found: list[str] = exprs()
    used = {name for expr in found for name in METRIC_NAME.findall(expr)}

    assert found
    assert used - SCRAPE_SERIES, "no daemon series found: the name pattern is broken"
    assert not used - served_series() - SCRAPE_SERIES


def test_the_dashboard_has_the_pipeline_panels() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    titles = {panel["title"] for panel in dashboard["panels"]}
    ids = [panel["id"] for panel in dashboard["panels"]]

    assert dashboard["uid"] == "medianalysed"
    assert len(ids) == len(set(ids))
    assert {
        "Images per second, by status",
        "Errors per second, by code",
        "Image analysis time (p50, p95)",
        "Workers busy / configured",
        "Dead letters",
    } <= titles
    assert all(panel["targets"] for panel in dashboard["panels"])
