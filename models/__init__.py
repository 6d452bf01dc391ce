"""Model lifecycle: registry, prompt format, datasets, fine-tuning, export, evaluation."""
