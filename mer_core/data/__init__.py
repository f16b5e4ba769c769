"""Data: corpus adapters, feature extraction, folds, the feature store and fold batches."""
