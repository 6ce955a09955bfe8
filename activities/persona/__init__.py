"""The persona pipeline (seed 002): works, quotes and profile of a persona into ChromaDB, with job status."""
