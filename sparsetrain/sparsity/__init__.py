"""The mechanics every sparse method shares: prunable targets, exact masks, layer distributions, schedules,
saliency scores and FLOP accounting."""
