"""How the command-line programs end on an error: a bad input is one line naming what is
wrong and what to do, a non-zero exit status, no traceback unless --verbose; a process
of a multi-process run that fails exits at once (one_of_many)."""

import os
import sys
import traceback

from absl import flags

flags.DEFINE_bool('verbose', False, 'Show the full traceback of an error instead of the '
                  'one-line message.')

# What a user's input or a run's numbers can cause; anything else is a bug and keeps its
# traceback. The messages are written to be read alone (they name the field or file).
INPUT_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, PermissionError)
RUN_ERRORS = (FloatingPointError,)  # e.g. train.NonFiniteLoss


def one_line(e: BaseException) -> str:
  return ' '.join(str(e).split()) or type(e).__name__


def reported(fn):
  """fn(*args) with INPUT_ERRORS (exit 2) and RUN_ERRORS (exit 1) as one line on stderr."""

  def main(*args):
    try:
      return fn(*args)
    except INPUT_ERRORS + RUN_ERRORS as e:
      if flags.FLAGS.verbose:
        raise
      print(f'error: {one_line(e)} (--verbose shows the traceback)', file=sys.stderr)
      return 2 if isinstance(e, INPUT_ERRORS) else 1

  return main


def one_of_many(fn) -> int:
  """fn()'s exit status, for a process of a multi-process run. One that fails exits at
  once: JAX's exit handler would wait for the others at its shutdown barrier while they
  wait for this one in a collective, and the launcher (local_cluster, Slurm) would never
  see the failure."""
  try:
    code = fn()
  except SystemExit as e:
    code = e.code if isinstance(e.code, int) else 1
  except BaseException:  # pylint: disable=broad-except
    traceback.print_exc()
    code = 1
  if code == 2:  # an input error, which every process meets: all report it, then leave
    from dha_jax.core import distributed  # pylint: disable=g-import-not-at-top
    distributed.leave_together('input_error')
  if code:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # pylint: disable=protected-access
  return code
