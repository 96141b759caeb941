"""SparseGPT and Wanda (one-shot pruning from calibration samples, layer by layer): the lazy-batch OBS solver against a
straightforward one, the output error against magnitude pruning, Wanda's metric, exact counts, the calibration of
each block on its pruned predecessors' outputs, the convolution's input columns, the zero-step run and the
refusals."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

import sparsetrain
from sparsetrain.errors import ConfigError
from sparsetrain.sparsity.calibration import InputStats, calibrate_in_sequence, input_columns
from sparsetrain.sparsity.obs import sparsegpt_prune
from sparsetrain.sparsity.patterns import matrix
from text_fixtures import causal_text_config, write_decoder_corpus
PROJECTIONS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
               "mlp.up_proj", "mlp.down_proj")


def _correlated_inputs(rows: int, columns: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    base = torch.randn(rows, columns // 4, generator=generator) @ torch.randn(columns // 4, columns, generator=generator)
    return base + 0.3 * torch.randn(rows, columns, generator=generator)


def _gram(x: torch.Tensor) -> torch.Tensor:
    return 2 * x.double().t() @ x.double() / x.shape[0]


def _straightforward_obs(weight, gram, zeros, nm, blocksize, damp):
    """OBS column by column with explicit inverses of the remaining columns' Hessian (no Cholesky, no lazy batches);
    the unstructured mask chosen at the same column boundaries, each boundary's share of ``zeros``, from the
    saliency w² / [H_F⁻¹]_00 of every column then."""
    w, h = weight.double().clone(), gram.double().clone()
    columns = w.shape[1]
    h += damp * h.diagonal().mean() * torch.eye(columns, dtype=torch.float64)
    pruned = torch.zeros_like(w, dtype=torch.bool)
    for i in range(columns):
        inverse = torch.linalg.inv(h[i:, i:])  # the remaining columns' inverse Hessian
        if nm is None and i % blocksize == 0:
            end = min(i + blocksize, columns)
            diag = torch.stack([torch.linalg.inv(h[j:, j:])[0, 0] for j in range(i, end)])
            saliency = (w[:, i:end] ** 2 / diag).flatten()
            share = zeros * end // columns - zeros * i // columns
            chosen = torch.sort(saliency, stable=True).indices[:share]
            rows_, cols_ = chosen // (end - i), chosen % (end - i) + i
            pruned[rows_, cols_] = True
        if nm is not None and i % nm[1] == 0:
            group = range(i, i + nm[1])
            diag = torch.stack([torch.linalg.inv(h[j:, j:])[0, 0] for j in group])
            saliency = w[:, i:i + nm[1]] ** 2 / diag
            lowest = torch.sort(saliency, dim=1, stable=True).indices[:, :nm[1] - nm[0]]
            pruned[torch.arange(w.shape[0])[:, None], i + lowest] = True
        error = torch.where(pruned[:, i], w[:, i], 0.0)
        w[:, i:] -= error[:, None] / inverse[0, 0] * inverse[0][None, :]
    return w, ~pruned


@pytest.mark.parametrize("nm", [None, (2, 4)])
def test_sparsegpt_equals_a_straightforward_obs_and_beats_magnitude_on_the_outputs(nm):
    generator = torch.Generator().manual_seed(1)
    weight = torch.randn(12, 40, generator=generator)
    x = _correlated_inputs(300, 40)
    gram = _gram(x)
    zeros = 240
    pruned, kept, _ = sparsegpt_prune(weight, gram.float(), zeros, nm, blocksize=16, damp=0.01)
    expected, expected_kept = _straightforward_obs(weight, gram, zeros, nm, 16, 0.01)
    assert torch.equal(kept, expected_kept)
    assert torch.allclose(pruned.double(), expected, atol=1e-4)
    if nm is None:
        assert int((~kept).sum()) == zeros and torch.all(pruned[~kept] == 0)
    else:
        assert torch.all(kept.view(12, 10, 4).sum(-1) == 2)
    magnitude = weight * torch.zeros(weight.numel(), dtype=torch.bool).index_fill_(
        0, weight.abs().flatten().argsort(descending=True)[:weight.numel() - zeros], True).view(weight.shape)
    if nm is not None:
        top = weight.abs().view(12, 10, 4).argsort(-1, descending=True)[..., :2]
        magnitude = weight * torch.zeros(12, 10, 4, dtype=torch.bool).scatter_(-1, top, True).view(12, 40)
    error = lambda w: float((x @ weight.t() - x @ w.t()).norm())  # noqa: E731
    assert error(pruned) < 0.8 * error(magnitude)


def test_the_lazy_batches_do_not_change_the_result_in_nm():
    weight = torch.randn(6, 32, generator=torch.Generator().manual_seed(2))
    gram = _gram(_correlated_inputs(200, 32)).float()
    one = sparsegpt_prune(weight, gram, 0, (2, 4), blocksize=8)
    whole = sparsegpt_prune(weight, gram, 0, (2, 4), blocksize=32)
    assert torch.equal(one[1], whole[1]) and torch.allclose(one[0], whole[0], atol=1e-5)


def test_a_convolutions_input_columns_are_in_the_weight_matrixs_order():
    conv = nn.Conv2d(3, 5, 3, padding=1, stride=2, bias=False)
    x = torch.randn(2, 3, 7, 7)
    columns = input_columns(conv, x)
    out = (columns @ matrix(conv.weight.detach()).t()).view(2, -1, 5).transpose(1, 2)
    assert torch.allclose(out.reshape(2, 5, 4, 4), conv(x), atol=1e-5)


@pytest.fixture(scope="module")
def decoder(tmp_path_factory) -> Path:
    """A tiny Llama (2 blocks) trained 40 steps on the text fixtures' corpus: a run directory to prune."""
    root = write_decoder_corpus(tmp_path_factory.mktemp("oneshot"))
    sparsetrain.train(_overrides(root, root / "dense", "method=dense", "steps=40"))
    return root


def _overrides(root: Path, run_dir: Path, *extra: str) -> list[str]:
    return ["model=hf", f"model.name_or_path={root / 'llama'}", "dataset=text", f"dataset.train_file={root / 'train.txt'}",
            f"dataset.test_file={root / 'test.txt'}", f"dataset.tokenizer={root / 'tokenizer'}",
            "dataset.max_seq_length=16", "task.name=causal_lm", "batch_size=8", "optimizer=adamw", "optimizer.lr=3e-3",
            "schedule=constant", "eval_batch_size=64", f"hydra.run.dir={run_dir}", *extra]


def _prune(decoder: Path, run_dir: Path, *extra: str) -> dict:
    return sparsetrain.train(_overrides(decoder, run_dir, f"init_from={decoder / 'dense'}", "method.n_samples=24",
                                        *extra))


def _model(decoder: Path, weights: dict | None = None):
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(str(decoder / "llama")).eval()
    dense = torch.load(decoder / "dense" / "checkpoints" / "last.pt", weights_only=True)["model"]
    model.load_state_dict({**dense, **(weights or {})})
    return model


def _calibration_batch(decoder: Path) -> dict[str, torch.Tensor]:
    """The 24 calibration blocks (input ids and attention mask): the first training samples of epoch 0, as the run
    draws them."""
    from sparsetrain.data.build import build_data

    data = build_data(causal_text_config(decoder), batch_size=8, eval_batch_size=64, device=torch.device("cpu"), seed=0)
    batches = [batch for _, batch in zip(range(3), data.train.epoch(0))]
    return {key: torch.cat([batch[key] for batch in batches]) for key in ("input_ids", "attention_mask")}


def _input_norms(model, batch: dict, names: list[str]) -> dict[str, torch.Tensor]:
    """‖X_j‖ of each named layer's inputs, by hooks on a plain forward of ``model``."""
    sums, handles = {}, []
    for name in names:
        module = model.get_submodule(name.rpartition(".")[0])
        handles.append(module.register_forward_pre_hook(
            lambda m, args, name=name: sums.__setitem__(name, sums.get(name, 0) + args[0].flatten(0, 1).square().sum(0))))
    with torch.no_grad():
        model(**batch)
    for handle in handles:
        handle.remove()
    return {name: value.sqrt() for name, value in sums.items()}


def _row_top(metric: torch.Tensor, keep: int) -> torch.Tensor:
    order = torch.sort(metric, dim=1, descending=True, stable=True).indices[:, :keep]
    return torch.zeros_like(metric, dtype=torch.bool).scatter_(1, order, True)


def test_wanda_keeps_the_top_weight_times_input_norm_of_each_row_with_inputs_from_the_pruned_predecessors(decoder,
                                                                                                         tmp_path):
    summary = _prune(decoder, tmp_path / "wanda", "method=wanda", "sparsity=0.5")
    assert summary["steps_per_epoch"] > 0 and summary["flops"]["training"] == 0  # pruned, evaluated, not trained
    masks = {name: mask.bool() for name, mask in load_file(tmp_path / "wanda" / "masks" / "final.safetensors").items()}
    dense = _model(decoder)
    ids = _calibration_batch(decoder)
    block = {layer: [f"model.layers.{layer}.{name}.weight" for name in PROJECTIONS] for layer in range(2)}
    norms = _input_norms(dense, ids, block[0])  # block 0: the dense model's inputs
    block0_pruned = {name: dense.get_parameter(name).detach() * masks[name] for name in block[0]}
    norms.update(_input_norms(_model(decoder, block0_pruned), ids, block[1]))  # block 1: after block 0 is pruned
    dense_norms = _input_norms(dense, ids, block[1])
    for name in block[0] + block[1]:
        weight = dense.get_parameter(name).detach()
        expected = _row_top(weight.abs() * norms[name], weight.shape[1] // 2)
        assert torch.equal(masks[name], expected), name
        assert int(masks[name].sum()) == weight.numel() // 2
    assert any(not torch.equal(masks[name], _row_top(dense.get_parameter(name).detach().abs() * dense_norms[name],
                                                     dense.get_parameter(name).shape[1] // 2)) for name in block[1])
    weights = torch.load(tmp_path / "wanda" / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(weights[name], dense.get_parameter(name).detach() * masks[name]) for name in masks)


def test_sparsegpt_prunes_each_block_on_its_pruned_predecessors_outputs(decoder, tmp_path):
    """The statistics each layer is pruned from: block 0's from the dense model, block 1's after block 0 is pruned
    (and updated); calibrate_in_sequence gathers them so."""
    model, batch = _model(decoder), _calibration_batch(decoder)
    layers = {name: model.get_submodule(name.rpartition(".")[0]) for name, _ in model.named_parameters()
              if ".layers." in name and name.endswith("proj.weight")}
    seen: dict[str, torch.Tensor] = {}

    def prune(stats: dict[str, InputStats]) -> None:
        for name, stat in stats.items():
            seen[name] = stat.gram()
            weight = model.get_parameter(name)
            weight.data.copy_(sparsegpt_prune(weight.detach(), stat.gram(), weight.numel() // 2)[0])

    halves = [{key: value[:8] for key, value in batch.items()}, {key: value[8:] for key, value in batch.items()}]
    record = calibrate_in_sequence(model, layers, halves,
                                   lambda batch: model(**batch), prune, full=True)
    assert record.walk == "blocks" and record.layers == list(layers)
    for name in layers:  # the same inputs again, through the model as it was when the layer was pruned
        replay = _model(decoder, {other: model.get_parameter(other).detach() for other in layers
                                  if other.startswith("model.layers.0.") and not name.startswith("model.layers.0.")})
        x = {}
        handle = replay.get_submodule(name.rpartition(".")[0]).register_forward_pre_hook(
            lambda m, args: x.__setitem__("x", args[0].flatten(0, 1)))
        with torch.no_grad():
            replay(**batch)
        handle.remove()
        assert torch.allclose(seen[name], 2 * x["x"].t() @ x["x"] / x["x"].shape[0], rtol=1e-4, atol=1e-5), name


@pytest.mark.parametrize("method", ["sparsegpt", "wanda"])
@pytest.mark.parametrize("pattern", [["sparsity=0.6"], ["sparsity=0.5", "method.pattern.name=nm"]])
def test_one_shot_pruners_realise_exact_counts_and_evaluate_the_pruned_model(decoder, tmp_path, method, pattern):
    summary = _prune(decoder, tmp_path / "run", f"method={method}", *pattern)
    masks = load_file(tmp_path / "run" / "masks" / "final.safetensors")
    assert set(masks) == {f"model.layers.{layer}.{name}.weight" for layer in range(2) for name in PROJECTIONS}
    for name, mask in masks.items():
        mask = mask.bool()
        if "method.pattern.name=nm" in pattern:
            assert torch.all(mask.view(mask.shape[0], -1, 4).sum(-1) == 2), name
        else:
            rows, columns = mask.shape
            zeros = rows * math.floor(columns * 0.6) if method == "wanda" else math.floor(0.6 * mask.numel())
            assert int((~mask).sum()) == zeros, name
    weights = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert all(torch.all(weights[name][~mask.bool()] == 0) for name, mask in masks.items())
    assert summary["dynamics"]["calibration"]["walk"] == "blocks"
    assert summary["dynamics"]["calibration"]["samples"] == 24
    # the perplexity the run reports is its pruned model's: the test split evaluated again from the saved weights
    model = _model(decoder, weights)
    assert math.isfinite(summary["final"]["test"]["perplexity"])
    assert summary["final"]["test"]["perplexity"] == pytest.approx(_perplexity(decoder, model), rel=1e-5)


def _perplexity(decoder: Path, model) -> float:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(decoder / "tokenizer"))
    tokens = []
    for line in (decoder / "test.txt").read_text().splitlines():
        tokens += tokenizer(line, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    nll, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(tokens), 16):
            ids = torch.tensor([tokens[start:start + 16]])
            if ids.shape[1] < 2:
                continue
            logits = model(input_ids=ids).logits
            nll += float(F.cross_entropy(logits[0, :-1], ids[0, 1:], reduction="sum"))
            count += ids.shape[1] - 1
    return math.exp(nll / count)


def test_sparsegpt_beats_magnitude_on_the_decoder_and_a_model_without_blocks_is_pruned_layer_by_layer(decoder,
                                                                                                      tmp_path):
    sgpt = _prune(decoder, tmp_path / "sgpt", "method=sparsegpt", "sparsity=0.7", "method.n_samples=64")
    magnitude = sparsetrain.train(_overrides(decoder, tmp_path / "mag", "method=oneshot", "sparsity=0.7",
                                             f"method.pretrained={decoder / 'dense'}", "method.retrain=false",
                                             "method.scope=layerwise", "method.distribution=uniform"))
    assert magnitude["flops"]["training"] == 0
    assert sgpt["final"]["test"]["perplexity"] < magnitude["final"]["test"]["perplexity"]
    lenet = sparsetrain.train(["model=lenet300_100", "dataset=synthetic", "dataset.image_size=28",
                               "dataset.channels=1", "dataset.train_size=256",
                               "dataset.test_size=64", "method=sparsegpt", "sparsity=0.8", "method.n_samples=64",
                               f"hydra.run.dir={tmp_path / 'lenet'}"])
    assert lenet["dynamics"]["calibration"]["walk"] == "layers"
    assert lenet["masks"]["sparsity"] == pytest.approx(0.8, abs=1e-3)


@pytest.mark.parametrize(("extra", "message"), [
    (["method=sparsegpt", "method.scope=global"], r"method\.scope=global cannot rank across layers; e\.g\. method\.scope=layerwise"),
    (["method=wanda", "method.n_samples=0"], r"method\.n_samples=0 must be >= 1"),
    (["method=wanda", "method.n_samples=100000"], r"method\.n_samples=100000 is more than the \d+ training samples"),
    (["method=wanda", "method.compare=column"], r"method\.compare='column' must be row or layer"),
    (["method=sparsegpt", "method.pattern.name=block"], r"method=sparsegpt cannot take method\.pattern\.name=block"),
    (["method=sparsegpt", "method.modules=[linear,embedding]", "method.include=[model.embed_tokens.weight]"],
     r"method=sparsegpt prunes linear layers and 2-d convolutions, and model\.embed_tokens\.weight is a Embedding"),
])
def test_one_shot_pruners_refuse_bad_options_in_one_line(decoder, tmp_path, extra, message):
    with pytest.raises(ConfigError, match=message) as error:
        _prune(decoder, tmp_path / "run", "sparsity=0.5", *extra)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "run" / "summary.json").exists()


@pytest.mark.parametrize("preset", ["sparsegpt_causal_lm", "wanda_causal_lm"])
def test_the_causal_lm_presets_name_their_required_keys_and_prune_a_decoder(decoder, tmp_path, preset):
    with pytest.raises(ConfigError, match=r"^model\.name_or_path is required by this preset") as error:
        sparsetrain.train([f"+experiment={preset}", f"hydra.run.dir={tmp_path / 'refused'}"])
    assert "\n" not in str(error.value)
    summary = sparsetrain.train([
        f"+experiment={preset}", f"model.name_or_path={decoder / 'llama'}", f"dataset.tokenizer={decoder / 'tokenizer'}",
        f"dataset.train_file={decoder / 'train.txt'}", f"dataset.test_file={decoder / 'test.txt'}",
        "dataset.max_seq_length=16", "method.n_samples=24", f"init_from={decoder / 'dense'}",
        f"hydra.run.dir={tmp_path / 'run'}"])
    assert summary["method"] == preset.split("_")[0] and summary["masks"]["sparsity"] == pytest.approx(0.5, abs=1e-3)
    assert summary["flops"]["training"] == 0 and math.isfinite(summary["final"]["test"]["perplexity"])
