"""GaP and the other methods on an encoder-decoder Transformer (``task.name=translation``): the preset's partitions
are the authors' layer blocks, and rigl, gmp, static and lth run unchanged on the same model."""

from __future__ import annotations

import math

import pytest

import sparsetrain
from sparsetrain import methods
from sparsetrain.methods.gap import GaP
from test_translation_data import BATCH_TOKENS, write_parallel

SIX_BY_SIX = ("{model_type: marian, d_model: 16, encoder_layers: 6, decoder_layers: 6, encoder_attention_heads: 2, "
              "decoder_attention_heads: 2, encoder_ffn_dim: 32, decoder_ffn_dim: 32, max_position_embeddings: 256}")
SMALL = ["dataset.vocab_size=400", "dataset.max_source_positions=64", "dataset.max_target_positions=64",
         f"dataset.batch_tokens={BATCH_TOKENS}", "task.beam=1", "task.max_len_b=8", "eval_batch_size=16"]
ATTENTION = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj")
CROSS = tuple(name.replace("self_attn", "encoder_attn") for name in ATTENTION)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_parallel(tmp_path_factory.mktemp("gap_wmt") / "en_de")


def _layers(side: str, indices: range) -> set[str]:
    names = ATTENTION + ("fc1", "fc2") + (CROSS if side == "decoder" else ())
    return {f"model.{side}.layers.{i}.{name}.weight" for i in indices for name in names}


def test_the_wmt14_preset_partitions_the_authors_layer_blocks(corpus, tmp_path, monkeypatch):
    seen = {}

    class Recording(GaP):
        def setup(self, ctx):
            super().setup(ctx)
            seen["partitions"] = [set(group) for group in self.partitions]

    monkeypatch.setitem(methods.METHODS, "gap", Recording)
    summary = sparsetrain.train(["+experiment=gap_transformer_wmt14", f"model.config={SIX_BY_SIX}",
                                 f"dataset.root={corpus}", "dataset.source_lang=en", "dataset.target_lang=de",
                                 f"dataset.cache_dir={tmp_path / 'cache'}", *SMALL, "epochs=1", "method.rounds=1",
                                 "method.finetune=1it", "schedule.warmup_steps=2", f"hydra.run.dir={tmp_path / 'run'}"])
    assert seen["partitions"] == [_layers("encoder", range(0, 4)),
                                  _layers("encoder", range(4, 6)) | _layers("decoder", range(0, 2)),
                                  _layers("decoder", range(2, 6))]
    assert summary["metric"] == "bleu" and "case:lc" in summary["final"]["test"]["bleu_signature"]
    assert summary["masks"]["sparsity"] == pytest.approx(0.9, abs=0.01)  # every 16 x 16 matrix: 230 of 256 zeros


@pytest.mark.parametrize(("method", "sparsity"), [(["method=rigl", "method.delta_t=2"], 0.5),
                                                  (["method=gmp", "method.frequency=2it"], 0.5),
                                                  (["method=static"], 0.5), (["method=lth", "method.levels=1"], 0.0)])
def test_the_masked_methods_run_unchanged_on_an_encoder_decoder(corpus, tmp_path, method, sparsity):
    summary = sparsetrain.train(["model=hf", f"model.config={SIX_BY_SIX}", "dataset=translation",
                                 f"dataset.root={corpus}", f"dataset.cache_dir={tmp_path / 'cache'}", *SMALL,
                                 *method, f"sparsity={sparsity}", "steps=4", "optimizer=adam", "schedule=constant",
                                 f"hydra.run.dir={tmp_path / 'run'}"])
    assert summary["task"] == "translation" and math.isfinite(summary["final"]["test"]["loss"])
    layers = set(summary["masks"]["layers"])
    assert layers == _layers("encoder", range(6)) | _layers("decoder", range(6))  # embeddings and head stay dense
    assert summary["masks"]["sparsity"] == pytest.approx(sparsity or 0.2, abs=0.01)  # lth: one level of 20 %
