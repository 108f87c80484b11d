"""values.yaml, its generated schema and README table, and what Helm refuses."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from tests.unit.chart.chartlib import CHART, ROOT

GENERATOR = ROOT / "hack" / "chart" / "generate.py"


def test_should_keep_the_schema_readme_and_crd_templates_generated_from_their_sources() -> None:
    result = subprocess.run(
        [sys.executable, str(GENERATOR), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_should_close_every_object_of_the_schema_to_unknown_keys() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"

    def walk(node, where):
        if node.get("type") == "object" and "properties" in node:
            assert node["additionalProperties"] is False, where
            for name, child in node["properties"].items():
                assert child.get("description"), f"{where}.{name} has no description"
                walk(child, f"{where}.{name}")

    walk(schema, "values")


def _free_form_paths(node, prefix=""):
    """Maps the schema leaves open (resources, nodeSelector...): documented as one value."""
    for name, child in node.get("properties", {}).items():
        path = f"{prefix}{name}"
        if child.get("type") == "object" and "properties" not in child:
            yield path
        yield from _free_form_paths(child, f"{path}.")


def test_should_document_every_value_in_the_readme() -> None:
    readme = (CHART / "README.md").read_text()
    free_form = set(_free_form_paths(json.loads((CHART / "values.schema.json").read_text())))

    def leaves(node, prefix=""):
        for key, value in node.items():
            path = f"{prefix}{key}"
            if isinstance(value, dict) and path not in free_form:
                yield from leaves(value, f"{path}.")
            else:
                yield path

    for path in leaves(yaml.safe_load((CHART / "values.yaml").read_text())):
        assert f"| `{path}` |" in readme, f"{path} is not in README.md's table of values"


def test_should_lint_cleanly_with_every_supported_helm(any_helm) -> None:
    for extra in ([], ["--set", "crds.keep=false,networkPolicy.enabled=true"]):
        result = any_helm.run("lint", "--strict", str(CHART), *extra)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "[WARNING]" not in result.stdout
        assert "[ERROR]" not in result.stdout


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"operator": {"replicas": "two"}}, "replicas"),
        ({"operator": {"replica": 2}}, "replica"),
        ({"libvirt": {"mode": "vm"}}, "mode"),
        ({"mariadb": {"persistence": {"sise": "1Gi"}}}, "sise"),
        ({"mariadb": {"database": "nova; DROP"}}, "database"),
        ({"imagePullPolicy": "Always"}, "imagePullPolicy"),
    ],
    ids=["wrong-type", "unknown-key", "not-an-enum", "nested-typo", "bad-pattern", "top-typo"],
)
def test_should_refuse_a_bad_value_naming_the_field(any_helm, values, field) -> None:
    result = any_helm.template(values)
    assert result.returncode != 0
    assert "schema" in result.stderr
    assert field in result.stderr, result.stderr
