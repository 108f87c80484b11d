"""Each method's arguments against the fingerprint recorded for its version, as Nova's
``TestObjectVersions`` checks its objects' hashes.

A method's payload is the contract between releases: an agent and an operator of different
releases must read it alike. So :data:`MESSAGE_DATA` records, per method, its version and a
fingerprint of its payload's schema: the JSON Schema pydantic derives from the payload class
(fields, their types, which are required, constraints, defaults, nested payloads, refused
extra fields), without titles and descriptions, which do not travel. Changing a payload without
giving its method a new version fails :func:`test_every_message_matches_its_recorded_version`
with the method's name and new fingerprint.

A pydantic upgrade that only renders schemas differently changes fingerprints with nothing
changed on the wire: then update the table without new versions.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, Literal

import pydantic
import pytest

from kubenova.rpc import envelope, payloads

# method -> "version-fingerprint", for every method in payloads.METHODS.
MESSAGE_DATA = {
    "build_and_run_instance": "1.0-8c2d90ff3691ab21812bee3bbb40052b",
    "terminate_instance": "1.0-c4546a6851cf9c857cb46c97acfd7f68",
    "stop_instance": "1.3-91aba637e6564e4e289df6be4dfe353b",
    "start_instance": "1.3-3dddf86f3b44847f97313ef3de112191",
    "pause_instance": "1.3-3dddf86f3b44847f97313ef3de112191",
    "unpause_instance": "1.3-3dddf86f3b44847f97313ef3de112191",
    "suspend_instance": "1.3-3dddf86f3b44847f97313ef3de112191",
    "resume_instance": "1.3-3dddf86f3b44847f97313ef3de112191",
    "reboot_instance": "1.3-58d8501d5814c189d4558141a9d98a23",
    "rebuild_instance": "1.3-cc801deef5fb7b10646861d8167f4554",
    "get_console_output": "1.7-53f083fbe322b16408cf5aaee6cb70c3",
    "compute_node_report": "1.8-4caab8f937a19c5898d5b71e9137123d",
    "instance_update": "1.6-5c675083774a20406778d1e2ef94d95d",
    "instance_build_failed": "1.0-55f8e0c3b1992e9989937f0d69cf6e72",
    "instance_terminated": "1.0-59cbe46bee5024e38a2e36671c589b52",
    "service_stopping": "1.1-381d33b2bf9e40666dd541179166b5c3",
    "resize_instance": "1.4-d0801f3c15b6bfb1ff5ded3dc04ddd5b",
    "finish_resize": "1.4-416a0f2da3678e35c32b04d59a3d131a",
    "confirm_resize": "1.4-05949580db62a715f34fc1ab1721a7f8",
    "revert_resize": "1.4-05949580db62a715f34fc1ab1721a7f8",
    "finish_revert_resize": "1.4-416a0f2da3678e35c32b04d59a3d131a",
    "migration_step_finished": "1.5-ac9d113b9e8a8f59223f4706efe0a614",
    "pre_live_migration": "1.5-36c1230b550ab41143f092912ec08740",
    "live_migration": "1.5-5ce0bfacb715697a4cead00b9720b5e7",
    "post_live_migration_at_destination": "1.5-36c1230b550ab41143f092912ec08740",
    "post_live_migration_at_source": "1.5-05949580db62a715f34fc1ab1721a7f8",
    "rollback_live_migration_at_destination": "1.5-05949580db62a715f34fc1ab1721a7f8",
    "live_migration_abort": "1.5-98c06f4248a2a6410851d15fe541c847",
    "migration_progress": "1.5-eb0f8506845116c26ea7af768e47d5c4",
    "instance_operation_finished": "1.6-d40a2a25465037d46b80d26c75953863",
    "snapshot_instance": "1.4-478b8149c18419e2b6442441ded8913b",
    "snapshot_finished": "1.4-82be77afcc082c2f9d388198b4a7c18d",
}

# Schema keywords that describe rather than constrain: not part of the wire format.
_ANNOTATIONS = frozenset({"title", "description", "examples", "$comment"})
# Keywords whose value is a mapping of field names to schemas.
_NAMED_SCHEMAS = frozenset({"properties", "patternProperties"})
# Keywords whose value is data (a default, allowed values), not a schema.
_DATA = frozenset({"default", "enum", "const", "required"})


def fingerprint(payload: type[pydantic.BaseModel]) -> str:
    """A stable digest of what ``payload`` accepts on the wire."""
    schema = payload.model_json_schema(mode="validation")
    wire = _wire_schema(schema, schema.get("$defs", {}))
    canonical = json.dumps(wire, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def _wire_schema(schema: dict[str, Any], defs: Mapping[str, Any]) -> dict[str, Any]:
    """``schema`` with nested payloads inlined (their class names do not travel either) and
    annotations dropped."""
    ref = schema.get("$ref")
    if ref is not None:
        return _wire_schema(defs[ref.removeprefix("#/$defs/")], defs)
    wire: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _ANNOTATIONS or key == "$defs":
            continue
        if key in _DATA:
            wire[key] = value
        elif key in _NAMED_SCHEMAS:
            wire[key] = {name: _wire_schema(sub, defs) for name, sub in value.items()}
        elif isinstance(value, dict):
            wire[key] = _wire_schema(value, defs)
        elif isinstance(value, list):
            wire[key] = [_wire_schema(v, defs) if isinstance(v, dict) else v for v in value]
        else:
            wire[key] = value
    return wire


def contract_changes(
    methods: Mapping[str, payloads.Method], recorded: Mapping[str, str]
) -> list[str]:
    """What differs between the contract's methods and the recorded fingerprints, one line
    per method, saying what to do about it."""
    problems = []
    for name, method in sorted(methods.items()):
        actual = f"{method.version}-{fingerprint(method.payload)}"
        expected = recorded.get(name)
        if expected is None:
            problems.append(f"{name} is not recorded: add {name!r}: {actual!r} to MESSAGE_DATA")
            continue
        if expected == actual:
            continue
        recorded_version, recorded_fingerprint = expected.split("-", 1)
        if recorded_version == method.version:
            problems.append(
                f"{name} changed without a new version: its payload's fingerprint is now "
                f"{actual.split('-', 1)[1]} (recorded for {method.version}: "
                f"{recorded_fingerprint}). Its version must be bumped: give it the next "
                f"minor in kubenova.rpc.payloads.METHODS, raise envelope.VERSION to it with a "
                f"line in the version history, then record {name!r}: "
                f"'<new version>-{actual.split('-', 1)[1]}' in MESSAGE_DATA"
            )
        else:
            problems.append(f"{name} is now {actual} (recorded: {expected}): update MESSAGE_DATA")
    for name in sorted(set(recorded) - set(methods)):
        problems.append(f"{name} is recorded but not in the contract: remove it from MESSAGE_DATA")
    return problems


def test_every_message_matches_its_recorded_version() -> None:
    problems = contract_changes(payloads.METHODS, MESSAGE_DATA)
    assert not problems, "the message contract changed:\n" + "\n".join(problems)


def test_the_contract_version_is_its_newest_method_and_has_a_history_line() -> None:
    versions = {name: envelope.parse_version(m.version) for name, m in payloads.METHODS.items()}
    assert max(versions.values()) == envelope.parse_version(envelope.VERSION), versions
    assert f"* {envelope.VERSION} - " in (envelope.__doc__ or "")
    assert {major for major, _ in versions.values()} <= envelope.SUPPORTED_MAJORS


# -- the check itself: a changed payload is caught, and named --------------------------------
# These compare against the contract as it is (not MESSAGE_DATA), so they test the check alone.


def _recorded_now() -> dict[str, str]:
    return {n: f"{m.version}-{fingerprint(m.payload)}" for n, m in payloads.METHODS.items()}


def _next_minor(version: str) -> str:
    major, minor = envelope.parse_version(version)
    return f"{major}.{minor + 1}"


NEXT = _next_minor(envelope.VERSION)


class _Optional(payloads.ServiceStopping):
    reason: str | None = None


class _Required(payloads.ServiceStopping):
    reason: str


class _HostOptional(payloads.ServiceStopping):
    host: str | None = None  # type: ignore[assignment]


class _HostTyped(payloads.ServiceStopping):
    host: int  # type: ignore[assignment]


class _HostConstrained(payloads.ServiceStopping):
    host: str = pydantic.Field(max_length=63)


class _ExtraAllowed(payloads.ServiceStopping):
    model_config = pydantic.ConfigDict(extra="allow")


class _VmdkImage(payloads.ImagePayload):
    disk_format: Literal["qcow2", "raw", "vmdk"]  # type: ignore[assignment]


class _VmdkInstance(payloads.InstancePayload):
    image: _VmdkImage


class _VmdkBuild(payloads.BuildAndRunInstance):
    """A change two payloads deep."""

    instance: _VmdkInstance


def _with(name: str, payload: type[payloads.Payload], version: str | None = None) -> Any:
    methods = dict(payloads.METHODS)
    methods[name] = methods[name]._replace(
        payload=payload, version=version or methods[name].version
    )
    return methods


@pytest.mark.parametrize(
    ("name", "payload"),
    [
        ("service_stopping", _Optional),
        ("service_stopping", _Required),
        ("service_stopping", _HostOptional),
        ("service_stopping", _HostTyped),
        ("service_stopping", _HostConstrained),
        ("service_stopping", _ExtraAllowed),
        ("build_and_run_instance", _VmdkBuild),
    ],
    ids=lambda p: p if isinstance(p, str) else p.__name__,
)
def test_a_changed_payload_without_a_new_version_is_named_with_its_fingerprint(
    name: str, payload: type[payloads.Payload]
) -> None:
    problems = contract_changes(_with(name, payload), _recorded_now())
    assert len(problems) == 1, problems
    (problem,) = problems
    assert problem.startswith(f"{name} changed without a new version")
    assert fingerprint(payload) in problem
    assert "version must be bumped" in problem


def test_a_new_version_with_its_fingerprint_recorded_passes() -> None:
    recorded = dict(_recorded_now(), service_stopping=f"{NEXT}-{fingerprint(_Optional)}")
    assert contract_changes(_with("service_stopping", _Optional, NEXT), recorded) == []


def test_a_new_version_not_yet_recorded_asks_for_the_table_to_be_updated() -> None:
    recorded = _recorded_now()
    (problem,) = contract_changes(_with("service_stopping", _Optional, NEXT), recorded)
    assert problem == (
        f"service_stopping is now {NEXT}-{fingerprint(_Optional)} "
        f"(recorded: {recorded['service_stopping']}): update MESSAGE_DATA"
    )


def test_new_and_removed_methods_are_named() -> None:
    methods = dict(payloads.METHODS)
    del methods["terminate_instance"]
    methods["reboot_instance"] = payloads.Method(payloads.TerminateInstance, NEXT)
    problems = contract_changes(methods, _recorded_now())
    assert [p.split(" ", 1)[0] for p in problems] == ["reboot_instance", "terminate_instance"]


class _Documented(payloads.ServiceStopping):
    """Only the description differs, and descriptions do not travel."""

    host: str = pydantic.Field(title="The host", description="which host stops")


def test_descriptions_and_class_names_do_not_change_a_fingerprint() -> None:
    assert fingerprint(_Documented) == fingerprint(payloads.ServiceStopping)
