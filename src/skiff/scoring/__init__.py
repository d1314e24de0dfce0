"""Batch scoring: a CSV of any size scored on Spark with a registered model's ONNX file.

``skiff score`` and the ``batch_scoring`` DAG run :func:`skiff.scoring.job.run`
through Spark Connect; :mod:`skiff.scoring.partition` is what the executors run.
"""
