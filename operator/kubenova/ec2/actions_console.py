"""GetConsoleOutput: the guest's serial console output, as ``kubectl nova console-log`` reads
it (the Instance's ``consolelog`` subresource, the host's last MiB).

EC2 sends the output base64-encoded (boto3 and the AWS CLI decode it); an instance with nothing
to read yet, having no host or a host that does not answer, has no Output, as on EC2.
"""

from __future__ import annotations

import base64
import datetime
from typing import Any

from kubenova.ec2 import actions_instances, errors, ids
from kubenova.ec2.context import Context


def get_console_output(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    instance_id = params.get("InstanceId")
    if not instance_id:
        raise errors.missing("InstanceId")
    [obj] = actions_instances.find(ctx, [str(instance_id)])
    text = ctx.cluster.console_log(ctx.namespace, obj["metadata"]["name"])
    output: dict[str, Any] = {
        "InstanceId": ids.instance_id(obj),
        "Timestamp": datetime.datetime.now(datetime.UTC),
    }
    if text:
        output["Output"] = base64.b64encode(text.encode()).decode()
    return output
