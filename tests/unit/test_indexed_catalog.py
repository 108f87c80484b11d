"""Flavors and Images come from kopf's watch-fed indexes; only a miss asks the apiserver.

A kopf index is a mapping of key -> a collection of the objects indexed under it; a plain dict
of name -> list stands in for it here.
"""

from __future__ import annotations

from typing import Any

import pytest

from kubenova.api import handlers
from kubenova.api.handlers import IndexedCatalog
from tests.support import RecordingKube

FLAVOR = {"spec": {"vcpus": 1, "memoryMiB": 512, "diskGiB": 1}}
IMAGE = {
    "spec": {
        "source": {"url": "http://127.0.0.1:8089/tiny.qcow2"},
        "sha256": "0" * 64,
        "diskFormat": "qcow2",
    }
}


def _catalog(
    kube: RecordingKube,
    flavors: dict[str, list[dict[str, Any]]] | None = None,
    images: dict[str, list[dict[str, Any]]] | None = None,
) -> IndexedCatalog:
    return IndexedCatalog(flavors or {}, images or {}, kube)  # type: ignore[arg-type]


def test_indexed_flavor_and_image_are_served_without_asking_the_apiserver() -> None:
    kube = RecordingKube()
    catalog = _catalog(kube, {"m1.nano": [FLAVOR]}, {"tiny": [IMAGE]})
    assert catalog.get_flavor("m1.nano") == FLAVOR
    assert catalog.get_image("tiny") == IMAGE
    assert kube.gets == []


def test_a_flavor_missing_from_the_index_is_read_from_the_apiserver() -> None:
    fresh = {"spec": {"vcpus": 2, "memoryMiB": 1024, "diskGiB": 2}}
    kube = RecordingKube(flavors={"m1.small": fresh})
    catalog = _catalog(kube, {"m1.nano": [FLAVOR]})
    assert catalog.get_flavor("m1.small") == fresh
    assert kube.gets == [("flavor", "m1.small")]


def test_an_image_missing_from_the_index_is_read_from_the_apiserver() -> None:
    kube = RecordingKube(images={"tiny": IMAGE})
    catalog = _catalog(kube, images={"other": [IMAGE]})
    assert catalog.get_image("tiny") == IMAGE
    assert kube.gets == [("image", "tiny")]


def test_a_name_known_nowhere_is_none_after_one_get() -> None:
    kube = RecordingKube()
    catalog = _catalog(kube)
    assert catalog.get_flavor("m1.huge") is None
    assert catalog.get_image("missing") is None
    assert kube.gets == [("flavor", "m1.huge"), ("image", "missing")]


def test_an_empty_index_entry_counts_as_a_miss() -> None:
    kube = RecordingKube(flavors={"m1.nano": FLAVOR})
    catalog = _catalog(kube, {"m1.nano": []})
    assert catalog.get_flavor("m1.nano") == FLAVOR
    assert kube.gets == [("flavor", "m1.nano")]


def test_flavors_and_images_are_separate_indexes() -> None:
    kube = RecordingKube()
    catalog = _catalog(kube, flavors={"same-name": [FLAVOR]}, images={})
    assert catalog.get_image("same-name") is None
    assert kube.gets == [("image", "same-name")]


def test_a_served_object_is_a_copy_of_the_index_entry() -> None:
    entry = dict(FLAVOR)
    catalog = _catalog(RecordingKube(), {"m1.nano": [entry]})
    served = catalog.get_flavor("m1.nano")
    assert served is not None
    served["extra"] = True
    assert "extra" not in entry


@pytest.mark.parametrize(
    ("indexer", "spec"),
    [(handlers.flavors_by_name, FLAVOR["spec"]), (handlers.images_by_name, IMAGE["spec"])],
)
def test_the_indexers_key_each_object_by_name_with_its_spec(indexer: Any, spec: Any) -> None:
    assert indexer(name="n1", spec=spec) == {"n1": {"spec": spec}}
