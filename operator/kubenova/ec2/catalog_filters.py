"""The filters of the actions that describe what a cluster offers (:mod:`actions_catalog`), by
EC2's names, each read from what the action answers with. DescribeImages takes the tag filters
too (an image's tags are the namespace's own, :mod:`tag_store`).

Only filters whose value Kubenova has are served: EC2's others (an image's block devices, an
instance type's network or GPU details) are refused by name, since a filter on what is never
there would describe nothing, or everything, without saying why.
"""

from __future__ import annotations

from typing import Any

from kubenova.ec2 import filters


def _text(value: Any) -> str:
    # EC2 writes booleans in lower case in filter values, as in its XML.
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


REGIONS: dict[str, filters.Read] = {
    "region-name": lambda region: str(region["RegionName"]),
    "endpoint": lambda region: str(region["Endpoint"]),
    "opt-in-status": lambda region: str(region["OptInStatus"]),
}

INSTANCE_TYPES: dict[str, filters.Read] = {
    "instance-type": lambda info: str(info["InstanceType"]),
    "vcpu-info.default-vcpus": lambda info: str(info["VCpuInfo"]["DefaultVCpus"]),
    "memory-info.size-in-mib": lambda info: str(info["MemoryInfo"]["SizeInMiB"]),
    "instance-storage-info.total-size-in-gb": lambda info: str(
        info["InstanceStorageInfo"]["TotalSizeInGB"]
    ),
    "processor-info.supported-architecture": lambda info: [
        str(arch) for arch in info["ProcessorInfo"]["SupportedArchitectures"]
    ],
    "current-generation": lambda info: _text(info["CurrentGeneration"]),
}

IMAGES: dict[str, filters.Read] = {
    "image-id": lambda image: str(image["ImageId"]),
    "name": lambda image: str(image["Name"]),
    "state": lambda image: str(image["State"]),
    "architecture": lambda image: str(image["Architecture"]),
    "description": lambda image: str(image.get("Description") or ""),
    "owner-id": lambda image: str(image["OwnerId"]),
    "is-public": lambda image: _text(image["Public"]),
    "image-type": lambda image: str(image["ImageType"]),
}
