"""N processes of dha_jax.main on this machine, each with its own fake CPU devices: the
multi-host code path (jax.distributed, per-process data slices, Orbax multi-process
checkpoints) without a cluster.

  python -m dha_jax.local_cluster --num_processes=2 -- --config=configs/digits.py \\
      --workdir=/tmp/digits_mp [--config.field=value ...]

Process 0's output is shown; the others' only if they fail. When one process fails the
others are stopped and its exit status is returned; a SIGTERM to this launcher reaches
every process (each saves a checkpoint and exits; the same command resumes).
"""

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def process_env(devices: int, env=None) -> dict:
  """The environment of one process: CPU only, `devices` fake devices (replacing any
  device count already in XLA_FLAGS)."""
  env = dict(os.environ if env is None else env)
  flags = re.sub(r'--xla_force_host_platform_device_count=\S+', '', env.get('XLA_FLAGS', ''))
  env['XLA_FLAGS'] = f'{flags.strip()} --xla_force_host_platform_device_count={devices}'.strip()
  env['JAX_PLATFORMS'] = 'cpu'
  return env


def commands(num_processes: int, main_args, port: int, timeout_s: int):
  return [[sys.executable, '-m', 'dha_jax.main', f'--coordinator_address=127.0.0.1:{port}',
           f'--num_processes={num_processes}', f'--process_id={i}',
           f'--distributed_timeout_s={timeout_s}', *main_args]
          for i in range(num_processes)]


def run(num_processes: int, main_args, devices_per_process: int = 2, timeout_s: int = 120,
        log_dir: str = '', out=sys.stdout) -> int:
  """Starts the processes, waits for all; the first non-zero exit status, else 0. With
  `log_dir`, each process's output goes to <log_dir>/process_<i>.log instead."""
  if num_processes < 1:
    raise ValueError(f'--num_processes={num_processes} must be at least 1')
  env = process_env(devices_per_process)
  if log_dir:
    os.makedirs(log_dir, exist_ok=True)
    logs = [open(os.path.join(log_dir, f'process_{i}.log'), 'w')
            for i in range(num_processes)]
  else:
    logs = [None] + [tempfile.TemporaryFile('w+') for _ in range(num_processes - 1)]
  procs = []
  for i, cmd in enumerate(commands(num_processes, main_args, free_port(), timeout_s)):
    procs.append(subprocess.Popen(cmd, env=env, stdout=logs[i], stderr=logs[i]))
    print(f'local_cluster: process {i} pid {procs[-1].pid}', file=sys.stderr, flush=True)

  def forward(signum, frame):
    del frame
    for p in procs:
      if p.poll() is None:
        p.send_signal(signum)
  old = signal.signal(signal.SIGTERM, forward)
  try:
    status = _wait(procs)
  finally:
    signal.signal(signal.SIGTERM, old)
    _stop(procs)
  for i, log in enumerate(logs):
    if log is not None and procs[i].returncode and not log_dir:
      log.seek(0)
      out.write(''.join(f'[process {i}] {line}' for line in log.read().splitlines(True)))
    if log is not None:
      log.close()
  return status


def _wait(procs) -> int:
  """Polls until all exit or one fails; that one's status."""
  while True:
    codes = [p.poll() for p in procs]
    failed = [c for c in codes if c not in (None, 0)]
    if failed:
      return failed[0]
    if all(c == 0 for c in codes):
      return 0
    time.sleep(0.2)


def _stop(procs, grace_s: float = 20.0):
  """The processes still running after one failed: SIGTERM, then SIGKILL after grace_s
  (they may be blocked in a collective that the failed one never joins)."""
  for p in procs:
    if p.poll() is None:
      p.terminate()
  deadline = time.time() + grace_s
  for p in procs:
    try:
      p.wait(max(0.0, deadline - time.time()))
    except subprocess.TimeoutExpired:
      p.kill()
      p.wait()


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--num_processes', type=int, default=2)
  parser.add_argument('--devices_per_process', type=int, default=2)
  parser.add_argument('--timeout_s', type=int, default=120,
                      help='how long the processes wait for each other to join')
  parser.add_argument('--log_dir', default='',
                      help="write every process's output to <log_dir>/process_<i>.log")
  parser.add_argument('main_args', nargs=argparse.REMAINDER,
                      help='-- then the arguments of python -m dha_jax.main')
  args = parser.parse_args(argv)
  main_args = args.main_args[1:] if args.main_args[:1] == ['--'] else args.main_args
  if not any(a.startswith('--workdir') for a in main_args):
    parser.error('give the arguments of dha_jax.main after --, e.g. -- '
                 '--config=configs/digits.py --workdir=/tmp/w')
  try:
    return run(args.num_processes, main_args, args.devices_per_process, args.timeout_s,
               args.log_dir)
  except ValueError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2


if __name__ == '__main__':
  sys.exit(main())
