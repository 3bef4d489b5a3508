"""What the SageMaker SDK and botocore know about images and instances, asked offline (no AWS call).

The training image and the GPUs of an instance type come from the SDK's own tables (`sagemaker.core.image_uris`,
`sagemaker.core.instance_types_gpu_info`), the list of training instance types from botocore's service model,
so meldctl keeps no copy of either that could go stale.
"""

from __future__ import annotations

from typing import Any

from meldctl.errors import ConfigError, RemoteError

PYTORCH_FRAMEWORK = "pytorch-amzn2023"
PYTORCH_IMAGE_VERSION = "2.11"
"""The AWS PyTorch training image (Deep Learning Container) matching meldctl's pinned torch==2.11.0."""


def import_sdk() -> Any:
    """The SageMaker SDK v3 training module.

    Raises:
        RemoteError: the SDK is not installed (it is the optional extra `meldctl[sagemaker]`).
    """
    try:
        import sagemaker.train as sdk_train
    except ImportError:
        raise RemoteError(
            "the SageMaker Python SDK (v3) is not installed", hint="pip install 'meldctl[sagemaker]'"
        ) from None
    return sdk_train


def default_image(region: str, instance_type: str) -> str:
    """The AWS PyTorch training image for meldctl's torch version, the region, and CPU or GPU (the SDK's URI).

    Raises:
        RemoteError: the SDK knows no such image in the region.
    """
    import_sdk()
    from sagemaker.core import image_uris

    try:
        return image_uris.retrieve(
            PYTORCH_FRAMEWORK,
            region=region,
            version=PYTORCH_IMAGE_VERSION,
            instance_type=instance_type,
            image_scope="training",
        )
    except ValueError as exc:
        raise RemoteError(
            f"no AWS PyTorch {PYTORCH_IMAGE_VERSION} training image for {region}: {str(exc).splitlines()[0]}",
            hint="pass --image with an image URI in that region (see docs/remote.md to build one)",
        ) from None


def gpus_per_instance(region: str, instance_type: str) -> int:
    """GPUs of a multi-GPU instance type per the SDK's table; 1 for any other type (one process either way)."""
    import_sdk()
    from sagemaker.core import instance_types_gpu_info

    return int(instance_types_gpu_info.retrieve(region).get(instance_type, {}).get("Count", 1))


def check_instance_type(instance_type: str, *, hosting: bool = False, processing: bool = False) -> None:
    """Refuse an instance type that SageMaker training (or, with `hosting`, an endpoint; with `processing`, a
    Processing job) does not offer.

    The lists ship with botocore: no network.

    Raises:
        ConfigError: an unknown type, with the closest known ones.
    """
    import difflib

    import botocore.session

    shape = "ProductionVariantInstanceType" if hosting else "TrainingInstanceType"
    shape = "ProcessingInstanceType" if processing else shape
    known = list(botocore.session.get_session().get_service_model("sagemaker").shape_for(shape).enum)
    if instance_type in known:
        return
    close = difflib.get_close_matches(instance_type, known, n=3, cutoff=0.6)
    example = (
        "ml.g5.xlarge (1 GPU) or ml.m5.xlarge (CPU)" if hosting else "ml.g5.xlarge (1 GPU) or ml.g5.12xlarge (4 GPUs)"
    )
    raise ConfigError(
        f"unknown SageMaker {'endpoint' if hosting else 'processing' if processing else 'training'} instance type "
        f"{instance_type!r}",
        hint=f"did you mean {', '.join(close)}?" if close else f"e.g. {example}",
    )
