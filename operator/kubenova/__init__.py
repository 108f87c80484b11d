"""Kubenova: OpenStack Nova's architecture for virtual machines on Kubernetes."""

__version__ = "0.1.0"
