"""The CR reference: rendered from the CRD schema, and the committed copy is never stale."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from vod_delivery import crdref, project, reference

pytestmark = pytest.mark.unit


def crd(schema_spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": "CustomResourceDefinition",
        "spec": {
            "group": "example.io",
            "scope": "Namespaced",
            "names": {"kind": "Widget", "plural": "widgets", "shortNames": ["wd"]},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": "Ready", "type": "string", "jsonPath": ".status.ready"}
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "required": ["spec"],
                            "properties": {"spec": schema_spec},
                        }
                    },
                }
            ],
        },
    }


SPEC = {
    "type": "object",
    "required": ["size"],
    "x-kubernetes-validations": [{"rule": "self.min <= self.max", "message": "min <= max"}],
    "properties": {
        "size": {"type": "integer", "minimum": 1, "description": "How  big.\nReally."},
        "mode": {"type": "string", "enum": ["a", "b"], "default": "a"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "port": {"x-kubernetes-int-or-string": True},
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {"name": {"type": "string", "pattern": "^[a-z]+|x$"}},
            },
        },
    },
}


def rows() -> dict[str, crdref.FieldRow]:
    return {row.path: row for row in crdref.walk(SPEC, "spec", True)}


def test_every_field_is_a_row_with_type_requirement_and_default() -> None:
    table = rows()
    assert list(table) == [
        "spec",
        "spec.size",
        "spec.mode",
        "spec.labels",
        "spec.port",
        "spec.items",
        "spec.items[].name",
    ]
    assert (table["spec.size"].type, table["spec.size"].required) == ("integer", True)
    assert table["spec.mode"].default == '`"a"`'
    assert table["spec.labels"].type == "map[string]string"
    assert table["spec.port"].type == "int-or-string"
    assert table["spec.items"].type == "[]object"
    assert table["spec.items[].name"].required is True
    assert table["spec.size"].description == "How big. Really."


def test_validation_names_enum_bounds_patterns_and_cel_rules() -> None:
    table = rows()
    assert table["spec.mode"].validation == 'one of `"a"`, `"b"`'
    assert table["spec.size"].validation == ">= 1"
    assert table["spec"].validation == "rule `self.min <= self.max`: min <= max"


def test_document_has_names_columns_and_escaped_cells() -> None:
    text = crdref.render([crd(SPEC)], title="T")
    assert text.startswith("# T\n")
    assert "short names `wd`" in text
    assert "| Ready | string | `.status.ready` |" in text
    assert "pattern `^[a-z]+\\|x$`" in text  # a | inside a cell must not split the table
    assert "| `spec.size` | integer | yes |  | >= 1 | How big. Really. |" in text


def test_committed_reference_matches_the_crds() -> None:
    assert project.crd_files(), "crds/ holds no CRD"
    assert reference.is_fresh(), "docs/reference.md is stale: run `make reference`"


def test_stale_reference_is_detected(tmp_path: Path) -> None:
    doc = tmp_path / "reference.md"
    reference.write(doc)
    assert reference.is_fresh(doc)
    doc.write_text(doc.read_text().replace("VideoPlatform", "VideoPlatfrom", 1))
    assert not reference.is_fresh(doc)
