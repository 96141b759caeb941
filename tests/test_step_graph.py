"""The captured training step: the recorded graph has CUDA-graph semantics, and training through it gives the
same masks and weights as the eager step, for every method (CPU, fp32)."""

from __future__ import annotations

import contextlib
import logging
import warnings

import pytest
import torch

from sparsetrain import methods
from sparsetrain.compose.checks import validate
from sparsetrain.errors import ConfigError
from sparsetrain.diagnostics import KernelOps
from sparsetrain.methods.masked import MaskedMethod
from sparsetrain.runs.checkpoint import load_checkpoint
from sparsetrain.runs.distributed import Distributed
from sparsetrain.runs.files import checkpoint_path
from sparsetrain.training import trainer as trainer_module
from sparsetrain.training.graphs import CaptureError, CudaGraph, HostReads, RecordedGraph
from sparsetrain.runner.run import run
from sparsetrain.training.step import WARMUP_STEPS, choose_path
from conftest import events_without_time, write_image_folder


# ---- the recorded graph ----------------------------------------------------------------------------------
def _toy(seed: int = 0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(6, 12), torch.nn.BatchNorm1d(12), torch.nn.ReLU(),
                                torch.nn.Linear(12, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3, fused=True)
    optimizer.param_groups[0]["lr"] = torch.tensor(0.1)
    return model, optimizer


def _toy_step(model, optimizer, x, y, calls):
    calls.append(1)
    loss = torch.nn.functional.cross_entropy(model(x), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def test_replay_repeats_the_tensor_work_without_the_python():
    batches = [(torch.randn(8, 6), torch.randint(0, 3, (8,))) for _ in range(6)]
    eager_model, eager_opt = _toy()
    for i, (x, y) in enumerate(batches):
        eager_opt.param_groups[0]["lr"].fill_(0.1 / (i + 1))
        _toy_step(eager_model, eager_opt, x, y, [])

    model, optimizer = _toy()
    static_x, static_y = batches[0][0].clone(), batches[0][1].clone()
    graph, calls = RecordedGraph(), []
    _toy_step(model, optimizer, *batches[0], calls)  # warm-up: the momentum buffers exist before the capture
    for i, (x, y) in enumerate(batches[1:], start=1):
        optimizer.param_groups[0]["lr"].fill_(0.1 / (i + 1))
        static_x.copy_(x)
        static_y.copy_(y)
        graph.replay() if graph.ops else graph.capture(lambda: _toy_step(model, optimizer, static_x, static_y, calls))
    assert len(calls) == 2  # the warm-up and the capture; replays ran no Python of the step
    for (name, expected), actual in zip(eager_model.state_dict().items(), model.state_dict().values()):
        assert torch.equal(expected, actual), name  # BN running stats and num_batches_tracked included


@pytest.mark.parametrize("host_read", [
    lambda t: t.sum().item(),
    lambda t: bool(t.sum() > 0),
    lambda t: t.nonzero(),
    lambda t: t.tolist(),
    lambda t: float(t.sum()),
], ids=["item", "bool", "nonzero", "tolist", "float"])
def test_a_host_read_inside_the_capture_is_refused(host_read):
    weight = torch.ones(4)
    with pytest.raises(CaptureError, match="host"):
        RecordedGraph().capture(lambda: host_read(weight * 2))


# ---- choosing the path -------------------------------------------------------------------------------------
def _sgd():
    return torch.optim.SGD([torch.nn.Parameter(torch.ones(2))], lr=0.1)


def test_auto_captures_on_cuda_only_and_where_safe():
    single, ddp = Distributed(), Distributed(rank=0, world_size=2)
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert choose_path("auto", cuda, single, False, _sgd())[0] == "cuda_graph"
    assert choose_path("auto", cpu, single, False, _sgd())[0] == "eager"
    assert choose_path("on", cpu, single, False, _sgd())[0] == "recorded_graph"
    assert choose_path("off", cuda, single, False, _sgd())[0] == "eager"
    rmsprop = torch.optim.RMSprop([torch.nn.Parameter(torch.ones(2))], lr=0.1)
    for blocked in [(ddp, False, _sgd()), (single, True, _sgd()), (single, False, rmsprop)]:
        path, why = choose_path("auto", cuda, *blocked)
        assert path == "eager" and why
        with pytest.raises(ConfigError, match="step_graph=on"):
            choose_path("on", cuda, *blocked)


def test_step_graph_on_with_compile_is_refused_before_running(compose_config):
    with pytest.raises(ConfigError, match="step_graph=on"):
        validate(compose_config("step_graph=on", "compile=true"))


# ---- training through the graph ------------------------------------------------------------------------------
# device-resident data with per-sample crop and flip: the batch is made inside the captured step
AUGMENTED = ["dataset=synthetic", "dataset.image_size=8", "dataset.train_size=320", "dataset.test_size=64",
             "model=conv2", "batch_size=32"]
METHOD_RUNS = {
    "dense-adam": ["optimizer=adam", "optimizer.lr=0.003"],
    "static": ["method=static", "sparsity=0.8"],
    "gmp": ["method=gmp", "sparsity=0.8", "method.frequency=6it", "method.end=80%"],
    "oneshot": ["method=oneshot", "sparsity=0.8"],
    "rigl": ["method=rigl", "sparsity=0.9", "method.delta_t=7"],
    "set": ["method=set", "sparsity=0.9"],
    "snfs": ["method=snfs", "sparsity=0.9"],
    "lth": ["method=lth", "method.levels=1", "method.rewind_to=5it", "model.dropout=0.1"],
    "itop": ["method=itop", "sparsity=0.9", "method.delta_t=9"],
    "snip": ["method=snip", "sparsity=0.8"],
    "grasp": ["method=grasp", "sparsity=0.8"],
    "synflow": ["method=synflow", "sparsity=0.8", "method.iterations=5"],
    "acdc": ["method=acdc", "sparsity=0.9", "method.warmup_epochs=0", "method.final_epochs=1"],
    "gap": ["method=gap", "sparsity=0.8", "method.num_partitions=2", "method.rounds=1", "method.finetune=1ep"],
    "gap-parallel": ["method=gap", "method.mode=parallel", "sparsity=0.8", "method.num_partitions=2",
                     "method.rounds=1", "method.finetune=1ep"],
    "mask_training": ["method=mask_training", "sparsity=0.5", "optimizer=adamw", "method.reset_every=9",
                      "method.score_lr=0.01"],
    "mask_training-topk": ["method=mask_training", "sparsity=0.8", "method.binarizer=topk", "method.scope=global",
                           "method.init=uniform", "method.score_lr=0.5"],
    "rigl-augmented-conv": ["method=rigl", "sparsity=0.9", "method.delta_t=7", *AUGMENTED],
    "sr_ste": ["method=sr_ste"],
    "sr_ste-conv": ["method=sr_ste", "method.dense_layers=[first]", *AUGMENTED],
}


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]


def _train(compose_config, run_dir, *overrides, device="cpu"):
    args = [f"device={device}", "epochs=2", "schedule.warmup_epochs=1", *overrides]
    if device == "cuda":
        args.append("deterministic=true")
    return run(compose_config(*args), run_dir, args)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", list(METHOD_RUNS))
def test_graph_and_eager_steps_train_the_same_masks_and_weights(name, device, compose_config, tmp_path, caplog):
    """On CPU through the recorded graph, bit for bit; on CUDA (when present) through CUDA graphs, fp32 weights
    within a tight tolerance and the same masks."""
    overrides = METHOD_RUNS[name]
    eager = _train(compose_config, tmp_path / "eager", "step_graph=off", *overrides, device=device)
    with caplog.at_level(logging.INFO, logger="sparsetrain"):
        graphed = _train(compose_config, tmp_path / "graph", "step_graph=on", *overrides, device=device)
    captures = [r for r in caplog.records if "training step captured" in r.getMessage()]
    rounds = len(eager.get("rounds", [None]))
    assert len(captures) == rounds  # once per round: mask updates change masks in place, no re-capture
    _assert_same_training(tmp_path / "eager", tmp_path / "graph", eager, graphed, device)


def _assert_same_training(eager_dir, graph_dir, eager: dict, graphed: dict, device: str) -> None:
    """The same final weights (bit for bit on CPU; fp32 within 1e-5 on CUDA) and masks; on CPU the same events."""
    a, b = (load_checkpoint(checkpoint_path(d), torch.device("cpu")) for d in (eager_dir, graph_dir))
    tolerance = {"rtol": 0, "atol": 0} if device == "cpu" else {"rtol": 1e-5, "atol": 1e-6}
    for key in a["model"]:
        torch.testing.assert_close(b["model"][key], a["model"][key], **tolerance, msg=key)
    for key, mask in (a["method"].get("masks") or {}).items():
        assert torch.equal(mask, b["method"]["masks"][key]), key
    assert graphed["flops"] == eager["flops"]
    if device == "cpu":
        assert events_without_time(graph_dir) == events_without_time(eager_dir)
        assert graphed["final"] == eager["final"]


def test_graph_and_eager_steps_train_the_same_on_batches_a_loader_made(compose_config, tmp_path, caplog):
    """imagefolder: the plan is the batch its DataLoader decoded and augmented, copied into the step's buffers."""
    write_image_folder(tmp_path / "images", n_train=8)
    overrides = ["dataset=imagefolder", f"dataset.root={tmp_path / 'images'}", "dataset.image_size=16",
                 "dataset.num_workers=0", "batch_size=6", "method=rigl", "sparsity=0.8", "method.delta_t=3"]
    eager = _train(compose_config, tmp_path / "eager", "step_graph=off", *overrides)
    with caplog.at_level(logging.INFO, logger="sparsetrain"):
        graphed = _train(compose_config, tmp_path / "graph", "step_graph=on", *overrides)
    assert [r for r in caplog.records if "training step captured" in r.getMessage()] and graphed["steps"] == 8
    _assert_same_training(tmp_path / "eager", tmp_path / "graph", eager, graphed, "cpu")


def test_a_graph_run_killed_after_a_checkpoint_resumes_to_the_eager_result(compose_config, tmp_path, monkeypatch):
    overrides = ["method=rigl", "sparsity=0.9", "method.delta_t=7", "checkpoint_every=10it", "resume=auto"]
    _train(compose_config, tmp_path / "eager", "step_graph=off", *overrides)
    save = trainer_module.Trainer.save
    saves = []

    def save_then_crash(self):
        save(self)
        saves.append(self.pos.step)
        if len(saves) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(trainer_module.Trainer, "save", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        _train(compose_config, tmp_path / "graph", "step_graph=on", *overrides)
    monkeypatch.setattr(trainer_module.Trainer, "save", save)
    _train(compose_config, tmp_path / "graph", "step_graph=on", *overrides)
    assert saves == [10, 20]
    a, b = (load_checkpoint(checkpoint_path(tmp_path / d), torch.device("cpu")) for d in ("eager", "graph"))
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert all(torch.equal(a["method"]["masks"][k], b["method"]["masks"][k]) for k in a["method"]["masks"])
    assert events_without_time(tmp_path / "graph") == events_without_time(tmp_path / "eager")


class HostReading(MaskedMethod):
    """A method that calls its steps plain but reads a device value on the host in them: they cannot be captured."""

    name = "host_reading"

    def after_optimizer_step(self, step):
        super().after_optimizer_step(step)
        self.norm = float(next(iter(self.targets.params.values())).detach().norm())

    def is_plain_step(self, step):
        return True


def test_a_step_that_cannot_be_captured_stops_with_one_line(compose_config, tmp_path, monkeypatch):
    monkeypatch.setitem(methods.METHODS, "host_reading", HostReading)
    with pytest.raises(ConfigError, match="step_graph=on.*cannot be captured.*step_graph=off"):
        _train(compose_config, tmp_path / "on", "method=static", "method.name=host_reading", "sparsity=0.5",
               "step_graph=on")
    _train(compose_config, tmp_path / "off", "method=static", "method.name=host_reading", "sparsity=0.5",
           "step_graph=off")


class _FailingCapture(RecordedGraph):
    """A CUDA-like graph whose capture fails without running anything: every capture, or only the update's."""

    only_update = False
    made = 0

    def __init__(self):
        super().__init__()
        _FailingCapture.made += 1
        self.fails = not self.only_update or _FailingCapture.made % 2 == 0  # graphs come in (forward, update)

    def capture(self, fn):
        if self.fails:
            raise CaptureError("capture refused by the test")
        super().capture(fn)


@pytest.mark.parametrize("only_update", [False, True], ids=["everything-fails", "update-fails"])
def test_a_cuda_capture_that_fails_falls_back_to_eager_with_the_same_result(only_update, compose_config, tmp_path,
                                                                            monkeypatch, caplog):
    overrides = ["method=rigl", "sparsity=0.9", "method.delta_t=7"]
    _train(compose_config, tmp_path / "eager", "step_graph=off", *overrides)
    monkeypatch.setattr(_FailingCapture, "only_update", only_update)
    monkeypatch.setattr("sparsetrain.training.step.CudaGraph", _FailingCapture)
    monkeypatch.setattr("sparsetrain.runner.assemble.choose_path", lambda *args: ("cuda_graph", "forced by the test"))
    with caplog.at_level(logging.WARNING, logger="sparsetrain"):
        _train(compose_config, tmp_path / "fallback", *overrides)
    assert [r for r in caplog.records if "cannot be captured" in r.getMessage()]
    a, b = (load_checkpoint(checkpoint_path(tmp_path / d), torch.device("cpu")) for d in ("eager", "fallback"))
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert events_without_time(tmp_path / "fallback") == events_without_time(tmp_path / "eager")


@contextlib.contextmanager
def _cuda_synchronisations(on_sync, device: str):
    """On CUDA, calls ``on_sync`` at every synchronising CUDA call too (``torch.cuda.set_sync_debug_mode``)."""
    if device != "cuda":
        yield
        return
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        show = warnings.showwarning

        def watch(message, category, *args, **kwargs):
            if "synchroniz" in str(message):
                on_sync("a synchronising CUDA call")
            else:
                show(message, category, *args, **kwargs)

        warnings.showwarning = watch
        torch.cuda.set_sync_debug_mode("warn")
        try:
            yield
        finally:
            torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("path", ["off", "on"])
def test_plain_steps_read_nothing_on_the_host(path, device, compose_config, tmp_path, monkeypatch):
    """The whole loop (data, step, bookkeeping) reads device values on the host only at logging points (epoch
    ends with their evaluation, checkpoints, the running loss every log_every steps) and on mask-update steps;
    every other step runs without a sync
    (on CUDA also checked by CUDA's own sync watch; the capture step synchronises once)."""
    trainers = []
    init = trainer_module.Trainer.__init__

    def remember(self, parts):
        init(self, parts)
        trainers.append(self)

    monkeypatch.setattr(trainer_module.Trainer, "__init__", remember)
    capture, capture_steps = CudaGraph.capture, set()

    def capture_at_step(self, fn):
        capture_steps.add(trainers[0].pos.step)
        capture(self, fn)

    monkeypatch.setattr(CudaGraph, "capture", capture_at_step)
    reads = []

    def at(name):
        reads.append((trainers[0].pos.step if trainers else None, name))

    with HostReads(at), _cuda_synchronisations(at, device):
        summary = _train(compose_config, tmp_path, "method=rigl", "sparsity=0.9", "method.delta_t=7",
                         "checkpoint_every=10it", "log_every=4it", f"step_graph={path}", device=device)
    total, per_epoch = summary["steps"], summary["steps_per_epoch"]
    updates = {s for s in range(0, round(0.75 * total) + 1, 7)}  # RigL's update steps (t_end = 75 %)
    logging_points = {0, *range(per_epoch, total + 1, per_epoch), *range(10, total + 1, 10), *range(4, total + 1, 4)}
    logging_points |= capture_steps  # torch.cuda.graph synchronises before it captures
    at_steps = {step for step, _ in reads if step is not None}
    assert at_steps and at_steps <= logging_points | updates, sorted(at_steps - logging_points - updates)


def test_a_method_overriding_a_hook_without_naming_plain_steps_is_never_replayed():
    class Counting(MaskedMethod):
        def after_optimizer_step(self, step):
            super().after_optimizer_step(step)

    class Declared(Counting):
        def is_plain_step(self, step):
            return step % 2 == 0

    assert not Counting.is_plain_step(None, 4) and MaskedMethod.is_plain_step(None, 4)
    assert Declared.is_plain_step(None, 4) and not Declared.is_plain_step(None, 3)
    never = Counting.is_plain_step
    assert all(cls.is_plain_step is not never for cls in methods.METHODS.values())  # every shipped method declares


def test_a_replayed_step_runs_only_its_plan_copy_and_learning_rate_outside_the_graphs(compose_config, tmp_path,
                                                                                     monkeypatch):
    """Gathering, augmenting and normalising the batch are inside the captured step: a plain step launches one
    copy of the batch plan and one learning-rate write, then the two graphs."""
    counter = KernelOps()  # per step: the ops of the step, and those since the previous step ended
    replay, step = RecordedGraph.replay, trainer_module.Trainer._step

    def counted_replay(self):
        counter.paused = True
        try:
            replay(self)
        finally:
            counter.paused = False

    def counted_step(self, plan):
        counter.key = self.pos.step
        step(self, plan)
        counter.key = self.pos.step

    monkeypatch.setattr(RecordedGraph, "replay", counted_replay)
    monkeypatch.setattr(trainer_module.Trainer, "_step", counted_step)
    with counter:
        summary = _train(compose_config, tmp_path, "method=static", "sparsity=0.8", "step_graph=on",
                         "eval_every=0", "checkpoint_every=0", *AUGMENTED)
    within_epochs = [s for s in range(WARMUP_STEPS + 1, summary["steps"]) if s % summary["steps_per_epoch"]]
    plain = [counter.counts.get(s, 0) for s in within_epochs]
    assert plain and max(plain) == 2, plain  # plan copy_, lr fill_ (making the batch was 22 ops outside)
    assert counter.counts[0] > 20  # an eager step runs the whole batch pipeline and the step
