"""The rules under test: the platform rules as render() writes them for a sample platform, the
operator's rules file, and running promtool on them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.unit.operator import crdschema
from tests.unit.operator.update_golden import KEYS
from vod_operator.render import RenderInputs, render

ROOT = crdschema.ROOT
OPERATOR_RULES = ROOT / "monitoring" / "rules" / "operator.rules.yaml"
RUNBOOKS = ROOT / "monitoring" / "runbooks"
PROMTOOL_TESTS = Path(__file__).parent / "promtool"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
#: The sample platform the promtool tests are written against (labels namespace and platform).
NAMESPACE, NAME = "media", "tv"


def sample_platform() -> dict[str, Any]:
    """A VideoPlatform using every monitored feature (S3 origin, slice cache, autoscaling up to
    6 pods), CRD defaults elsewhere: timeScale 1, the default SLO, a 6-hour Job deadline."""
    spec = {
        "storage": {"s3": {"endpoint": "http://s3.media.svc:8333", "bucket": "media"}},
        "cache": {"enabled": True, "size": "2Gi"},
        "autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 6},
    }
    return crdschema.platform(spec, name=NAME, namespace=NAMESPACE)


def platform_rule(platform: dict[str, Any] | None = None) -> dict[str, Any]:
    """The PrometheusRule render() writes for `platform` (default: the sample)."""
    inputs = RenderInputs(signing_keys=KEYS, monitoring_available=True)
    docs = render(platform or sample_platform(), inputs)
    return next(d for d in docs if d["kind"] == "PrometheusRule")


def rules_file(rule: dict[str, Any]) -> str:
    """A PrometheusRule's spec as a plain rules file (what Prometheus loads from it)."""
    return yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False)


def alerts(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def promtool(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PROMTOOL, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=120
    )
