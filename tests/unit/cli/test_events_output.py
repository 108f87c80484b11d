import json

import yaml

from kubenova.cli import events, output
from tests.unit.cli.helpers import instance


def action(request_id, name=None, *, start=None, created="2025-03-01T10:00:00Z", uid="uid-1",
           **fields):  # fmt: skip
    obj = {
        "apiVersion": "compute.kubenova.io/v1alpha1",
        "kind": "InstanceAction",
        "metadata": {"name": name or f"web-1-{request_id}", "creationTimestamp": created},
        "instance": "web-1",
        "instanceUID": uid,
        "action": fields.pop("action", "stop"),
        "requestId": request_id,
        "result": fields.pop("result", "Success"),
    }
    if start is not None:
        obj["startTime"] = start
    obj.update(fields)
    return obj


def test_a_table_pads_columns_to_the_widest_cell_and_not_the_last():
    text = output.table(("A", "LONGER"), [("xxxxx", "1"), ("y", None)])

    assert text.splitlines() == ["A       LONGER", "xxxxx   1", "y       -"]


def test_a_cell_keeps_to_one_line():
    assert output.cell("line one\n  line two") == "line one line two"
    assert output.cell("") == "-"
    assert output.cell(0) == "0"


def test_actions_are_oldest_first_by_start_time_with_fractions_compared_as_times():
    items = [
        action("req-3", start="2025-03-01T10:00:01Z"),
        action("req-2", start="2025-03-01T10:00:00.5Z"),
        action("req-1", start="2025-03-01T10:00:00Z"),
        # No start time yet: its creation time stands in.
        action("req-4", created="2025-03-01T10:00:02Z"),
    ]

    ordered = events.actions_of(instance(), items)

    assert [a["requestId"] for a in ordered] == ["req-1", "req-2", "req-3", "req-4"]


def test_actions_of_an_earlier_instance_of_the_same_name_are_left_out():
    items = [action("req-1"), action("req-old", uid="uid-0"), action("req-2", uid=None)]

    assert [a["requestId"] for a in events.actions_of(instance(), items)] == ["req-1", "req-2"]


def test_the_action_list_is_a_table_like_openstack_server_event_list():
    rows = [
        action(
            "req-1",
            action="create",
            start="2025-03-01T10:00:00Z",
            finishTime="2025-03-01T10:00:09Z",
        ),
        action(
            "req-2",
            action="pause",
            result="Error",
            start="2025-03-01T11:00:00Z",
            message="cannot pause: the instance is stopped",
        ),
    ]

    lines = events.action_table(rows).splitlines()

    assert lines == [
        "REQUEST ID   ACTION   RESULT    START TIME             FINISH TIME            MESSAGE",
        "req-1        create   Success   2025-03-01T10:00:00Z   2025-03-01T10:00:09Z   -",
        "req-2        pause    Error     2025-03-01T11:00:00Z   -                      "
        "cannot pause: the instance is stopped",
    ]


def test_one_action_is_shown_with_its_events():
    shown = action(
        "req-7",
        action="reboot",
        start="2025-03-01T10:00:00Z",
        events=[
            {
                "event": "compute_reboot_instance",
                "host": "node-1",
                "result": "Success",
                "startTime": "2025-03-01T10:00:01Z",
                "finishTime": "2025-03-01T10:00:05Z",
            }
        ],
    )

    text = events.describe_action(shown)

    assert "Request ID:    req-7" in text
    assert "Action:        reboot" in text
    assert "Instance UID:  uid-1" in text
    assert "Finish Time:   -" in text
    lines = text.splitlines()
    assert lines[-3] == "Events:"
    assert lines[-2].split() == ["EVENT", "HOST", "RESULT", "START", "TIME", "FINISH", "TIME",
                                 "DETAILS"]  # fmt: skip
    assert lines[-1].startswith("  compute_reboot_instance   node-1   Success   ")
    assert lines[-1].endswith("   -")


def test_an_action_without_events_says_none():
    assert events.describe_action(action("req-1")).splitlines()[-1] == "Events:        <none>"


def test_an_action_is_found_by_request_id_or_by_object_name():
    items = [action("req-1", name="a"), action("req-2", name="b")]

    assert events.find_action(items, "req-2") is items[1]
    assert events.find_action(items, "a") is items[0]
    assert events.find_action(items, "req-9") is None


def test_json_and_yaml_print_a_list_as_kubectl_get_does():
    items = [action("req-1")]

    as_json = json.loads(output.dump(output.as_list(items), "json"))
    as_yaml = yaml.safe_load(output.dump(output.as_list(items), "yaml"))

    assert as_json == as_yaml
    assert as_json["kind"] == "List"
    assert as_json["items"] == items


def _launched(**status):
    body = instance()
    body["metadata"]["creationTimestamp"] = "2025-03-01T09:59:00Z"
    body["status"] = {"requestId": "req-0", "host": "h1", **status}
    return body


def test_a_create_with_no_object_is_shown_from_the_status_first():
    listed = events.with_create(
        _launched(launchedAt="2025-03-01T09:59:30Z"), [action("req-1", start="2025-03-01T10:00Z")]
    )

    assert [(a["requestId"], a["action"], a["result"]) for a in listed] == [
        ("req-0", "create", "Success"),
        ("req-1", "stop", "Success"),
    ]
    create = listed[0]
    assert (create["startTime"], create["finishTime"]) == (
        "2025-03-01T09:59:00Z",
        "2025-03-01T09:59:30Z",
    )
    assert create["events"] == [
        {
            "event": "compute_build_and_run_instance",
            "host": "h1",
            "result": "Success",
            "startTime": "2025-03-01T09:59:00Z",
            "finishTime": "2025-03-01T09:59:30Z",
        }
    ]


def test_a_create_not_yet_launched_is_in_progress():
    (create,) = events.with_create(_launched(), [])

    assert create["result"] == "InProgress"
    assert "finishTime" not in create


def test_a_create_that_has_its_object_is_not_shown_twice():
    written = action("req-0", action="create", result="Error")

    assert events.with_create(_launched(), [written]) == [written]


def test_an_instance_with_no_request_in_its_status_adds_nothing():
    assert events.with_create(instance(), []) == []
