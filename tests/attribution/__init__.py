"""Tests of the attribution pipeline."""
