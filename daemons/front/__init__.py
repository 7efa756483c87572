"""The front tier: nginx before sender-http (TLS, HTTP/2, media from the spool, playlists pushed to it), run and reloaded by Sender."""
