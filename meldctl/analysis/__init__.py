"""Whole videos: segmentation into utterances (subtitles, speech recognition, voice activity), classification
through the same `Predictor` as `predict`, and the timeline outputs (JSON, CSV, SRT, PNG).

`pipeline.analyze` does the work; `outputs.write_outputs` writes the files. Heavy imports (torch, PyAV,
faster-whisper, silero-vad) happen inside those modules, not here.
"""
