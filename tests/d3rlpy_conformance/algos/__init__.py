"""d3rlpy v2.8.1 test helpers (vendored); see README.md in this folder."""
