"""Command line: python -m dha_jax.main --config=configs/digits.py --workdir=/tmp/digits

Any field can be overridden: --config.batch_size=64 --config.dataset.val_size=500.
Running the same command again resumes from the latest checkpoint in --workdir.
"""

import faulthandler
import signal
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from dha_jax.core import cli

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Path to a config file (get_config()).',
                                lock_config=True)
flags.DEFINE_string('workdir', None, 'Directory for checkpoints, metrics and results.')
flags.DEFINE_bool('distributed', False, 'Join a multi-process run (jax.distributed) first: '
                  'the settings below, or on Slurm / Cloud TPU the environment\'s.')
flags.DEFINE_string('coordinator_address', None, 'host:port of process 0, the same for all '
                    '(default: $JAX_COORDINATOR_ADDRESS or the cluster\'s).')
flags.DEFINE_integer('num_processes', None, 'How many processes take part.')
flags.DEFINE_integer('process_id', None, 'This process, in [0, --num_processes).')
flags.DEFINE_integer('distributed_timeout_s', 300, 'How long to wait for every process '
                     'to join before giving up with an error.')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  return cli.one_of_many(_run) if _multi_process() else _run()


def _multi_process():
  return FLAGS.distributed or FLAGS.num_processes is not None


@cli.reported
def _run():
  logging.set_verbosity(logging.WARNING)  # orbax INFO lines drown the progress line
  # `kill -USR1 <pid>` prints every thread's stack to stderr: where a stuck run waits
  # (a collective, a checkpoint barrier, a compile) without stopping it.
  faulthandler.register(signal.SIGUSR1, all_threads=True)
  if _multi_process():
    from dha_jax.core import distributed  # pylint: disable=g-import-not-at-top
    distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes,
                           FLAGS.process_id, FLAGS.distributed_timeout_s)
  from dha_jax.training import train  # pylint: disable=g-import-not-at-top
  result = train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
  return 0 if result else 1


def _known_fields(config, prefix=''):
  out = []
  for k, v in config.items():
    out.append(prefix + k)
    if hasattr(v, 'items') and not isinstance(v, dict):
      out += _known_fields(v, f'{prefix}{k}.')
  return out


def _config_of(argv):
  """The config file's get_config(arg) without overrides, to list its valid fields."""
  from dha_jax.core import config_util  # pylint: disable=g-import-not-at-top
  return config_util.load(next(a.split('=', 1)[1] for a in argv if a.startswith('--config=')))


def parse_flags(argv):
  """absl's parser, but a mistyped --config.<field> is one line naming it and the
  nearest valid names (ml_collections raises a chain of three tracebacks)."""
  try:
    return app.parse_flags_with_usage(argv)
  except (AttributeError, KeyError, TypeError, ValueError) as e:
    bad = next((a.split('=', 1)[0][2:] for a in argv[1:] if a.startswith('--config.')
                and _unknown(a, argv)), None)
    if bad is None:
      print(f'error: {e}', file=sys.stderr)
      sys.exit(2)
    try:
      names = _known_fields(_config_of(argv))
    except Exception:  # pylint: disable=broad-except
      names = []
    from dha_jax.core import config_util  # pylint: disable=g-import-not-at-top
    near = config_util.nearest(bad[len('config.'):], names)
    hint = f"; did you mean {', '.join('config.' + n for n in near)}?" if near else ''
    print(f'error: --{bad}: the config has no field {bad!r}{hint} (configs/default.py lists '
          'every field)', file=sys.stderr)
    sys.exit(2)


def _unknown(arg, argv):
  """Whether the --config.<field> of `arg` names no field of the config file's config."""
  try:
    cfg = _config_of(argv)
  except Exception:  # pylint: disable=broad-except
    return True
  node = cfg
  for part in arg.split('=', 1)[0][len('--config.'):].split('.'):
    if not hasattr(node, 'keys') or part not in node.keys():
      return True
    node = node[part]
  return False


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
