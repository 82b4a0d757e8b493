"""Runs the papers' comparisons on one dataset over several seeds: a table with intervals.

  python -m dha_jax.compare --config=configs/fashion_mnist.py --workdir=/tmp/cmp \
      --variants=fixed,randaugment,nas,da_hpo,sequential,dha --seeds=0,1,2 \
      [--reference=fixed] [--budget_minutes=15 --budget_clock=process] [--search=dsnas] \
      [--override=--config.batch_size=64 ...]

Each variant (dha_jax/comparison/experiments.py) and seed runs as `python -m dha_jax.main
--config=<config>:<variant> ... --config.seed=<s>` in <workdir>/<variant>/seed<s>, its
output also in compare.log there. 'sequential' runs the NAS-alone search first
(<workdir>/sequential_search/seed<s>) and then trains the derived genotype from scratch
with DA+HPO, the budget split between the two halves. With --budget_minutes every run gets
the same training time budget (config.time_budget_s; --budget_clock=process counts CPU
seconds instead of wall seconds, for a machine that other jobs share).

--variants defaults to every one of experiments.VARIANTS; the runs go seed by seed (every
variant on the first seed, then the next), so a one-seed table is there early.

Running the same command again resumes: a finished run (result.json present) is read, not
run again (with a warning if compare.log shows it was run by a different command), and an
interrupted one continues from its checkpoints. A run that fails does not stop the others;
the failures are listed at the end, the exit status is 1, and the table is written for
what finished (missing cells marked). SIGTERM is passed on to the running training, which
saves a checkpoint; no further run starts.

<workdir>/comparison.md: per variant the mean test accuracy over the seeds with its 95%
Student-t interval, the paired difference against --reference (per seed, then the same
interval; '*' where it excludes 0), steps, times and size. comparison.json holds the same
and every seed's numbers; comparison.png draws both intervals.
"""

import json
import math
import os
import shlex
import signal
import subprocess
import sys

from absl import app, flags

from dha_jax.comparison import experiments, stats
from dha_jax.comparison import compare_report as report

FLAGS = flags.FLAGS
flags.DEFINE_string('config', None, 'A dataset config file that takes a variant argument.')
flags.DEFINE_string('workdir', None, 'Folder for the runs and the table.')
flags.DEFINE_list('variants', list(experiments.VARIANTS), 'Which variants, in order.')
flags.DEFINE_list('seeds', ['0'], 'config.seed of each run of every variant; the table '
                  'gives means and 95% t-intervals over them.')
flags.DEFINE_string('reference', 'fixed', 'The variant the others are compared with, seed '
                    "by seed (one of --variants; '' = no paired difference).")
flags.DEFINE_string('search', '', "Strategy of the searched variants ('' = the config's).")
flags.DEFINE_float('budget_minutes', 0.0, 'Equal training time budget per run.')
flags.DEFINE_enum('budget_clock', 'wall', ['wall', 'process'],
                  "What the budget counts: 'wall' seconds, or 'process' CPU seconds of the "
                  'run (fair when other jobs share the machine).')
flags.DEFINE_multi_string('override', [], 'Extra --config.field=value for every run.')
flags.DEFINE_bool('report_only', False, 'Start no run: the table of the runs finished so '
                  'far (a measurement spanning sessions), the others listed as not run.')
flags.mark_flags_as_required(['config', 'workdir'])

SEARCH_HALF = 'sequential_search'  # <workdir>/<this>/seed<s>: sequential's NAS run
# The sums over sequential's halves (and lr_grid's three runs).
SUMMED = ('steps', 'wall_time_s', 'train_time_s', 'images_processed')


class RunFailed(RuntimeError):
  """A run without a result.json; `workdir` holds its compare.log."""

  def __init__(self, message, workdir):
    super().__init__(message)
    self.workdir = workdir


class _Stop:
  """SIGTERM to compare: the running training gets it too (and saves a checkpoint); no
  further run starts, so the same command later resumes where this one stopped."""
  requested = False
  child = None

  @classmethod
  def handle(cls, signum, frame):
    del signum, frame
    cls.requested = True
    if cls.child is not None:
      cls.child.send_signal(signal.SIGTERM)


def run_dir(variant, seed):
  return os.path.join(FLAGS.workdir, variant, f'seed{seed}')


def command(variant_arg, workdir, budget_s, seed, extra=()):
  """The dha_jax.main command of one run; the seed comes last so that it wins."""
  cmd = [sys.executable, '-m', 'dha_jax.main', f'--config={FLAGS.config}:{variant_arg}',
         f'--workdir={workdir}', *FLAGS.override, *extra]
  if budget_s:
    cmd += [f'--config.time_budget_s={budget_s}',
            f'--config.time_budget_clock={FLAGS.budget_clock}']
  return cmd + [f'--config.seed={seed}']


def _tee(cmd, log_path):
  """Runs `cmd`, its output to ours and appended to `log_path`; returns the exit status."""
  out = getattr(sys.stdout, 'buffer', None)
  with open(log_path, 'ab') as log:
    log.write(f'$ {shlex.join(cmd)}\n'.encode())
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    _Stop.child = proc
    try:
      for chunk in iter(lambda: proc.stdout.read1(1 << 16), b''):
        log.write(chunk)
        if out is not None:
          out.write(chunk)
          out.flush()
        else:
          sys.stdout.write(chunk.decode(errors='replace'))
    finally:
      _Stop.child = None
      code = proc.wait()
  return code


def _last_command(log_path):
  """The last command compare ran in a workdir (None without a compare.log)."""
  try:
    with open(log_path, errors='replace') as f:
      lines = [l for l in f if l.startswith('$ ')]
  except OSError:
    return None
  return shlex.split(lines[-1][2:]) if lines else None


def _run(cmd, workdir):
  """One training run: read if finished, else run (dha_jax.main resumes from the
  workdir's checkpoints); returns its result.json."""
  path = os.path.join(workdir, 'result.json')
  log = os.path.join(workdir, 'compare.log')
  if os.path.exists(path):
    ran = _last_command(log)
    if ran is not None and ran[1:] != cmd[1:]:
      print(f'warning: {path} comes from another command, kept as it is:\n  {shlex.join(ran)}'
            f'\nnot\n  {shlex.join(cmd)}\n(a different comparison needs a new --workdir)',
            file=sys.stderr, flush=True)
  else:
    if FLAGS.report_only:
      raise RunFailed('not run yet (--report_only)', workdir)
    if _Stop.requested:
      raise RunFailed('not started (compare was stopped)', workdir)
    os.makedirs(workdir, exist_ok=True)
    print('$ ' + shlex.join(cmd), flush=True)
    code = _tee(cmd, log)
    if not os.path.exists(path):
      raise RunFailed(f'exit status {code}' if code else
                      'stopped before the end (checkpoint saved, no result.json)', workdir)
  with open(path) as f:
    return json.load(f)


def genotype_flag(result, search_dir):
  """--config.nas.genotype value that makes the fixed-genotype strategy train `result`'s
  derived architecture from scratch (the search's strategy, in its config.json, says how:
  nas/base.py's genotype_flag)."""
  with open(os.path.join(search_dir, 'config.json')) as f:
    strategy = json.load(f)['nas']['strategy']
  return experiments.genotype_flag(strategy, result['architecture']['genotype'])


def summed(kept, results):
  """`kept` (the result whose model is reported) with each SUMMED entry the sum over
  `results`; an entry some run lacks is dropped (part of a sum would read as the whole)."""
  out = dict(kept)
  for k in SUMMED:
    if all(k in r for r in results):
      out[k] = sum(r[k] for r in results)
    else:
      out.pop(k, None)
  return out


def combine(first, second):
  """sequential's result: the second half's model, the steps and times of both halves."""
  out = summed(second, (first, second))
  out['search_steps'] = first.get('steps')
  return out


LR_GRID = (0.5, 1.0, 2.0)  # lr_grid's factors of config.lr


def base_value(field):
  """config.<field> of the runs: the config file's, or the last --override of it."""
  from dha_jax.core import config_util  # pylint: disable=g-import-not-at-top
  value = config_util.load(f'{FLAGS.config}:fixed')[field]
  for o in FLAGS.override:
    if o.startswith(f'--config.{field}='):
      value = type(value)(o.split('=', 1)[1])
  return value


def base_lr():
  return float(base_value('lr'))


def third_of_the_length():
  """Without a time budget an arm's budget is its length: each lr_grid run trains a third
  of config.num_steps (when set) or of config.num_epochs (rounded up where the field is
  an int), so that the grid costs what one fixed run costs."""
  steps = int(base_value('num_steps'))
  if steps > 0:
    return [f'--config.num_steps={math.ceil(steps / len(LR_GRID))}']
  epochs = base_value('num_epochs')  # an int field takes ints only: rounded up
  third = epochs / len(LR_GRID)
  return [f'--config.num_epochs={math.ceil(third) if isinstance(epochs, int) else third!r}']


def final_val_accuracy(workdir):
  """The last val/accuracy a run logged: its exported model's (train.finish)."""
  from dha_jax.io import metrics_io  # pylint: disable=g-import-not-at-top
  accs = [r['val/accuracy'] for r in metrics_io.read_rows(workdir) if 'val/accuracy' in r]
  if not accs:
    raise RunFailed('logged no val/accuracy (lr_grid chooses on it)', workdir)
  return accs[-1]


def run_lr_grid(seed, budget_s):
  """`fixed` at config.lr x LR_GRID, each with a third of the budget (time, or else
  length: third_of_the_length), in
  <workdir>/lr_grid/seed<s>/lr_x<factor>: the result of the one best on validation, with
  the steps and times of all three and each one's val accuracy."""
  lr, third = base_lr(), budget_s / len(LR_GRID) if budget_s else 0
  length = [] if budget_s else third_of_the_length()
  runs = []
  for f in LR_GRID:
    wd = os.path.join(run_dir('lr_grid', seed), f'lr_x{f:g}')
    result = _run(command('fixed', wd, third, seed, [*length, f'--config.lr={lr * f!r}']), wd)
    runs.append((final_val_accuracy(wd), f, result))
  val, factor, best = max(runs, key=lambda x: x[0])  # ties: the smaller factor
  out = summed(best, [r for _, _, r in runs])
  out['lr_grid'] = {f'{f:g}': v for v, f, _ in runs}
  out['lr_grid_factor'], out['lr_grid_val_accuracy'] = factor, val
  return out


def run_seed(variant, seed, budget_s):
  """The result of `variant` with config.seed = `seed` (RunFailed if there is none)."""
  arg = variant + (f'/{FLAGS.search}' if FLAGS.search else '')
  wd = run_dir(variant, seed)
  if variant == 'lr_grid':
    return run_lr_grid(seed, budget_s)
  if variant != 'sequential':
    return _run(command(arg, wd, budget_s, seed), wd)
  half = budget_s / 2 if budget_s else 0
  swd = run_dir(SEARCH_HALF, seed)
  try:
    first = _run(command(arg.replace('sequential', 'nas', 1), swd, half, seed), swd)
  except RunFailed as e:
    raise RunFailed(f'its search half: {e}', e.workdir) from e
  if not first.get('architecture', {}).get('genotype'):
    raise RunFailed('its search half derived no genotype (result.json has none): does '
                    "the config's 'nas' variant search?", swd)
  second = _run(command(arg, wd, half, seed, [genotype_flag(first, swd)]), wd)
  return combine(first, second)


def command_line():
  """This command as typed (absl leaves sys.argv whole; main's argv has no flags)."""
  return 'python -m dha_jax.compare ' + shlex.join(sys.argv[1:])


def _log_tail(workdir, lines=6):
  try:
    with open(os.path.join(workdir, 'compare.log'), errors='replace') as f:
      return f.read().splitlines()[-lines:]
  except OSError:
    return []


def _clock(results):
  """What train_time_s counts: config.time_budget_clock of a finished run."""
  for v, runs in results.items():
    for s in runs:
      path = os.path.join(run_dir(v, s), 'config.json')
      if os.path.exists(path):
        with open(path) as f:
          return json.load(f).get('time_budget_clock', FLAGS.budget_clock)
  return FLAGS.budget_clock


def write(summary, results, seeds, failures):
  """comparison.md, comparison.json and comparison.png in the workdir."""
  ref = FLAGS.reference
  clock = _clock(results)
  budget = (f'budget {FLAGS.budget_minutes:g} min ({FLAGS.budget_clock}) per run'
            if FLAGS.budget_minutes else 'no time budget')
  header = (f"{FLAGS.config}, {budget}, seeds {','.join(seeds)}, reference "
            f"{ref or '(none)'}\n\n`{command_line()}`\n\n")
  notes = ['Test accuracy: mean over the seeds ± the half-width of the 95% Student-t '
           'interval (n-1 degrees of freedom; none with one seed).']
  if ref:
    notes.append(f'Δ: mean over the seeds of (variant − {ref}) on the same seed, in '
                 'percentage points, ± its 95% t half-width; * where that interval '
                 'excludes 0.')
  notes.append(f'Steps and times are means over the finished seeds; train time counts {clock} '
               "seconds of training (config.time_budget_clock). sequential's are the sums "
               'of its two halves (steps: search + training).')
  floor = report.noise_floor(summary, ref)
  if floor:
    notes.append(f'Test-set noise floor: one accuracy measured on the test set alone '
                 f'varies by ±{100 * floor:.2f} pp (binomial 95%, the grey band of '
                 'comparison.png); a one-seed difference inside it is no finding.')
  md = header + report.table(summary, seeds, ref) + '\n' + '\n'.join(notes) + '\n'
  grid = report.lr_grid_choices(summary)
  if grid:
    md += '\nlr_grid: the factor of config.lr chosen on validation, per seed:\n\n' + grid
  g = report.genotypes(summary)
  if g:
    md += '\nArchitectures (searched, handed over or drawn), per seed:\n\n' + g
  if failures:
    md += '\nMissing (failed or not run; run the same command again to resume):\n\n' + \
        ''.join(f'- {v}, seed {s}: {msg} ({wd})\n' for v, s, wd, msg in failures)
  with open(os.path.join(FLAGS.workdir, 'comparison.md'), 'w') as f:
    f.write(md)
  with open(os.path.join(FLAGS.workdir, 'comparison.json'), 'w') as f:
    json.dump({'config': FLAGS.config, 'command': command_line(),
               'budget_minutes': FLAGS.budget_minutes, 'budget_clock': FLAGS.budget_clock,
               'seeds': seeds, 'reference': ref, 'level': stats.LEVEL,
               'variants': summary,
               'failures': [{'variant': v, 'seed': s, 'workdir': wd, 'error': msg}
                            for v, s, wd, msg in failures]}, f, indent=2)
  report.plot(summary, ref, os.path.join(FLAGS.workdir, 'comparison.png'), len(seeds))
  return md


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  for v in FLAGS.variants:
    if v not in experiments.VARIANTS:
      raise app.UsageError(f'--variants: {v!r} is not one of {experiments.VARIANTS}')
  if FLAGS.reference and FLAGS.reference not in FLAGS.variants:
    raise app.UsageError(f'--reference={FLAGS.reference!r} is not among --variants '
                         f"({','.join(FLAGS.variants)}); add it, or pass --reference=''")
  seeds = []
  for s in FLAGS.seeds:
    if not s.strip().lstrip('-').isdigit():
      raise app.UsageError(f'--seeds: {s!r} is not an integer')
    if str(int(s)) not in seeds:
      seeds.append(str(int(s)))
  os.makedirs(FLAGS.workdir, exist_ok=True)
  results, failures = {v: {} for v in FLAGS.variants}, []
  try:
    old = signal.signal(signal.SIGTERM, _Stop.handle)
  except ValueError:  # not the main thread: no forwarding
    old = None
  try:
    for s in seeds:  # every variant on the first seed first: a one-seed table early
      for v in FLAGS.variants:
        try:
          results[v][s] = run_seed(v, int(s), FLAGS.budget_minutes * 60)
        except RunFailed as e:
          failures.append((v, s, e.workdir, str(e)))
  finally:
    if old is not None:
      signal.signal(signal.SIGTERM, old)
    _Stop.requested = False
  summary = report.summarize(results, FLAGS.variants, seeds, FLAGS.reference)
  print(write(summary, results, seeds, failures), flush=True)
  if failures and FLAGS.report_only:
    print(f'{len(failures)} of {len(seeds) * len(FLAGS.variants)} runs are not finished yet',
          file=sys.stderr)
    return 0
  if failures:
    print(f'{len(failures)} of {len(seeds) * len(FLAGS.variants)} runs have no result:',
          file=sys.stderr)
    for v, s, wd, msg in failures:
      print(f'  {v}, seed {s}: {msg}; output in {wd}/compare.log', file=sys.stderr)
      for line in _log_tail(wd):
        print(f'    | {line}', file=sys.stderr)
    print('Run the same command again to resume them.', file=sys.stderr)
    return 1
  return 0


if __name__ == '__main__':
  app.run(main)
