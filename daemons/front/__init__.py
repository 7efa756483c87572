"""The front tier: Varnish (and hitch for TLS) before sender-http, run and reloaded by Sender."""
