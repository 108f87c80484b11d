"""The Argo CD health check for Instances, run on a real Lua 5.1 as Argo CD runs it.

Every case of health_test.yaml (Argo CD's own format for a check's tests) is run here, and
the ConfigMap patch that installs the check must carry the very same script.
"""

from __future__ import annotations

import pathlib
from typing import Any

import lupa.lua51
import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[3]
ARGOCD = ROOT / "examples" / "gitops" / "argocd"
CHECK = ARGOCD / "compute.kubenova.io" / "Instance"
HEALTH_LUA = CHECK / "health.lua"
CONFIGMAP_KEY = "resource.customizations.health.compute.kubenova.io_Instance"

# What Argo CD leaves out of a script's Lua state when the script comes from argocd-cm (it
# opens only the base, table and a safe os library), so a script that needs them fails here.
NOT_IN_ARGOCD = ("string", "math", "io", "debug", "coroutine", "dofile", "loadfile")


def to_lua(lua: Any, value: Any) -> Any:
    """``value`` (decoded YAML or JSON) as Argo CD hands it to Lua: mappings and lists become
    tables (a list's first item at index 1), a null becomes an absent key; booleans, numbers
    and strings pass as Lua's own."""
    if isinstance(value, dict):
        return lua.table_from(
            {key: to_lua(lua, item) for key, item in value.items() if item is not None}
        )
    if isinstance(value, list):
        return lua.table_from([to_lua(lua, item) for item in value])
    return value


def argocd_health(obj: dict[str, Any]) -> dict[str, Any]:
    """What health.lua says of ``obj``: {"status": ..., "message": ...}."""
    lua = lupa.lua51.LuaRuntime()
    for name in NOT_IN_ARGOCD:
        lua.globals()[name] = None
    lua.globals().obj = to_lua(lua, obj)
    result = lua.execute(HEALTH_LUA.read_text())
    return {"status": result["status"], "message": result["message"]}


def _cases() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = yaml.safe_load((CHECK / "health_test.yaml").read_text())["tests"]
    return cases


@pytest.mark.parametrize("case", _cases(), ids=lambda case: case["inputPath"])
def test_each_case_of_health_test_yaml_gets_its_health_status(case):
    obj = yaml.safe_load((CHECK / case["inputPath"]).read_text())
    assert argocd_health(obj) == case["healthStatus"]


def test_the_cases_prove_every_status_the_check_returns():
    statuses = {case["healthStatus"]["status"] for case in _cases()}
    assert statuses == {"Healthy", "Progressing", "Degraded", "Suspended", "Unknown"}


def test_every_fixture_in_testdata_is_a_case():
    fixtures = {f"testdata/{path.name}" for path in (CHECK / "testdata").glob("*.yaml")}
    assert fixtures == {case["inputPath"] for case in _cases()}


def test_the_check_runs_on_lua_5_1_as_in_argo_cd():
    assert lupa.lua51.LuaRuntime().eval("_VERSION") == "Lua 5.1"


def test_fixtures_reach_lua_with_arrays_from_one_booleans_and_numbers():
    lua = lupa.lua51.LuaRuntime()
    lua.globals().obj = to_lua(
        lua, {"a": {"list": ["x", "y"], "yes": True, "no": False, "n": 3, "gone": None}}
    )
    seen = lua.execute(
        "return obj.a.list[1], obj.a.list[2], #obj.a.list, obj.a.yes == true,"
        " obj.a.no == false, obj.a.n + 1, obj.a.gone == nil"
    )
    assert seen == ("x", "y", 2, True, True, 4, True)


def test_the_argocd_cm_patch_installs_health_lua_byte_for_byte():
    patch = yaml.safe_load((ARGOCD / "argocd-cm-patch.yaml").read_text())
    assert (patch["apiVersion"], patch["kind"]) == ("v1", "ConfigMap")
    assert patch["metadata"] == {"name": "argocd-cm", "namespace": "argocd"}
    assert patch["data"][CONFIGMAP_KEY].encode() == HEALTH_LUA.read_bytes()
