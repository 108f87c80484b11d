"""One EC2 request from its bytes to its answer: parameters, signature, action, XML.

The order matters: the signature is checked before anything is parsed by the action's model,
so an unsigned request learns nothing but that it is unsigned; the action runs with the namespace
of the key that signed it and no other.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from typing import Any
from urllib import parse

import urllib3
from kubernetes.client import exceptions as k8s_exceptions

from kubenova.ec2 import (
    actions_attributes,
    actions_catalog,
    actions_console,
    actions_describe,
    actions_describe_attribute,
    actions_images,
    actions_instances,
    actions_keypairs,
    actions_power,
    actions_status,
    actions_tags,
    auth,
    cluster,
    errors,
    protocol,
    responses,
    terminated,
)
from kubenova.ec2.context import Context

LOG = logging.getLogger(__name__)

Action = Callable[[Context, dict[str, Any]], dict[str, Any]]

ACTIONS: dict[str, Action] = {
    "DescribeRegions": actions_catalog.describe_regions,
    "DescribeAvailabilityZones": actions_catalog.describe_availability_zones,
    "DescribeInstanceTypes": actions_catalog.describe_instance_types,
    "DescribeImages": actions_catalog.describe_images,
    "RunInstances": actions_instances.run_instances,
    "DescribeInstances": actions_describe.describe_instances,
    "TerminateInstances": actions_instances.terminate_instances,
    "DescribeInstanceStatus": actions_status.describe_instance_status,
    "StartInstances": actions_power.start_instances,
    "StopInstances": actions_power.stop_instances,
    "RebootInstances": actions_power.reboot_instances,
    "ModifyInstanceAttribute": actions_attributes.modify_instance_attribute,
    "DescribeInstanceAttribute": actions_describe_attribute.describe_instance_attribute,
    "CreateImage": actions_images.create_image,
    "GetConsoleOutput": actions_console.get_console_output,
    "CreateKeyPair": actions_keypairs.create_key_pair,
    "ImportKeyPair": actions_keypairs.import_key_pair,
    "DescribeKeyPairs": actions_keypairs.describe_key_pairs,
    "DeleteKeyPair": actions_keypairs.delete_key_pair,
    "CreateTags": actions_tags.create_tags,
    "DeleteTags": actions_tags.delete_tags,
    "DescribeTags": actions_tags.describe_tags,
}
#: More parameters than any action of ours needs: a bound on the work a request can ask for.
MAX_PARAMETERS = 1000


@dataclasses.dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    action: str = ""
    namespace: str = ""
    error_code: str = ""


@dataclasses.dataclass(frozen=True)
class Service:
    """What every request is served with."""

    region: str
    endpoint: str
    keys: auth.KeyLookup
    cluster: cluster.Cluster
    terminated: terminated.RecentlyTerminated = dataclasses.field(
        default_factory=terminated.RecentlyTerminated
    )


def handle(service: Service, request: auth.Request, request_id: str) -> Answer:
    """The answer to one request; never raises."""
    action = ""
    namespace = ""
    try:
        params = _parameters(request)
        action = params.get("Action", "")
        key = auth.authenticate(request, service.keys, service.region)
        namespace = key.namespace
        if not action:
            raise errors.missing("Action")
        operation = protocol.operation_model(action)
        version = params.get("Version")
        if version and version != protocol.API_VERSION:
            raise errors.invalid("Version", f"only {protocol.API_VERSION} is served, not {version}")
        implementation = ACTIONS.get(action)
        if implementation is None:
            raise errors.Ec2Error(
                errors.UNSUPPORTED_OPERATION, f"The action {action} is not supported by Kubenova."
            )
        inputs = protocol.parse_params(operation.input_shape, params)
        _check_required(operation.input_shape, inputs)
        if inputs.get("DryRun"):
            raise errors.Ec2Error(
                errors.DRY_RUN_OPERATION, "Request would have succeeded, but DryRun flag is set."
            )
        context = Context(
            namespace,
            service.region,
            service.endpoint,
            service.cluster,
            request_id,
            service.terminated,
        )
        output = implementation(context, inputs)
        return Answer(200, responses.answer(action, output, request_id), action, namespace)
    except errors.Ec2Error as refused:
        return _refusal(refused, request_id, action, namespace)
    except k8s_exceptions.ApiException as failed:
        return _refusal(_from_api(failed), request_id, action, namespace)
    except (urllib3.exceptions.HTTPError, OSError) as failed:
        LOG.warning("%s: the kube-apiserver did not answer: %s", action, failed)
        unanswered = errors.Ec2Error(
            errors.INTERNAL_ERROR, "The cluster did not answer; try again."
        )
        return _refusal(unanswered, request_id, action, namespace)
    except Exception:
        LOG.exception("%s failed", action or "a request")
        internal = errors.Ec2Error(errors.INTERNAL_ERROR, "An internal error has occurred.")
        return _refusal(internal, request_id, action, namespace)


def _refusal(refused: errors.Ec2Error, request_id: str, action: str, namespace: str) -> Answer:
    body = responses.error(refused.code, refused.message, request_id)
    return Answer(refused.http_status, body, action, namespace, refused.code)


def _parameters(request: auth.Request) -> dict[str, str]:
    """The Query parameters: the form body's and the URL query's (a GET or presigned URL),
    the signature's own left out."""
    query = request.target.partition("?")[2]
    pairs = parse.parse_qsl(query, keep_blank_values=True)
    if request.body:
        try:
            text = request.body.decode()
        except UnicodeDecodeError:
            raise errors.invalid("body", "it is not UTF-8 form data") from None
        pairs += parse.parse_qsl(text, keep_blank_values=True)
    if len(pairs) > MAX_PARAMETERS:
        raise errors.invalid("body", f"more than {MAX_PARAMETERS} parameters")
    return {name: value for name, value in pairs if not name.startswith("X-Amz-")}


def _check_required(shape: Any, inputs: dict[str, Any]) -> None:
    if shape is None:
        return
    for name in shape.required_members:
        if name not in inputs:
            raise errors.missing(protocol.serialized_name(shape.members[name], name))


def _from_api(failed: k8s_exceptions.ApiException) -> errors.Ec2Error:
    """The kube-apiserver's refusal in EC2's words; its message says which field and why."""
    message = str(failed.reason or "")
    try:
        status = json.loads(failed.body or "")
        if isinstance(status, dict) and status.get("message"):
            message = str(status["message"])
    except ValueError:
        pass
    if failed.status in (400, 422):
        return errors.Ec2Error(errors.INVALID_PARAMETER_VALUE, message)
    if failed.status == 403:
        return errors.Ec2Error(errors.UNAUTHORIZED_OPERATION, message)
    LOG.warning("the kube-apiserver answered %s: %s", failed.status, message)
    return errors.Ec2Error(errors.INTERNAL_ERROR, "The cluster refused the request; try again.")
