"""The local stack's database and broker URLs, for tests run without hack/lib/env.sh.

The operator has no default database URL and no default broker password (a URL carries a
password, which has no place in shipped code). `make test` sources hack/lib/env.sh, which
exports ``KUBENOVA_DB_URL`` and ``KUBENOVA_AMQP_URL``; a pytest started by hand falls back to
the same values here, the development stack's.
"""

from __future__ import annotations

import os

#: What hack/lib/env.sh exports when none of its KUBENOVA_DB_* variables is set.
LOCAL_DB_URL = "mysql+pymysql://kubenova:kubenova-dev@127.0.0.1:3306/nova?charset=utf8mb4"


def db_url() -> str:
    """``KUBENOVA_DB_URL`` if set, else the local stack's."""
    return os.environ.get("KUBENOVA_DB_URL") or LOCAL_DB_URL


#: What hack/lib/env.sh exports as KUBENOVA_AMQP_URL when none of its KUBENOVA_AMQP_* is set.
LOCAL_AMQP_URL = "amqp://kubenova-operator:kubenova-dev@127.0.0.1:5672/kubenova"


def amqp_url() -> str:
    """``KUBENOVA_AMQP_URL`` if set, else the local stack's."""
    return os.environ.get("KUBENOVA_AMQP_URL") or LOCAL_AMQP_URL
