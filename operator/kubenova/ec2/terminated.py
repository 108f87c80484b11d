"""Terminated instances, shown for a while after their Instance object is gone, as EC2 shows
one for about an hour (so that boto3's ``instance_terminated`` waiter sees it terminated).

The Instance object is deleted once its guest is; what is left is the database's soft-deleted
record (``kubenova.db.deleted_instances``), read here, never written. Its EC2 id is derived
from its uuid, the Instance object's uid, exactly as the live instance's was; its reservation
and launch index come from its name when RunInstances made it (``ec2-<17 hex>-<index>``).
Without a database (no ``KUBENOVA_DB_URL``) there is nothing to read and none are shown.
"""

from __future__ import annotations

import datetime
import logging
import re
from typing import Any

from sqlalchemy import exc as sa_exc

from kubenova.db import deleted_instances
from kubenova.db import engine as db_engine
from kubenova.ec2 import errors, ids, settings, states

LOG = logging.getLogger(__name__)

#: The most terminated instances a request reads: a bound on one namespace's churn.
MAX_SHOWN = 1000
_RUN_INSTANCES_NAME = re.compile(r"^ec2-(?P<digits>[0-9a-f]{17})-(?P<index>[0-9]+)$")

Record = deleted_instances.DeletedInstance


class RecentlyTerminated:
    """The namespace's instances deleted within the last ``visible_s`` seconds."""

    def __init__(
        self,
        session_factory: db_engine.SessionFactory | None = None,
        visible_s: int = settings.DEFAULT_TERMINATED_VISIBLE_S,
    ) -> None:
        self._session_factory = session_factory
        self._visible_s = visible_s

    def in_namespace(self, namespace: str) -> list[Record]:
        if self._session_factory is None or self._visible_s <= 0:
            return []
        since = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=self._visible_s)
        try:
            with self._session_factory() as session:
                return deleted_instances.recently_deleted(
                    session, namespace, since, limit=MAX_SHOWN
                )
        except sa_exc.SQLAlchemyError as failed:
            LOG.warning("the database did not answer: %s", failed)
            raise errors.Ec2Error(
                errors.INTERNAL_ERROR, "The database did not answer; try again."
            ) from None


def instance_id(record: Record) -> str:
    return ids.derive(ids.INSTANCE_PREFIX, record.uuid)


def reservation_id(record: Record) -> str:
    """The reservation RunInstances made it in (its name says), else one of its own."""
    match = _RUN_INSTANCES_NAME.match(record.name)
    if match:
        return ids.RESERVATION_PREFIX + match.group("digits")
    return ids.derive(ids.RESERVATION_PREFIX, record.uuid)


def order_key(record: Record) -> tuple[str, str]:
    """Its place among the live Instances in the order of pages (``instance_filters``): its
    record was made as its object was, so its creation time stands for the object's. It is
    never earlier than the object's, so an instance terminated between two pages may show on
    both, never on neither."""
    return (_rfc3339(record.created_at), record.name)


def _rfc3339(moment: datetime.datetime) -> str:
    # The kube-apiserver's creationTimestamp form, so the two sort together.
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def view(record: Record, image_ids: dict[str, str], zone: str) -> dict[str, Any]:
    """The EC2 Instance of a deleted record: terminated (48), by its user, as EC2 shows one."""
    match = _RUN_INSTANCES_NAME.match(record.name)
    deleted = record.deleted_at.astimezone(datetime.UTC)
    return {
        "InstanceId": instance_id(record),
        "ImageId": image_ids.get(record.image_name, ""),
        "State": states.TERMINATED.as_output(),
        # A terminated instance has no name or address left on EC2 either.
        "PrivateDnsName": "",
        "PublicDnsName": "",
        "StateTransitionReason": f"User initiated ({deleted:%Y-%m-%d %H:%M:%S} GMT)",
        "StateReason": {
            "Code": "Client.UserInitiatedShutdown",
            "Message": "Client.UserInitiatedShutdown: User initiated shutdown",
        },
        "AmiLaunchIndex": int(match.group("index")) if match else 0,
        "InstanceType": record.flavor_name,
        "LaunchTime": record.launched_at or record.created_at,
        "Placement": {"AvailabilityZone": record.availability_zone or zone, "Tenancy": "default"},
        "Monitoring": {"State": "disabled"},
        "Architecture": "x86_64",
        "RootDeviceType": "instance-store",
        "VirtualizationType": "hvm",
        "Hypervisor": "xen",
        "ClientToken": "",
        "EbsOptimized": False,
    }


def incorrect_state(instance: str) -> errors.Ec2Error:
    """The refusal of an action on a terminated instance: there is nothing left to act on."""
    return errors.Ec2Error(
        errors.INCORRECT_INSTANCE_STATE,
        f"The instance '{instance}' is terminated: it is not in a state from which it can be"
        " acted on.",
    )
