"""The video pipeline (seed 004, GeminiVideo): render, preview, transcode and caption with real FFmpeg."""
