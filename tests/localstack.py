"""The local stack's database URL, for tests run without hack/lib/env.sh.

The operator has no default database URL (a URL carries a password, which has no place in
shipped code). `make test` sources hack/lib/env.sh, which exports ``KUBENOVA_DB_URL``; a
pytest started by hand falls back to the same value here, the development stack's.
"""

from __future__ import annotations

import os

#: What hack/lib/env.sh exports when none of its KUBENOVA_DB_* variables is set.
LOCAL_DB_URL = "mysql+pymysql://kubenova:kubenova-dev@127.0.0.1:3306/nova?charset=utf8mb4"


def db_url() -> str:
    """``KUBENOVA_DB_URL`` if set, else the local stack's."""
    return os.environ.get("KUBENOVA_DB_URL") or LOCAL_DB_URL
