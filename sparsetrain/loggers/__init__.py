"""Metric loggers beside metrics.jsonl: CSV, TensorBoard, W&B (``build.build_loggers``)."""
