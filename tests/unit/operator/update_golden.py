"""The golden render files of test_render.py: how they are produced, and `make golden`.

`python -m tests.unit.operator.update_golden` rewrites them; the test only ever compares, so a
test run can never bless its own output. Review the diff like code.
"""

from __future__ import annotations

import base64
from pathlib import Path

import yaml

from tests.unit.operator import crdschema
from vod_operator.assets import job, plan
from vod_operator.autoscaling import EGRESS_RATE_METRIC, IN_FLIGHT_SERIES, MetricsApis
from vod_operator.render import RenderInputs, render

GOLDEN = Path(__file__).parent / "golden"
KEYS = {"k-test": base64.b64encode(bytes(range(32))).decode()}
#: A metrics adapter (prometheus-adapter's default rules) serving both per-pod metrics.
ADAPTER = MetricsApis(custom=frozenset({IN_FLIGHT_SERIES, EGRESS_RATE_METRIC}))
CASES = {
    "minimal": ("demo", RenderInputs()),
    # KEDA installed: the showcase's request and egress targets become a ScaledObject.
    "full": (
        "showcase",
        RenderInputs(
            signing_keys=KEYS, monitoring_available=True, metrics_apis=MetricsApis(keda=True)
        ),
    ),
    # No KEDA, a custom metrics adapter: the same targets as an HPA on Pods metrics.
    "full-adapter": (
        "showcase",
        RenderInputs(signing_keys=KEYS, monitoring_available=True, metrics_apis=ADAPTER),
    ),
    "s3": ("library", RenderInputs()),
}


#: VideoAsset Jobs: (asset example, platform example) -> packaging Job and clean-up Job.
ASSET_CASES = {
    "asset-intro": ("intro", "demo"),
    "asset-trailer": ("trailer", "showcase"),
    "asset-s3": ("intro", "library"),
}


def rendered(case: str) -> str:
    """The YAML stream render() (or the asset Job rendering) produces for one golden case."""
    if case in ASSET_CASES:
        asset_name, platform_name = ASSET_CASES[case]
        asset = crdschema.example_asset(asset_name)
        platform = crdschema.example_platform(platform_name)
        asset["spec"]["platformRef"]["name"] = platform_name
        wanted = plan.package(asset, platform)
        docs = [job.package_job(asset, platform, wanted), job.unpublish_job(asset, platform)]
        return yaml.safe_dump_all(docs, sort_keys=False)
    name, inputs = CASES[case]
    return yaml.safe_dump_all(render(crdschema.example_platform(name), inputs), sort_keys=False)


def path(case: str) -> Path:
    return GOLDEN / f"{case}.yaml"


def main() -> None:
    for case in sorted(CASES) + sorted(ASSET_CASES):
        path(case).write_text(rendered(case))
        print(f"wrote {path(case)}")


if __name__ == "__main__":
    main()
