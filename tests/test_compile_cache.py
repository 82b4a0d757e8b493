"""Compile once: the persistent cache and the loop's kept executables make a second run
(another workdir, another seed) compile almost nothing and compute the same thing; the
key they are kept under leaves out only what reaches the step as data."""

import dataclasses
import hashlib
import json
import os
import re
import subprocess
import sys

import jax
import numpy as np
import pytest

from dha_jax.core import compile_cache, parallel
from dha_jax.nas import darts, dsnas, ista
from dha_jax.training import steps, train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(workdir, cache, *extra):
  """A run with XLA's own code generation (conftest.py's faster-compiling suite flags
  off), whose compile time the cache is to save."""
  cmd = [sys.executable, '-m', 'dha_jax.main', '--config=configs/test.py',
         f'--workdir={workdir}', '--config.num_steps=6', '--config.eval_every_epochs=0',
         f'--config.compile_cache_dir={cache}', '--config.policy.name=learned', *extra]
  flags = re.sub(r'--xla_cpu_(use_fusion_emitters|parallel_codegen_split_count)=\S+', '',
                 os.environ.get('XLA_FLAGS', ''))
  out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                       env=dict(os.environ, XLA_FLAGS=' '.join(flags.split())))
  assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
  with open(os.path.join(workdir, 'result.json')) as f:
    return json.load(f)


def _losses(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [r['train/loss'] for r in map(json.loads, f) if 'train/loss' in r]


def test_a_second_run_loads_what_the_first_compiled_and_computes_the_same(tmp_path):
  cache = tmp_path / 'cache'
  first = _run(tmp_path / 'a', cache)
  second = _run(tmp_path / 'b', cache)  # the same command in another workdir
  other_seed = _run(tmp_path / 'c', cache, '--config.seed=1')
  assert os.listdir(cache / compile_cache.STEPS_SUBDIR)  # the train step was kept
  # measured 2026-12-07 on 2 cores, 2 test workers: 7.1-11.4 s, then 1.3-1.8 s (16-18%):
  # what remains is tracing the run's one-off programs (its initial state, the BN
  # recalibration and test of the exported child), whose XLA compiles JAX's cache skips
  assert second['compile_s'] < 0.3 * first['compile_s'], (first['compile_s'],
                                                           second['compile_s'])
  assert other_seed['compile_s'] < 0.3 * first['compile_s']
  assert second['test/loss'] == first['test/loss']
  assert _losses(tmp_path / 'b') == _losses(tmp_path / 'a')
  assert _losses(tmp_path / 'c') != _losses(tmp_path / 'a')  # another seed, other data


def test_an_empty_cache_dir_turns_the_cache_off():
  try:
    compile_cache.enable('')
    assert compile_cache.active_dir() is None and jax.config.jax_compilation_cache_dir is None
    jitted = jax.jit(lambda x: x + 1)
    assert compile_cache.Executables(('x',)).wrap(jitted, 'train') is jitted
  finally:
    compile_cache.enable(os.environ['DHA_JAX_CACHE_DIR'])  # the suite's (conftest.py)


def test_the_default_dir_follows_the_environment(monkeypatch):
  monkeypatch.delenv('DHA_JAX_CACHE_DIR', raising=False)
  monkeypatch.setenv('XDG_CACHE_HOME', '/x/cache')
  assert compile_cache.default_dir() == '/x/cache/dha_jax/xla'
  monkeypatch.delenv('XDG_CACHE_HOME')
  monkeypatch.setenv('HOME', '/home/u')
  assert compile_cache.default_dir() == '/home/u/.cache/dha_jax/xla'
  monkeypatch.setenv('DHA_JAX_CACHE_DIR', '/shared/xla')
  assert compile_cache.default_dir() == '/shared/xla'


def test_an_unwritable_cache_dir_is_one_clear_error(tmp_path):
  blocker = tmp_path / 'file'
  blocker.write_text('')
  with pytest.raises(ValueError, match='config.compile_cache_dir='):
    compile_cache.enable(str(blocker / 'cache'))
  assert compile_cache.active_dir() == os.environ['DHA_JAX_CACHE_DIR']


def test_a_corrupt_kept_executable_is_compiled_again(tmp_path, test_config):
  """A damaged file (a disk full, a crash of another writer) costs a compile, not the run,
  and is removed. A program compiled under another key whose XLA compile came from JAX's
  layer is not kept: on a CPU an executable loaded from there serializes without its
  kernels (the next process failed with "Function ... not found" when it ran it)."""
  mesh = parallel.make_mesh(jax.devices()[:1])
  ds, comps, state, _, _ = train.setup(test_config, mesh)
  host = jax.device_get(state)
  batch = parallel.shard_batch(next(train.Batches(ds, comps, test_config)), mesh)
  kept = tmp_path / compile_cache.STEPS_SUBDIR
  try:
    compile_cache.enable(str(tmp_path))
    ex = compile_cache.Executables(('corrupt-test',), devices=mesh.devices.flat)
    first = ex.wrap(steps.sharded_train_step(comps, mesh), 'train')
    ref = jax.device_get(first(parallel.replicate(host, mesh), batch))
    (path,) = list(kept.iterdir())  # compiled fresh: kept
    path.write_bytes(b'not a pickle')
    again = ex.wrap(steps.sharded_train_step(comps, mesh), 'train')
    with pytest.warns(UserWarning, match='unreadable cached executable'):
      out = jax.device_get(again(parallel.replicate(host, mesh), batch))
    assert not again.loaded and not list(kept.iterdir())
    jax.tree_util.tree_map(np.testing.assert_array_equal, out, ref)
    other = compile_cache.Executables(('another key',), devices=mesh.devices.flat)
    third = other.wrap(steps.sharded_train_step(comps, mesh), 'train')
    out = jax.device_get(third(parallel.replicate(host, mesh), batch))
    jax.tree_util.tree_map(np.testing.assert_array_equal, out, ref)
    assert not list(kept.iterdir())
  finally:
    compile_cache.enable(os.environ['DHA_JAX_CACHE_DIR'])


def _variants(test_config):
  """Tiny configs of each kind of program (the CNN with tau and eta, a traced fixed
  genotype, ISTA traced, DSNAS's random child): (names, make(seed, name))."""
  def make(seed, kind):
    c = test_config.copy_and_resolve_references()
    c.seed = seed
    if kind == 'da_hpo':
      c.policy.name, c.hpo.enabled = 'learned', True
    elif kind in ('random', 'ista', 'dsnas_random'):
      c.batch_size = 16
      if kind == 'dsnas_random':
        c.nas = dsnas.default_config()
        c.nas.update(space='shufflenet_small', stem_channels=8, stage_repeats=(1, 1, 1),
                     stage_channels=(16, 32, 64), last_channels=64, random_genotype=True)
      else:
        c.nas = darts.fixed_config() if kind == 'random' else ista.default_config()
        c.nas.update(cell_space='darts_small', channels=4, layers=3)
        if kind == 'random':  # the genotype as data: one program for all of them
          c.nas.update(genotype='random', execution='traced')
    return c
  return ('da_hpo', 'random', 'ista', 'dsnas_random'), make


def _program(config, lower=True):
  """(the loop's step identity, sha256 of the train step's StableHLO, if `lower`)."""
  mesh = parallel.make_mesh(jax.devices()[:1])
  ds, comps, state, _, _ = train.setup(config, mesh, abstract=config.nas.strategy != 'ista')
  shapes = jax.tree_util.tree_map(lambda a: (a.shape, str(a.dtype)), state)
  identity = train.step_identity(comps, mesh, (ds.num_examples('train'), ds.num_classes,
                                               shapes))
  if not lower:
    return identity, None
  batch = parallel.shard_batch(next(train.Batches(ds, comps, config)), mesh)
  text = steps.sharded_train_step(comps, mesh).lower(state, batch).as_text(debug_info=False)
  return identity, hashlib.sha256(text.encode()).hexdigest()


def test_runs_with_the_same_key_lower_to_the_same_program(test_config):
  """The key leaves config.seed (and a traced genotype) out: two seeds lower to the same
  StableHLO wherever their keys are equal, and a genotype fixed in the program (DSNAS's
  random control) keeps the keys apart. A component that bakes the seed into its step
  fails here."""
  kinds, make = _variants(test_config)
  for kind in kinds:
    lower = kind != 'dsnas_random'  # two genotypes, two programs: the keys differ
    (id0, hlo0), (id1, hlo1) = (_program(make(s, kind), lower) for s in (0, 1))
    assert (id0 == id1) == lower, kind
    assert hlo0 == hlo1, kind


def test_the_compile_log_counts_xla_compiles_not_cache_hits(tmp_path):
  """result.json's num_compiles: XLA's backend compiles less the persistent cache's hits
  (JAX reports a hit inside a backend-compile event, its load time too)."""
  x = jax.numpy.arange(11.0)
  try:
    compile_cache.enable(str(tmp_path))
    counts = [(train.CompileLog.now()[1], compile_cache.hits())]
    for _ in range(2):
      def program(x):  # a new function each time: JAX's in-memory caches miss
        return jax.numpy.sin(x) * 3.0 + jax.numpy.cos(x[::-1])
      jax.jit(program).lower(x).compile()
      counts.append((train.CompileLog.now()[1], compile_cache.hits()))
  finally:
    compile_cache.enable(os.environ['DHA_JAX_CACHE_DIR'])
  (n0, h0), (n1, h1), (n2, h2) = counts
  assert (n1 - n0, h1 - h0) == (1, 0)  # compiled
  assert (n2 - n1, h2 - h1) == (0, 1)  # found in the cache


def test_a_supernets_shapes_are_traced_once_per_machine(tmp_path):
  """compile_cache.traced_once: the second process (here: call) reads what the first
  traced; a damaged file is traced again; no cache, no file."""
  from dha_jax.nas import darts_space  # pylint: disable=g-import-not-at-top
  calls = []

  def shapes():
    calls.append(1)
    return {'w': jax.ShapeDtypeStruct((3, 4), np.float32), 'n': 7}

  try:
    compile_cache.enable(str(tmp_path))
    first = compile_cache.traced_once('test', ('a', 1), shapes)
    again = compile_cache.traced_once('test', ('a', 1), shapes)
    assert first == again and len(calls) == 1
    other = compile_cache.traced_once('test', ('a', 2), shapes)  # another key
    assert other == first and len(calls) == 2
    for p in (tmp_path / compile_cache.SHAPES_SUBDIR).iterdir():
      p.write_bytes(b'\x00')
    with pytest.warns(UserWarning, match='unreadable'):
      assert compile_cache.traced_once('test', ('a', 1), shapes) == first
    assert len(calls) == 3
    # the cell supernet's op sizes, as a run counts them: the same from the file
    spec = darts_space.make_spec(darts.fixed_config(), 0.9)
    spec = dataclasses.replace(spec, channels=4, layers=3)
    traced = darts_space._trace_op_sizes(spec, 10, (8, 8, 1))  # pylint: disable=protected-access
    kept = darts_space._op_sizes(spec, 10, (8, 8, 1))  # pylint: disable=protected-access
    darts_space._op_sizes.cache_clear()  # pylint: disable=protected-access
    assert darts_space._op_sizes(spec, 10, (8, 8, 1)) == kept == traced  # pylint: disable=protected-access
    compile_cache.enable('')
    n = len(calls)
    compile_cache.traced_once('test', ('a', 1), shapes)
    assert len(calls) == n + 1
  finally:
    compile_cache.enable(os.environ['DHA_JAX_CACHE_DIR'])
