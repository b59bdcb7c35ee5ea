"""Local-only tooling for imagegen: emulated upstreams and helpers for the local stack."""
