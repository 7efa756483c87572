"""End-to-end tests: real publishers, real daemons, a real browser (headless Chromium)."""
