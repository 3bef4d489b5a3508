"""The checks every SageMaker command makes before it creates anything: one set, for training jobs, endpoints
and Processing jobs.

Offline (`check_request`, also in a dry run): the role is an IAM role ARN (12-digit account, a valid name),
the instance type is one SageMaker offers for the purpose, and an ECR image lives in the region the job or
endpoint runs in. Online (`aws.check_bucket`, after the credentials): the bucket exists, is readable and is in
that region. Each failure is a `ConfigError`: one line naming the value and what to pass instead.
"""

from __future__ import annotations

import re

from meldctl.errors import ConfigError
from meldctl.remote.images import check_instance_type

ROLE_ARN = re.compile(r"arn:aws(-[a-z]+)*:iam::(\d{12}):role/(?:[\w+=,.@-]+/)*([\w+=,.@-]{1,64})")
"""An IAM role ARN: partition, a 12-digit account, an optional path, a name of letters, digits and +=,.@_-."""
ECR_IMAGE = re.compile(r"\d{12}\.dkr\.ecr(?:-fips)?\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/.+")
ROLE_EXAMPLE = "arn:aws:iam::123456789012:role/NAME"


def check_role(role: str | None, *, what: str = "the job") -> str:
    """The role ARN, checked for its form (whether it exists and trusts SageMaker only AWS can tell).

    Raises:
        ConfigError: no role, or not an IAM role ARN.
    """
    if not role:
        raise ConfigError(
            f"no IAM role for {what}",
            hint=f"pass --role {ROLE_EXAMPLE} (or set remote.role); docs/remote.md shows how to create one",
        )
    if not ROLE_ARN.fullmatch(role):
        raise ConfigError(
            f"--role {role!r} is not an IAM role ARN",
            hint=f"write it as {ROLE_EXAMPLE}: a 12-digit account and a role name without spaces",
        )
    return role


def check_image(image: str, region: str) -> None:
    """An ECR image must be in the region of the job or endpoint that pulls it (SageMaker pulls in-region).

    Raises:
        ConfigError: an ECR image URI of another region.
    """
    found = ECR_IMAGE.fullmatch(image)
    if found and found.group(1) != region:
        raise ConfigError(
            f"--image {image} is in {found.group(1)}, SageMaker would run in {region}",
            hint=f"push the image to ECR in {region} (docs/remote.md), or pass --region {found.group(1)}",
        )


def check_request(
    *,
    role: str | None,
    image: str | None,
    region: str,
    instance_type: str | None,
    hosting: bool = False,
    processing: bool = False,
) -> None:
    """The offline checks of a training job, an endpoint or a Processing job: role (when given), image region,
    instance type.

    Args:
        role: The role ARN; None is left to the caller (a dry run shows the plan without one).
        image: The image URI, if one is given.
        region: Where the job or endpoint runs.
        instance_type: The instance type (None: serverless, no instances).
        hosting: An endpoint's instance type rather than a training one.
        processing: A Processing job's instance type rather than a training one.

    Raises:
        ConfigError: the first value that is wrong.
    """
    if role:
        check_role(role)
    if image:
        check_image(image, region)
    if instance_type is not None:
        check_instance_type(instance_type, hosting=hosting, processing=processing)
