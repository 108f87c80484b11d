"""The Kubenova node-agent: plays nova-compute on one hypervisor host.

It consumes its host's queue, drives the local hypervisor through a virt driver and
reports back to the conductor. It never touches the database (checked by
import-linter, see pyproject.toml).
"""
