"""sha256 of the compiled train step's StableHLO (no debug info) for the tiny configs.

  python -m tools.hlo_hashes [--out=hashes.json] [--programs=plain,tau]

A refactor that must not change behaviour (issue #36) keeps every hash: run it before
and after and compare. --compiled hashes XLA's optimised HLO instead (source metadata
stripped): the check for a change that only moves code into a library's jitted helper
(a `call` in StableHLO that XLA inlines), where the program XLA runs must stay the same. One device, configs/test.py (the suite's digits config) with each
program's components switched on; the cell and choice spaces at the suite's sizes.
"""

import hashlib
import json
import os
import re
import sys

os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=1')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # pylint: disable=g-import-not-at-top,wrong-import-position

FLAGS = flags.FLAGS
flags.DEFINE_string('out', '', 'Write {program: hash} here as JSON.')
flags.DEFINE_list('programs', [], 'Which programs (default: all).')
flags.DEFINE_bool('compiled', False, "Hash XLA's optimised HLO, not the StableHLO.")


def _tiny(c, strategy):
  """The suite's small spaces (tests/test_compile_cache.py and test_dha.py sizes)."""
  from dha_jax.nas import dsnas, ista  # pylint: disable=g-import-not-at-top
  c.batch_size = 16
  if strategy == 'dsnas':
    c.nas = dsnas.default_config()
    c.nas.update(space='shufflenet_small', stem_channels=8, stage_repeats=(1, 1, 1),
                 stage_channels=(16, 32, 64), last_channels=64)
  else:
    c.nas = ista.default_config()
    c.nas.update(cell_space='darts_small', channels=4, layers=3)


def _config(program):
  from configs import test  # pylint: disable=g-import-not-at-top
  c = test.get_config()
  if program in ('tau', 'dha_dsnas', 'dha_ista'):
    c.policy.name = 'learned'
  if program in ('eta_val', 'eta_lagged', 'dha_dsnas', 'dha_ista'):
    c.hpo.enabled = True
    c.hpo.objective = 'val' if program == 'eta_val' else 'lagged'
  if program in ('dsnas', 'dha_dsnas'):
    _tiny(c, 'dsnas')
  if program in ('ista_traced', 'dha_ista'):
    _tiny(c, 'ista')
    c.nas.execution = 'traced'
  return c


PROGRAMS = ('plain', 'tau', 'eta_val', 'eta_lagged', 'dsnas', 'ista_traced', 'dha_dsnas',
            'dha_ista')


DEBUG_TABLES = ('FileNames', 'FunctionNames', 'FileLocations', 'StackFrames')


def _without_debug_info(hlo):
  """Optimised HLO text less what names the Python that traced it: the source tables
  (numbered lines under DEBUG_TABLES) and each instruction's metadata."""
  out, table = [], False
  for line in hlo.splitlines():
    if line in DEBUG_TABLES:
      table = True
      continue
    if table and re.match(r'^\d+ ', line):
      continue
    table = False
    out.append(re.sub(r', metadata=\{[^}]*\}', '', line))
  return '\n'.join(out)


def program_hash(program, compiled=False):
  import jax  # pylint: disable=g-import-not-at-top
  from dha_jax.core import parallel  # pylint: disable=g-import-not-at-top
  from dha_jax.training import steps, train  # pylint: disable=g-import-not-at-top
  c = _config(program)
  c.compile_cache_dir = ''
  mesh = parallel.make_mesh(jax.devices()[:1])
  ds, comps, state, _, _ = train.setup(c, mesh, abstract=c.nas.strategy != 'ista')
  batch = parallel.shard_batch(next(train.Batches(ds, comps, c)), mesh)
  lowered = steps.sharded_train_step(comps, mesh).lower(state, batch)
  if compiled:
    text = _without_debug_info(lowered.compile().as_text())
  else:
    text = lowered.as_text(debug_info=False)
  return hashlib.sha256(text.encode()).hexdigest()


def main(argv):
  del argv
  hashes = {}
  for p in FLAGS.programs or PROGRAMS:
    if p not in PROGRAMS:
      raise app.UsageError(f'--programs: unknown {p!r}; the programs are {", ".join(PROGRAMS)}')
    hashes[p] = program_hash(p, FLAGS.compiled)
    print(f'{p:12s} {hashes[p]}', flush=True)
  if FLAGS.out:
    with open(FLAGS.out, 'w') as f:
      json.dump(hashes, f, indent=1)


if __name__ == '__main__':
  app.run(main)
