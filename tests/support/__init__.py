"""Fakes shared by the unit and integration tests, one of each.

* :class:`FakeClock` (``clock.py``): time that moves only when a test or the code under
  test's waiting moves it.
* :class:`RecordingKube` (``kube.py``): the ``KubeClient`` methods the operator calls, over
  objects held in memory, every call counted.
* :class:`RecordingCaster` (``messaging.py``): stands in for the publisher under the rpcapi
  stubs and records every cast.
"""

from tests.support.clock import EPOCH, FakeClock
from tests.support.kube import NAMESPACE, RecordingKube, merge_patch
from tests.support.messaging import Cast, RecordingCaster

__all__ = [
    "EPOCH",
    "NAMESPACE",
    "Cast",
    "FakeClock",
    "RecordingCaster",
    "RecordingKube",
    "merge_patch",
]
