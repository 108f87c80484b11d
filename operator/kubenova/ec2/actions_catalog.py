"""The actions that describe what a cluster offers: its region, zones, instance types (Flavors)
and images (Images). Flavors and Images are the cluster's; only the images a namespace is still
making (its InstanceSnapshots) are its own."""

from __future__ import annotations

from typing import Any

from kubenova.ec2 import amis, catalog_filters, errors, filters, ids, tag_store, tags, views, zones
from kubenova.ec2.context import Context


def describe_regions(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """One region: this server's."""
    parsed = filters.parse(params.get("Filters"), catalog_filters.REGIONS)
    wanted = params.get("RegionNames")
    if wanted and any(name != ctx.region for name in wanted):
        unknown = next(name for name in wanted if name != ctx.region)
        raise errors.invalid("RegionName", f"the region {unknown!r} does not exist")
    region = {
        "RegionName": ctx.region,
        "Endpoint": ctx.endpoint,
        "OptInStatus": "opt-in-not-required",
    }
    return {"Regions": filters.chosen([region], parsed)}


def describe_availability_zones(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """The zones of the Hypervisors (:mod:`zones`); a zone is available while one of its hosts
    is up."""
    available = zones.availability(ctx.cluster.hypervisors())
    wanted = params.get("ZoneNames")
    names = sorted(available)
    if wanted:
        unknown = [name for name in wanted if name not in available]
        if unknown:
            raise errors.invalid("ZoneName", f"the zone {unknown[0]!r} does not exist")
        names = [name for name in names if name in wanted]
    return {
        "AvailabilityZones": [
            {
                "ZoneName": name,
                "ZoneId": f"{ctx.region}-{name}",
                "State": "available" if available[name] else "unavailable",
                "RegionName": ctx.region,
                "GroupName": ctx.region,
                "NetworkBorderGroup": ctx.region,
                "ZoneType": "availability-zone",
                "OptInStatus": "opt-in-not-required",
                "Messages": [],
            }
            for name in names
        ]
    }


def describe_instance_types(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """The Flavors, as instance types named by the Flavor."""
    parsed = filters.parse(params.get("Filters"), catalog_filters.INSTANCE_TYPES)
    flavors = {flavor["metadata"]["name"]: flavor for flavor in ctx.cluster.flavors()}
    wanted = params.get("InstanceTypes")
    names = sorted(flavors)
    if wanted:
        unknown = [name for name in wanted if name not in flavors]
        if unknown:
            raise errors.invalid("InstanceType", f"the instance type {unknown[0]!r} does not exist")
        names = [name for name in names if name in wanted]
    described = [views.instance_type(flavors[name]) for name in names]
    return {"InstanceTypes": filters.chosen(described, parsed)}


def describe_images(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """The Images, each an AMI whose id is derived from its uid, and the images the key's
    namespace is making (:mod:`amis`), with the tags the namespace gave them."""
    parsed = filters.parse(params.get("Filters"), catalog_filters.IMAGES, tag_filters=True)
    images = amis.described(ctx)
    wanted = params.get("ImageIds")
    chosen = sorted(images)
    if wanted:
        for image_id in wanted:
            require_image_id(image_id)
        unknown = [image_id for image_id in wanted if image_id not in images]
        if unknown:
            raise errors.Ec2Error(
                errors.INVALID_AMI_ID_NOT_FOUND,
                f"The image id '[{', '.join(unknown)}]' does not exist",
            )
        chosen = [image_id for image_id in chosen if image_id in wanted]
    tagged = tag_store.image_tags(ctx)
    described = []
    for image_id in chosen:
        view = images[image_id]
        if tagged.get(image_id):
            view["Tags"] = tags.as_output(tagged[image_id])
        described.append(view)
    return {"Images": filters.chosen(described, parsed)}


def require_image_id(value: str) -> None:
    if not ids.well_formed(value, ids.IMAGE_PREFIX):
        raise errors.Ec2Error(
            errors.INVALID_AMI_ID_MALFORMED,
            f'Invalid id: "{value}" (expecting "ami-" and 17 hex digits)',
        )
