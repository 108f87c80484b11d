"""The conductor's parts, wired once: the projector, the road of builds, the reports of
instances and hypervisors, the server groups' status, the audit, and their doors (the
queue's dispatcher and the api layer's facade)."""

from __future__ import annotations

import dataclasses

from kubenova.compute import states
from kubenova.conductor import audit
from kubenova.conductor.action_history import ActionHistory
from kubenova.conductor.api import ConductorAPI
from kubenova.conductor.compute_tasks import ComputeTaskManager
from kubenova.conductor.create_finisher import CreateFinisher
from kubenova.conductor.evacuate import Evacuations
from kubenova.conductor.hypervisors import Hypervisors
from kubenova.conductor.instance_migrations import InstanceMigrations, MigrationObjects
from kubenova.conductor.instance_operations import InstanceOperations
from kubenova.conductor.instance_reports import InstanceReports
from kubenova.conductor.live_migration import LiveMigrations
from kubenova.conductor.manager import ConductorManager
from kubenova.conductor.orphans import OrphanSweeper
from kubenova.conductor.projector import InstanceProjector
from kubenova.conductor.resize import Resizes
from kubenova.conductor.server_group_status import ServerGroupStatus
from kubenova.conductor.snapshot_requests import SnapshotObjects, SnapshotSettings
from kubenova.conductor.snapshots import Snapshots
from kubenova.conductor.stale_operations import StaleOperations
from kubenova.config import OperatorSettings
from kubenova.db import engine as db_engine
from kubenova.k8s import migrations as k8s_migrations
from kubenova.k8s import snapshots as k8s_snapshots
from kubenova.k8s.client import KubeClient
from kubenova.rpc import compute_rpcapi
from kubenova.scheduler.host_manager import HostManager
from kubenova.scheduler.manager import SchedulerManager


@dataclasses.dataclass(frozen=True)
class Conductor:
    """The conductor of one operator process: ``manager`` handles the ``conductor`` queue,
    ``api`` is the api layer's door, the periodic tasks run ``hypervisors``,
    ``server_groups``, ``auditor``, ``orphans`` and ``stale`` (operations), and the runtime
    starts and stops ``projector`` and ``history``."""

    projector: InstanceProjector
    history: ActionHistory
    #: Ends first-try create actions in batches (started and stopped with the history).
    creates: CreateFinisher
    tasks: ComputeTaskManager
    operations: InstanceOperations
    resizes: Resizes
    #: InstanceMigrations: started by the api layer's handler, advanced by the resizes.
    migrations: InstanceMigrations
    #: Live migrations: started by an InstanceMigration of type Live, advanced from the queue.
    live: LiveMigrations
    stale: StaleOperations
    instances: InstanceReports
    hypervisors: Hypervisors
    server_groups: ServerGroupStatus
    auditor: audit.HostAuditor
    orphans: OrphanSweeper
    manager: ConductorManager
    api: ConductorAPI
    #: InstanceSnapshots: started by the api layer's snapshot handler, finished from the queue.
    snapshots: Snapshots

    @classmethod
    def build(
        cls,
        settings: OperatorSettings,
        session_factory: db_engine.SessionFactory,
        kube: KubeClient,
        compute: compute_rpcapi.ComputeAPI,
        *,
        host_manager: HostManager | None = None,
        snapshot_objects: SnapshotObjects | None = None,
        migration_objects: MigrationObjects | None = None,
    ) -> Conductor:
        """The conductor over the database, the apiserver and the bus, with a scheduler over
        ``host_manager``'s cached view of the hosts (a new one by default)."""
        host_manager = host_manager or HostManager.over_database(session_factory)
        scheduler = SchedulerManager.from_settings(settings, host_manager)
        projector = InstanceProjector(
            session_factory,
            kube,
            service_down_time_s=settings.service_down_time_s,
            building_status_delay_s=settings.building_status_delay_s,
            resize_confirm_window_s=settings.resize_confirm_window_s,
        )
        tasks = ComputeTaskManager(settings, session_factory, kube, scheduler, compute, projector)
        history = ActionHistory(kube)
        resizes = Resizes(settings, session_factory, kube, scheduler, compute, projector, history)
        operations = InstanceOperations(
            settings, session_factory, kube, compute, projector, history, resizes
        )
        migrations = InstanceMigrations(
            session_factory,
            migration_objects or k8s_migrations.MigrationObjectsClient(),
            resizes,
            history,
            service_down_time_s=settings.service_down_time_s,
        )
        live = LiveMigrations(
            settings, session_factory, kube, scheduler, compute, projector, history
        )
        migrations.add_live(live)
        # Evacuations: started by an InstanceMigration of type Evacuate, ended by their
        # destination's build report; the hosts they left drop their guests when they return.
        evacuations = Evacuations(
            settings, session_factory, kube, scheduler, compute, projector, history
        )
        migrations.starters["Evacuate"] = evacuations.start
        evacuations.on_migration_changed = migrations.project
        stale = StaleOperations(
            operations,
            {states.MIGRATING: live.recast, states.REBUILD_SPAWNING: evacuations.recast},
        )
        operations.on_finished = stale.forget
        creates = CreateFinisher(session_factory)
        instances = InstanceReports(
            settings, session_factory, compute, projector, tasks, operations, history, creates
        )
        auditor = audit.HostAuditor(session_factory, kube, compute)
        hypervisors = Hypervisors(settings, session_factory, kube, projector, auditor)
        # An administrator's change to a host must not wait for the cached view to expire.
        hypervisors.on_hosts_changed = host_manager.mark_stale
        instances.evacuations = evacuations
        hypervisors.on_report = evacuations.source_reported
        snapshots = Snapshots.build(
            SnapshotSettings.from_env(),
            session_factory,
            snapshot_objects or k8s_snapshots.SnapshotObjectsClient(),
            compute,
            projector,
            history,
            service_down_time_s=settings.service_down_time_s,
        )
        return cls(
            projector=projector,
            history=history,
            creates=creates,
            tasks=tasks,
            operations=operations,
            resizes=resizes,
            migrations=migrations,
            live=live,
            stale=stale,
            instances=instances,
            hypervisors=hypervisors,
            server_groups=ServerGroupStatus(session_factory, kube),
            auditor=auditor,
            orphans=OrphanSweeper(session_factory, kube, tasks, grace_s=settings.audit_interval_s),
            manager=ConductorManager(hypervisors, instances, operations, snapshots, resizes, live),
            api=ConductorAPI(tasks, projector, hypervisors, operations),
            snapshots=snapshots,
        )
