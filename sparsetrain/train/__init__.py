"""Training: the loop, the round driver, checkpoints, metrics and the learning-rate schedule.

Once imported, this package is the attribute ``sparsetrain.train`` (Python binds a subpackage to its parent's
name, over the API function of that name), so the package itself calls the API: ``sparsetrain.train([...])``.
"""

import sys
import types


class _CallablePackage(types.ModuleType):
    def __call__(self, overrides=()):
        from ..api import train

        return train(overrides)


sys.modules[__name__].__class__ = _CallablePackage
