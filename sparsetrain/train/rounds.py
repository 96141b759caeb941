"""The round driver: one training per round, with the method's between-round work around it."""

from __future__ import annotations

from .trainer import Trainer


def run_rounds(trainer: Trainer) -> None:
    """Train every remaining round; a round resumed mid-way does not start again.

    Order per round: ``start_round`` (only at step 0), training to the round's end with its final
    evaluation, ``end_round`` (prune, rewind, regrow), then a checkpoint at the next round's start.
    """
    method = trainer.p.method
    while trainer.pos.round < method.rounds:
        if trainer.pos.step == 0:
            trainer.begin_round()
            method.start_round(trainer.pos.round)
            trainer.describe_masks()
        trainer.train_round()
        method.end_round(trainer.pos.round)
        trainer.end_round()
