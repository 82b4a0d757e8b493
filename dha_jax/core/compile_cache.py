"""Compile once per machine and program: JAX's persistent compilation cache, plus the
training loop's steps kept as serialized executables.

A cell-network search step takes a minute or more to trace, lower and compile on a CPU,
and a run paid it again at every resume, seed, notebook restart and workdir. Two layers
take it away:

- JAX's persistent cache (every program, keyed by XLA on the lowered program, the
  backend and its flags): a second run skips XLA's compile but still traces and lowers.
- `Executables`: the loop's train and eval steps stored whole (jax.experimental.
  serialize_executable) under a key computed WITHOUT tracing: the config (less
  `config.seed`, which reaches the step only through the state: tests/test_compile_cache
  checks that two seeds lower to the same program), what the strategy fixed outside the
  config (Strategy.program_key), the arguments' shapes, dtypes and shardings, the
  devices, the process-wide settings, the versions of jax/jaxlib/flax/optax, XLA_FLAGS and
  the source of dha_jax itself. A hit runs the stored executable at once. A step whose
  XLA compile came from JAX's layer is not kept again: on a CPU an executable loaded from
  there serializes without its kernels.

Where: config.compile_cache_dir (configs/default.py: $DHA_JAX_CACHE_DIR, else
$XDG_CACHE_HOME/dha_jax/xla, else ~/.cache/dha_jax/xla); '' turns both layers off. The
directory may be deleted at any time (it only costs a compile) and shared between hosts
of the same kind (a shared filesystem path): every key names the backend and devices.
Multi-process runs share JAX's layer; the executables are kept for single-process runs.
"""

import hashlib
import json
import os
import pickle
import sys
import time
import warnings

import jax

STEPS_SUBDIR = 'steps'
LOAD_EVENT = '/dha_jax/compile_cache/load_duration'  # seconds to load a kept executable
_ACTIVE = {'dir': None}
_HITS = [0]  # JAX's persistent-cache hits in this process


def _count_hits(event, **kwargs):
  del kwargs
  if event == '/jax/compilation_cache/cache_hits':
    _HITS[0] += 1


jax.monitoring.register_event_listener(_count_hits)


def hits() -> int:
  """Programs this process found in JAX's persistent cache so far."""
  return _HITS[0]


def default_dir() -> str:
  """$DHA_JAX_CACHE_DIR, else $XDG_CACHE_HOME/dha_jax/xla, else ~/.cache/dha_jax/xla."""
  if os.environ.get('DHA_JAX_CACHE_DIR'):
    return os.environ['DHA_JAX_CACHE_DIR']
  base = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
  return os.path.join(base, 'dha_jax', 'xla')


def enable(path: str):
  """Every later compile of this process reads and writes the cache at `path` ('' or
  None: no cache). Programs of any size and compile time are kept: a run's many small
  ones (its state's initialisation, eager ops) add up to seconds too."""
  from jax._src import compilation_cache  # pylint: disable=g-import-not-at-top
  path = os.path.abspath(os.path.expanduser(path)) if path else None
  if path:
    try:
      os.makedirs(os.path.join(path, STEPS_SUBDIR), exist_ok=True)
    except OSError as e:
      raise ValueError(f'config.compile_cache_dir={path!r} cannot be created ({e}); give a '
                       "writable directory, or '' to run without a compilation cache") from e
  if jax.config.jax_compilation_cache_dir != path:
    jax.config.update('jax_compilation_cache_dir', path)
    compilation_cache.reset_cache()  # JAX opens its cache once: reopen it at `path`
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
  jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)
  _ACTIVE['dir'] = path


def active_dir():
  """The directory `enable` set last (None: no cache)."""
  return _ACTIVE['dir']


def config_key(config, nas_data_fields=()) -> str:
  """The config as JSON without config.seed (data order, initialisation and the step's
  random keys: all reach the step as arrays) and the config.nas fields the strategy
  keeps as arrays (Strategy.data_fields)."""
  d = config.to_dict()
  d.pop('seed', None)
  for k in nas_data_fields:
    d.get('nas', {}).pop(k, None)
  return json.dumps(d, sort_keys=True, default=repr)


_SOURCES = {}


def _source_digest(modules) -> str:
  """sha256 of the source files of dha_jax and of `modules` (components defined elsewhere,
  e.g. a user's registered strategy)."""
  files = {}  # name -> path; names relative to the package: two clones share entries
  root = os.path.dirname(os.path.abspath(__file__))
  for d, _, names in os.walk(root):
    for n in names:
      if n.endswith('.py'):
        path = os.path.join(d, n)
        files[os.path.relpath(path, root)] = path
  for m in modules:
    f = getattr(sys.modules.get(m), '__file__', None)
    if f and not os.path.abspath(f).startswith(root + os.sep):
      files[m] = os.path.abspath(f)
  key = tuple(sorted(files.items()))
  if key not in _SOURCES:
    h = hashlib.sha256()
    for name, path in key:
      h.update(name.encode())
      with open(path, 'rb') as fh:
        h.update(fh.read())
    _SOURCES[key] = h.hexdigest()
  return _SOURCES[key]


def _versions():
  import flax  # pylint: disable=g-import-not-at-top
  import jaxlib  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  return (jax.__version__, jaxlib.__version__, flax.__version__, optax.__version__,
          os.environ.get('XLA_FLAGS', ''), sys.version_info[:2])


SHAPES_SUBDIR = 'shapes'


def traced_once(kind, key, fn):
  """fn() for a result that is cheap to keep and costly to trace (a supernet's parameter
  shapes, its op sizes: ~9 s of a Fashion-MNIST cell run's start on a CPU), kept in
  <dir>/shapes/ under `key` (its repr must say all fn depends on) with dha_jax's source
  and the library versions: a later process reads it instead of tracing."""
  folder = active_dir()
  if folder is None:
    return fn()
  h = hashlib.sha256(repr((kind, key, _versions(), _source_digest(()))).encode())
  file = os.path.join(folder, SHAPES_SUBDIR, f'{kind}-{h.hexdigest()[:32]}.pkl')
  try:
    with open(file, 'rb') as f:
      return pickle.load(f)
  except FileNotFoundError:
    pass
  except Exception as e:  # pylint: disable=broad-except
    warnings.warn(f'{file}: unreadable ({type(e).__name__}: {e}); tracing again')
  out = fn()
  _keep(file, lambda: pickle.dumps(out), kind)
  return out


def _keep(file, blob, what):
  """Writes blob() to `file` whole or not at all (whoever reads it sees either); a
  failure costs only the next process's trace or compile."""
  try:
    os.makedirs(os.path.dirname(file), exist_ok=True)
    tmp = f'{file}.tmp{os.getpid()}'
    with open(tmp, 'wb') as f:
      f.write(blob())
    os.replace(tmp, file)
  except Exception as e:  # pylint: disable=broad-except
    warnings.warn(f'could not keep {what} in {os.path.dirname(file)} '
                  f'({type(e).__name__}: {e}); the run goes on without it')


def _arg_signature(args):
  leaves, treedef = jax.tree_util.tree_flatten(args)
  return str(treedef), tuple((tuple(x.shape), str(x.dtype), repr(getattr(x, 'sharding', None)))
                             for x in leaves)


class Executables:
  """Steps compiled on their first call and kept on disk under `identity` (what, beyond
  the arguments, the program depends on) in <dir>/steps/. With no active cache (or
  several processes) `wrap` returns the jitted function itself."""

  def __init__(self, identity, modules=(), devices=None):
    self.identity, self.modules = identity, tuple(modules)
    self.devices = None if devices is None else list(devices)  # the steps' mesh (all)

  def wrap(self, jitted, name):
    path = active_dir()
    if path is None or jax.process_count() > 1:
      return jitted
    return _CachedStep(jitted, name, self, os.path.join(path, STEPS_SUBDIR))

  def key(self, name, args) -> str:
    devices = tuple((d.platform, d.device_kind, d.id) for d in jax.devices())
    parts = (name, repr(self.identity), _arg_signature(args), devices, _versions(),
             _source_digest(self.modules))
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:32]


class _CachedStep:
  """A jitted step whose executable comes from disk when its key is there."""

  def __init__(self, jitted, name, owner, folder):
    self.jitted, self.name, self.owner, self.folder = jitted, name, owner, folder
    self._compiled, self._last = {}, None
    self.loaded = False  # the last executable came from disk (tests, benchmarks)

  def __call__(self, *args):
    error = None
    if self._last is not None:  # the usual case: the same shapes as the last call (a
      try:                      # signature of thousands of leaves costs ms a step)
        return self._last(*args)
      except (TypeError, ValueError) as e:  # other shapes or shardings: checked before it
        error = e                           # runs
    sig = _arg_signature(args)
    if error is not None and self._compiled.get(sig) is self._last:
      raise error  # the arguments fit the executable: the error is not theirs
    if sig not in self._compiled:
      self._compiled[sig] = self._load_or_compile(args)
    self._last = self._compiled[sig]
    return self._last(*args)

  def _load_or_compile(self, args):
    from jax.experimental import serialize_executable  # pylint: disable=g-import-not-at-top
    file = os.path.join(self.folder, f'{self.name}-{self.owner.key(self.name, args)}.pkl')
    if os.path.exists(file):
      try:
        t0 = time.perf_counter()
        with open(file, 'rb') as f:
          payload, in_tree, out_tree = pickle.load(f)
        fn = serialize_executable.deserialize_and_load(
            payload, in_tree, out_tree, execution_devices=self.owner.devices)
        jax.monitoring.record_event_duration_secs(LOAD_EVENT, time.perf_counter() - t0)
        self.loaded = True
        return fn
      except Exception as e:  # pylint: disable=broad-except
        warnings.warn(f'{file}: unreadable cached executable ({type(e).__name__}: {e}); '
                      'removed, compiling again')
        try:
          os.remove(file)
        except OSError:
          pass
    hits = _HITS[0]
    compiled = self.jitted.lower(*args).compile()
    self.loaded = False
    if _HITS[0] != hits:
      # JAX's layer had the program: an executable loaded from it serializes without its
      # kernels on a CPU ("Function ... not found" when run after loading), so it is not
      # kept; the next run finds it in JAX's layer again
      return compiled
    _keep(file, lambda: pickle.dumps(serialize_executable.serialize(compiled)),
          f'the compiled {self.name} step')
    return compiled
