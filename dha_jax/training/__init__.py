"""One run: setup (train.py), the compiled steps (steps.py) over one TrainState
(state.py), and the loop's named parts (loop.py, budget.py)."""
