"""The Hydra config tree, shipped inside the wheel as ``sparsetrain.configs``; importing it registers the schemas."""

from sparsetrain.compose.schema import register_configs

register_configs()
