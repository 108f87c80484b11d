"""The values that cross the driver boundary check themselves."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from kubenova_agent.virt import driver

UUID = "3c6e0b8a-9d1f-4e2a-8b7c-5d4e3f2a1b0c"
IMAGE = driver.ImageRef(
    name="tiny", url="http://127.0.0.1:8089/tiny.qcow2", sha256="a" * 64, disk_format="qcow2"
)


def make_instance(**overrides: Any) -> driver.InstanceSpec:
    fields: dict[str, Any] = {
        "uuid": UUID,
        "name": "web",
        "hostname": "web",
        "vcpus": 1,
        "memory_mib": 128,
        "disk_gib": 1,
        "image": IMAGE,
    }
    fields.update(overrides)
    return driver.InstanceSpec(**fields)


def test_user_data_up_to_64_kib_is_accepted():
    data = b"x" * driver.USER_DATA_MAX_BYTES
    assert make_instance(user_data=data).user_data == data


def test_user_data_over_64_kib_is_refused():
    with pytest.raises(ValueError, match="user_data"):
        make_instance(user_data=b"x" * (driver.USER_DATA_MAX_BYTES + 1))


@pytest.mark.parametrize(
    "bad_uuid",
    ["../../etc", "", "3C6E0B8A-9D1F-4E2A-8B7C-5D4E3F2A1B0C", "3c6e0b8a9d1f4e2a8b7c5d4e3f2a1b0c"],
)
def test_instance_uuid_must_be_canonical(bad_uuid):
    with pytest.raises(ValueError, match="uuid"):
        make_instance(uuid=bad_uuid)


@pytest.mark.parametrize("field", ["vcpus", "memory_mib", "disk_gib"])
@pytest.mark.parametrize("value", [0, -1, True, 1.5])
def test_sizes_must_be_positive_integers(field, value):
    with pytest.raises(ValueError, match=field):
        make_instance(**{field: value})


def test_ssh_keys_must_be_a_tuple():
    with pytest.raises(ValueError, match="ssh_authorized_keys"):
        make_instance(ssh_authorized_keys=["ssh-ed25519 AAAA"])


def test_image_digest_is_stored_in_lower_case():
    image = dataclasses.replace(IMAGE, sha256="AB" * 32)
    assert image.sha256 == "ab" * 32


@pytest.mark.parametrize("digest", ["a" * 63, "g" * 64, ""])
def test_image_digest_must_be_sha256_hex(digest):
    with pytest.raises(ValueError, match="sha256"):
        dataclasses.replace(IMAGE, sha256=digest)


def test_image_format_must_be_qcow2_or_raw():
    with pytest.raises(ValueError, match="disk_format"):
        dataclasses.replace(IMAGE, disk_format="vmdk")


def test_domain_name_is_instance_dash_uuid():
    assert driver.domain_name(UUID) == f"instance-{UUID}"
