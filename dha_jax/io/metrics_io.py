"""Run outputs: metrics.jsonl, TensorBoard event files and the console progress line."""

import json
import os
import sys
import time

import jax
import numpy as np

from dha_jax.io import event_file


def _scalar(v):
  v = np.asarray(v)
  return v.item() if v.size == 1 else v.tolist()


def _parse(lines):
  """JSON rows; a last line cut short by a kill mid-write is dropped."""
  rows = []
  for l in lines:
    try:
      rows.append(json.loads(l))
    except ValueError:
      continue
  return rows


def read_rows(workdir):
  """The rows of <workdir>/metrics.jsonl ([] before the first write)."""
  path = os.path.join(workdir, 'metrics.jsonl')
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return _parse(l for l in f if l.strip())


class MetricsWriter:
  """Appends one JSON object per logged step; on resume, drops lines past the restored
  step so the file matches an uninterrupted run."""

  def __init__(self, workdir, resume_step: int):
    self.is_main = jax.process_index() == 0
    self.path = os.path.join(workdir, 'metrics.jsonl')
    if self.is_main and os.path.exists(self.path):
      with open(self.path) as f:
        keep = [r for r in _parse(f) if r.get('step', 0) <= resume_step]
      with open(self.path, 'w') as f:
        f.writelines(json.dumps(r) + '\n' for r in keep)
    self.tb = event_file.EventFileWriter(workdir) if self.is_main else None

  def write(self, step: int, scalars: dict):
    scalars = {k: _scalar(v) for k, v in scalars.items()}
    if self.is_main:
      with open(self.path, 'a') as f:
        f.write(json.dumps({'step': int(step), **scalars}) + '\n')
    if self.tb:
      self.tb.scalars(step, {k: v for k, v in scalars.items() if isinstance(v, (int, float))})

  def write_images(self, step: int, images: dict):
    if self.tb:
      self.tb.images(step, images)

  def close(self):
    if self.tb:
      self.tb.close()


class Progress:
  """One console line per log step: step, epoch, loss, accuracy, speed, ETA."""

  def __init__(self, total_steps, start_step, enabled=True):
    self.total, self.enabled = total_steps, enabled and jax.process_index() == 0
    self.t0, self.s0 = time.time(), start_step

  def __call__(self, step, epoch, metrics, steps_per_sec):
    if not self.enabled:
      return
    done = step - self.s0
    eta = (self.total - step) / max(steps_per_sec, 1e-9) if done else float('nan')
    eta_s = time.strftime('%H:%M:%S', time.gmtime(eta)) if np.isfinite(eta) else '?'
    print(f'step {step}/{self.total} epoch {epoch:.2f} loss {metrics["train/loss"]:.4f} '
          f'acc {metrics["train/accuracy"]:.3f} lr {metrics["lr"]:.3g} '
          f'{steps_per_sec:.2f} steps/s ETA {eta_s}', file=sys.stderr, flush=True)
