"""Learned eta (learning rate, weight decay) by the exact one-step hypergradient
(docs/method.md section 4).

theta_{t+1}(eta) is the run's own optax update of theta_t with eta injected; the
hypergradient is d L_hpo(theta_{t+1}(eta)) / d eta with theta_t, the optimizer moments
and g_t held constant (first order). config.hpo.objective picks L_hpo:
  'val'     a held-out, un-augmented batch: one extra forward/backward at theta_{t+1}
  'train'   a fresh un-augmented training batch: the same cost
  'lagged'  no extra network pass: the NEXT step's training gradient g_{t+1} (computed
            anyway) times d theta_{t+1} / d eta_t, a forward-mode tangent of the update
            kept in the state; eta_t is therefore updated one step late.
  'forward' a longer horizon (as MARTHE): the tangent Z is carried over the steps with a
            decay, Z_{t+1} = mu Z_t + d theta_{t+1} / d eta_t (config.hpo.tangent_decay
            mu; the Jacobian d theta_{t+1} / d theta_t taken as the identity, so no
            second-order pass), and every config.hpo.every_steps steps eta moves along
            <grad L_val(theta_t), Z_t> on a held-out batch. Z sums ~1/(1 - mu) past
            updates: the gradient says whether a larger eta over that window would have
            lowered the held-out loss, not the next step's training loss, whose greedy
            answer is to shrink the learning rate once the loss is noise-dominated.
            'lagged' takes the same decay (0: today's one-step tangent).
            config.hpo.reset_tangent restarts Z after each move of eta, so that Z covers
            exactly the steps since (mu = 1 allowed: Z is then the derivative of the
            window's net displacement). Why: SGD oscillates across the sharpest
            directions (the edge of stability), where the last update always points
            uphill of the next gradient; a decayed Z is dominated by those last updates
            and pushes the rate down whatever the progress, while over a whole window
            the oscillations cancel and Z follows the net progress.

eta is stored normalised to its bounds, u in [0, 1]: value = low + u (high - low)
('linear') or low (high / low)^u ('log'). Why: one step of eta's own optimizer then moves
lr and wd by the same fraction of their ranges, the midpoint is u = 0.5 and clamping to
the bounds is a clip of u.
"""

import math

import jax
import jax.numpy as jnp
import ml_collections
import optax
from ml_collections import config_dict

from dha_jax.core import config_util, optim, parallel
from dha_jax.hpo import base

KINDS = ('lr', 'weight_decay')                # keys of TrainState.hparams
OPT_NAMES = {'lr': 'learning_rate', 'weight_decay': 'weight_decay'}  # optimizer's names
GROUPS = ('conv', 'dense', 'norm_bias')        # per_group=True: one eta per group
OBJECTIVES = ('val', 'train', 'lagged', 'forward')
TANGENT = ('lagged', 'forward')  # the objectives that keep d theta / d eta in the state


def default_config():
  """Every field config.hpo may hold, with its default (paste into configs/default.py)."""
  h = ml_collections.ConfigDict()
  h.enabled = False          # learn eta (False: config.lr / config.weight_decay x schedule)
  h.handler = 'hypergrad'    # which handler learns it: a name in hpo.base.HANDLERS
  h.objective = 'train'      # 'val' (held-out batch) | 'train' (fresh train batch) | 'lagged' (next step's gradient, ~free)
  h.lr_bounds = (1e-3, 0.05)   # [low, high] of the learned learning rate
  h.wd_bounds = (1e-4, 5e-4)   # [low, high] of the learned weight decay
  h.lr_init = config_dict.placeholder(float)  # start value (None: midpoint of the bounds in `space`)
  h.wd_init = config_dict.placeholder(float)
  h.space = 'log'            # 'log' | 'linear': eta's optimizer steps in log(value) or value (normalised to the bounds)
  h.per_group = False        # one eta per parameter group: conv kernels | dense kernels | norm scales and biases
  h.use_schedule = False     # True: lr = learned lr x base schedule (config.schedule); False: learned lr only
  h.lr_mode = 'absolute'     # 'absolute': lr learned in lr_bounds (the reference) | 'multiplier':
  #                            lr = config.lr x schedule x m, m learned in lr_multiplier_bounds
  #                            from 1 (docs/method.md 4; use_schedule, lr_bounds and lr_init unused)
  h.lr_multiplier_bounds = (0.25, 4.0)
  h.learn_wd = True          # False: weight decay stays config.weight_decay (only lr is learned)
  h.tangent_decay = 0.0      # 'lagged' / 'forward': mu of the carried tangent (0: one step)
  h.every_steps = 1          # 'forward': eta moves every this many steps (1 held-out gradient each)
  h.reset_tangent = False    # 'forward': restart the tangent after each eta move (then mu = 1 is allowed)
  h.optimizer = ml_collections.ConfigDict(
      {'name': 'adam', 'lr': 1e-3, 'b1': 0.9, 'b2': 0.999})  # eta's optimizer; lr is a fraction of the bound range per step
  return h


def _settings(hpo_config):
  """config.hpo over default_config(): fields a config leaves out take their default."""
  return config_util.merge(default_config(), hpo_config, 'config.hpo')


def group_index(leaf) -> int:
  """Parameter group of a theta leaf by its shape: conv kernels are >= 3-D, dense
  kernels 2-D, BatchNorm scales/offsets and biases 1-D (no path names: any model works)."""
  return 0 if leaf.ndim >= 3 else 1 if leaf.ndim == 2 else 2


def _dtype():
  return jax.dtypes.canonicalize_dtype(jnp.float64)  # float32 unless x64 is enabled


@base.HANDLERS.register('hypergrad')
class LearnedHparams(base.Handler):
  """eta learned by hypergradient descent; see the module docstring."""

  def __init__(self, config):
    h = self.settings = _settings(config.hpo)
    if h.objective not in OBJECTIVES:
      raise ValueError(f'config.hpo.objective={h.objective!r}: use one of {OBJECTIVES}')
    if h.space not in ('log', 'linear'):
      raise ValueError(f"config.hpo.space={h.space!r}: use 'log' or 'linear'")
    if h.lr_mode not in ('absolute', 'multiplier'):
      raise ValueError(f"config.hpo.lr_mode={h.lr_mode!r}: use 'absolute' or 'multiplier'")
    self.objective, self.per_group, self.log = h.objective, bool(h.per_group), h.space == 'log'
    self.decay, self.every = float(h.tangent_decay), int(h.every_steps)
    self.reset = bool(h.get('reset_tangent', False))
    if not (0.0 <= self.decay < 1.0 or (self.decay == 1.0 and self.reset)):
      raise ValueError(f'config.hpo.tangent_decay={h.tangent_decay}: use 0 <= mu < 1 '
                       '(mu = 1 only with reset_tangent=True)')
    if self.reset and h.objective != 'forward':
      raise ValueError("config.hpo.reset_tangent=True needs config.hpo.objective='forward'")
    if self.every < 1:
      raise ValueError(f'config.hpo.every_steps={h.every_steps}: use a whole number >= 1')
    self.multiplier = h.lr_mode == 'multiplier'
    self.use_schedule = self.multiplier or bool(h.use_schedule)
    self.base_lr, self.fixed_wd = float(config.lr), float(config.weight_decay)
    self.kinds = KINDS if h.learn_wd else ('lr',)
    if self.multiplier:  # lr = base lr x m: the same maths with the bounds scaled by it
      lo, hi = self._check_bounds('lr_multiplier_bounds', h.lr_multiplier_bounds)
      if not lo <= 1.0 <= hi:
        raise ValueError(f'config.hpo.lr_multiplier_bounds={tuple(h.lr_multiplier_bounds)} '
                         'must contain 1 (the hand-set schedule, where m starts)')
      self.bounds = {'lr': (self.base_lr * lo, self.base_lr * hi)}
      init = {'lr': self.base_lr}
    else:
      self.bounds = {'lr': self._check_bounds('lr_bounds', h.lr_bounds)}
      init = {'lr': h.lr_init}
    self.bounds['weight_decay'] = self._check_bounds('wd_bounds', h.wd_bounds)
    init['weight_decay'] = h.wd_init
    self.start = {}
    for kind, field in (('lr', 'lr_init'), ('weight_decay', 'wd_init')):
      lo, hi = self.bounds[kind]
      v = init[kind]
      if v is not None and not lo * (1 - 1e-6) <= v <= hi * (1 + 1e-6):
        raise ValueError(f'config.hpo.{field}={v} lies outside its bounds [{lo}, {hi}]')
      self.start[kind] = 0.5 if v is None else min(max(self.to_unit(kind, v), 0.0), 1.0)
    self.tx = optim.group_optimizer(h.optimizer)

  def _check_bounds(self, field, b):
    lo, hi = (float(x) for x in b)
    if not (0 <= lo < hi and (lo > 0 or not self.log)):
      raise ValueError(f'config.hpo.{field}={tuple(b)}: need 0 {"<" if self.log else "<="} '
                       f'low < high')
    return lo, hi

  # ---- the space: u in [0, 1] <-> value --------------------------------------------
  def _value(self, kind, u):
    lo, hi = self.bounds[kind]
    if self.log:
      return lo * jnp.exp(u * math.log(hi / lo))
    return lo + u * (hi - lo)

  def to_unit(self, kind, v):
    lo, hi = self.bounds[kind]
    return math.log(v / lo) / math.log(hi / lo) if self.log else (v - lo) / (hi - lo)

  def _dvalue_du(self, kind, u):
    lo, hi = self.bounds[kind]
    return self._value(kind, u) * math.log(hi / lo) if self.log else hi - lo

  # ---- the handler contract (dha_jax/hpo/base.py) ------------------------------------
  def init(self):
    shape = (len(GROUPS),) if self.per_group else ()
    return {k: jnp.full(shape, self.start[k], _dtype()) for k in self.kinds}

  def values(self, hparams):
    out = {OPT_NAMES[k]: self._value(k, hparams[k]) for k in self.kinds}
    if 'weight_decay' not in self.kinds:
      out['weight_decay'] = jnp.full(jnp.shape(hparams['lr']), self.fixed_wd, _dtype())
    return out

  def init_opt_state(self, hparams, net=None):
    """eta's optimizer state; 'lagged' also keeps d theta_{t+1} / d u_t (one tree like
    theta per kind), so it needs the network's parameters (shapes) `net`."""
    state = {'opt': self.tx.init(hparams)}
    if self.objective in TANGENT:
      zeros = lambda: {} if net is None else jax.tree_util.tree_map(jnp.zeros_like, net)
      state.update(tangent={k: zeros() for k in self.kinds}, ready=jnp.zeros((), jnp.int32))
    return state

  def update_theta_and_eta(self, tx, opt_state, params, grads, hparams, hp_opt_state,
                           eta_fn, hpo_loss):
    gid = jax.tree_util.tree_map(group_index, params)

    def theta_next(u):
      return optim.update_theta(tx, opt_state, params, grads, eta_fn(u),
                                gid if self.per_group else None)

    if self.objective in TANGENT:
      new_params, new_net_opt, new_u, new_hp_state, hgrad, extra = self._lagged(
          theta_next, grads, gid, hparams, hp_opt_state, params, hpo_loss)
      used = new_u        # eta moves first, then theta steps with it
    else:
      new_params, new_net_opt, new_u, new_hp_state, hgrad, extra = self._through_loss(
          theta_next, hpo_loss, hparams, hp_opt_state)
      used = hparams
    # hgrad is at the input u in both modes (lagged: the u its tangent was taken at).
    metrics = self._metrics(eta_fn(used), hparams, new_u, hgrad)
    metrics.update(extra)
    return base.Update(new_params, new_net_opt, new_u, new_hp_state, metrics)

  def _through_loss(self, theta_next, hpo_loss, u, hp_state):
    """'val'/'train': reverse mode through the update and L_hpo at theta_{t+1}."""
    if hpo_loss is None:
      raise ValueError(f'config.hpo.objective={self.objective!r} needs the HPO batch '
                       "(batch['hpo_image'], batch['hpo_label'])")

    def objective(u):
      new_p, new_o = theta_next(u)
      return hpo_loss(new_p), (new_p, new_o)

    (loss, (new_params, new_net_opt)), hgrad = jax.value_and_grad(
        objective, has_aux=True)(u)
    hgrad, loss = parallel.pmean((hgrad, loss))   # hpo_loss is local to the device
    new_u, new_opt = self._step_eta(hgrad, u, hp_state['opt'])
    return new_params, new_net_opt, new_u, {'opt': new_opt}, hgrad, {'hpo/loss': loss}

  def _lagged(self, theta_next, grads, gid, u, hp_state, params, hpo_loss):
    """'lagged': g_{t+1} . Z_t updates u_t one step late ('forward': grad L_val(theta_t) .
    Z_t, every `every` steps); then Z_{t+1} = mu Z_t + the tangent of this step's update
    (forward mode, no network pass) is stored for the next."""
    tangent = hp_state['tangent']
    if not jax.tree_util.tree_leaves(tangent['lr']):
      raise ValueError(f'config.hpo.objective={self.objective!r} keeps a tangent shaped '
                       'like theta: create the state with hpo.init_opt_state(hparams, '
                       'net_params)')
    # 'ready' counts the steps taken; step 0 has no tangent yet: no eta step.
    count = hp_state['ready']
    moves = count > 0
    if self.objective == 'forward':
      if hpo_loss is None:
        raise ValueError("config.hpo.objective='forward' needs the held-out batch "
                         "(batch['hpo_image'], batch['hpo_label'])")
      moves = moves & (count % self.every == 0)
      # hpo_loss is local to the device: pmean its gradient; computed on moving steps only
      probe = jax.lax.cond(moves, lambda: parallel.pmean(jax.grad(hpo_loss)(params)),
                           lambda: jax.tree_util.tree_map(jnp.zeros_like, params))
    else:  # grads are already averaged over devices and the tangent is replicated
      probe = grads
    hgrad = self._contract(probe, tangent, gid)
    new_u, new_opt = self._step_eta(hgrad, u, hp_state['opt'])
    new_u, new_opt = jax.tree_util.tree_map(lambda a, b: jnp.where(moves, a, b),
                                            (new_u, new_opt), (u, hp_state['opt']))
    (new_params, new_net_opt), lin = jax.linearize(theta_next, new_u)
    new_tangent = {k: lin({j: jnp.full_like(new_u[j], j == k) for j in self.kinds})[0]
                   for k in self.kinds}
    if self.decay:
      keep = self.decay * (1.0 - moves.astype(jnp.float32)) if self.reset else self.decay
      new_tangent = jax.tree_util.tree_map(lambda z, b: keep * z + b, tangent, new_tangent)
    new_state = {'opt': new_opt, 'tangent': new_tangent,
                 'ready': jnp.minimum(count, jnp.iinfo(jnp.int32).max - 1) + 1}
    return new_params, new_net_opt, new_u, new_state, hgrad, {}

  # ---- pieces ----------------------------------------------------------------------
  def _contract(self, grads, tangent, gid):
    """<g_{t+1}, d theta_{t+1} / d u_t>, summed per group. A leaf depends only on its own
    group's eta (after the eta-free clip every optimizer op is per leaf), so one tangent
    per kind holds every group's derivative on that group's leaves."""
    out = {}
    for k in self.kinds:
      dots = jax.tree_util.tree_leaves(jax.tree_util.tree_map(
          lambda g, t: jnp.sum(g * t), grads, tangent[k]))
      if not self.per_group:
        out[k] = sum(dots).astype(_dtype())
      else:
        sums = [jnp.zeros((), _dtype())] * len(GROUPS)
        for d, g in zip(dots, jax.tree_util.tree_leaves(gid)):
          sums[g] = sums[g] + d
        out[k] = jnp.stack(sums)
    return out

  def _step_eta(self, hgrad, u, opt):
    updates, opt = self.tx.update(hgrad, opt, u)
    new = optax.apply_updates(u, updates)
    return jax.tree_util.tree_map(lambda x: jnp.clip(x, 0.0, 1.0), new), opt

  def _metrics(self, eta_used, u_grad, u_new, hgrad):
    """Scalars only: the eta the optimizer used (lr, weight_decay), the learned value now
    held (hpo/...), dL_hpo/d value at u_grad (hpo/grad_...), on-bound flags."""
    m = {}
    if 'weight_decay' not in self.kinds:  # fixed: logged like the learned one
      wd = eta_used['weight_decay']
      m['weight_decay'] = wd[0] if self.per_group else wd
    for k in self.kinds:
      series = {
          k: eta_used[OPT_NAMES[k]],
          f'hpo/{k}': self._value(k, u_new[k]),
          f'hpo/grad_{k}': hgrad[k] / self._dvalue_du(k, u_grad[k]),
          f'hpo/at_bound_{k}': ((u_new[k] <= 0) | (u_new[k] >= 1)).astype(jnp.float32),
      }
      if self.multiplier and k == 'lr':
        series['hpo/lr_multiplier'] = self._value(k, u_new[k]) / self.base_lr
      for name, v in series.items():
        if self.per_group:
          m.update({f'{name}/{g}': v[i] for i, g in enumerate(GROUPS)})
        else:
          m[name] = v
      if self.per_group:  # the console line reads 'lr': the conv group's
        m[k] = eta_used[OPT_NAMES[k]][0]
    return m
