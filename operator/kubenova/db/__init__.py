"""The ``nova`` database: models, migrations, and the operations the control plane performs.

Callers use :mod:`kubenova.db.api` for operations, :mod:`kubenova.db.engine` for engines,
sessions and transactions, and :mod:`kubenova.db.migration` to bring a schema to a revision.
The node-agent never imports this package (an import-linter contract checks it).
"""
