"""Training: the loop, the round driver, checkpoints, metrics and the learning-rate schedule."""
