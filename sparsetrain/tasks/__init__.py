"""Tasks: how a batch reaches the model, the loss, the metrics and which one is "best" (see ``base.Task``).

``catalog.TASKS`` holds a record per task (torch-free); ``build.build_task`` builds the one a run trains.
"""
