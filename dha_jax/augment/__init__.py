"""Data augmentation: ops on device and policies."""
