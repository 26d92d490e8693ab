"""What the platform is compared with: raw arq (default and tuned) and Celery, running the same no-op."""
