"""Inference with sparse weights: linear layers on ``torch.sparse`` kernels, each layer's kernel chosen by measuring."""
