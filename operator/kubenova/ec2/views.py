"""Kubenova objects as EC2 sees them: an Instance as an EC2 instance, a Flavor as an instance
type, an Image as an AMI. Pure functions of the objects as read; the dictionaries are keyed by
botocore's output shape members (:mod:`responses` writes them out)."""

from __future__ import annotations

import datetime
from typing import Any

from kubenova.ec2 import ids, key_pairs, states, tags

_DEFAULT_ARCHITECTURE = "x86_64"


def timestamp(raw: Any) -> datetime.datetime | None:
    """An RFC 3339 time of the apiserver as a datetime; None when absent or unreadable."""
    if not isinstance(raw, str) or not raw:
        return None
    try:
        return datetime.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None


def instance(obj: dict[str, Any], image_ids: dict[str, str], zone: str) -> dict[str, Any]:
    """The EC2 Instance of an Instance object; ``image_ids`` maps Image names to AMI ids and
    ``zone`` is where an instance not placed yet is headed (its spec's zone, else the default)."""
    meta = obj["metadata"]
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    addresses = [str(a) for a in status.get("addresses") or []]
    labels = meta.get("labels") or {}
    view: dict[str, Any] = {
        "InstanceId": ids.instance_id(obj),
        "ImageId": image_ids.get(str(spec.get("image")), ""),
        "State": states.of_instance(obj).as_output(),
        "PrivateDnsName": str(spec.get("hostname") or meta["name"]),
        "PublicDnsName": "",
        "StateTransitionReason": "",
        "AmiLaunchIndex": _launch_index(labels),
        "InstanceType": str(spec.get("flavor") or ""),
        "LaunchTime": timestamp(status.get("launchedAt"))
        or timestamp(meta.get("creationTimestamp")),
        "Placement": {
            "AvailabilityZone": str(
                status.get("availabilityZone") or spec.get("availabilityZone") or zone
            ),
            "Tenancy": "default",
        },
        "Monitoring": {"State": "disabled"},
        "Architecture": _DEFAULT_ARCHITECTURE,
        "RootDeviceType": "instance-store",
        "VirtualizationType": "hvm",
        "Hypervisor": "xen",  # EC2's enumeration has no kvm; the SDKs expect one of its values.
        "ClientToken": str((meta.get("annotations") or {}).get(ids.CLIENT_TOKEN_ANNOTATION, "")),
        "EbsOptimized": False,
    }
    if addresses:
        view["PrivateIpAddress"] = addresses[0]
    key_name = (meta.get("annotations") or {}).get(key_pairs.KEY_NAME_ANNOTATION)
    if key_name:
        view["KeyName"] = str(key_name)
    tagged = tags.of_object(obj)
    if tagged:
        view["Tags"] = tags.as_output(tagged)
    reason = states.state_reason(obj)
    if reason is not None:
        view["StateReason"] = reason
        view["StateTransitionReason"] = reason["Message"]
    return view


def _launch_index(labels: dict[str, Any]) -> int:
    raw = labels.get(ids.LAUNCH_INDEX_LABEL)
    return int(raw) if isinstance(raw, str) and raw.isdigit() else 0


def instance_type(flavor: dict[str, Any]) -> dict[str, Any]:
    """The EC2 InstanceTypeInfo of a Flavor."""
    spec = flavor.get("spec") or {}
    vcpus = int(spec.get("vcpus") or 0)
    disk_gib = int(spec.get("diskGiB") or 0)
    return {
        "InstanceType": flavor["metadata"]["name"],
        "CurrentGeneration": True,
        "FreeTierEligible": False,
        "SupportedUsageClasses": ["on-demand"],
        "SupportedRootDeviceTypes": ["instance-store"],
        "SupportedVirtualizationTypes": ["hvm"],
        "BareMetal": False,
        "ProcessorInfo": {"SupportedArchitectures": [_DEFAULT_ARCHITECTURE]},
        "VCpuInfo": {"DefaultVCpus": vcpus, "DefaultCores": vcpus, "DefaultThreadsPerCore": 1},
        "MemoryInfo": {"SizeInMiB": int(spec.get("memoryMiB") or 0)},
        "InstanceStorageSupported": True,
        "InstanceStorageInfo": {
            "TotalSizeInGB": disk_gib,
            "Disks": [{"SizeInGB": disk_gib, "Count": 1, "Type": "ssd"}],
        },
        "HibernationSupported": False,
        "BurstablePerformanceSupported": False,
        "AutoRecoverySupported": False,
    }


def image(obj: dict[str, Any]) -> dict[str, Any]:
    """The EC2 Image (AMI) of an Image object: available to every namespace."""
    meta = obj["metadata"]
    spec = obj.get("spec") or {}
    return _ami(
        ids.image_id(obj),
        meta["name"],
        str((spec.get("source") or {}).get("url") or meta["name"]),
        "available",
        meta.get("creationTimestamp"),
        spec,
        public=True,
    )


#: The InstanceSnapshot phases of an image still being made.
_MAKING = (None, "", "Pending", "InProgress")
IMAGE_PENDING = "pending"
IMAGE_FAILED = "failed"


def snapshot_state(snapshot: dict[str, Any]) -> str | None:
    """The EC2 state of the image an InstanceSnapshot makes: ``pending`` while it is made,
    ``failed``; None once it has Succeeded (its Image is what shows)."""
    phase = (snapshot.get("status") or {}).get("phase")
    if phase in _MAKING:
        return IMAGE_PENDING
    return IMAGE_FAILED if phase == "Failed" else None


def snapshot_image(snapshot: dict[str, Any]) -> dict[str, Any] | None:
    """The EC2 Image an InstanceSnapshot is making (``pending``) or failed to make
    (``failed``, with its Ready condition's reason and message as StateReason); None once it
    has Succeeded, when its Image is what shows (or, the Image deleted, nothing)."""
    meta = snapshot["metadata"]
    spec = snapshot.get("spec") or {}
    status = snapshot.get("status") or {}
    state = snapshot_state(snapshot)
    if state is None:
        return None
    name = str(spec.get("imageName") or meta["name"])
    view = _ami(
        ids.snapshot_image_id(snapshot),
        name,
        name,
        state,
        meta.get("creationTimestamp"),
        spec,
        public=False,
    )
    if state == IMAGE_FAILED:
        ready = next(
            (
                c
                for c in status.get("conditions") or []
                if isinstance(c, dict) and c.get("type") == "Ready"
            ),
            {},
        )
        view["StateReason"] = {
            "Code": str(ready.get("reason") or "Failed"),
            "Message": str(status.get("message") or ready.get("message") or "the snapshot failed"),
        }
    return view


def _ami(
    image_id: str,
    name: str,
    location: str,
    state: str,
    created_at: Any,
    spec: dict[str, Any],
    *,
    public: bool,
) -> dict[str, Any]:
    created = timestamp(created_at)
    return {
        "ImageId": image_id,
        "Name": name,
        "ImageLocation": location,
        "State": state,
        "OwnerId": "kubenova",
        "CreationDate": created.strftime("%Y-%m-%dT%H:%M:%S.000Z") if created else None,
        "Public": public,
        "Architecture": str(spec.get("architecture") or _DEFAULT_ARCHITECTURE),
        "ImageType": "machine",
        "RootDeviceType": "instance-store",
        "VirtualizationType": "hvm",
        "Hypervisor": "xen",
        "Description": str(spec.get("description") or ""),
    }
