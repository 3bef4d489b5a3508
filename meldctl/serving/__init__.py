"""`meldctl serve`: the `Predictor` behind HTTP (FastAPI on uvicorn), locally and in a SageMaker endpoint.

- `app`: the routes (`/ping`, `/health`, `/predict`, `/invocations`, `/`, `/docs`) and their JSON errors.
- `batcher`: decodes requests in a thread pool and runs the model on one thread, batching what arrives together.
- `uploads`: request bodies (multipart forms, JSON with base64 or an S3 URI) streamed into a temporary folder.
- `container_env`: the SageMaker inference-container contract (model folder, port).
- `server`: load the checkpoint once and run uvicorn.
"""
