"""Example: the bracelet training on a Kubernetes cluster's GPU node, one pod per run.

Where Airflow runs on Kubernetes (or can reach a cluster), a task that asks for a
GPU need not wait for a Celery worker of the ``gpu`` queue: KubernetesPodOperator
(apache-airflow-providers-cncf-kubernetes) starts a pod whose container asks the
scheduler for ``nvidia.com/gpu: 1``, so it lands on a node with a free NVIDIA GPU
(the NVIDIA device plugin advertises the resource). The same request, the same
notebook, the same MLflow tracking as ``dags/bracelet_training.py``.

Not in dags/: Skiff's own Airflow has no cluster to talk to. Copy it into the DAGs
folder of an Airflow that has one; docs/kubernetes-gpu.md says what to set.
"""

from __future__ import annotations

import os
from datetime import datetime

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.sdk import DAG, Param
from kubernetes.client import models as k8s

# The Airflow image of this release (docker/airflow): it has the notebook's packages.
IMAGE = os.environ.get("SKIFF_TRAINING_IMAGE", "skiff/airflow:3.3.2")
NAMESPACE = os.environ.get("SKIFF_TRAINING_NAMESPACE", "skiff")

GPU_RESOURCES = k8s.V1ResourceRequirements(
    # GPUs are requested as limits (Kubernetes sets the request equal); CPU and
    # memory requests keep the pod off nodes too small for it.
    requests={"cpu": "2", "memory": "4Gi"},
    limits={"nvidia.com/gpu": "1", "memory": "8Gi"},
)
# GPU nodes are usually tainted so that only pods asking for one go there.
GPU_TOLERATIONS = [k8s.V1Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")]

with DAG(
    dag_id="bracelet_training_kubernetes_gpu",
    description="Train the bracelet model in a pod on a Kubernetes GPU node",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"model_family": Param("logistic_regression", type="string"),
            "seed": Param(42, type="integer")},
    tags=["skiff", "bracelet", "training", "kubernetes", "gpu"],
) as dag:
    KubernetesPodOperator(
        task_id="train",
        name="bracelet-train",
        namespace=NAMESPACE,
        image=IMAGE,
        cmds=["papermill"],
        arguments=["/opt/airflow/notebooks/bracelet_train.ipynb", "/tmp/executed.ipynb",
                   "-p", "model_family", "{{ params.model_family }}",
                   "-p", "seed", "{{ params.seed }}",
                   "-p", "run_name", "{{ dag.dag_id }}/{{ run_id }}"],
        container_resources=GPU_RESOURCES,
        tolerations=GPU_TOLERATIONS,
        # MLflow and S3 addresses and credentials from a Secret in the namespace.
        env_from=[k8s.V1EnvFromSource(secret_ref=k8s.V1SecretEnvSource(name="skiff-training-env"))],
        get_logs=True,
        on_finish_action="delete_pod",
    )
