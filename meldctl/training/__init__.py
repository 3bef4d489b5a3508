"""Training: losses, metrics, the loop, the run orchestration, torchrun and SageMaker support."""
