"""sender-http: HLS serving, playback and management APIs, telemetry, metrics."""
