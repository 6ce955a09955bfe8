"""Tests of the chat pipeline."""
