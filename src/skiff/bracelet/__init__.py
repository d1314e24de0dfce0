"""The bracelet scenario: heart-disease prediction from a wearable's measurements.

Shared by the training notebook, the DAGs, the model server, the ingest service
and the CLI; standard library only, so every venv can import it.
"""
