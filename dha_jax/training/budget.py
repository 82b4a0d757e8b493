"""A run's time budget: the clock that spends it and the schedule horizon it fixes.

With config.time_budget_s the budget, not num_epochs, decides how long a run trains, so
every arm of a comparison ends its learning-rate schedule when its budget ends, whatever
its step costs (docs/method.md 7). A short pilot times the steps once the first compile is
done, and fixes the horizon in steps: TrainState.horizon, saved with every checkpoint, so
a resumed run follows the same schedule as an uninterrupted one.
"""

import math
import time

import jax
import numpy as np

from dha_jax.core import distributed

UNSET = 0  # TrainState.horizon while the pilot is still running


class TrainClock:
  """Training time against config.time_budget_s, continued across resumes ('wall' seconds,
  or 'process': CPU seconds of this process, fair when other jobs share the machine)."""

  CLOCKS = {'wall': time.time, 'process': time.process_time}

  def __init__(self, config):
    if config.time_budget_clock not in self.CLOCKS:
      raise ValueError(f'config.time_budget_clock={config.time_budget_clock!r}: use '
                       f"{' or '.join(map(repr, self.CLOCKS))}")
    self.budget, self.now = config.time_budget_s, self.CLOCKS[config.time_budget_clock]
    self.start(0.0)

  def start(self, elapsed_before: float):
    self.t0, self.before = self.now(), elapsed_before

  def elapsed(self) -> float:
    """Process 0's clock on every process, so that all stop at the same step."""
    return distributed.from_process0(self.before + self.now() - self.t0)

  def exhausted(self) -> bool:
    return bool(self.budget) and self.elapsed() >= self.budget


def sets_horizon(config) -> bool:
  return bool(config.time_budget_s) and bool(config.time_budget_sets_horizon)


def initial_horizon(config, total_steps: int) -> int:
  """TrainState.horizon of a new run: the epoch/step count, or UNSET for the pilot."""
  return UNSET if sets_horizon(config) else total_steps


class Pilot:
  """Times steps from the first one after the compile and, once `min_steps` are timed
  and either the first epoch (with its evaluation) is over or `max_fraction` of the
  budget is spent, returns the horizon: the step count the rest of the budget affords."""

  def __init__(self, config, clock, steps_per_epoch, max_fraction=0.15):
    self.clock, self.budget = clock, float(config.time_budget_s)
    self.min_steps = max(1, int(config.time_budget_pilot_steps))
    self.epoch, self.max_fraction = steps_per_epoch, max_fraction
    self.first = None  # (step, elapsed) where timing began

  def after_step(self, step: int):
    """None while piloting; then the horizon (> step)."""
    now = self.clock.elapsed()
    if self.first is None:  # the step just taken carried this process's compile
      self.first = (step, now)
      return None
    s0, t0 = self.first
    timed = step - s0
    if timed < self.min_steps or (step <= self.epoch + 1
                                  and now < self.max_fraction * self.budget):
      return None
    per_step = max(now - t0, 1e-9) / timed
    return step + max(1, int(math.floor((self.budget - now) / per_step)))


def set_horizon(state, horizon: int):
  """state with TrainState.horizon = horizon, on the devices the state lives on."""
  return state.replace(horizon=jax.device_put(np.int32(horizon), state.horizon.sharding))
