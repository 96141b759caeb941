"""A Hydra callback that summarises a sweep when its last job has ended.

Register it in a config (or on the command line with ``+hydra/callbacks=...``)::

    hydra:
      callbacks:
        summarize:
          _target_: sparsetrain.report.callback.SummarizeSweep
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)


class SummarizeSweep(Callback):
    """At the end of ``-m``: ``sparsetrain-report <hydra.sweep.dir>``, logged instead of raised on failure, so a
    finished sweep never ends in an error because of its report."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from .sweep import NoFinishedRuns, summarize

        sweep_dir = Path(str(config.hydra.sweep.dir))
        try:
            result = summarize(sweep_dir)
        except NoFinishedRuns as error:
            log.warning("no sweep summary: %s", error)
            return
        except Exception:  # noqa: BLE001 - the jobs' results are safe; only the report failed
            log.exception("could not summarise %s; run `sparsetrain-report %s` to retry", sweep_dir, sweep_dir)
            return
        skipped = f", {result['skipped']} unfinished job(s) skipped" if result["skipped"] else ""
        log.info("sweep summary (%d jobs in %d groups%s): %s (also %s)", result["rows"], result["groups"], skipped,
                 sweep_dir / "summary.md", ", ".join(Path(f).name for f in result["files"] if not f.endswith(".md")))
