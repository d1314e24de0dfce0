"""Skiff: a self-hosted MLOps platform, natively or with Docker Compose."""

__version__ = "0.1.0"
