"""What a run reads and writes: checkpoints, the exported model, metrics and TensorBoard
events, pictures. Above the components (a checkpoint knows each one's config fields),
below the training loop."""
