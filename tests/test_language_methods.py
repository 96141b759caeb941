"""Every kind of method on a pretrained transformer, the TAMT pipeline (mask training on text with the MLM, KD and
MLM+KD objectives, then GLUE fine-tuning of theta_0 * M with the mask fixed) and the language-model presets, offline:
the tiny BERT and GLUE files of tests/nlp_fixtures.py."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from nlp_fixtures import DEFAULT_MATRICES, WORDS, glue_root, tiny_bert  # noqa: F401 - fixtures
from nlp_fixtures import glue_overrides as overrides
from sparsetrain import methods
from sparsetrain.api import train
from sparsetrain.compose.command_line import preflight
from sparsetrain.errors import ConfigError
from sparsetrain.export import ExportError, export, load_exported

EXPERIMENTS = Path(__file__).resolve().parents[1] / "configs" / "experiment"
LM_PRESETS = ("obert_bert_glue", "movement_bert_glue", "sparse_transfer_glue", "tamt_bert_mlm", "tamt_bert_kd",
              "tamt_glue_finetune", "sparsify_finetune_bert")
OBJECTIVES = {  # TAMT's mask-training objectives
    "mlm": [],
    "kd": ["task.distill.teacher=self", "task.distill.logits=false", "task.distill.hidden_weight=1.0",
           "method.reset_at=[1]"],
    "mlm_kd": ["task.distill.teacher=self", "task.distill.logits=false", "task.distill.hidden_weight=1.0",
               "task.distill.hardness=0.0"],
}


def pretrained(bert: Path) -> dict[str, torch.Tensor]:
    return load_file(bert / "model.safetensors")


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["model"]


def final_masks(run_dir: Path) -> dict[str, torch.Tensor]:
    return {name: mask.bool() for name, mask in load_file(run_dir / "masks" / "final.safetensors").items()}


def events(run_dir: Path, kind: str) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [event for event in map(json.loads, lines) if event.get("event") == kind]


def assert_exact_half(masks: dict[str, torch.Tensor], weights: dict[str, torch.Tensor]) -> None:
    """Exactly half of every default matrix is zero, and the weights are zero there."""
    assert set(masks) == DEFAULT_MATRICES
    for name, mask in masks.items():
        assert int((~mask).sum()) == mask.numel() // 2
        assert (weights[name][~mask] == 0).all()


# ---- item 4: every method on a pretrained transformer ---------------------------------------------------------------

def test_lottery_rewinds_to_the_pretrained_weights(tiny_bert, glue_root, tmp_path, monkeypatch):
    """rewind_to=0it on a pretrained model: round 1 starts from the pretrained weights at the surviving positions."""
    starts = {}

    class Recording(methods.METHODS["lth"]):
        def start_round(self, round_index):
            super().start_round(round_index)
            starts[round_index] = {k: v.clone() for k, v in self.ctx.model.state_dict().items()}

    monkeypatch.setitem(methods.METHODS, "lth", Recording)
    run_dir = tmp_path / "run"
    train(overrides(tiny_bert, glue_root, run_dir, "rte", "method=lth", "method.levels=1", "method.prune_rate=0.5",
                    "steps=3", "eval_every=0"))
    theta0, masks = pretrained(tiny_bert), final_masks(run_dir)
    assert_exact_half(masks, final_weights(run_dir))
    assert all(torch.equal(starts[0][name], value) for name, value in theta0.items())  # the pretrained start
    for name, value in theta0.items():  # round 1: the same values, pruned where the mask says
        expected = value * masks[name] if name in masks else value
        assert torch.equal(starts[1][name], expected), name
    assert not torch.equal(final_weights(run_dir)["classifier.weight"], theta0["classifier.weight"])  # it trained


def test_a_reinitialising_control_draws_a_random_init_of_the_pretrained_architecture(tiny_bert):
    """LTH's random_reinit control trains ``fresh_weights(seed)``: for a pretrained model that is a new random
    initialisation of its architecture (seeded), never the pretrained weights again."""
    from types import SimpleNamespace

    from omegaconf import OmegaConf

    from sparsetrain.runner.models import fresh_weights

    model_cfg = OmegaConf.create({"name": "hf", "source": "hf", "name_or_path": str(tiny_bert)})
    data = SimpleNamespace(in_shape=(16,), num_classes=2, train=SimpleNamespace())  # training batches without ids
    fresh, again, other = (fresh_weights(model_cfg, data, "sequence_classification", seed) for seed in (1, 1, 2))
    theta0 = pretrained(tiny_bert)
    for name in DEFAULT_MATRICES:
        assert fresh[name].shape == theta0[name].shape and not torch.equal(fresh[name], theta0[name])
        assert torch.equal(fresh[name], again[name]) and not torch.equal(fresh[name], other[name])


@pytest.mark.parametrize("method, extra", [
    ("set", ["method.delta_t=2", "method.distribution=uniform", "method.uniform_dense_first=false"]),
    ("mask_training", ["method.reset_every=2", "method.score_lr=0.05"]),
    ("gmp", ["schedule=cyclic_linear", "schedule.cycle_start=1", "schedule.cycle_epochs=1",
             "schedule.final_lr_fraction=0.1", "method.start=1ep", "method.end=2ep", "method.frequency=1ep",
             "method.initial_sparsity=0.3"]),
])
def test_more_methods_mask_exactly_the_default_matrices(tiny_bert, glue_root, tmp_path, method, extra):
    run_dir = tmp_path / "run"
    summary = train(overrides(tiny_bert, glue_root, run_dir, "rte", f"method={method}", "sparsity=0.5", "epochs=3",
                              "batch_size=32", "eval_every=0", "log_every=1it", *extra))
    assert set(summary["masks"]["layers"]) == DEFAULT_MATRICES
    weights, masks = final_weights(run_dir), final_masks(run_dir)
    assert_exact_half(masks, weights)
    theta0 = pretrained(tiny_bert)
    if method == "mask_training":  # W0 frozen: the masked matrices hold exactly theta_0 * M
        assert all(torch.equal(weights[name], theta0[name] * masks[name]) for name in masks)
        assert summary["dynamics"]["resets"] == 3  # after steps 2 and 4, and at the end (step 6)
    if method == "gmp":  # oBERT's recipe shape: the rate restarts at every pruning step (epochs 1 and 2)
        rates = {event["step"]: event["lr"] for event in events(run_dir, "train_step")}
        peak = 1e-3
        assert rates[1] == pytest.approx(peak) and rates[3] == pytest.approx(peak) and rates[5] == pytest.approx(peak)
        assert rates[2] < peak and rates[4] < peak and rates[6] < peak
        assert [round(e["sparsity"], 2) for e in events(run_dir, "prune")] == [0.3, 0.5]


# ---- item 5: the TAMT pipeline --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Train and test text over the tiny BERT's vocabulary."""
    root, rng = tmp_path_factory.mktemp("corpus"), random.Random(0)
    for name, lines in (("train.txt", 200), ("test.txt", 40)):
        (root / name).write_text("\n".join(" ".join(rng.choices(WORDS, k=rng.randint(4, 10))) for _ in range(lines)))
    return root


def mask_run(bert: Path, corpus: Path, run_dir: Path, *extra: str) -> dict:
    return train(["model=hf", f"model.name_or_path={bert}", "dataset=text", "dataset.max_seq_length=16",
                  f"dataset.train_file={corpus / 'train.txt'}", f"dataset.test_file={corpus / 'test.txt'}",
                  "task.name=masked_lm",
                  "method=mask_training", "sparsity=0.5", "method.reset_every=2", "method.score_lr=0.05",
                  "optimizer=adamw", "optimizer.lr=1e-3", "schedule=linear", "batch_size=8", "steps=3",
                  "eval_every=0", "log_every=0", "finetune.trainable=[cls.predictions.transform.*]",
                  f"hydra.run.dir={run_dir}", *extra])


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_tamt_pipeline_masks_on_text_then_fine_tunes_theta0_times_m(tiny_bert, glue_root, corpus, tmp_path,
                                                                    objective):
    masked_lm = tmp_path / "mask"
    mask_run(tiny_bert, corpus, masked_lm, *OBJECTIVES[objective])
    theta0, masks = pretrained(tiny_bert), final_masks(masked_lm)
    lm_weights = final_weights(masked_lm)
    assert_exact_half(masks, lm_weights)
    assert all(torch.equal(lm_weights[name], theta0[name] * masks[name]) for name in masks)  # W0 frozen
    assert len(events(masked_lm, "threshold_reset")) == (3 if objective == "kd" else 2)  # reset_at=[1]: also step 1

    fine_tuned = tmp_path / "glue"
    train(overrides(tiny_bert, glue_root, fine_tuned, "sst2", "method=static", f"init_from={masked_lm}", "steps=4",
                    "eval_every=0"))
    start = torch.load(fine_tuned / "checkpoints" / "start.pt", weights_only=True)
    for name, value in theta0.items():  # encoder and embeddings from the mask run, the classifier the new model's
        expected = value * masks[name] if name in masks else value
        assert torch.equal(start[name], expected), name
    assert final_masks(fine_tuned).keys() == masks.keys()
    assert all(torch.equal(final_masks(fine_tuned)[name], mask) for name, mask in masks.items())  # fixed mask
    weights = final_weights(fine_tuned)
    assert all((weights[name][~mask] == 0).all() for name, mask in masks.items())
    trained = "bert.encoder.layer.0.output.dense.weight"
    assert not torch.equal(weights[trained], start[trained])


def test_oneshot_prunes_a_masked_lm_run_loaded_into_a_classifier(tiny_bert, glue_root, corpus, tmp_path):
    """method.pretrained loads another head's run as init_from does: a run of W0 ⊙ M (exactly half zeros per matrix)
    pruned once to 0.5 by magnitude keeps exactly M."""
    masked_lm = tmp_path / "mask"
    mask_run(tiny_bert, corpus, masked_lm)
    pruned = tmp_path / "oneshot"
    train(overrides(tiny_bert, glue_root, pruned, "sst2", "method=oneshot", "sparsity=0.5",
                    f"method.pretrained={masked_lm}", "steps=2", "eval_every=0"))
    masks = final_masks(masked_lm)
    assert final_masks(pruned).keys() == masks.keys()
    assert all(torch.equal(final_masks(pruned)[name], mask) for name, mask in masks.items())


EMBEDDINGS, DECODER = "bert.embeddings.word_embeddings.weight", "cls.predictions.decoder.weight"


@pytest.mark.parametrize("tied", ["masked", "unmasked"])
def test_a_tied_decoder_reads_the_masked_or_the_frozen_embeddings(tiny_bert, corpus, tmp_path, capsys, tied):
    """Masked word embeddings: the tied MLM decoder reads W0 ⊙ M, or (``tied_weights=unmasked``, TAMT) its own frozen
    copy of W0; a run resumed inside (the model rebuilt tied, untied again, then loaded) ends with the same bits, and
    its export loads back into the rebuilt model with every tensor as trained."""
    run_dir = tmp_path / tied
    overrides = ["method.modules=[linear,embedding]", f"method.include=[{EMBEDDINGS}]", f"method.tied_weights={tied}",
                 "keep_checkpoint_every=2it", "resume=auto", "finetune.drift=true"]  # drift: its start has every name
    mask_run(tiny_bert, corpus, run_dir, *overrides)
    weights, mask = final_weights(run_dir), final_masks(run_dir)[EMBEDDINGS]
    w0 = pretrained(tiny_bert)[EMBEDDINGS]
    assert torch.equal(weights[EMBEDDINGS], w0 * mask) and not mask.all()
    assert torch.equal(weights[DECODER], w0 * mask if tied == "masked" else w0)
    (run_dir / "summary.json").unlink()
    shutil.copy(run_dir / "checkpoints" / "step_0000002.pt", run_dir / "checkpoints" / "last.pt")
    mask_run(tiny_bert, corpus, run_dir, *overrides)
    assert all(torch.equal(final_weights(run_dir)[name], value) for name, value in weights.items())

    export(run_dir, run_dir / "export", force=False)  # tied tensors share memory: each name is written
    note = "note: the run untied cls.predictions.decoder.weight" in capsys.readouterr().out
    assert note == (tied == "unmasked")
    loaded = load_exported(run_dir / "export" / "model.safetensors").state_dict()
    assert all(torch.equal(loaded[name], value) for name, value in weights.items())  # held apart where untied
    with pytest.raises(ExportError, match="^--format shrunk takes image models, not a transformers hf model; e.g. "):
        export(run_dir, run_dir / "shrunk", force=False, formats=["shrunk"])
    assert not (run_dir / "shrunk").exists()


def test_init_from_refuses_a_masked_weight_of_another_shape(tiny_bert, glue_root, corpus, tmp_path):
    masked_lm = tmp_path / "mask"
    mask_run(tiny_bert, corpus, masked_lm, "method.modules=[linear,embedding]",
             "method.include=[bert.embeddings.word_embeddings.weight]", "steps=1")
    bigger = ["model.config={hidden_size: 48, num_attention_heads: 2, intermediate_size: 64}"]
    with pytest.raises(ConfigError, match=r"^init_from=.*does not fit the model: .*word_embeddings.weight' has shape"):
        train(overrides(tiny_bert, glue_root, tmp_path / "misfit", "sst2", "method=static", f"init_from={masked_lm}",
                        "steps=1", *bigger))


# ---- item 6: presets ------------------------------------------------------------------------------------------------

def test_every_preset_composes(compose_config):
    presets = sorted(path.stem for path in EXPERIMENTS.glob("*.yaml"))
    assert set(LM_PRESETS) <= set(presets)
    for preset in presets:
        assert compose_config(f"+experiment={preset}").method.name


REQUIRED = {  # what each language-model preset needs from the command line: the key refused first, its values
    "obert_bert_glue": ("task.distill.teacher", ["task.distill.teacher=self"]),
    "sparse_transfer_glue": ("init_from", ["init_from={glue}", "task.distill.teacher=self"]),
    "tamt_bert_mlm": ("dataset.train_file", ["dataset.train_file={corpus}/train.txt"]),
    "tamt_bert_kd": ("dataset.train_file", ["dataset.train_file={corpus}/train.txt"]),
    "tamt_glue_finetune": ("init_from", ["init_from={mask}"]),
    "sparsify_finetune_bert": (None, []),
    "movement_bert_glue": (None, []),
}


def test_language_model_presets_name_their_required_keys_and_train_a_few_steps(tiny_bert, glue_root, corpus,
                                                                               tmp_path):
    """Each preset on the tiny BERT: without its required keys, a one-line refusal naming the first; with them, it
    passes the preflight and trains 2 steps."""
    sources = {"corpus": corpus, "glue": tmp_path / "sparse_transfer_source", "mask": tmp_path / "tamt_bert_mlm"}
    small = [f"model.name_or_path={tiny_bert}", f"dataset.root={glue_root}", "dataset.max_seq_length=16",
             "batch_size=8", "steps=2", "eval_every=0", "log_every=0"]
    train(overrides(tiny_bert, glue_root, sources["glue"], "sst2", "method=static", "sparsity=0.5", "steps=1"))
    for preset in ("tamt_bert_mlm", *(p for p in LM_PRESETS if p != "tamt_bert_mlm")):  # the mask run first
        key, values = REQUIRED[preset]
        if key is not None:
            with pytest.raises(ConfigError, match=rf"^{key} .*e\.g\. {key}=") as error:
                preflight([f"+experiment={preset}", *small], multirun=False)
            assert "\n" not in str(error.value)
        given = [value.format(**sources) for value in values]
        extra = [f"dataset.test_file={corpus / 'test.txt'}", "method.reset_every=1"] if preset.startswith("tamt_bert") \
            else []
        if preset == "obert_bert_glue":
            extra = ["method.start=1it", "method.end=2it", "method.frequency=1it", "schedule.cycle_start=0",
                     "method.num_grads=2", "method.fisher_block_size=10", "method.grad_batch_size=null",
                     "schedule.cycle_epochs=0.125"]
        if preset == "movement_bert_glue":
            extra = ["method.initial_warmup=0it", "method.final_warmup=1it", "schedule.warmup_epochs=0"]
        summary = train([f"+experiment={preset}", *small, *given, *extra, f"hydra.run.dir={tmp_path / preset}"])
        assert summary["final"]["test"], preset


def test_reset_at_counts_steps_taken():
    with pytest.raises(ConfigError, match=r"^method.reset_at=\[0\] counts steps taken, .*method.reset_at=\[1\]$"):
        preflight(["method=mask_training", "sparsity=0.5", "method.reset_at=[0]"], multirun=False)
