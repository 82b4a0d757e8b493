"""Command line: python -m dha_jax.main --config=configs/digits.py --workdir=/tmp/digits

Any field can be overridden: --config.batch_size=64 --config.dataset.val_size=500.
Running the same command again resumes from the latest checkpoint in --workdir.
"""

from absl import app, flags, logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Path to a config file (get_config()).',
                                lock_config=True)
flags.DEFINE_string('workdir', None, 'Directory for checkpoints, metrics and results.')
flags.DEFINE_bool('distributed', False, 'Call jax.distributed.initialize() first '
                  '(multi-host GPU/TPU; the cluster environment supplies the addresses).')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  logging.set_verbosity(logging.WARNING)  # orbax/clu INFO lines drown the progress line
  import jax  # pylint: disable=g-import-not-at-top
  if FLAGS.distributed:
    jax.distributed.initialize()
  from dha_jax import train  # pylint: disable=g-import-not-at-top
  result = train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
  return 0 if result else 1


if __name__ == '__main__':
  app.run(main)
