"""A user's own code, imported by ``_target_`` in the tests' runs (the subprocess gets this folder on PYTHONPATH)."""

from __future__ import annotations

import math

import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import Dataset, TensorDataset


def tiny_net(in_shape: tuple[int, ...], num_classes: int, hidden: int = 16) -> nn.Module:
    """A conv + linear network with a bias-free conv, a norm and a dropout, like many users' networks."""
    channels, height, width = in_shape
    return nn.Sequential(
        nn.Conv2d(channels, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
        nn.Linear(4 * height * width, hidden), nn.ReLU(), nn.Dropout(0.1), nn.Linear(hidden, num_classes),
    )


def not_a_module(num_classes: int) -> str:
    return f"{num_classes} classes"


def digits(limit: int = 0) -> tuple[Dataset, Dataset]:
    """scikit-learn's digits as float (1, 8, 8) images in [0, 1] and int labels: (train, test) datasets."""
    data = load_digits()
    images = torch.tensor(data.data, dtype=torch.float32).view(-1, 1, 8, 8) / 16
    labels = torch.tensor(data.target, dtype=torch.int64)
    if limit:
        images, labels = images[:limit], labels[:limit]
    split = math.ceil(len(labels) * 0.8)
    return TensorDataset(images[:split], labels[:split]), TensorDataset(images[split:], labels[split:])


class _Bare(Dataset):
    def __len__(self) -> int:
        return 10

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.zeros(3)


def bare_items() -> tuple[Dataset, Dataset]:
    """A dataset whose items are tensors, not (input, target) pairs."""
    return _Bare(), _Bare()


class TokenClassifier(nn.Module):
    """Token ids -> embedding -> mean over the unpadded positions -> hidden layer -> label logits."""

    def __init__(self, vocab: int, dim: int, num_labels: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.hidden = nn.Linear(dim, dim)
        self.head = nn.Linear(dim, num_labels)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = attention_mask.unsqueeze(-1).float()
        pooled = (self.embed(input_ids) * mask).sum(1) / mask.sum(1).clamp(min=1)
        return self.head(torch.relu(self.hidden(pooled)))


class _Output:
    """A Hugging Face style model output: the logits as an attribute."""

    def __init__(self, logits: torch.Tensor) -> None:
        self.logits = logits


class TokenPredictor(nn.Module):
    """Per-token logits over the vocabulary from each token and the sequence mean; returns ``.logits``."""

    def __init__(self, vocab: int, dim: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.mix = nn.Linear(2 * dim, dim)
        self.out = nn.Linear(dim, vocab)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> _Output:
        tokens = self.embed(input_ids)
        context = tokens.mean(1, keepdim=True).expand_as(tokens)
        return _Output(self.out(torch.relu(self.mix(torch.cat([tokens, context], -1)))))


VOCAB, LENGTH = 24, 6


def text_classifier(num_classes: int, dim: int = 8) -> nn.Module:
    return TokenClassifier(VOCAB, dim, num_classes)


def token_predictor(dim: int = 8) -> nn.Module:
    return TokenPredictor(VOCAB, dim)


class NamedItems(Dataset):
    """Items are dicts of named tensors (row ``index`` of each)."""

    def __init__(self, tensors: dict[str, torch.Tensor]) -> None:
        self.tensors = tensors

    def __len__(self) -> int:
        return len(next(iter(self.tensors.values())))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {key: value[index] for key, value in self.tensors.items()}


def _tokens(count: int, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, VOCAB, (count, LENGTH), generator=generator)
    lengths = torch.randint(3, LENGTH + 1, (count, 1), generator=generator)
    mask = (torch.arange(LENGTH) < lengths).long()
    return {"input_ids": ids * mask, "attention_mask": mask}


def sentences(num_labels: int = 2, train: int = 160, test: int = 64) -> tuple[Dataset, Dataset]:
    """Token sequences labelled by their share of high token ids: ``num_labels`` classes, or (1) a float score."""
    def split(count: int, seed: int) -> NamedItems:
        tensors = _tokens(count, seed)
        mask = tensors["attention_mask"]
        share = ((tensors["input_ids"] >= VOCAB // 2) * mask).sum(1) / mask.sum(1)
        labels = share.float() if num_labels == 1 else (share * num_labels).long().clamp(max=num_labels - 1)
        return NamedItems({**tensors, "labels": labels})

    return split(train, 1), split(test, 2)


def masked_sentences(train: int = 160, test: int = 64) -> tuple[Dataset, Dataset]:
    """Pre-masked token sequences: every third position replaced by token 0, its label the original token
    (-100 elsewhere), the next token repeating the masked one so that it can be predicted."""
    def split(count: int, seed: int) -> NamedItems:
        tensors = _tokens(count, seed)
        ids = tensors["input_ids"].clone()
        ids[:, 1::3] = ids[:, 0::3]
        labels = torch.full_like(ids, -100)
        labels[:, 0::3] = ids[:, 0::3]
        ids[:, 0::3] = 0
        return NamedItems({"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels})

    return split(train, 3), split(test, 4)


def raising_net(num_classes: int) -> nn.Module:
    """A factory with a bug: it raises, with a message of two lines."""
    raise RuntimeError(f"bad layer sizes for {num_classes} classes\nthe second line of the message")


def fixed_input_net(num_classes: int) -> nn.Module:
    """A network for 100 inputs, whatever the data's shape: it builds, and refuses the first batch."""
    return nn.Sequential(nn.Flatten(), nn.Linear(100, num_classes))
