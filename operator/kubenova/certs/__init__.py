"""Kubenova's certificates (Nova's nova-cert): a CA of its own, kept in the cluster, and the
serving certificates it issues to Kubenova's TLS endpoints.

``authority`` makes and signs (``issue_ca``, ``issue_server_cert``); ``store`` keeps the CA in
a Secret and publishes its certificate in a ConfigMap (``ensure_ca``).
"""
