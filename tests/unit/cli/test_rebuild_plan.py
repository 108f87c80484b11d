"""kubectl nova rebuild: a new image is the request; the same image with nothing under way
is not one."""

from __future__ import annotations

from kubenova.cli.rebuild import plan_rebuild


def _instance(image: str, task: str | None = None) -> dict:
    return {
        "metadata": {"name": "web-1", "generation": 3},
        "spec": {"flavor": "m1.nano", "image": image},
        "status": {"phase": "Running", "taskState": task},
    }


def test_a_new_image_is_patched_into_the_spec() -> None:
    assert plan_rebuild(_instance("tiny"), "tiny-2") == {"spec": {"image": "tiny-2"}}


def test_the_image_it_already_runs_asks_for_nothing() -> None:
    assert plan_rebuild(_instance("tiny"), "tiny") is None


def test_the_image_of_a_rebuild_under_way_is_patched_again_to_wait_for_it() -> None:
    assert plan_rebuild(_instance("tiny-2", task="rebuilding"), "tiny-2") == {
        "spec": {"image": "tiny-2"}
    }
