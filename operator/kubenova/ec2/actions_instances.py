"""RunInstances and TerminateInstances, on Instance objects of the access key's namespace, and
the lookup of instances by id that other actions share (DescribeInstances is
:mod:`actions_describe`).

An instance made here is an ordinary Instance, named ``ec2-<17 hex digits>-<launch index>``
after its reservation, so ``kubectl`` sees it and GitOps may own it; an Instance made with
``kubectl`` is described too, as a reservation of its own.

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
    amis,
    capacity,
    errors,
    ids,
    instance_filters,
    key_pairs,
    quotas,
    states,
    tags,
    terminated,
    views,
    zones,
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


def _image_ids(ctx: Context) -> dict[str, str]:
    return {image["metadata"]["name"]: ids.image_id(image) for image in ctx.cluster.images()}


def _view(obj: dict[str, Any], image_ids: dict[str, str]) -> dict[str, Any]:
    return views.instance(obj, image_ids, host_state.DEFAULT_AVAILABILITY_ZONE)


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
        raise amis.unbootable(ctx, str(image_id))
    flavor_object = ctx.cluster.flavor(str(flavor))
    if flavor_object is None:
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
    count = _launchable(ctx, spec, flavor_object, image, minimum, maximum)
    made = _create_all(ctx, digits, count, minimum, spec, token, annotations)
    if token and any(obj is None for obj in made):
        # Another request with this token made some first: answer with all of them.
        return _reservation_output(ctx, _by_client_token(ctx, token))
    return _reservation_output(ctx, [obj for obj in made if obj is not None])


def _launchable(
    ctx: Context,
    spec: dict[str, Any],
    flavor: dict[str, Any],
    image: dict[str, Any],
    minimum: int,
    maximum: int,
) -> int:
    """How many Instances to make: as many as the namespace's quotas allow and the hosts
    would take, up to ``maximum``; InstanceLimitExceeded or InsufficientInstanceCapacity,
    before anything is made, when fewer than ``minimum`` (EC2's MinCount). A zone no host is
    in is refused first, as the parameter it is, from the same read of the hosts."""
    hypervisors = ctx.cluster.hypervisors()
    zone = spec.get("availabilityZone")
    if zone:
        zones.require_known(str(zone), hypervisors)
    allowed = quotas.allowed(ctx.cluster.resource_quotas(ctx.namespace), minimum, maximum)
    return capacity.room(hypervisors, spec, flavor, image, minimum, allowed)


def _create_all(
    ctx: Context,
    digits: str,
    count: int,
    minimum: int,
    spec: dict[str, Any],
    token: str,
    annotations: dict[str, str],
) -> list[dict[str, Any] | None]:
    """Create launch indexes 0 to ``count`` - 1. A quota refusal once ``minimum`` are made
    (another writer took the room since the quotas were read) ends the launch there, as EC2
    launches as many as its limit allows; before that it is the answer."""
    made: list[dict[str, Any] | None] = []
    for index in range(count):
        try:
            made.append(_create(ctx, digits, index, spec, token, annotations))
        except errors.Ec2Error as refused:
            if refused.code != errors.INSTANCE_LIMIT_EXCEEDED or len(made) < minimum:
                raise
            LOG.info("RunInstances stops at %d of %d: %s", len(made), count, refused.message)
            break
    return made


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
        limited = quotas.refusal(exc)
        if limited is not None:
            raise limited from None
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


def lookup(ctx: Context, wanted: list[str]) -> list[dict[str, Any] | terminated.Record]:
    """What each of the ``wanted`` ids is in the key's namespace, in that order: its
    Instance, else the record of an instance terminated lately; Malformed or NotFound (naming
    every missing id) before anything is acted on. The database is asked only for ids that
    are no live Instance's."""
    if not wanted:
        raise errors.missing("InstanceId")
    for value in wanted:
        instance_filters.require_instance_id(value)
    found: dict[str, dict[str, Any] | terminated.Record] = {
        ids.instance_id(obj): obj for obj in ctx.cluster.instances(ctx.namespace)
    }
    if not set(wanted) <= found.keys():
        for record in ctx.terminated.in_namespace(ctx.namespace):
            found.setdefault(terminated.instance_id(record), record)
    missing = [value for value in wanted if value not in found]
    if missing:
        raise instance_filters.not_found(missing)
    return [found[value] for value in dict.fromkeys(wanted)]


def find(ctx: Context, wanted: list[str]) -> list[dict[str, Any]]:
    """The Instances of ``wanted`` ids in the key's namespace, in that order; Malformed,
    NotFound, or IncorrectInstanceState for one terminated already, before anything is acted
    on."""
    objects = []
    for value, found in zip(dict.fromkeys(wanted), lookup(ctx, wanted), strict=True):
        if isinstance(found, terminated.Record):
            raise terminated.incorrect_state(value)
        objects.append(found)
    return objects


def terminate_instances(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """Delete the Instances; one terminated already answers terminated twice, as EC2 does
    (terminating is idempotent there)."""
    changes = []
    for found in lookup(ctx, [str(value) for value in params.get("InstanceIds") or []]):
        if isinstance(found, terminated.Record):
            changes.append(
                {
                    "InstanceId": terminated.instance_id(found),
                    "PreviousState": states.TERMINATED.as_output(),
                    "CurrentState": states.TERMINATED.as_output(),
                }
            )
            continue
        previous = states.of_instance(found)
        meta = found["metadata"]
        ctx.cluster.delete_instance(ctx.namespace, meta["name"], meta["uid"])
        LOG.info("TerminateInstances deletes %s/%s", ctx.namespace, meta["name"])
        changes.append(
            {
                "InstanceId": ids.instance_id(found),
                "PreviousState": previous.as_output(),
                "CurrentState": states.SHUTTING_DOWN.as_output(),
            }
        )
    return {"TerminatingInstances": changes}
