"""Names of Kubenova's custom resources."""

GROUP = "compute.kubenova.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
INSTANCES = "instances"
FLAVORS = "flavors"
IMAGES = "images"
HYPERVISORS = "hypervisors"
SERVER_GROUPS = "servergroups"
INSTANCE_ACTIONS = "instanceactions"
#: The label naming the Instance an InstanceAction belongs to.
INSTANCE_LABEL = f"{GROUP}/instance"
FINALIZER = f"{GROUP}/instance-protection"
#: The aggregated API of Instances' console subresources (kubenova-subresources).
SUBRESOURCES_GROUP = f"subresources.{GROUP}"
SUBRESOURCES_VERSION = "v1"
