"""Datasets and deterministic, resumable batch iterators.

``build.build_data(cfg, batch_size=..., eval_batch_size=..., device=..., seed=...)`` returns a ``batches.Data``
bundle, built by the dataset's registered builder (``catalog.DATASETS``). Small datasets (digits, MNIST,
Fashion-MNIST, CIFAR) live on the device as uint8 tensors and are augmented there per sample; ``imagefolder``
streams JPEGs through a DataLoader. The batches of training epoch ``e`` are a pure function of (seed, e), and
``train.epoch(e, start_batch=k)`` yields exactly batches k.. of ``train.epoch(e)``.
"""
