"""RunInstances, DescribeInstances and TerminateInstances, on Instance objects of the access
key's namespace.

An instance made here is an ordinary Instance, named ``ec2-<17 hex digits>-<launch index>``
after its reservation, so ``kubectl`` sees it and GitOps may own it; an Instance made with
``kubectl`` is described here too, as a reservation of its own.

RunInstances with a ClientToken is idempotent by name: the reservation's digits are derived
from the namespace and the token, so a retry (or a second request racing the first) meets the
names taken and answers with the Instances already made.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import secrets
from typing import Any

from kubernetes.client import exceptions as k8s_exceptions

from kubenova.ec2 import (
    actions_catalog,
    actions_keypairs,
    errors,
    ids,
    instance_filters,
    key_pairs,
    states,
    tags,
    views,
)
from kubenova.ec2.context import Context
from kubenova.k8s import resources
from kubenova.scheduler import host_state

LOG = logging.getLogger(__name__)

#: The most instances one RunInstances makes.
MAX_COUNT = 100
#: The CRD's limit on spec.userData.
MAX_USER_DATA = 65536
_NAME_PREFIX = "ec2-"


def describe_instances(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    wanted = [str(value) for value in params.get("InstanceIds") or []]
    for value in wanted:
        instance_filters.require_instance_id(value)
    size = instance_filters.page_size(params)
    after = (
        instance_filters.after_token(str(params["NextToken"])) if params.get("NextToken") else None
    )
    objects = sorted(ctx.cluster.instances(ctx.namespace), key=instance_filters.order_key)
    image_ids = _image_ids(ctx)
    views_by_id = {ids.instance_id(obj): (obj, _view(obj, image_ids)) for obj in objects}
    if wanted:
        missing = [value for value in wanted if value not in views_by_id]
        if missing:
            raise instance_filters.not_found(missing)
    filters = list(params.get("Filters") or [])
    chosen: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for instance_id, (obj, view) in views_by_id.items():
        if wanted and instance_id not in wanted:
            continue
        if after is not None and instance_filters.order_key(obj) <= after:
            continue
        if instance_filters.matches(view, filters):
            chosen.append((obj, view))
    output: dict[str, Any] = {}
    if size is not None and len(chosen) > size:
        chosen = chosen[:size]
        output["NextToken"] = instance_filters.token_of(instance_filters.order_key(chosen[-1][0]))
    output["Reservations"] = _reservations(ctx, chosen)
    return output


def _image_ids(ctx: Context) -> dict[str, str]:
    return {image["metadata"]["name"]: ids.image_id(image) for image in ctx.cluster.images()}


def _view(obj: dict[str, Any], image_ids: dict[str, str]) -> dict[str, Any]:
    return views.instance(obj, image_ids, host_state.DEFAULT_AVAILABILITY_ZONE)


def _reservations(
    ctx: Context, chosen: list[tuple[dict[str, Any], dict[str, Any]]]
) -> list[dict[str, Any]]:
    """Instances grouped by reservation, in the order of their first instance."""
    grouped: dict[str, dict[str, Any]] = {}
    for obj, view in chosen:
        reservation = ids.reservation_id(obj)
        entry = grouped.setdefault(
            reservation,
            {"ReservationId": reservation, "OwnerId": ctx.namespace, "Groups": [], "Instances": []},
        )
        entry["Instances"].append(view)
    return list(grouped.values())


def run_instances(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    image_id = params.get("ImageId")
    if not image_id:
        raise errors.missing("ImageId")
    actions_catalog.require_image_id(str(image_id))
    flavor = params.get("InstanceType")
    if not flavor:
        raise errors.missing("InstanceType")
    minimum, maximum = int(params["MinCount"]), int(params["MaxCount"])
    if not 1 <= minimum <= maximum:
        raise errors.invalid(
            "MinCount", f"MinCount ({minimum}) must be at least 1 and at most MaxCount ({maximum})"
        )
    if maximum > MAX_COUNT:
        raise errors.invalid("MaxCount", f"at most {MAX_COUNT} instances per request")
    annotations: dict[str, str] = {}
    launch_tags = tags.encode(tags.from_specifications(params.get("TagSpecifications"), "instance"))
    if launch_tags is not None:
        annotations[tags.TAGS_ANNOTATION] = launch_tags
    image = next((obj for obj in ctx.cluster.images() if ids.image_id(obj) == image_id), None)
    if image is None:
        raise errors.Ec2Error(
            errors.INVALID_AMI_ID_NOT_FOUND, f"The image id '[{image_id}]' does not exist"
        )
    if ctx.cluster.flavor(str(flavor)) is None:
        raise errors.invalid("InstanceType", f"the instance type {flavor!r} does not exist")
    spec: dict[str, Any] = {"flavor": str(flavor), "image": image["metadata"]["name"]}
    user_data = _user_data(params.get("UserData"))
    if user_data is not None:
        spec["userData"] = user_data
    zone = (params.get("Placement") or {}).get("AvailabilityZone")
    if zone:
        spec["availabilityZone"] = str(zone)
    key_name = params.get("KeyName")
    if key_name is not None:
        # The key's public half reaches the guest through the config drive, as any
        # spec.sshAuthorizedKeys does; its name is kept for DescribeInstances' KeyName.
        spec["sshAuthorizedKeys"] = [actions_keypairs.authorized_key(ctx, str(key_name))]
        annotations[key_pairs.KEY_NAME_ANNOTATION] = str(key_name)
    token = str(params.get("ClientToken") or "")
    if token:
        earlier = _by_client_token(ctx, token)
        if earlier:
            return _reservation_output(ctx, earlier)
        digits = hashlib.sha256(f"{ctx.namespace}/{token}".encode()).hexdigest()[:17]
    else:
        digits = secrets.token_hex(9)[:17]
    made = [_create(ctx, digits, index, spec, token, annotations) for index in range(maximum)]
    if token and any(obj is None for obj in made):
        # Another request with this token made some first: answer with all of them.
        return _reservation_output(ctx, _by_client_token(ctx, token))
    return _reservation_output(ctx, [obj for obj in made if obj is not None])


def _user_data(raw: Any) -> str | None:
    """The guest's user data: EC2 clients send it base64-encoded, the Instance holds text."""
    if raw is None or raw == "":
        return None
    try:
        decoded = base64.b64decode(str(raw), validate=True)
        text = decoded.decode()
    except (binascii.Error, UnicodeDecodeError):
        raise errors.invalid("UserData", "it must be base64-encoded UTF-8 text") from None
    if len(text.encode()) > MAX_USER_DATA:
        raise errors.invalid("UserData", f"it is longer than {MAX_USER_DATA} bytes once decoded")
    return text


def _by_client_token(ctx: Context, token: str) -> list[dict[str, Any]]:
    selector = f"{ids.CLIENT_TOKEN_LABEL}={ids.client_token_label(token)}"
    return sorted(ctx.cluster.instances(ctx.namespace, selector), key=_launch_index)


def _launch_index(obj: dict[str, Any]) -> int:
    raw = (obj["metadata"].get("labels") or {}).get(ids.LAUNCH_INDEX_LABEL, "0")
    return int(raw) if str(raw).isdigit() else 0


def _create(
    ctx: Context,
    digits: str,
    index: int,
    spec: dict[str, Any],
    token: str,
    launch_annotations: dict[str, str],
) -> dict[str, Any] | None:
    """Create one Instance (with ``launch_annotations``: its tags, its key's name) and label
    it with its id; None when its name is taken (a request with the same ClientToken made
    it)."""
    labels = {
        ids.RESERVATION_ID_LABEL: ids.RESERVATION_PREFIX + digits,
        ids.LAUNCH_INDEX_LABEL: str(index),
    }
    annotations = dict(launch_annotations)
    if token:
        labels[ids.CLIENT_TOKEN_LABEL] = ids.client_token_label(token)
        annotations[ids.CLIENT_TOKEN_ANNOTATION] = token
    name = f"{_NAME_PREFIX}{digits}-{index}"
    body: dict[str, Any] = {
        "apiVersion": resources.API_VERSION,
        "kind": "Instance",
        "metadata": {"name": name, "labels": labels, "annotations": annotations},
        "spec": dict(spec),
    }
    try:
        created = ctx.cluster.create_instance(ctx.namespace, body)
    except k8s_exceptions.ApiException as exc:
        if exc.status == 409 and token:
            return None
        raise
    instance_id = ids.instance_id(created)
    LOG.info("RunInstances made %s/%s as %s", ctx.namespace, name, instance_id)
    labelled = ctx.cluster.patch_instance(
        ctx.namespace,
        name,
        {"metadata": {"labels": {ids.INSTANCE_ID_LABEL: instance_id}}},
    )
    return labelled or created


def _reservation_output(ctx: Context, objects: list[dict[str, Any]]) -> dict[str, Any]:
    image_ids = _image_ids(ctx)
    reservation = ids.reservation_id(objects[0]) if objects else ""
    return {
        "ReservationId": reservation,
        "OwnerId": ctx.namespace,
        "Groups": [],
        "Instances": [_view(obj, image_ids) for obj in objects],
    }


def find(ctx: Context, wanted: list[str]) -> list[dict[str, Any]]:
    """The Instances of ``wanted`` ids in the key's namespace, in that order; Malformed or
    NotFound (naming every missing id) before anything is acted on."""
    if not wanted:
        raise errors.missing("InstanceId")
    for value in wanted:
        instance_filters.require_instance_id(value)
    by_id = {ids.instance_id(obj): obj for obj in ctx.cluster.instances(ctx.namespace)}
    missing = [value for value in wanted if value not in by_id]
    if missing:
        raise instance_filters.not_found(missing)
    return [by_id[value] for value in dict.fromkeys(wanted)]


def terminate_instances(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    changes = []
    for obj in find(ctx, [str(value) for value in params.get("InstanceIds") or []]):
        previous = states.of_instance(obj)
        meta = obj["metadata"]
        ctx.cluster.delete_instance(ctx.namespace, meta["name"], meta["uid"])
        LOG.info("TerminateInstances deletes %s/%s", ctx.namespace, meta["name"])
        changes.append(
            {
                "InstanceId": ids.instance_id(obj),
                "PreviousState": previous.as_output(),
                "CurrentState": states.SHUTTING_DOWN.as_output(),
            }
        )
    return {"TerminatingInstances": changes}
