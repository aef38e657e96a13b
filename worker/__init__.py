"""Celery workers: the job pipeline."""
