"""The chat pipeline (seed 001, MIRT's Celery workers): Telegram and ManyChat in, one durable conversation per chat."""
