"""Weight initialisations shared by the model zoo."""

from torch import nn

_WEIGHTED = (nn.Conv2d, nn.Linear)
_NORMS = (nn.BatchNorm2d,)


def glorot_normal_(model: nn.Module) -> None:
    """Xavier/Glorot normal weights, zero biases (Glorot & Bengio 2010; Frankle & Carbin 2019)."""
    for m in model.modules():
        if isinstance(m, _WEIGHTED):
            nn.init.xavier_normal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def kaiming_normal_(model: nn.Module, mode: str) -> None:
    """Kaiming normal (ReLU gain) convs with fan ``mode`` (He et al. 2015), BN weight 1 / bias 0.

    Linear layers get Kaiming normal (fan_in) weights; all biases are zero.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode=mode, nonlinearity="relu")
        elif isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
        elif isinstance(m, _NORMS):
            nn.init.ones_(m.weight)
        if isinstance(m, (*_WEIGHTED, *_NORMS)) and m.bias is not None:
            nn.init.zeros_(m.bias)


INITS = ("paper", "kaiming_normal", "glorot_normal", "pytorch")


def apply_init(model: nn.Module, scheme: str) -> None:
    """Re-initialise ``model`` by ``model.init``: ``paper`` keeps the model's own (its paper's) initialisation;
    ``kaiming_normal`` (fan_in, ReLU gain: OpenLTH), ``glorot_normal`` (Frankle & Carbin 2019) and ``pytorch`` (each
    module's ``reset_parameters``: PyTorch's defaults) replace it. ValueError naming the key for anything else."""
    if scheme == "paper":
        return
    if scheme == "kaiming_normal":
        kaiming_normal_(model, "fan_in")
    elif scheme == "glorot_normal":
        glorot_normal_(model)
    elif scheme == "pytorch":
        for module in model.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
    else:
        raise ValueError(f"model.init={scheme!r} is not an initialisation; choose one of: {', '.join(INITS)}")
