"""sender-ingest: RTMP/RTMPS listener, stream-key checks, one publisher per stream, generation
lifecycle, and the hand-off of audio/video to the media pipeline."""
