"""`enstack distill`: a compact student encoder trained to reproduce the selected bundle's
class probabilities, so that a pull request's scan runs one small model, not the ensemble.

targets.py writes what the student learns (the teacher's probabilities on the run's train
split and on unlabelled code, `run_dir/distill/data`); student.py trains it with the same
trainer as every model (checkpoints, exact resume, SIGTERM, progress, TensorBoard), on a
soft-target loss; stage.py runs both and writes the student's bundle with its model card
(a student, of which teacher, how often it agrees with it on held-out functions).
"""
