"""eta's longer horizon (config.hpo.objective='forward', tangent_decay, every_steps):
the carried tangent and the hypergradient against their closed forms on a quadratic, the
learned rate against the quadratic's known best one, and an exact resume."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dha_jax.core import optim
from dha_jax.hpo import hypergrad

H = jnp.asarray([0.5, 1.0, 2.0])   # curvatures of the training quadratic 1/2 sum h theta^2
C = jnp.asarray([1.0, -0.5, 0.25])  # the held-out quadratic's minimum: 1/2 sum h (theta - c)^2


def _train_grad(theta):
  return H * theta


def _val_loss(theta):
  return 0.5 * jnp.sum(H * (theta - C) ** 2)


def _handler(test_config, eta_lr, **hpo):
  """Plain SGD on theta (no momentum, clip or weight decay), lr learned in log space."""
  c = test_config
  c.optimizer.name, c.optimizer.momentum, c.optimizer.grad_clip_norm = 'sgd', 0.0, 0.0
  c.weight_decay = 0.0
  c.hpo = hypergrad.default_config()
  c.hpo.update(enabled=True, objective='forward', learn_wd=False, lr_bounds=(1e-3, 1.0),
               lr_init=0.1, optimizer={'name': 'sgd', 'lr': eta_lr, 'momentum': 0.0},
               **hpo)
  return hypergrad.LearnedHparams(c), optim.net_optimizer(c)


def _stepper(handler, tx):
  """The real handler's step on plain (unbatched) trees, under a one-device 'data' axis
  (it pmeans the held-out gradient)."""
  step = jax.jit(jax.vmap(
      lambda o, th, hp, hs: handler.update_theta_and_eta(
          tx, o, th, _train_grad(th), hp, hs, handler.values, _val_loss),
      axis_name='data'))
  add = lambda t: jax.tree_util.tree_map(lambda a: jnp.asarray(a)[None], t)
  return lambda *args: jax.tree_util.tree_map(lambda a: a[0], step(*add(args)))


def _run(handler, tx, theta, steps):
  """`steps` steps from theta; per step the lr used and the logged dL/dlr, the thetas,
  and the final eta optimizer state."""
  step = _stepper(handler, tx)
  hparams = handler.init()
  hp_state = handler.init_opt_state(hparams, theta)
  opt_state = tx.init(theta)
  thetas, lrs, hgrads = [theta], [], []
  for _ in range(steps):
    out = step(opt_state, theta, hparams, hp_state)
    theta, opt_state, hparams, hp_state = out.params, out.opt_state, out.hparams, out.hp_opt_state
    thetas.append(theta)
    lrs.append(float(out.metrics['lr']))
    hgrads.append(float(out.metrics['hpo/grad_lr']))
  return thetas, lrs, hgrads, hp_state


@pytest.mark.parametrize('decay,reset', [(0.0, False), (0.7, False), (1.0, True)])
def test_carried_tangent_and_hypergradient_match_their_closed_forms(test_config, decay,
                                                                    reset):
  """With eta frozen (its optimizer's lr 0), theta_{s+1} = theta_s - lr g_s, so
  d theta_{s+1} / d u = -g_s dlr/du and Z_T = sum_s mu^(T-1-s) (-g_s) dlr/du, the sum
  from the last move of eta on when reset_tangent (mu = 1: the window's net
  displacement); every `every_steps` = 3 steps the logged dL/dlr is
  <grad L_val(theta_t), Z_t> / (dlr/du), and 0 between (no held-out pass)."""
  handler, tx = _handler(test_config, 0.0, tangent_decay=decay, every_steps=3,
                         reset_tangent=reset)
  thetas, lrs, hgrads, hp_state = _run(handler, tx, jnp.asarray([1.0, 2.0, -1.0]), 7)
  np.testing.assert_allclose(lrs, 0.1, rtol=1e-6)  # frozen
  grads = [np.asarray(_train_grad(t)) for t in thetas]

  def z(t):  # Z_t / (dlr/du): the tangent up to theta_t
    start = max((m for m in range(1, t) if m % 3 == 0), default=0) if reset else 0
    return sum((decay ** (t - 1 - s) * -grads[s] for s in range(start, t)), np.zeros(3))

  for t in range(7):  # hgrads[t] is taken at step t with Z_t
    expected = float(np.dot(np.asarray(jax.grad(_val_loss)(thetas[t])), z(t)))
    moving = t > 0 and t % 3 == 0
    assert hgrads[t] == pytest.approx(expected if moving else 0.0, rel=1e-5, abs=1e-7), t
  dlr_du = 0.1 * np.log(1.0 / 1e-3)
  np.testing.assert_allclose(hp_state['tangent']['lr'], z(7) * dlr_du, rtol=1e-5)
  assert int(hp_state['ready']) == 7


@pytest.mark.parametrize('decay', [0.0, 0.5])
def test_forward_settles_at_its_closed_form_rate_on_a_quadratic(test_config, decay):
  """GD on 1/2 h theta^2 (h = 2), the held-out loss the same quadratic, runs of 4 steps
  from a fixed start (eta kept across runs, the tangent new in each). With r = 1 - lr h,
  at a moving step t the hypergradient is -lr log(hi/lo) h^2 r^t theta_0^2 sum_{s<t}
  mu^(t-1-s) r^s, which changes sign at r = -mu: the rate settles at (1 + mu) / h. For
  mu = 0 that is 1/h, the known best rate (the minimum in one step); a decay biases it
  up (the Jacobian d theta_{t+1} / d theta_t taken as the identity ignores that a larger
  rate also changes later gradients)."""
  global H, C  # pylint: disable=global-statement
  saved = H, C
  H, C = jnp.full((3,), 2.0), jnp.zeros((3,))
  try:
    c = test_config
    handler, tx = _handler(c, 0.0, tangent_decay=decay, every_steps=2)
    c.hpo.optimizer = {'name': 'adam', 'lr': 0.01, 'b1': 0.9, 'b2': 0.999}
    handler = hypergrad.LearnedHparams(c)
    step, lrs = _stepper(handler, tx), []
    hparams = handler.init()
    eta_opt = handler.init_opt_state(hparams, jnp.zeros(3))['opt']
    for _ in range(150):
      theta = jnp.asarray([1.0, -2.0, 0.5])
      opt_state = tx.init(theta)
      hp_state = dict(handler.init_opt_state(hparams, theta), opt=eta_opt)
      for _ in range(4):
        out = step(opt_state, theta, hparams, hp_state)
        theta, opt_state, hparams, hp_state = (out.params, out.opt_state, out.hparams,
                                               out.hp_opt_state)
        lrs.append(float(out.metrics['lr']))
      eta_opt = hp_state['opt']
  finally:
    H, C = saved
  assert lrs[0] == pytest.approx(0.1, rel=1e-5)
  assert np.mean(lrs[-40:]) == pytest.approx((1 + decay) / 2.0, rel=0.05), lrs[::40]


def test_bad_horizon_settings_are_refused_naming_the_field(test_config):
  for field, value in (('tangent_decay', 1.0), ('tangent_decay', -0.1), ('every_steps', 0),
                       ('reset_tangent', True)):
    c = test_config.copy_and_resolve_references()
    c.hpo = hypergrad.default_config()
    c.hpo.update(enabled=True, objective='lagged' if field == 'reset_tangent' else 'forward')
    c.hpo[field] = value
    with pytest.raises(ValueError, match=f'config.hpo.{field}='):
      hypergrad.LearnedHparams(c)


def test_a_run_with_both_held_out_objectives_resumes_exactly(test_config, tmp_path,
                                                             monkeypatch):
  """eta on 'forward' (mu = 0.9, every 3 steps) and tau on its held-out objective in one
  real run: both move, and a run interrupted at step 10 and resumed equals the
  uninterrupted one bit for bit (the carried tangent and the step count are state)."""
  import resume_check  # pylint: disable=g-import-not-at-top
  from dha_jax.training import train  # pylint: disable=g-import-not-at-top
  c = test_config
  c.dataset.train_subset, c.num_epochs, c.eval_every_epochs = 320, 2, 0
  c.recalibration_batches = 0
  c.policy.name, c.policy.objective = 'learned', 'val'
  c.policy.optimizer = {'name': 'adam', 'lr': 0.05, 'b1': 0.9, 'b2': 0.999}
  c.hpo = hypergrad.default_config()
  c.hpo.update(enabled=True, objective='forward', tangent_decay=0.9, every_steps=3,
               lr_mode='multiplier', learn_wd=False,
               optimizer={'name': 'adam', 'lr': 0.05, 'b1': 0.9, 'b2': 0.999})
  ref = str(tmp_path / 'ref')
  result = train.train_and_evaluate(c, ref)
  rows = resume_check.rows(ref)
  multipliers = [r['hpo/lr_multiplier'] for r in rows if 'hpo/lr_multiplier' in r]
  assert multipliers and multipliers[-1] != pytest.approx(1.0, abs=1e-4)  # eta moved
  _, state = resume_check.final_state(ref)
  assert float(np.abs(state['params']['policy']['tau']).max()) > 1e-3  # tau moved
  got = str(tmp_path / 'resumed')
  resume_check.run_interrupted(c, got, monkeypatch, 10)
  resume_check.assert_same_run(got, ref, result['steps'])


def test_lagged_decay_carries_the_tangent_and_moves_eta_one_step_late(test_config):
  """'lagged' with mu = 0.5 and eta's optimizer Adam (lr 0.01 in u) on the quadratic.
  Step 0 has no tangent: eta and its optimizer's state stay exactly as they start (no
  zero-gradient Adam step). Step 1: the logged dL/dlr is <g_1, -g_0> (closed form, 1e-5),
  and eta moves first by Adam's first step, -0.01 sign(dL/du) (1e-5). After step 1 the
  tangent is Z_2 = mu Z_1 - g_1 dlr/du(u_1), Z_1 = -g_0 dlr/du(u_0). The step count
  saturates at the int32 maximum, and eta still moves there."""
  _, tx = _handler(test_config, 0.01)
  test_config.hpo.objective, test_config.hpo.tangent_decay = 'lagged', 0.5
  test_config.hpo.optimizer = {'name': 'adam', 'lr': 0.01, 'b1': 0.9, 'b2': 0.999}
  handler = hypergrad.LearnedHparams(test_config)
  step = _stepper(handler, tx)
  theta0 = jnp.asarray([1.0, 2.0, -1.0])
  u0 = handler.init()
  hp0 = handler.init_opt_state(u0, theta0)
  out0 = step(tx.init(theta0), theta0, u0, hp0)
  jax.tree_util.tree_map(np.testing.assert_array_equal, (out0.hparams, out0.hp_opt_state['opt']),
                         (u0, hp0['opt']))
  assert float(out0.metrics['hpo/grad_lr']) == 0.0
  theta1 = out0.params
  out1 = step(out0.opt_state, theta1, out0.hparams, out0.hp_opt_state)
  g0, g1 = np.asarray(_train_grad(theta0)), np.asarray(_train_grad(theta1))
  assert float(out1.metrics['hpo/grad_lr']) == pytest.approx(float(np.dot(g1, -g0)), rel=1e-5)
  assert float(out1.hparams['lr']) == pytest.approx(float(u0['lr']) + 0.01, rel=1e-5)  # dL/du < 0
  dlr_du = lambda u: float(handler.values({'lr': u})['learning_rate']) * np.log(1e3)
  z2 = 0.5 * -g0 * dlr_du(u0['lr']) - g1 * dlr_du(out1.hparams['lr'])
  np.testing.assert_allclose(out1.hp_opt_state['tangent']['lr'], z2, rtol=1e-5)
  top = np.iinfo(np.int32).max
  late = dict(out1.hp_opt_state, ready=jnp.asarray(top, jnp.int32))
  out2 = step(out1.opt_state, out1.params, out1.hparams, late)
  assert int(out2.hp_opt_state['ready']) == top
  assert float(out2.hparams['lr']) != float(out1.hparams['lr'])
