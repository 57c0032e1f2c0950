"""Small helpers of the training framework (hyperparameter files, ...)."""
