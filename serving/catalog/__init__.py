"""The catalog: projects, assets with access levels, data sources, lineage (issue 6).

A Flask app (``serving.catalog.app:create_app()``) under gunicorn, its state in
PostgreSQL (database ``catalog``) through SQLAlchemy, its schema versioned by
Alembic migrations (``migrations/``) applied when gunicorn starts.
"""
