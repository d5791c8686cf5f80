"""Crash-proof, exactly resumable training checkpoints (README, "Checkpoints: the promise").

A checkpoint is a directory `ckpt-g<global step>` holding
  model.safetensors      the model's weights
  optimizer.safetensors  the optimizer's tensors (Adam moments, step counts)
  rng.safetensors        torch CPU and CUDA generator states, NumPy's key
  state.json             everything else: position, scheduler, scaler, counters, hashes
  manifest.json          written last: each file's size and sha256
Nothing is pickled: a crafted checkpoint can fail to load but cannot run code.
"""
