"""Answer-quality evaluation (`shifu eval`): metrics, runner and report."""
