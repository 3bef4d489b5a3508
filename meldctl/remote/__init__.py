"""AWS for meldctl: SageMaker training jobs, endpoints and Processing jobs, S3 transfers, CloudWatch logs.

Only this package imports boto3 and the SageMaker SDK, and only inside functions, so `meldctl --help` and
local work never pay for them. Every AWS failure leaves here as a `RemoteError` with a hint (`aws.aws_errors`).

| module | what |
| --- | --- |
| `workflow` | `train --remote`: plan (dry run), upload and submit, follow, results |
| `jobspec` | the job from the settings: S3 layout, channels, hyperparameters, command, metrics (no AWS call) |
| `submit` | the SageMaker SDK's `ModelTrainer`: submission, and the dry run of the same request |
| `images` | the SDK's image URIs and GPU counts, botocore's instance types |
| `jobs` | status, recent jobs, following a job, its model.tar.gz |
| `endpoint_spec` | an endpoint from the options: model data, the three requests (no AWS call) |
| `endpoint_lifecycle` | checks before a deploy, deploy or update, wait, list, delete |
| `endpoint_invoke` | one clip or a whole video to an endpoint, real-time or async through S3 |
| `processing` | `analyze s3://... --remote`: the Processing job's request, submission, progress, results |
| `checks` | what every job and endpoint is checked for first: role, image region, instance type |
| `s3`, `objects`, `cloudwatch`, `logs` | transfers, one object with a limit, log streams, `meldctl logs` |
| `aws` | the session, bucket checks, the error boundary and its one table of hints |
| `answers` | refusing answers that are not AWS's (an HTML page, garbage), naming the URL |
"""
