"""`meldctl serve`: the `Predictor` behind HTTP (FastAPI on uvicorn), locally and in a SageMaker endpoint.

- `app`: the routes (`/ping`, `/health`, `/predict`, `/analyze`, `/invocations`, `/`, `/docs`) and their JSON errors.
- `batcher`: decodes requests in a thread pool and runs the model on one thread, batching what arrives together.
- `uploads`: a prediction's body (multipart form, `text=`, JSON with base64 or an S3 URI) into a temporary folder.
- `analyze`: a whole video's request and its analysis with the server's `Predictor`.
- `forms`, `jsonbody`: multipart and JSON bodies read as streams, files straight to disk.
- `s3access`: the S3 prefixes a request may name (`--allow-s3`).
- `container_env`: the SageMaker inference-container contract (model folder, port).
- `server`: load the checkpoint once and run uvicorn, with a bounded header phase.
"""
