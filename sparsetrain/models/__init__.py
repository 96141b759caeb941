"""Models: the zoo (``zoo.build_model`` by name), torchvision and custom models, transformers (``hf``).

``zoo.build_configured_model`` builds the model a ``model`` config describes; ``schemas`` holds the group's keys.
"""
