"""AWS for meldctl: SageMaker training jobs, S3 transfers, CloudWatch logs.

Only this package imports boto3 and the SageMaker SDK, and only inside functions, so `meldctl --help` and
local work never pay for them. Every AWS failure leaves here as a `RemoteError` with a hint.
"""
