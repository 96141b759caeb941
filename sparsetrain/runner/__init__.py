"""One run from a composed config: the composition root (``run.run``) and the optional parts it assembles
(starting weights, trainable-parameter selection and drift, a distillation teacher, extended training)."""
