"""EC2's error codes, and the one exception every layer of the EC2 API raises to refuse a
request.

The code is what AWS tools branch on (boto3's ``ClientError.response["Error"]["Code"]``, the
waiters' acceptors), so the codes are EC2's own, not new ones.
"""

from __future__ import annotations

AUTH_FAILURE = "AuthFailure"
SIGNATURE_DOES_NOT_MATCH = "SignatureDoesNotMatch"
# EC2's answer to a request signed too long ago, or to a presigned URL past its expiry.
REQUEST_EXPIRED = "RequestExpired"
UNAUTHORIZED_OPERATION = "UnauthorizedOperation"
INVALID_ACTION = "InvalidAction"
MISSING_PARAMETER = "MissingParameter"
INVALID_PARAMETER_VALUE = "InvalidParameterValue"
INVALID_INSTANCE_ID_NOT_FOUND = "InvalidInstanceID.NotFound"
INVALID_INSTANCE_ID_MALFORMED = "InvalidInstanceID.Malformed"
INVALID_AMI_ID_NOT_FOUND = "InvalidAMIID.NotFound"
INVALID_AMI_ID_MALFORMED = "InvalidAMIID.Malformed"
# An image that exists but cannot be launched yet (EC2's answer for a pending AMI).
INVALID_AMI_ID_UNAVAILABLE = "InvalidAMIID.Unavailable"
INCORRECT_INSTANCE_STATE = "IncorrectInstanceState"
INVALID_AMI_NAME_DUPLICATE = "InvalidAMIName.Duplicate"
INVALID_AMI_NAME_MALFORMED = "InvalidAMIName.Malformed"
# Two parameters that may not be given together.
INVALID_PARAMETER_COMBINATION = "InvalidParameterCombination"
INVALID_PAGINATION_TOKEN = "InvalidPaginationToken"
INTERNAL_ERROR = "InternalError"
UNSUPPORTED_OPERATION = "UnsupportedOperation"
# A request with DryRun=true that would have been carried out.
DRY_RUN_OPERATION = "DryRunOperation"
# RunInstances: fewer than MinCount instances would fit on the hosts (the scheduler's
# explanation in the message), or a quota leaves room for fewer than MinCount.
INSUFFICIENT_INSTANCE_CAPACITY = "InsufficientInstanceCapacity"
INSTANCE_LIMIT_EXCEEDED = "InstanceLimitExceeded"

#: The HTTP status EC2 answers each code with; every other refusal is a 400.
_STATUS = {
    AUTH_FAILURE: 401,
    SIGNATURE_DOES_NOT_MATCH: 403,
    REQUEST_EXPIRED: 400,
    UNAUTHORIZED_OPERATION: 403,
    INTERNAL_ERROR: 500,
    # One of EC2's server errors: boto3 retries it, as it does on EC2, where capacity may
    # free up meanwhile.
    INSUFFICIENT_INSTANCE_CAPACITY: 500,
    DRY_RUN_OPERATION: 412,
}


class Ec2Error(Exception):
    """A refusal in EC2's words: ``code`` and a ``message`` that names the field and the
    reason."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return _STATUS.get(self.code, 400)


def missing(parameter: str) -> Ec2Error:
    return Ec2Error(MISSING_PARAMETER, f"The request must contain the parameter {parameter}")


def invalid(parameter: str, reason: str) -> Ec2Error:
    return Ec2Error(
        INVALID_PARAMETER_VALUE, f"Value for parameter {parameter} is invalid: {reason}"
    )
