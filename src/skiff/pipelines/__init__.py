"""Elyra pipelines on the platform's Airflow, without Kubernetes or git.

docs/decisions/0009-elyra-airflow-runtime.md explains the design. The modules, by
where they run:

- in the workspace (JupyterLab with Elyra): ``processor`` (the ``skiff-airflow``
  pipeline processor, Elyra's ``elyra.pipeline.processors`` entry point),
  ``schemas`` (its runtime schema, entry point ``metadata.schemas_providers``),
  ``defaults`` (the runtime configuration every user starts with);
- on the Airflow workers and in exported Compose files: ``runner`` (runs one
  node: files from S3, Papermill or Python, outputs back to S3); it never imports
  Elyra;
- both: ``spec`` (a submitted pipeline as plain data), ``dag`` and ``compose``
  (the files generated from it), ``storage`` (the S3 layout).
"""
