"""The subresource API of Instances: an aggregated API server behind the kube-apiserver.

The group ``subresources.compute.kubenova.io/v1`` (an APIService) serves the console parts of
nova-api as subresources of an Instance, as KubeVirt's virt-api does for its VMs:
``instances/consoleurl``, ``instances/vnc``, ``instances/console`` and
``instances/consolelog``. The kube-apiserver authenticates the caller and authorizes the
subresource with RBAC (``create`` on ``instances/consoleurl``, ``get`` on the others), then
proxies the request here with its front-proxy client certificate and the caller's name in
``X-Remote-User``/``X-Remote-Group``; this server believes those headers only from a client
that presented that certificate (:mod:`kubenova.subresources.requestheader`).
"""
