"""Tables and plots made from a run's results."""
