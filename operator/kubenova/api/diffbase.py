"""Where kopf keeps what it last handled, per kind.

kopf remembers the spec it last handled (its "diff base") to tell a new object from a
changed one. By default it writes that into a ``last-handled-configuration`` annotation,
one extra PATCH of the object after the create handler. For an Instance that PATCH was
one of five apiserver writes per instance, and its copy of the spec then rode along in
every later watch event of the object.

Instances have no update handlers: the only thing kopf must know is whether the create
handler has finished. The status the create handler itself writes already says so: it
names a phase past Pending (the instance was claimed, or failed for good). So for
Instances the diff base is *derived* from the object and never stored:

- handled (a phase past Pending, and no kopf retry of the create handler under way):
  the diff base is the object as it is now, so kopf sees no change;
- otherwise: no diff base, so kopf runs (or retries) the create handler.

The status says so only once the conductor has written it, a moment after the create handler
returned. An event of the object in between (a label another client adds right after the
create, as the EC2 API labels an instance with its id) would show kopf an object with no diff
base, and kopf would run the create handler a second time, for nothing but another look at
the database. So kopf's ``store`` after a finished create handler is remembered, by uid, for
as long as the status lags behind: such an object is handled too. A restarted operator has
forgotten it and runs the (idempotent) handler again, as it would on resume anyway.

Every other kind (Hypervisors, whose update handlers need the old labels and spec) keeps
kopf's annotation. An Instance that already carries the annotation keeps using it.

kopf builds the essence it compares (spec, labels, annotations) on every watch event by
deep-copying the whole object, managed fields and status included, and then deleting
most of it; that copy was the largest cost of the operator's event loop. ``build`` here
hands kopf's own ``build`` the object without its status and managed fields, which the
essence never contains (unless a handler watches a field there), so the result is the same
and the copy small. A Hypervisor's managed fields alone are most of its size.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, cast

import kopf

from kubenova.k8s import resources

LOG = logging.getLogger(__name__)

INSTANCE_KIND = "Instance"
#: How many uids of Instances whose create handler finished, status not yet written, are kept:
#: far more than are ever in that moment at once; the oldest go first.
MAX_REMEMBERED = 65536


def create_handled(body: kopf.Body | dict[str, Any]) -> bool:
    """True once an Instance's status shows its create handler got past scheduling."""
    status = body.get("status") or {}
    phase = status.get("phase")
    return bool(phase) and phase != "Pending"


def _starts_with(field: Any, prefix: tuple[str, ...]) -> bool:
    """Whether kopf's field spec (a dotted string or a path) lies under ``prefix``."""
    path = tuple(field.split(".")) if isinstance(field, str) else tuple(field)
    return path[: len(prefix)] == prefix or prefix[: len(path)] == path


class InstanceDerivedDiffBase(kopf.AnnotationsDiffBaseStorage):
    """kopf's annotation diff base, except for Instances, whose diff base is derived.

    ``progress`` is kopf's progress storage and ``create_handler_id`` the id of the
    Instance create handler: while kopf has a retry of that handler recorded (say the
    status was written but the cast to the host failed), the instance is not handled yet.
    """

    def __init__(self, progress: kopf.ProgressStorage, create_handler_id: str) -> None:
        super().__init__()
        self._progress = progress
        self._create_handler_id = kopf.HandlerId(create_handler_id)
        # The essence ``fetch`` just derived, and the body it derived it from: kopf builds the
        # essence of the same body right after fetching (see ``build``).
        self._derived: tuple[kopf.Body, kopf.BodyEssence] | None = None
        # Instances whose create handler kopf finished here, their status not yet past
        # Pending (insertion-ordered, so the oldest can be dropped first).
        self._created: dict[str, None] = {}

    @staticmethod
    def _is_instance(body: kopf.Body) -> bool:
        return body.get("apiVersion") == resources.API_VERSION and body.get("kind") == (
            INSTANCE_KIND
        )

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None
    ) -> kopf.BodyEssence:
        extra = list(extra_fields or ())
        derived, self._derived = self._derived, None
        if derived is not None and derived[0] is body and not extra:
            # kopf asks for the essence of the body whose diff base fetch just derived (the
            # same essence): reuse it. kopf deep-copies both before comparing or keeping them.
            return derived[1]
        # A handler may watch a field of its own choosing (the Hypervisor update handlers
        # watch spec and labels): only what such a field lies under is kept.
        keep_status = any(_starts_with(field, ("status",)) for field in extra)
        keep_managed = any(_starts_with(field, ("metadata", "managedFields")) for field in extra)
        metadata = body.get("metadata") or {}
        slim: dict[str, Any] = {
            key: value
            for key, value in body.items()
            if key != "metadata" and (keep_status or key != "status")
        }
        slim["metadata"] = {
            key: value for key, value in metadata.items() if keep_managed or key != "managedFields"
        }
        return super().build(body=kopf.Body(cast(kopf.RawBody, slim)), extra_fields=extra)

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        try:
            stored = super().fetch(body=body)
        except ValueError as exc:
            # A stored diff base kopf did not write (the annotation set by hand, or by a
            # manifest): as good as none. Raised, it failed every event of the object, so no
            # handler ever ran for it, not even the delete's that holds its finalizer.
            meta = body.get("metadata", {})
            LOG.warning(
                "%s %s/%s: ignoring an unreadable %s annotation (%s)",
                body.get("kind"),
                meta.get("namespace") or "",
                meta.get("name"),
                self.key,
                exc,
            )
            stored = None
        if stored is not None or not self._is_instance(body):
            return stored
        uid = str(body.get("metadata", {}).get("uid") or "")
        if create_handled(body):
            self._created.pop(uid, None)
        elif uid not in self._created:
            return None
        if self._progress.fetch(key=self._create_handler_id, body=body) is not None:
            return None
        essence = self.build(body=body)
        self._derived = (body, essence)
        return essence

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        if not self._is_instance(body):
            super().store(body=body, patch=patch, essence=essence)
            return
        uid = str(body.get("metadata", {}).get("uid") or "")
        if uid and not create_handled(body):
            self._created[uid] = None
            if len(self._created) > MAX_REMEMBERED:
                del self._created[next(iter(self._created))]
