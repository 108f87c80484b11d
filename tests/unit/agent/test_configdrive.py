"""The config drive, read back with pycdlib as a guest would see it."""

from __future__ import annotations

import io
import json
from typing import Any

import pycdlib
import pytest

from kubenova_agent import configdrive
from kubenova_agent.virt import driver

UUID = "0d9b7c4e-5a2f-4f61-8e3d-2c1b0a9f8e7d"


def make_instance(**overrides: Any) -> driver.InstanceSpec:
    fields: dict[str, Any] = {
        "uuid": UUID,
        "name": "web <1>",
        "hostname": "web-1",
        "vcpus": 1,
        "memory_mib": 256,
        "disk_gib": 1,
        "image": driver.ImageRef(
            name="tiny", url="http://127.0.0.1:8089/t.qcow2", sha256="0" * 64, disk_format="qcow2"
        ),
        "user_data": b"#!/bin/sh\necho hello\n\xff\x00binary tail",
        "ssh_authorized_keys": ("ssh-ed25519 AAAAC3Nza one@example", "ssh-rsa AAAAB3 two"),
    }
    fields.update(overrides)
    return driver.InstanceSpec(**fields)


@pytest.fixture
def read_iso(tmp_path):
    opened = []

    def read(instance):
        path = tmp_path / "disk.config"
        configdrive.build(path, instance)
        iso = pycdlib.PyCdlib()
        iso.open(str(path))
        opened.append(iso)
        return iso

    yield read
    for iso in opened:
        iso.close()


def file_bytes(iso, **path):
    out = io.BytesIO()
    iso.get_file_from_iso_fp(out, **path)
    return out.getvalue()


def test_volume_label_is_config_2(read_iso):
    iso = read_iso(make_instance())
    assert iso.pvd.volume_identifier.decode().strip() == "config-2"


def test_iso_has_rock_ridge_and_joliet(read_iso):
    iso = read_iso(make_instance())
    assert iso.has_rock_ridge()
    assert iso.has_joliet()


def test_rock_ridge_names_are_the_openstack_layout(read_iso):
    iso = read_iso(make_instance())
    names = {
        child.rock_ridge.name().decode()
        for child in iso.list_children(rr_path="/openstack/latest")
        if child.rock_ridge is not None and not (child.is_dot() or child.is_dotdot())
    }
    assert names == {"meta_data.json", "user_data"}


def test_meta_data_holds_uuid_hostname_name_and_keys(read_iso):
    iso = read_iso(make_instance())
    meta = json.loads(file_bytes(iso, rr_path="/openstack/latest/meta_data.json"))
    assert meta == {
        "uuid": UUID,
        "hostname": "web-1",
        "name": "web <1>",
        "public_keys": {
            "key-0": "ssh-ed25519 AAAAC3Nza one@example",
            "key-1": "ssh-rsa AAAAB3 two",
        },
        "launch_index": 0,
        "availability_zone": "nova",
    }


def test_meta_data_puts_each_top_level_key_on_its_own_line(read_iso):
    # The test guest's shell init greps ` "uuid": "..."` lines; compact JSON would defeat it.
    iso = read_iso(make_instance())
    lines = file_bytes(iso, rr_path="/openstack/latest/meta_data.json").decode().splitlines()
    assert f' "uuid": "{UUID}",' in lines
    assert ' "hostname": "web-1",' in lines


def test_user_data_is_copied_byte_for_byte(read_iso):
    instance = make_instance()
    iso = read_iso(instance)
    assert file_bytes(iso, rr_path="/openstack/latest/user_data") == instance.user_data
    assert file_bytes(iso, joliet_path="/openstack/latest/user_data") == instance.user_data


def test_no_user_data_file_without_user_data(read_iso):
    iso = read_iso(make_instance(user_data=None))
    names = {
        child.rock_ridge.name().decode()
        for child in iso.list_children(rr_path="/openstack/latest")
        if child.rock_ridge is not None and not (child.is_dot() or child.is_dotdot())
    }
    assert names == {"meta_data.json"}


def test_user_data_at_the_64_kib_cap_fits(read_iso):
    data = bytes(range(256)) * 256
    assert len(data) == driver.USER_DATA_MAX_BYTES
    iso = read_iso(make_instance(user_data=data))
    assert file_bytes(iso, rr_path="/openstack/latest/user_data") == data


def test_hostile_hostname_is_sanitised_in_meta_data(read_iso):
    iso = read_iso(make_instance(hostname='Web_1 "; rm -rf /'))
    meta = json.loads(file_bytes(iso, rr_path="/openstack/latest/meta_data.json"))
    assert meta["hostname"] == "web-1--rm--rf"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("web-1", "web-1"),
        ("Web_Server 2", "web-server-2"),
        ("-.edge.-", "edge"),
        ("a" * 80, "a" * 63),
        ("ünïcode", "ncode"),
        ("web.example.com", "web.example.com"),
    ],
)
def test_sanitize_hostname(given, expected):
    assert configdrive.sanitize_hostname(given, fallback="instance-x") == expected


def test_sanitize_hostname_falls_back_when_nothing_is_left():
    assert configdrive.sanitize_hostname("!!!", fallback="instance-0d9b7c4e") == "instance-0d9b7c4e"
