"""Stage 2, train: fine-tune one base model with crash-proof, exactly resumable checkpoints."""
