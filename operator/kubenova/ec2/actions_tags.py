"""CreateTags, DeleteTags and DescribeTags, on the instances of the access key's namespace and
on images (whose tags are the namespace's own; :mod:`tag_store` says where each is kept)."""

from __future__ import annotations

import functools
import logging
from typing import Any

from kubenova.ec2 import batch, errors, instance_filters, tag_store, tags
from kubenova.ec2.context import Context

LOG = logging.getLogger(__name__)

_FILTERS = ("resource-id", "resource-type", "key", "value")


def create_tags(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    given = tags.parse(params.get("Tags"), "Tag", values_required=True)
    if not given:
        raise errors.missing("Tag")
    added = {key: value or "" for key, value in given.items()}

    def add(current: tags.Tags) -> tags.Tags:
        return {**current, **added}

    _change_all(ctx, params, add)
    return {}


def delete_tags(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """Delete the tags named (all of them when none is): a tag given with a value goes only
    while it has that value, one given without a value goes whatever its value."""
    given = tags.parse(params.get("Tags"), "Tag", values_required=False)
    if params.get("Tags") is None:
        _change_all(ctx, params, lambda current: {})
        return {}

    def remove(current: tags.Tags) -> tags.Tags:
        return {
            key: value
            for key, value in current.items()
            if key not in given or (given[key] is not None and given[key] != value)
        }

    _change_all(ctx, params, remove)
    return {}


def describe_tags(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """Every tag of the namespace's instances and of the images it tagged, by resource and key,
    in one answer (no NextToken: a paginator stops after it)."""
    filters = list(params.get("Filters") or [])
    for entry in filters:
        if entry.get("Name") not in _FILTERS:
            instance_filters.refuse_filter(str(entry.get("Name") or ""), _FILTERS)
    resources = tag_store.instances(ctx) + [image for image in tag_store.images(ctx) if image.tags]
    described = [
        {
            "ResourceId": resource.resource_id,
            "ResourceType": resource.resource_type,
            "Key": key,
            "Value": value,
        }
        for resource in sorted(resources, key=lambda resource: resource.resource_id)
        for key, value in sorted(resource.tags.items())
    ]
    return {"Tags": [tag for tag in described if _passes(tag, filters)]}


def _change_all(ctx: Context, params: dict[str, Any], how: tag_store.Change) -> None:
    resources = tag_store.resolve(ctx, [str(value) for value in params.get("Resources") or []])

    def check(resource: tag_store.Resource) -> None:
        # The limit as the tags are now; tag_store checks it again as they are when written.
        after = how(dict(resource.tags))
        if len(after) > len(resource.tags):
            tags.require_count(after, resource.resource_id)

    batch.check_all_then_apply(resources, check, functools.partial(tag_store.change, ctx, how=how))
    LOG.info("tags of %s changed in %s", [r.resource_id for r in resources], ctx.namespace)


_FIELDS = {"resource-id": "ResourceId", "resource-type": "ResourceType", "key": "Key"}


def _passes(tag: dict[str, str], filters: list[dict[str, Any]]) -> bool:
    for entry in filters:
        field = _FIELDS.get(str(entry["Name"]), "Value")
        if tag[field] not in [str(value) for value in entry.get("Values") or []]:
            return False
    return True
