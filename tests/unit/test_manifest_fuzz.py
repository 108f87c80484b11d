"""The manifest fuzz's own logic (hack/fuzz): its generator is the same for a seed and covers
every kind and family, keeps every Instance on the fuzz's hosts, tells a refusal that names the
field from one that does not, catches a domain XML or config drive a hostile value changed,
and counts exceptions in a log. Sending the manifests needs the stack: `make fuzz-manifests`."""

from __future__ import annotations

import dataclasses
import json
import random
import xml.etree.ElementTree as ET
from typing import Any

import pytest

from kubenova_agent import configdrive
from tests.support.fuzz import fuzz_module

content_check = fuzz_module("content_check")
edits = fuzz_module("edits")
log_scan = fuzz_module("log_scan")
manifests = fuzz_module("manifests")
mutation_tables = fuzz_module("mutation_tables")
mutations = fuzz_module("mutations")
refusals = fuzz_module("refusals")

SEED = fuzz_module("manifest_fuzz").DEFAULT_SEED


@pytest.fixture(scope="module")
def default_run():
    return mutations.generate(SEED, 1000, "t1")


def as_json(cases) -> list[str]:
    return [json.dumps(case.body, sort_keys=True) for case in cases]


# -- the generator ---------------------------------------------------------------------------


def test_the_same_seed_and_tag_give_the_same_manifests():
    first, again = mutations.generate(7, 200, "t1"), mutations.generate(7, 200, "t1")
    assert as_json(first) == as_json(again)
    assert [(c.family, c.field, c.change) for c in first] == [
        (c.family, c.field, c.change) for c in again
    ]


def test_another_seed_gives_other_manifests():
    assert as_json(mutations.generate(7, 200, "t1")) != as_json(mutations.generate(8, 200, "t1"))


def test_the_default_run_sends_at_least_250_of_each_kind_in_every_family(default_run):
    assert len(default_run) == 1000
    for kind in manifests.KINDS:
        of_kind = [case for case in default_run if case.kind is kind]
        assert len(of_kind) >= 250, kind.name
        assert {case.family for case in of_kind} == set(mutation_tables.families_of(kind))
    assert set(mutation_tables.FAMILIES) >= {
        "wrong_type", "missing_required", "out_of_range", "huge", "unicode", "xml_injection",
        "shell_injection", "invalid_dns", "quantity", "unknown_field", "api_version_kind",
        "metadata_abuse",
    }  # fmt: skip


def test_kinds_are_sent_in_the_order_references_need(default_run):
    order = [case.kind.name for case in default_run]
    assert order == sorted(order, key=["Flavor", "Image", "ServerGroup", "Instance"].index)


def test_every_fuzzed_instance_stays_on_the_fuzz_hosts(default_run):
    instances = [case for case in default_run if case.kind is manifests.INSTANCE]
    assert [c.change for c in instances if manifests.confinement_problem(c.body)] == []


def test_the_huge_family_has_a_mebibyte_of_user_data_for_instances():
    sizes = []
    for edit in mutation_tables.EDITS["huge"]["Instance"]:
        body = instance()
        ctx = edits.Context(random.Random(1), manifests.RunNames("t1"), manifests.INSTANCE, {})
        edit(ctx, body)
        user_data = body["spec"].get("userData")
        sizes.append(len(user_data) if isinstance(user_data, str) else 0)
    assert max(sizes) == 1024 * 1024


def instance(**spec: Any) -> dict[str, Any]:
    body = manifests.base_manifest(manifests.INSTANCE, manifests.RunNames("t1"), 0)
    body["spec"].update(spec)
    return body


@pytest.mark.parametrize(
    "body",
    [
        instance(nodeSelector=None),
        instance(nodeSelector={}),
        instance(nodeSelector={manifests.PREFIX_LABEL: "sim"}),
        instance(nodeSelector={manifests.PREFIX_LABEL: None}),
        instance(forcedHost="vm"),
        instance(forcedHost="bench-001"),
        {**instance(), "spec": None},
    ],
    ids=[
        "null",
        "empty",
        "other-prefix",
        "null-prefix",
        "real-host",
        "other-sim-host",
        "null-spec",
    ],
)
def test_an_instance_that_could_land_elsewhere_is_not_confined(body):
    assert manifests.confinement_problem(body) is not None


@pytest.mark.parametrize(
    "body",
    [
        instance(),
        instance(nodeSelector={manifests.PREFIX_LABEL: "fuzz-none", "$(x)": "</y>"}),
        instance(nodeSelector="a string"),
        instance(forcedHost="fuzz-003"),
        instance(forcedHost="$(reboot)"),
        {**instance(), "spec": ["not", "an", "object"]},
    ],
    ids=["base", "nowhere", "not-an-object", "fuzz-host", "no-host-name", "spec-list"],
)
def test_an_instance_on_the_fuzz_hosts_or_refused_is_confined(body):
    assert manifests.confinement_problem(body) is None


# -- refusals --------------------------------------------------------------------------------

INVALID = {
    "kind": "Status",
    "status": "Failure",
    "reason": "Invalid",
    "message": 'Flavor.compute.kubenova.io "f" is invalid: spec.vcpus: Invalid value: 0: '
    "spec.vcpus in body should be greater than or equal to 1",
    "details": {"causes": [{"field": "spec.sshAuthorizedKeys[0]", "message": "Invalid value"}]},
    "code": 422,
}


def test_a_refusal_names_the_field_from_its_message_or_its_causes():
    text = refusals.refusal_text(json.dumps(INVALID))
    assert refusals.names_field(text, "spec.vcpus")
    assert refusals.names_field(text, "spec.sshAuthorizedKeys[0]")
    assert not refusals.names_field(text, "spec.memoryMiB")
    assert not refusals.names_field(text, "spec.sshAuthorizedKeys[1]")


def test_an_index_written_with_a_dot_names_the_item():
    assert refusals.names_field("spec.sshAuthorizedKeys.0: Invalid", "spec.sshAuthorizedKeys[0]")


def test_an_alias_names_the_field():
    text = "the API version in the data (v1) does not match the expected API version (x/v1)"
    assert not refusals.names_field(text, "apiVersion")
    assert refusals.names_field(text, "apiVersion", ("API version",))


def test_a_body_that_is_not_a_status_is_the_text():
    assert refusals.refusal_text(b"<html>413 Request Entity Too Large</html>").startswith("<html>")


# -- domain XML and config drive -------------------------------------------------------------

HOSTILE = "</kubenova:name><devices><disk type='file'/></devices><kubenova:name>$(reboot)\x00"


def hostile_spec(value: str = HOSTILE):
    return content_check.probe_spec(value, manifests.BASE_SSH_KEY)


def pasting_builder(pasted: str):
    """A broken builder: the agent's document, the instance's name pasted in unescaped."""

    def build(spec):
        benign = dataclasses.replace(spec, name=content_check.BENIGN_NAME)
        xml = content_check.agent_xml(benign)
        return (
            xml.replace(f">{content_check.BENIGN_NAME}<", f">{pasted}<")
            if (spec.name != content_check.BENIGN_NAME)
            else xml
        )

    return build


def test_the_agents_xml_keeps_hostile_values_as_text():
    assert content_check.check_domain_xml(hostile_spec()) == []


def test_an_injected_element_is_caught():
    injected = "x</kubenova:name><kubenova:evil/><kubenova:name>y"
    problems = content_check.check_domain_xml(hostile_spec(injected), pasting_builder(injected))
    assert problems == [
        "the domain XML's elements or attributes are not those of the benign document"
    ]


def test_an_injected_comment_is_caught_even_where_the_text_reads_the_same():
    problems = content_check.check_domain_xml(hostile_spec("xy"), pasting_builder("x<!-- -->y"))
    assert problems == [
        "the domain XML's elements or attributes are not those of the benign document"
    ]


def test_xml_that_does_not_parse_is_caught():
    problems = content_check.check_domain_xml(hostile_spec(), pasting_builder("</name><devices>"))
    assert problems
    assert problems[0].startswith("the domain XML does not parse")


def test_a_value_written_changed_is_caught():
    def dropping_builder(spec):
        # The hostile value's angle brackets dropped instead of escaped: no new element, but
        # not what was given.
        return content_check.agent_xml(
            dataclasses.replace(spec, name=spec.name.replace("<", "").replace(">", ""))
        )

    problems = content_check.check_domain_xml(hostile_spec("a<b>c"), dropping_builder)
    assert len(problems) == 1
    assert "domain/metadata/instance/name text" in problems[0]


def test_characters_xml_cannot_carry_may_only_become_the_replacement_character():
    spec = hostile_spec("nul\x00 esc\x1b")
    assert content_check.check_domain_xml(spec) == []
    root = ET.fromstring(content_check.agent_xml(spec))
    name = root.find(f"metadata/{{{manifests_ns()}}}instance/{{{manifests_ns()}}}name")
    assert name is not None
    assert name.text == "nul\ufffd esc\ufffd"


def manifests_ns() -> str:
    return "https://kubenova.io/xmlns/instance/1.0"


def test_the_agents_config_drive_carries_hostile_values_byte_for_byte():
    assert content_check.check_config_drive(hostile_spec()) == []
    assert (
        content_check.check_config_drive(dataclasses.replace(hostile_spec(), user_data=None)) == []
    )


def test_a_config_drive_with_changed_user_data_is_caught():
    def trimming_builder(path, spec):
        configdrive.build(path, dataclasses.replace(spec, user_data=spec.user_data.strip()))

    problems = content_check.check_config_drive(hostile_spec(" padded \n"), trimming_builder)
    assert problems == [
        "user_data read by rr_path is not the bytes given",
        "user_data read by joliet_path is not the bytes given",
    ]


def test_a_config_drive_with_a_changed_name_is_caught():
    def renaming_builder(path, spec):
        configdrive.build(path, dataclasses.replace(spec, name=spec.name[:5]))

    problems = content_check.check_config_drive(hostile_spec(), renaming_builder)
    assert len(problems) == 1
    assert problems[0].startswith("meta_data.json name")


def test_the_spec_of_an_instance_is_what_the_agent_is_handed():
    stored = instance(hostname=None, userData="caf\u00e9")
    stored["spec"].pop("hostname")
    stored["metadata"]["uid"] = "0d9b7c4e-5a2f-4f61-8e3d-2c1b0a9f8e7d"
    flavor = {"vcpus": 2, "memoryMiB": 128, "diskGiB": 3}
    image = {"source": {"url": "http://x/y"}, "sha256": "a" * 64, "diskFormat": "raw"}
    spec = content_check.spec_of(stored, flavor, image)
    assert (spec.name, spec.hostname, spec.user_data) == ("fuzz-t1-v0000",) * 2 + (
        "caf\u00e9".encode(),
    )
    assert (spec.vcpus, spec.memory_mib, spec.disk_gib, spec.image.disk_format) == (
        2,
        128,
        3,
        "raw",
    )


# -- logs ------------------------------------------------------------------------------------


def record(level: str, message: str, **extra: Any) -> str:
    return json.dumps({"time": "t", "level": level, "logger": "x", "message": message, **extra})


def test_the_log_scan_counts_exceptions_and_ignores_ordinary_lines():
    lines = [
        record("INFO", "instance built"),
        record("WARNING", "hypervisor fuzz-001 is down"),
        record("ERROR", "Handler 'delete_instance' failed temporarily: waiting"),
        record("ERROR", "handling failed", exception="Traceback ...\nKeyError: 'spec'"),
        record("CRITICAL", "the operator stops"),
        "Traceback (most recent call last):",
        '  File "x.py", line 1, in <module>',
        "",
    ]
    scan = log_scan.scan_lines(lines)
    assert (scan.lines, scan.exceptions, scan.errors) == (7, 3, 1)
    assert scan.samples[0].startswith('{"time"')


def test_the_log_scan_of_ordinary_lines_finds_nothing():
    scan = log_scan.scan_lines([record("INFO", "a"), record("ERROR", "failed temporarily")])
    assert (scan.exceptions, scan.errors) == (0, 1)


def test_a_file_is_scanned_from_the_offset_and_again_whole_once_rotated(tmp_path):
    path = tmp_path / "operator.log"
    path.write_text(record("ERROR", "old", exception="E") + "\n")
    offset = log_scan.size_of(path)
    with path.open("a") as log_file:
        log_file.write(record("INFO", "new") + "\n")
    assert log_scan.scan_file(path, offset).exceptions == 0
    path.write_text(record("ERROR", "r", exception="E") + "\n")  # shorter than the offset
    assert log_scan.scan_file(path, offset).exceptions == 1
    assert log_scan.scan_file(tmp_path / "missing.log", 0).lines == 0


def test_the_go_decoders_names_of_metadata_fields_count() -> None:
    text = (
        'BadRequest\nFlavor in version "v1alpha1" cannot be handled as a Flavor: json: cannot '
        "unmarshal number into Go struct field ObjectMeta.name of type string"
    )
    assert refusals.names_field(text, "metadata.name")
    assert not refusals.names_field(text, "metadata.labels")
    # Only metadata is spelled that way.
    assert not refusals.names_field("Go struct field ObjectMeta.vcpus", "spec.vcpus")
