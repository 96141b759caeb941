"""The run directory and the processes that share it, below every other layer (it imports only ``errors``).

A run directory holds what Hydra wrote for the invocation (``.hydra/``, the log, the lock), then the run's own
files: ``run.yaml`` (how it was started), ``checkpoints/last.pt``, ``metrics.jsonl``, ``summary.json``, ``masks/``,
``round_XX/`` and, for a run that did not finish, ``status.json``. Files are written atomically, so a process
that reads them (a resume, a lottery control, a sweep report) sees an old or a complete file, never a partial
one. Under ``torchrun`` every rank reads the checkpoint, only rank 0 writes, and masks are broadcast from it.
"""
