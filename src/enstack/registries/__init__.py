"""The names the config's schema validates against, beside it, each with one owner: data
formats (formats.py), published datasets' layouts (presets.py), model families and the model
types enstack writes (families.py), meta-classifiers (metas.py), and the ways a function
longer than a model's window is read (modes.py). The config and the stages that implement
them both import from here; nothing here imports a stage, torch or scikit-learn.
"""
