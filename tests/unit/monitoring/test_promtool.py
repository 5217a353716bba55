"""promtool on the alert rules: `check rules` on the platform's rules as rendered for a sample
platform and on monitoring/rules/operator.rules.yaml, and `test rules` with the test files in
promtool/ (every alert fires, stays silent, and holds at a boundary).

Run alone: `pytest tests/unit/monitoring -q`. promtool 2.42 comes from Debian's `prometheus`
package (tools/install-system-deps.sh).
"""

from __future__ import annotations

import re
import shutil
from collections import defaultdict
from pathlib import Path

import pytest
import yaml

from tests.unit.monitoring import rules

pytestmark = pytest.mark.unit

CASES = ("fires", "silent", "boundary")
#: Test file -> the rules file it loads (its rule_files entry) and how to produce it.
TEST_FILES = {
    "platform.test.yaml": "platform.rules.yaml",
    "platform-long.test.yaml": "platform.rules.yaml",
    "operator.test.yaml": "operator.rules.yaml",
}


def _write_rules(folder: Path) -> None:
    """The rules files the promtool tests load, written into `folder`."""
    (folder / "platform.rules.yaml").write_text(rules.rules_file(rules.platform_rule()))
    shutil.copy(rules.OPERATOR_RULES, folder / "operator.rules.yaml")


def _cases(test_file: Path) -> dict[str, set[str]]:
    """Alert -> the cases a test file covers, from its groups' names ("<alert>: <case>")."""
    covered: dict[str, set[str]] = defaultdict(set)
    for group in yaml.safe_load(test_file.read_text())["tests"]:
        alert, case = group["name"].split(": ")
        assert case in CASES, group["name"]
        tested = {t["alertname"] for t in group.get("alert_rule_test", [])}
        assert tested == {alert}, f"group {group['name']!r} checks {tested}"
        covered[alert].add(case)
    return covered


def test_promtool_is_the_pinned_release() -> None:
    out = rules.promtool("--version")
    assert out.returncode == 0, out.stderr
    assert re.search(r"version 2\.42\.", out.stdout + out.stderr), out.stdout + out.stderr


def test_rendered_platform_rules_pass_check_rules(tmp_path: Path) -> None:
    rule = rules.platform_rule()
    path = tmp_path / "platform.rules.yaml"
    path.write_text(rules.rules_file(rule))
    out = rules.promtool("check", "rules", path)
    assert out.returncode == 0, out.stdout + out.stderr
    count = sum(len(group["rules"]) for group in rule["spec"]["groups"])
    assert f"SUCCESS: {count} rules found" in out.stdout


def test_operator_rules_pass_check_rules() -> None:
    out = rules.promtool("check", "rules", rules.OPERATOR_RULES)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 5 rules found" in out.stdout


@pytest.mark.parametrize("test_file", sorted(TEST_FILES))
def test_promtool_unit_tests_pass(test_file: str, tmp_path: Path) -> None:
    _write_rules(tmp_path)
    shutil.copy(rules.PROMTOOL_TESTS / test_file, tmp_path / test_file)
    out = rules.promtool("test", "rules", test_file, cwd=tmp_path)
    assert out.returncode == 0, f"promtool test rules {test_file}:\n{out.stdout}{out.stderr}"
    assert "SUCCESS" in out.stdout


def test_a_wrong_expectation_fails(tmp_path: Path) -> None:
    """The harness can fail: the same tests against rules whose threshold moved do not pass."""
    rule = rules.platform_rule()
    for group in rule["spec"]["groups"]:
        for item in group["rules"]:
            if item.get("alert") == "VideoPlatformHigh5xxRatio":
                item["expr"] = item["expr"].replace("> 0.05", "> 0.5")
    (tmp_path / "platform.rules.yaml").write_text(rules.rules_file(rule))
    shutil.copy(rules.PROMTOOL_TESTS / "platform.test.yaml", tmp_path)
    out = rules.promtool("test", "rules", "platform.test.yaml", cwd=tmp_path)
    assert out.returncode != 0
    assert "VideoPlatformHigh5xxRatio: fires" in out.stdout + out.stderr


def test_every_alert_has_every_case() -> None:
    """Each alert of both rule sets: a test where it fires, one where it stays silent, and a
    boundary (a value just short of the threshold or a duration just short of its `for`)."""
    platform: dict[str, set[str]] = defaultdict(set)
    for name in ("platform.test.yaml", "platform-long.test.yaml"):
        for alert, cases in _cases(rules.PROMTOOL_TESTS / name).items():
            platform[alert] |= cases
    operator = _cases(rules.PROMTOOL_TESTS / "operator.test.yaml")
    rendered = {a["alert"] for a in rules.alerts(rules.platform_rule()["spec"]["groups"])}
    shipped = {
        a["alert"] for a in rules.alerts(yaml.safe_load(rules.OPERATOR_RULES.read_text())["groups"])
    }
    assert set(platform) == rendered
    assert set(operator) == shipped
    missing = {
        alert: sorted(set(CASES) - cases)
        for alert, cases in {**platform, **operator}.items()
        if set(CASES) - cases
    }
    assert missing == {}
