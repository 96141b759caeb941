"""The round driver: one training per round, with the method's between-round work around it."""

from __future__ import annotations

from .trainer import Trainer


def run_rounds(trainer: Trainer) -> None:
    """Train every remaining round; a round resumed mid-way does not start again.

    Order per round: ``start_round`` (once; the round may start at a later step, e.g. a rewind point),
    training to the round's end with its final evaluation and density table, the round's outputs (``round_XX/``, for
    multi-round methods), ``end_round`` (prune, rewind, regrow), then a checkpoint at the next round's start.
    """
    method = trainer.p.method
    while trainer.pos.round < method.rounds:
        if not trainer.pos.started:
            trainer.begin_round(method.round_start_step(trainer.pos.round))
            method.start_round(trainer.pos.round)
            trainer.describe_masks()
        trainer.train_round()
        trainer.describe_masks("end")
        if method.rounds > 1:
            trainer.write_round_outputs()
        method.end_round(trainer.pos.round)
        trainer.end_round()
