"""The training loop: the trainer and its step, the round driver, metrics, the optimizer and the lr schedule."""
