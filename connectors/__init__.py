"""Sources (TensorBoard event files, MLflow) and sinks (Aim repos, local or remote)."""
