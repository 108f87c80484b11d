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
#: On an Image a snapshot made: the uid of the InstanceSnapshot that asked for it. The EC2 API
#: derives the image's AMI id from it, so the id CreateImage answers before the Image exists
#: is the one the Image shows once made.
SNAPSHOT_UID_ANNOTATION = f"{GROUP}/instance-snapshot-uid"
