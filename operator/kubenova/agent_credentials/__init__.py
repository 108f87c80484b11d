"""Each hypervisor node's agent gets its own RabbitMQ identity, and only that node's agent.

Every agent pod of the DaemonSet runs as the same ServiceAccount, so RBAC alone cannot give
one node's agent its own Secret. Instead the agent proves which node it runs on: it sends its
projected ServiceAccount token (audience ``kubenova-operator``) to the operator, which has the
apiserver review it and takes the node from the review (the apiserver writes the node of a
pod-bound token into ``user.extra``), never from anything the caller says. The operator then
answers with that node's own AMQP URL, minting its RabbitMQ user on first use.

Modules, lowest first:

* ``settings``: the environment.
* ``decision``: a TokenReview's answer -> the node, or a refusal with its HTTP status.
* ``rabbitmq_admin``: RabbitMQ's management HTTP API, and the permissions an agent's user gets.
* ``minter``: one node's user and its Secret ``kubenova-agent-<node>``: ensure, revoke, sweep.
* ``exchange``: one request, from its Authorization header to the answer.
* ``server``: the HTTPS endpoint ``POST /agent-credentials`` (standard library, a thread).
* ``janitor``: revokes a node's user when its Node is deleted or stops being a hypervisor.
* ``service``: the entry point: every operator replica serves the exchange; the one running
  kopf also runs the janitor.
"""
