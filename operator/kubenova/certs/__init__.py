r"""Kubenova's certificates (Nova's nova-cert): a CA of its own, kept in the cluster, and the
certificates it issues to Kubenova's TLS endpoints and console hops.

``authority`` makes and signs (``issue_ca``, ``issue_server_cert``, ``issue_leaf``) and sets
the lifetimes; ``console`` issues the host and proxy certificates of the console hop and lays
them out as libvirt's x509 directory expects; ``lifetime`` says when a certificate is due for
renewal (two thirds into its life); ``bundle`` rotates a CA with an overlap, as a trust bundle;
``store`` keeps the CA in a Secret and publishes the bundle in a ConfigMap (``ensure_ca``,
``rotate_if_due``); ``trust_configmaps`` writes the bundle as ``ca.crt`` into ConfigMaps the
chart renders elsewhere (``kube-public/kubenova-ec2-api``); ``renewal`` is the operator's
periodic pass over all of it.

When cert-manager issues instead (``issuer_settings``), the operator makes no CA:
``cert_manager`` has cert-manager sign a signing request through a CertificateRequest (the
hosts' certificates, the exchange's own), and ``trust_sources`` makes the trust bundle of the
CAs in the Secrets cert-manager writes.

Where an administrator looks
----------------------------
The CA Secret (``kubenova-ca`` in the operator's namespace) carries its dates as annotations,
in RFC 3339 UTC: ``kubenova.io/not-after`` (the current CA expires), ``kubenova.io/renew-after``
(it is due for rotation from then on) and, during a rotation's overlap,
``kubenova.io/retiring-ca-trusted-until`` (the replaced CA leaves the bundle then).
``kubectl describe`` shows them, and ``custom-columns`` puts one in a column::

    kubectl -n kubenova describe secret kubenova-ca
    kubectl -n kubenova get secret kubenova-ca \
      -o custom-columns='NOT-AFTER:.metadata.annotations.kubenova\.io/not-after'

(and likewise ``RENEW-AFTER:.metadata.annotations.kubenova\.io/renew-after``).

The certificates a client should trust are the ConfigMap ``kubenova-ca``'s ``ca.crt``
(newest first); ``openssl crl2pkcs7 -nocrl -certfile ca.crt | openssl pkcs7 -print_certs
-noout`` lists them.
"""
