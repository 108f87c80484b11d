"""Where the tags of each kind of resource are kept, and how they are changed without losing a
concurrent change.

- An instance's tags are its Instance's annotation ``ec2.kubenova.io/tags`` (:mod:`tags`).
- An image's tags are the namespace's own: Images belong to the whole cluster, and on EC2 the
  tags an account puts on a shared AMI are seen by that account only. So they are kept in the
  ConfigMap ``kubenova-ec2-image-tags`` of the access key's namespace, one entry per AMI id,
  and one namespace's tags neither show in nor change another's.
- A key pair's tags are its Secret's annotation ``ec2.kubenova.io/tags`` (:mod:`key_pairs`
  says why there).

Every change is a read, a change and a merge patch carrying the resourceVersion read: the
kube-apiserver refuses it (409) when the object changed in between, and the change is made
again on what is there now, up to :data:`ATTEMPTS` times.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from kubernetes.client import exceptions as k8s_exceptions

from kubenova.ec2 import amis, errors, ids, instance_filters, key_pairs, tags
from kubenova.ec2.context import Context

IMAGE_TAGS_CONFIG_MAP = "kubenova-ec2-image-tags"
INSTANCE = "instance"
IMAGE = "image"
KEY_PAIR = "key-pair"
#: How often a change is made again after a concurrent one got in first.
ATTEMPTS = 5
INVALID_ID = "InvalidID"
#: The ids of what is tagged: instances, images, key pairs.
_PREFIXES = (ids.INSTANCE_PREFIX, ids.IMAGE_PREFIX, key_pairs.KEY_PAIR_PREFIX)

Change = Callable[[tags.Tags], tags.Tags]


@dataclasses.dataclass(frozen=True)
class Resource:
    resource_id: str
    resource_type: str
    #: Where its tags are: the Instance's name, the image's entry in the ConfigMap, or the key
    #: pair's Secret's name.
    name: str
    tags: tags.Tags


def resolve(ctx: Context, resource_ids: list[str]) -> list[Resource]:
    """The resources ``resource_ids`` name with their tags as they are, in that order: every id
    checked (shape, then existence in the key's namespace) before anything is changed."""
    if not resource_ids:
        raise errors.missing("ResourceId")
    for value in resource_ids:
        if not any(ids.well_formed(value, prefix) for prefix in _PREFIXES):
            raise errors.Ec2Error(
                INVALID_ID,
                f"The ID '{value}' is not valid (only instances, images and key pairs are tagged)",
            )
    wanted = list(dict.fromkeys(resource_ids))
    found: dict[str, Resource] = {}
    if any(value.startswith(ids.INSTANCE_PREFIX) for value in wanted):
        found.update((r.resource_id, r) for r in instances(ctx))
        missing = [v for v in wanted if v.startswith(ids.INSTANCE_PREFIX) and v not in found]
        if missing:
            raise instance_filters.not_found(missing)
    if any(value.startswith(ids.IMAGE_PREFIX) for value in wanted):
        found.update((r.resource_id, r) for r in images(ctx))
        missing = [v for v in wanted if v.startswith(ids.IMAGE_PREFIX) and v not in found]
        if missing:
            raise errors.Ec2Error(
                errors.INVALID_AMI_ID_NOT_FOUND,
                f"The image id '[{', '.join(missing)}]' does not exist",
            )
    if any(value.startswith(key_pairs.KEY_PAIR_PREFIX) for value in wanted):
        found.update((r.resource_id, r) for r in key_pair_resources(ctx))
        missing = [v for v in wanted if v.startswith(key_pairs.KEY_PAIR_PREFIX) and v not in found]
        if missing:
            raise key_pairs.not_found(missing[0])
    return [found[value] for value in wanted]


def instances(ctx: Context) -> list[Resource]:
    return [
        Resource(ids.instance_id(obj), INSTANCE, obj["metadata"]["name"], tags.of_object(obj))
        for obj in ctx.cluster.instances(ctx.namespace)
    ]


def images(ctx: Context) -> list[Resource]:
    """The images the key's namespace sees (the cluster's, and those it is making), with the
    tags it gave them."""
    kept = image_tags(ctx)
    return [
        Resource(image_id, IMAGE, image_id, kept.get(image_id, {}))
        for image_id in sorted(amis.described(ctx))
    ]


def key_pair_resources(ctx: Context) -> list[Resource]:
    return [
        Resource(pair.key_pair_id, KEY_PAIR, pair.secret_name, pair.tags)
        for pair in key_pairs.all_in(ctx)
    ]


def image_tags(ctx: Context) -> dict[str, tags.Tags]:
    """The key's namespace's tags of images, by AMI id."""
    found = ctx.cluster.config_map(ctx.namespace, IMAGE_TAGS_CONFIG_MAP)
    data = (found or {}).get("data") or {}
    return {str(image_id): tags.decode(raw) for image_id, raw in data.items()}


def change(ctx: Context, resource: Resource, how: Change) -> None:
    """Apply ``how`` to the resource's tags as they are when written, retrying when a
    concurrent change got in first."""
    write = _WRITERS[resource.resource_type]
    for _ in range(ATTEMPTS):
        try:
            write(ctx, resource, how)
            return
        except k8s_exceptions.ApiException as exc:
            if exc.status != 409:
                raise
    raise errors.Ec2Error(
        errors.INTERNAL_ERROR,
        f"The tags of {resource.resource_id} changed {ATTEMPTS} times while being written;"
        " try again.",
    )


def _change_instance(ctx: Context, resource: Resource, how: Change) -> None:
    obj = ctx.cluster.instance(ctx.namespace, resource.name)
    if obj is None:
        raise instance_filters.not_found([resource.resource_id])
    if ids.instance_id(obj) != resource.resource_id:  # deleted and made again meanwhile
        raise instance_filters.not_found([resource.resource_id])
    before = tags.of_object(obj)
    after = _changed(before, how, resource.resource_id)
    if after == before:
        return
    patch = {
        "metadata": {
            "resourceVersion": obj["metadata"]["resourceVersion"],
            "annotations": {tags.TAGS_ANNOTATION: tags.encode(after)},
        }
    }
    if ctx.cluster.patch_instance(ctx.namespace, resource.name, patch) is None:
        raise instance_filters.not_found([resource.resource_id])


def _change_image(ctx: Context, resource: Resource, how: Change) -> None:
    current = ctx.cluster.config_map(ctx.namespace, IMAGE_TAGS_CONFIG_MAP)
    data: dict[str, Any] = (current or {}).get("data") or {}
    before = tags.decode(data.get(resource.name))
    after = _changed(before, how, resource.resource_id)
    if after == before:
        return
    if current is None:
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": IMAGE_TAGS_CONFIG_MAP},
            "data": {resource.name: tags.encode(after)},
        }
        ctx.cluster.create_config_map(ctx.namespace, body)  # 409: made meanwhile, again
        return
    patch = {
        "metadata": {"resourceVersion": current["metadata"]["resourceVersion"]},
        "data": {resource.name: tags.encode(after)},
    }
    if ctx.cluster.patch_config_map(ctx.namespace, IMAGE_TAGS_CONFIG_MAP, patch) is None:
        # Deleted between the read and the write: made again on the next attempt.
        raise k8s_exceptions.ApiException(status=409, reason="Conflict")


def _change_key_pair(ctx: Context, resource: Resource, how: Change) -> None:
    # Found again by its id: a key pair deleted and made again under its name meanwhile is a
    # new one, with a new id, and this one is gone.
    pair = key_pairs.by_id(ctx, resource.resource_id)
    if pair is None:
        raise key_pairs.not_found(resource.resource_id)
    after = _changed(pair.tags, how, resource.resource_id)
    if after == pair.tags:
        return
    if not key_pairs.write_tags(ctx, pair, after):
        raise key_pairs.not_found(resource.resource_id)


_WRITERS: dict[str, Callable[[Context, Resource, Change], None]] = {
    INSTANCE: _change_instance,
    IMAGE: _change_image,
    KEY_PAIR: _change_key_pair,
}


def _changed(before: tags.Tags, how: Change, resource_id: str) -> tags.Tags:
    after = how(dict(before))
    if len(after) > len(before):
        tags.require_count(after, resource_id)
    return after
