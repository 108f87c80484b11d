"""The kopf handlers: thin adapters from Kubernetes events to the api layer.

With ``diffbase`` (where kopf remembers what it handled), the only module that imports
kopf. Each handler reads the object, calls the api layer and turns its answer into
status or a retry.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf

from kubenova import log
from kubenova.agent_credentials import service as agent_credentials
from kubenova.api import diffbase, instance_api
from kubenova.api.runtime import Runtime
from kubenova.certs import renewal
from kubenova.conductor import periodic
from kubenova.console import auth as console_auth
from kubenova.exception import NotReady
from kubenova.k8s import resources
from kubenova.k8s.client import KubeClient
from kubenova.rpc import envelope

LOG = logging.getLogger(__name__)

# A retry interval short enough that a Flavor applied after its Instance is noticed
# quickly, long enough not to busy-loop on a cluster with no room.
NOT_READY_RETRY_S = 5

# How long a delete handler waits for the conductor's notice that the record is gone before
# kopf tries again: long enough for a host busy with a burst of terminates, short enough that
# a notice given by another replica (or lost) costs little.
GONE_WAIT_S = 30.0

# The create handler's id in kopf's progress records; the Instance diff base checks them.
CREATE_INSTANCE_ID = "create_instance"

# The certificate renewal's periodic task in kopf's memo, stopped at cleanup.
CERTIFICATES_MEMO_KEY = "certificates"
# The console token purge's periodic task in kopf's memo, stopped at cleanup.
CONSOLE_TOKEN_PURGE_MEMO_KEY = "console-token-purge"
# How soon a purge that found no runtime yet (the startup handler failed and is retried) asks
# again.
RUNTIME_WAIT_S = 5


def _request(body: kopf.Body) -> instance_api.InstanceRequest:
    meta, status = body.get("metadata", {}), body.get("status", {}) or {}
    return instance_api.InstanceRequest(
        uid=meta["uid"],
        name=meta["name"],
        namespace=meta["namespace"],
        generation=int(meta.get("generation", 1)),
        spec=dict(body.get("spec", {})),
        status=dict(status),
    )


def _scheduled_message(request: instance_api.InstanceRequest) -> str | None:
    for condition in request.conditions or []:
        if condition.get("type") == "Scheduled":
            return str(condition.get("message"))
    return None


class IndexedCatalog:
    """Flavors and Images from kopf's watch-fed indexes, so a create costs no GETs.

    An object created a moment before the Instance may not be indexed yet: a miss asks the
    apiserver before the instance is declared Pending for want of it.
    """

    def __init__(
        self, flavors: kopf.Index[str, Any], images: kopf.Index[str, Any], kube: KubeClient
    ) -> None:
        self._flavors = flavors
        self._images = images
        self._kube = kube

    @staticmethod
    def _one(index: kopf.Index[str, Any], name: str) -> dict[str, Any] | None:
        for obj in index.get(name, ()):
            return dict(obj)
        return None

    def get_flavor(self, name: str) -> dict[str, Any] | None:
        found = self._one(self._flavors, name)
        return found if found is not None else self._kube.get_flavor(name)

    def get_image(self, name: str) -> dict[str, Any] | None:
        found = self._one(self._images, name)
        return found if found is not None else self._kube.get_image(name)


@kopf.index(resources.GROUP, resources.VERSION, resources.FLAVORS)
def flavors_by_name(name: str, spec: kopf.Spec, **_: Any) -> dict[str, dict[str, Any]]:
    """Flavor name -> {"spec": ...}, kept current by kopf's watch."""
    return {name: {"spec": dict(spec)}}


@kopf.index(resources.GROUP, resources.VERSION, resources.IMAGES)
def images_by_name(name: str, spec: kopf.Spec, **_: Any) -> dict[str, dict[str, Any]]:
    """Image name -> {"spec": ...}, kept current by kopf's watch."""
    return {name: {"spec": dict(spec)}}


@kopf.on.startup()
def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Wire the runtime (database, bus, conductor consumer) once per process."""
    settings.persistence.finalizer = resources.FINALIZER
    settings.persistence.diffbase_storage = diffbase.InstanceDerivedDiffBase(
        settings.persistence.progress_storage, create_handler_id=CREATE_INSTANCE_ID
    )
    # kopf would post an Event for every retry; the handlers post one per new explanation.
    settings.posting.level = logging.CRITICAL
    settings.watching.server_timeout = 300
    runtime = Runtime.from_env()
    settings.execution.max_workers = runtime.settings.api_workers
    runtime.start()
    memo["runtime"] = runtime


@kopf.on.startup(id="agent-credentials-janitor")
def start_agent_credentials_janitor(memo: kopf.Memo, **_: Any) -> None:
    """Where kopf runs, revoke the RabbitMQ users of nodes that leave the hypervisors. The
    exchange itself is served by every replica, leader or not (``kubenova.cmd.operator``
    puts it in the memo; absent when it is off); one watcher of the Nodes is enough."""
    credentials: agent_credentials.AgentCredentials | None = memo.get(agent_credentials.MEMO_KEY)
    if credentials is not None:
        credentials.start_janitor()


@kopf.on.startup(id="certificates")
def start_certificate_renewal(memo: kopf.Memo, **_: Any) -> None:
    """Where kopf runs, keep the CA, the servers' certificates and the APIServices' caBundle
    (``kubenova.certs.renewal``), one pass now and one per interval; off when unconfigured."""
    renewer = renewal.Renewer.from_env()
    if renewer is None:
        return
    tasks = periodic.PeriodicTasks(
        [
            periodic.PeriodicTask(
                "renew_certificates", renewer.settings.check_interval_s, renewer.run_once
            )
        ]
    )
    tasks.start()
    memo[CERTIFICATES_MEMO_KEY] = tasks


@kopf.on.startup(id="console-token-purge")
def start_console_token_purge(memo: kopf.Memo, **_: Any) -> None:
    """Where kopf runs (the active replica: one purger is enough), delete expired console
    tokens every ``PURGE_INTERVAL_S``, in short batches (``kubenova.console.auth``)."""
    runtime: Runtime | None = memo.get("runtime")
    if runtime is None:
        # The startup handler failed (RabbitMQ away) and kopf runs it again; so this one.
        raise kopf.TemporaryError("waiting for the runtime to start", delay=RUNTIME_WAIT_S)
    session_factory = runtime.session_factory
    tasks = periodic.PeriodicTasks(
        [
            periodic.PeriodicTask(
                "purge_console_tokens",
                console_auth.PURGE_INTERVAL_S,
                lambda: console_auth.purge_expired(session_factory),
            )
        ]
    )
    tasks.start()
    memo[CONSOLE_TOKEN_PURGE_MEMO_KEY] = tasks


@kopf.on.cleanup()
def cleanup(memo: kopf.Memo, **_: Any) -> None:
    for key in (CERTIFICATES_MEMO_KEY, CONSOLE_TOKEN_PURGE_MEMO_KEY):
        tasks: periodic.PeriodicTasks | None = memo.get(key)
        if tasks is not None:
            tasks.stop()
    # Only the janitor: the exchange outlives kopf, until the process ends.
    credentials: agent_credentials.AgentCredentials | None = memo.get(agent_credentials.MEMO_KEY)
    if credentials is not None:
        credentials.stop_janitor()
    runtime: Runtime | None = memo.get("runtime")
    if runtime is not None:
        runtime.stop()


@kopf.on.resume(resources.GROUP, resources.VERSION, resources.INSTANCES, id=CREATE_INSTANCE_ID)
@kopf.on.create(resources.GROUP, resources.VERSION, resources.INSTANCES, id=CREATE_INSTANCE_ID)
def create_instance(body: kopf.Body, memo: kopf.Memo, patch: kopf.Patch, **kwargs: Any) -> None:
    """Schedule and build; stay Pending (and retry) while something is missing.

    kopf passes the indexes by their names (``flavors_by_name``, ``images_by_name``).
    """
    runtime: Runtime = memo["runtime"]
    catalog = IndexedCatalog(kwargs["flavors_by_name"], kwargs["images_by_name"], runtime.kube)
    request = _request(body)
    request_id = (body.get("status") or {}).get("requestId") or envelope.new_request_id()
    with log.request_context(request_id):
        try:
            runtime.instances.create(request, request_id, catalog)
        except NotReady as exc:
            patch.status.update(runtime.instances.pending_status(request, exc))
            patch.status["requestId"] = request_id
            if _scheduled_message(request) != str(exc):
                # One Event per new explanation, not one per retry.
                runtime.kube.post_event(dict(body), reason=exc.reason, message=str(exc))
            raise kopf.TemporaryError(str(exc), delay=NOT_READY_RETRY_S) from exc


def _spec_is_newer(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> bool:
    """Whether a created Instance's ``metadata.generation`` is newer than its
    ``status.observedGeneration``: a test on the object alone, made by kopf before it invokes
    the handler, so the events of a burst of creates (none of which is newer) cost neither a
    handler call nor its log line."""
    meta = body.get("metadata", {})
    if event.get("type") == "DELETED" or meta.get("deletionTimestamp"):
        return False
    if not diffbase.create_handled(body):
        return False
    observed = (body.get("status") or {}).get("observedGeneration")
    return isinstance(observed, int) and int(meta.get("generation", 0)) > observed


@kopf.on.event(resources.GROUP, resources.VERSION, resources.INSTANCES, when=_spec_is_newer)
async def instance_spec_changed(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    """Apply a changed spec (image, power state, reboot request) of a created Instance.

    Instances have no update handlers (see ``diffbase``): every watch event of one is seen
    here, and only those whose spec is newer than their status says reach the handler (see
    ``_spec_is_newer``). A change found waits, on the conductor's side, for the task under way
    to end; the status written then brings another event here.
    """
    runtime: Runtime = memo["runtime"]
    request = _request(body)
    request_id = envelope.new_request_id()
    catalog = IndexedCatalog(kwargs["flavors_by_name"], kwargs["images_by_name"], runtime.kube)

    def apply() -> None:
        with log.request_context(request_id):
            runtime.instances.apply_spec(request, request_id, catalog)

    await asyncio.get_running_loop().run_in_executor(None, apply)


@kopf.on.delete(resources.GROUP, resources.VERSION, resources.INSTANCES)
async def delete_instance(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Terminate on the host; the finalizer stays until the record is gone.

    Waits for the conductor's notice that the record is gone (``gone_notices``) rather than
    asking again every second; without one in ``GONE_WAIT_S``, kopf tries again later."""
    runtime: Runtime = memo["runtime"]
    request = _request(body)
    request_id = envelope.new_request_id()

    def delete() -> bool:
        with log.request_context(request_id):
            return runtime.instances.delete(request, request_id)

    loop = asyncio.get_running_loop()
    with runtime.gone.expect(request.uid) as notice:
        if await loop.run_in_executor(None, delete):
            return
        if not await notice.wait(GONE_WAIT_S):
            raise kopf.TemporaryError("waiting for the host to terminate the instance", delay=1)
    if not await loop.run_in_executor(None, delete):
        raise kopf.TemporaryError("waiting for the host to terminate the instance", delay=1)


@kopf.on.resume(resources.GROUP, resources.VERSION, resources.HYPERVISORS)
@kopf.on.create(resources.GROUP, resources.VERSION, resources.HYPERVISORS)
@kopf.on.update(resources.GROUP, resources.VERSION, resources.HYPERVISORS, field="spec")
@kopf.on.update(resources.GROUP, resources.VERSION, resources.HYPERVISORS, field="metadata.labels")
def hypervisor_changed(
    name: str, labels: kopf.Labels, spec: kopf.Spec, memo: kopf.Memo, **_: Any
) -> None:
    """Disabling a host keeps new instances away at once (running ones stay), and new
    allocation ratios hold every later claim on it."""
    runtime: Runtime = memo["runtime"]
    runtime.conductor.api.hypervisor_changed(name, dict(labels), dict(spec))


@kopf.on.delete(resources.GROUP, resources.VERSION, resources.HYPERVISORS)
def hypervisor_deleted(name: str, memo: kopf.Memo, **_: Any) -> None:
    """Deleting a Hypervisor that is down and empty forgets the host (Nova's service delete).

    Not optional: kopf's finalizer makes sure the operator sees every deletion, even one made
    while it was down. The handler never blocks it: a host it will not forget is logged.
    """
    runtime: Runtime = memo["runtime"]
    runtime.conductor.api.hypervisor_deleted(name)
