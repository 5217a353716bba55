"""compare.drift(): what counts as a difference worth a write."""

from __future__ import annotations

import pytest

from vod_operator.compare import drift

pytestmark = pytest.mark.unit

DESIRED = {
    "metadata": {"name": "x", "labels": {"a": "1"}},
    "spec": {
        "replicas": 2,
        "template": {
            "spec": {
                "containers": [
                    {
                        "name": "stream",
                        "image": "img:1",
                        "resources": {"requests": {"cpu": "1", "memory": "1Gi"}},
                    }
                ],
                "volumes": [{"name": "tmp", "emptyDir": {}}],
            }
        },
    },
}


def live(**changes: object) -> dict[str, object]:
    container = {
        "name": "stream",
        "image": changes.get("image", "img:1"),
        "imagePullPolicy": "IfNotPresent",  # server default
        "resources": {"requests": {"cpu": changes.get("cpu", "1000m"), "memory": "1Gi"}},
    }
    return {
        "metadata": {"name": "x", "labels": {"a": "1", "extra": "kept"}, "uid": "u"},
        "spec": {
            "replicas": changes.get("replicas", 2),
            "template": {
                "spec": {
                    "containers": [container],
                    "volumes": [{"name": "tmp", "emptyDir": {}}],
                    "dnsPolicy": "ClusterFirst",
                }
            },
        },
        "status": {"replicas": 2},
    }


def test_server_defaults_and_equal_quantities_are_no_drift() -> None:
    assert drift(DESIRED, live()) is None


@pytest.mark.parametrize(
    ("changes", "path"),
    [
        ({"image": "img:2"}, ".spec.template.spec.containers.0.image"),
        ({"replicas": 5}, ".spec.replicas"),
        ({"cpu": "500m"}, ".spec.template.spec.containers.0.resources.requests.cpu"),
    ],
)
def test_hand_edits_are_drift(changes: dict[str, object], path: str) -> None:
    assert drift(DESIRED, live(**changes)) == path


def test_missing_key_and_list_length_are_drift() -> None:
    assert drift({"a": {"b": 1}}, {"a": {}}) == ".a.b"
    assert drift({"a": [1, 2]}, {"a": [1]}) == ".a"
    assert drift({"a": {"b": 1}}, {"a": "text"}) == ".a"


def test_quantities_compare_by_value_only_where_quantities_live() -> None:
    assert drift({"limits": {"memory": "1Gi"}}, {"limits": {"memory": "1024Mi"}}) is None
    assert drift({"image": "1"}, {"image": "1000m"}) == ".image"
