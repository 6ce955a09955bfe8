"""Security tests: one per finding of the exposure review, each failing without its fix."""
