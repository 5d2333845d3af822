"""The benchmark: full fine-tuning runs of a model zoo, and the evaluation of every ranking method."""
