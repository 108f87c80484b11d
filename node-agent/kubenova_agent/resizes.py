"""The steps of a resize this host is asked for (contract 1.4): which driver call each message
means, and the one ``migration_step_finished`` each ends with (:func:`run`, which the steps of
a live migration, :mod:`kubenova_agent.live_migrations`, end with too).

``resize_instance`` and ``finish_revert_resize`` / ``confirm_resize`` run on the source,
``finish_resize`` and ``revert_resize`` on the destination (:mod:`kubenova_agent.virt.migration`
says what each driver call does). Whatever the driver raises is the step's ``Error``, reported
rather than raised: a message that failed the same way on every delivery would only go round,
and the conductor decides what a failed step means (the guest stays, or comes back, where it
was).
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
from collections.abc import Callable
from typing import Literal

from kubenova.rpc import conductor_rpcapi
from kubenova.rpc import migration_payloads as mp
from kubenova_agent import exceptions, operations
from kubenova_agent.virt import driver as virt_driver
from kubenova_agent.virt.migration import MigrationResult, MigrationTarget
from kubenova_agent.virt.power_state import PowerState

LOG = logging.getLogger(__name__)

#: Every compute method this module handles.
METHODS = frozenset(
    {"resize_instance", "finish_resize", "confirm_resize", "revert_resize", "finish_revert_resize"}
)
_MESSAGE_MAX = 4096


@dataclasses.dataclass(frozen=True)
class Step:
    """One step asked of this host."""

    name: mp.MigrationStep
    instance_uuid: str
    migration_uuid: str
    #: The driver call; a live migration returns libvirt's figures for it.
    run: Callable[[virt_driver.ComputeDriver], MigrationResult | None]


def from_message(method: str, args: dict[str, object]) -> Step:
    """The step a message asks for. Raises ``pydantic.ValidationError`` for malformed
    arguments, ``KeyError`` for a method that is none of :data:`METHODS`."""
    if method == "resize_instance":
        resize = mp.ResizeInstance.model_validate(args)
        ref = resize.migration
        target = None if ref.same_host else MigrationTarget(ref.dest_host, ref.dest_uri or "")

        def power_off_and_copy(driver: virt_driver.ComputeDriver) -> None:
            if target is not None and not target.uri:
                raise exceptions.MigrationFailed(
                    resize.instance_uuid,
                    f"host {ref.dest_host} gives no migration URI: it cannot take instances",
                )
            driver.migrate_disk_and_power_off(
                resize.instance_uuid, target, resize.shutdown_timeout_s
            )

        return Step("resize_instance", resize.instance_uuid, ref.uuid, power_off_and_copy)
    if method == "finish_resize":
        finish = mp.FinishResize.model_validate(args)
        return Step(
            "finish_resize",
            finish.instance.uuid,
            finish.migration.uuid,
            lambda driver: driver.finish_migration(
                operations.instance_spec(finish.instance),
                same_host=finish.migration.same_host,
                power_on=finish.power_on,
            ),
        )
    if method == "confirm_resize":
        confirm = mp.ConfirmResize.model_validate(args)
        return Step(
            "confirm_resize",
            confirm.instance_uuid,
            confirm.migration.uuid,
            lambda driver: driver.confirm_migration(
                confirm.instance_uuid, same_host=confirm.migration.same_host
            ),
        )
    if method == "revert_resize":
        revert = mp.RevertResize.model_validate(args)
        return Step(
            "revert_resize",
            revert.instance_uuid,
            revert.migration.uuid,
            lambda driver: driver.revert_migration_at_destination(
                revert.instance_uuid, same_host=revert.migration.same_host
            ),
        )
    if method == "finish_revert_resize":
        back = mp.FinishRevertResize.model_validate(args)
        return Step(
            "finish_revert_resize",
            back.instance.uuid,
            back.migration.uuid,
            lambda driver: driver.finish_revert_migration(
                operations.instance_spec(back.instance), power_on=back.power_on
            ),
        )
    raise KeyError(method)


def run(
    step: Step,
    host: str,
    driver: virt_driver.ComputeDriver,
    conductor: conductor_rpcapi.ConductorAPI,
    request_id: str,
) -> None:
    """Carry out ``step`` and report it; the report carries the instance's state on this
    host afterwards (none, once its guest has left)."""
    uuid = step.instance_uuid
    extra = {"instance_uuid": uuid}
    started_at = datetime.datetime.now(datetime.UTC)
    result: Literal["Success", "Error"] = "Success"
    note: str | None = None
    figures: MigrationResult | None = None
    try:
        figures = step.run(driver)
    except (exceptions.AgentError, ValueError) as exc:
        result, note = "Error", str(exc)
        LOG.warning("instance %s: %s failed: %s", uuid, step.name, exc, extra=extra)
    except Exception as exc:
        result, note = "Error", f"{type(exc).__name__}: {exc}"
        LOG.exception("instance %s: %s failed", uuid, step.name, extra=extra)
    finished_at = datetime.datetime.now(datetime.UTC)
    try:
        state = driver.get_instance_state(uuid)
        vm, power, addresses = operations.vm_state(state), state.power_state.value, state.addresses
    except exceptions.InstanceNotFound:
        vm, power, addresses = "stopped", PowerState.NOSTATE.value, ()
    conductor.migration_step_finished(
        mp.MigrationStepFinished(
            instance_uuid=uuid,
            host=host,
            migration_uuid=step.migration_uuid,
            step=step.name,
            result=result,
            message=note[:_MESSAGE_MAX] if note else None,
            started_at=started_at,
            finished_at=finished_at,
            vm_state=vm,
            power_state=power,
            addresses=tuple(addresses),
            total_s=figures.total_s if figures is not None else None,
            downtime_ms=figures.downtime_ms if figures is not None else None,
        ),
        request_id,
    )
    LOG.info(
        "instance %s: %s finished: %s%s",
        uuid,
        step.name,
        result,
        f" ({note})" if note else "",
        extra=extra,
    )
