"""Everything that runs FFmpeg: probing clips, extracting audio, reading frames (through PyAV or ffmpeg-python)."""
