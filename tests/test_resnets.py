"""ResNet-20 and WRN-28-10 in every layer form: parameter counts, shapes, gradients, oracles.

Full-size networks are only traced (`jax.eval_shape`); everything that computes uses the tiny
presets of the configs' `smoke` size. Parameters of the tiny networks are drawn with numpy from the
traced shapes rather than by `Module.init`, which saves compiling the initialisers.

Parameter counts (printed by `test_parameter_counts_full_size`; run pytest with `-s` to see them)
are checked against an independent count from the layer list, and against the official figures:
WRN-28-10 plain 36.5 M and batch ensemble (M = 4) 36.6 M agree. The official hyper-batch figures
(73.1 M / 73.2 M for CIFAR-10 / 100) are Keras `count_params()`, which also counts BatchNorm's
running mean and variance (17 952 numbers); our trainable counts plus those running statistics
equal the official figures exactly, as the formula below computes them (bias-free convolutions
have an embedding of d_out outputs, layers with a bias 2·d_out, as in the official layers).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.linen import meta

from hyper_ensembles.models import kit as kit_lib
from hyper_ensembles.models import resnet20, wide_resnet
from hyper_ensembles.models.conditioning import Conditioning
from hyper_ensembles.models.layers import PENALTY_COLLECTION
from hyper_ensembles.models.normalization import BatchNorm

FORMS = ('plain', 'batch', 'hyper_batch')
M = 3  # members of the tiny ensembles
B = 2  # examples per member
D = len(resnet20.TUNED_L2)  # tuned hyperparameters λ of the hyper-batch form (official: 6)
IMAGE = (32, 32, 3)


def tiny(arch: str, kit: kit_lib.LayerKit, num_classes: int = 10) -> nn.Module:
  """The configs' smoke presets (configs/resnet20.py, configs/wrn28_10.py)."""
  if arch == 'resnet20':
    return resnet20.ResNet(kit, num_classes, widths=(4, 8, 8), blocks_per_stage=1)
  return wide_resnet.WideResNet(kit, num_classes, depth=10, width=1)


def full(arch: str, kit: kit_lib.LayerKit, num_classes: int) -> nn.Module:
  if arch == 'resnet20':
    return resnet20.ResNet(kit, num_classes)
  return wide_resnet.WideResNet(kit, num_classes)


def make_kit(form: str) -> kit_lib.LayerKit:
  return kit_lib.LayerKit(form=form, num_members=1 if form == 'plain' else M)


def lead_shape(form: str, members: int = M, batch: int = B) -> tuple[int, ...]:
  return (batch,) if form == 'plain' else (members, batch)


def make_cond(form: str, values: dict | None = None, members: int = M, batch: int = B,
              lam_tilde=None) -> Conditioning:
  """Hyperparameters in each form's row shape (conditioning.py): [], [M, 1] or [M, B]."""
  values = values or {}
  shape = {'plain': (), 'batch': (members, 1), 'hyper_batch': (members, batch)}[form]
  hparams = {n: jnp.full(shape, values.get(n, 1.0), jnp.float32) for n in resnet20.HPARAMS}
  if form == 'hyper_batch' and lam_tilde is None:
    lam_tilde = jnp.full((members, batch, D), 0.5, jnp.float32)
  return Conditioning(hparams=hparams, lam_tilde=lam_tilde)


def shapes_of(model: nn.Module, form: str, members: int = M) -> dict:
  x = jax.ShapeDtypeStruct((*lead_shape(form, members, 1), *IMAGE), jnp.float32)
  cond = make_cond(form, members=members, batch=1)
  return jax.eval_shape(lambda x: meta.unbox(model.init(jax.random.PRNGKey(0), x, cond)), x)


def random_variables(shapes: dict, seed: int = 0) -> dict:
  """Numpy draws with sensible scales for every leaf of the traced variables."""
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    name = jax.tree_util.keystr(path)
    if "'var'" in name:
      return jnp.asarray(rng.uniform(0.5, 1.5, leaf.shape), jnp.float32)
    if 'fast' in name or "'scale'" in name:
      return jnp.asarray(1.0 + 0.3 * rng.standard_normal(leaf.shape), jnp.float32)
    fan_in = int(np.prod(leaf.shape[:-1])) if len(leaf.shape) > 1 else 1
    return jnp.asarray(rng.standard_normal(leaf.shape) / np.sqrt(fan_in), jnp.float32)

  return jax.tree_util.tree_map_with_path(draw, shapes)


def count(tree) -> int:
  return int(sum(np.prod(leaf.shape) for leaf in jax.tree.leaves(tree)))


# --- independent parameter counts ---------------------------------------------------------------


def layer_list(arch: str, num_classes: int):
  """(convs as (k, c_in, c_out), BatchNorm channel counts, dense (c_in, c_out)) of full size."""
  if arch == 'resnet20':
    widths, convs, bns, cin = (16, 32, 64), [(3, 3, 16)], [16], 16
    for w in widths:
      for _ in range(3):
        convs += [(3, cin, w), (3, w, w)]
        bns += [w, w]
        cin = w
    return convs, bns, (64, num_classes)
  convs, bns, cin = [(3, 3, 16)], [], 16
  for group, base in enumerate((16, 32, 64)):
    w = base * 10
    for block in range(4):
      convs += [(3, cin, w), (3, w, w)]
      bns += [cin, w]
      if cin != w or (group and not block):
        convs.append((1, cin, w))
      cin = w
  bns.append(cin)
  return convs, bns, (640, num_classes)


def expected_counts(arch: str, num_classes: int, members: int = 4) -> dict[str, int]:
  convs, bns, (d_in, c) = layer_list(arch, num_classes)
  kernels = sum(k * k * ci * co for k, ci, co in convs)
  fast = sum(members * (ci + co) for _, ci, co in convs) + members * (d_in + c)
  bn = 2 * sum(bns)
  plain = kernels + bn + d_in * c + c
  batch = kernels + bn + fast + d_in * c + members * c
  # W and Δ everywhere; embeddings D × d_out for bias-free convs, D × 2·d_out for the dense layer
  # (weights and bias parts); dense b and δ per member.
  hyper = (2 * kernels + bn + fast + sum(D * co for _, _, co in convs)
           + 2 * d_in * c + D * 2 * c + 2 * members * c)
  # Official Keras count: the same plus BatchNorm's running statistics.
  official_hyper = hyper + bn
  return {'plain': plain, 'batch': batch, 'hyper_batch': hyper, 'official_hyper': official_hyper}


@pytest.mark.parametrize('arch', ['resnet20', 'wrn28_10'])
def test_parameter_counts_full_size(arch):
  rows = []
  for num_classes in (10, 100):
    expected = expected_counts(arch, num_classes)
    for form in FORMS:
      members = 1 if form == 'plain' else 4
      kit = kit_lib.LayerKit(form=form, num_members=members)
      variables = shapes_of(full(arch, kit, num_classes), form, members)
      params, stats = count(variables['params']), count(variables['batch_stats'])
      assert params == expected[form], (arch, form, num_classes)
      assert stats == 2 * sum(layer_list(arch, num_classes)[1])  # mean and variance per channel
      rows.append(f'{arch:9s} C={num_classes:3d} {form:12s} {params:>12,d} '
                  f'({params / 1e6:.2f} M; +{stats:,d} BN running statistics)')
    rows.append(f'{arch:9s} C={num_classes:3d} {"official":12s} '
                f'{expected["official_hyper"]:>12,d} (hyper-batch as Keras counts it)')
  print('\n' + '\n'.join(rows))
  if arch == 'resnet20':
    # He et al. 2016: 0.27 M. Keras counts 272 474 with the running statistics.
    assert expected_counts(arch, 10)['plain'] == 269_722
  else:
    c10, c100 = expected_counts(arch, 10), expected_counts(arch, 100)
    assert round(c10['plain'] / 1e6, 1) == 36.5 and round(c100['plain'] / 1e6, 1) == 36.5
    assert round(c10['batch'] / 1e6, 1) == 36.6 and round(c100['batch'] / 1e6, 1) == 36.6
    assert round(c10['official_hyper'] / 1e6, 1) == 73.1
    assert round(c100['official_hyper'] / 1e6, 1) == 73.2
    assert c10['official_hyper'] - c10['hyper_batch'] == 17_952  # Keras' BN running statistics


# --- tiny networks: shapes, gradients, L2 groups ------------------------------------------------


def _module_sq_norms(params, predicate) -> float:
  """Σ‖θ‖² over the parameters of modules whose path satisfies `predicate(path_string)`."""
  total = 0.0
  for path, leaf in jax.tree_util.tree_leaves_with_path(params):
    name = jax.tree_util.keystr(path)
    if predicate(name):
      total += float(np.sum(np.asarray(leaf, np.float64) ** 2))
  return total


def l2_group_oracle(params, group: str, form: str) -> float:
  """What the penalty's derivative w.r.t. a group's coefficient must be (plain / batch forms).

  Independent of the layers' `kernel_l2=` wiring: groups are found here by module names.
  Per-member parameters (batch-ensemble dense bias) count as the member mean.
  """
  def is_kernel(n):
    return n.endswith("['kernel']")

  if group == 'l2_input_conv':
    return _module_sq_norms(params, lambda n: n.startswith("['input_conv']") and is_kernel(n))
  if group.startswith('l2_group_'):
    g = group[-1]
    return _module_sq_norms(
        params, lambda n: n.startswith(f"['group_{g}_block_") and 'bn' not in n and is_kernel(n))
  if group == 'l2_dense_kernel':
    return _module_sq_norms(params, lambda n: n == "['logits']['kernel']")
  if group == 'l2_dense_bias':
    total = _module_sq_norms(params, lambda n: n == "['logits']['bias']")
    return total / (M if form == 'batch' else 1)
  assert group == 'l2_bn'
  return _module_sq_norms(params, lambda n: 'bn' in n)  # input_bn, bn_0, bn_1, final_bn


@pytest.mark.parametrize('arch', ['resnet20', 'wrn28_10'])
@pytest.mark.parametrize('form', FORMS)
def test_tiny_forward_backward_and_l2_groups(arch, form):
  model = tiny(arch, make_kit(form))
  variables = random_variables(shapes_of(model, form))
  params, stats = variables['params'], variables['batch_stats']
  x = jax.random.normal(jax.random.PRNGKey(1), (*lead_shape(form), *IMAGE))
  coefs = {n: jnp.asarray(1.0) for n in resnet20.HPARAMS}

  @jax.jit
  def step(params, coefs):
    def loss(params, coefs):
      cond = make_cond(form)
      cond = Conditioning(
          hparams={n: v * coefs[n] for n, v in cond.hparams.items()}, lam_tilde=cond.lam_tilde)
      logits, mutated = model.apply({'params': params, 'batch_stats': stats}, x, cond,
                                    train=True, mutable=['batch_stats', PENALTY_COLLECTION])
      penalty = sum(jax.tree.leaves(mutated[PENALTY_COLLECTION]))
      return jnp.mean(jax.nn.logsumexp(logits, -1)) + penalty, (logits, mutated['batch_stats'])
    return jax.grad(loss, argnums=(0, 1), has_aux=True)(params, coefs)

  (grads, coef_grads), (logits, new_stats) = step(params, coefs)
  assert logits.shape == (*lead_shape(form), 10)
  assert np.all(np.isfinite(logits))
  for path, g in jax.tree_util.tree_leaves_with_path(grads):
    name = jax.tree_util.keystr(path)
    assert np.all(np.isfinite(g)), name
    if 'embedding' not in name:  # e(λ̃) sees a constant λ̃ here; its gradient may vanish
      assert np.any(g != 0), f'no gradient reaches {name}'
  # Train mode updates every running statistic (momentum 0.9 towards the batch statistics).
  for old, new in zip(jax.tree.leaves(stats), jax.tree.leaves(new_stats)):
    assert not np.allclose(old, new)
  # d penalty / d ν_group = Σ‖θ‖² of exactly that group's parameters (plain and batch forms; the
  # hyper form's closed-form L2 has its own oracle tests in test_hyper_layers.py).
  assert set(coef_grads) == set(resnet20.HPARAMS)
  for group, value in coef_grads.items():
    assert float(value) > 0, group
    if form != 'hyper_batch':
      np.testing.assert_allclose(float(value), l2_group_oracle(params, group, form), rtol=1e-5,
                                 err_msg=group)


# --- oracles: batch ensemble = explicit member loop; hyper with e ≡ 0 = batch ---------------------


def member_params(batch_params, k: int):
  """Plain parameters of member k: W_k = W ∘ r_k s_kᵀ materialised, b_k selected."""
  if isinstance(batch_params, dict) and 'fast_in' in batch_params:
    r, s = batch_params['fast_in'][k], batch_params['fast_out'][k]
    out = {'kernel': batch_params['kernel'] * r[:, None] * s[None, :]}
    if 'bias' in batch_params:
      out['bias'] = batch_params['bias'][k]
    return out
  if isinstance(batch_params, dict):
    return {name: member_params(value, k) for name, value in batch_params.items()}
  return batch_params  # shared (BatchNorm) parameters


@pytest.mark.parametrize('arch', ['resnet20', 'wrn28_10'])
def test_batch_ensemble_equals_member_loop(arch):
  """Eval mode (shared running statistics): member k of the batch-form network equals the plain
  network with member k's materialised weights, on member k's own inputs."""
  batch_model = tiny(arch, make_kit('batch'))
  plain_model = tiny(arch, make_kit('plain'))
  variables = random_variables(shapes_of(batch_model, 'batch'), seed=3)
  x = jax.random.normal(jax.random.PRNGKey(2), (M, B, *IMAGE))
  logits = jax.jit(lambda v: batch_model.apply(v, x, make_cond('batch')))(variables)
  plain_apply = jax.jit(lambda v, xk: plain_model.apply(v, xk, make_cond('plain')))
  for k in range(M):
    plain_vars = {'params': member_params(variables['params'], k),
                  'batch_stats': variables['batch_stats']}
    expected = plain_apply(plain_vars, x[k])
    np.testing.assert_allclose(logits[k], expected, rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize('arch', ['resnet20', 'wrn28_10'])
def test_hyper_with_zero_embedding_equals_batch(arch):
  hyper_model = tiny(arch, make_kit('hyper_batch'))
  batch_model = tiny(arch, make_kit('batch'))
  hyper_vars = random_variables(shapes_of(hyper_model, 'hyper_batch'), seed=4)
  zero_e = jax.tree_util.tree_map_with_path(
      lambda p, v: jnp.zeros_like(v) if 'embedding' in jax.tree_util.keystr(p) else v,
      hyper_vars['params'])

  def to_batch(tree):
    if 'delta_kernel' in tree:
      return {k: v for k, v in tree.items() if k in ('kernel', 'fast_in', 'fast_out', 'bias')}
    return {k: to_batch(v) if isinstance(v, dict) else v for k, v in tree.items()}

  x = jax.random.normal(jax.random.PRNGKey(5), (M, B, *IMAGE))
  lam = jax.random.uniform(jax.random.PRNGKey(6), (M, B, D))
  stats = hyper_vars['batch_stats']
  hyper = jax.jit(lambda p: hyper_model.apply(
      {'params': p, 'batch_stats': stats}, x, make_cond('hyper_batch', lam_tilde=lam)))(zero_e)
  batch = jax.jit(lambda p: batch_model.apply(
      {'params': p, 'batch_stats': stats}, x, make_cond('batch')))(to_batch(zero_e))
  np.testing.assert_allclose(hyper, batch, rtol=2e-4, atol=2e-5)


# --- BatchNorm: shared over members, per member under vmap --------------------------------------


def test_batch_norm_statistics_span_all_members_and_vmap_separates_them():
  bn = BatchNorm(l2='l2_bn')
  x = jax.random.normal(jax.random.PRNGKey(0), (M, 4, 3, 3, 5)) * jnp.arange(1.0, M + 1)[
      :, None, None, None, None] + jnp.arange(M)[:, None, None, None, None]
  cond = Conditioning(hparams={'l2_bn': jnp.full((M, 1), 2.0)})
  variables = bn.init(jax.random.PRNGKey(1), x, cond, train=False)
  variables = {k: variables[k] for k in ('params', 'batch_stats')}  # not the init's penalties
  y, mutated = jax.jit(lambda v: bn.apply(v, x, cond, train=True,
                                          mutable=['batch_stats', 'penalties']))(variables)
  mean = x.reshape(-1, 5).mean(0)
  var = x.reshape(-1, 5).var(0)
  np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-5), rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(mutated['batch_stats']['mean'], 0.1 * mean, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(mutated['batch_stats']['var'], 0.9 + 0.1 * var, rtol=1e-5)
  # L2 on γ = 1 and β = 0 with ν = 2: 2 · 5.
  np.testing.assert_allclose(sum(jax.tree.leaves(mutated['penalties'])), 10.0, rtol=1e-6)
  # Deep ensembles vmap a plain network over members: each member normalises by its own rows.
  plain_cond = Conditioning(hparams={'l2_bn': jnp.full((M,), 2.0)})
  y_vmap, _ = jax.jit(jax.vmap(
      lambda xk, ck: bn.apply(variables, xk, ck, train=True, mutable=['batch_stats'])))(
          x, plain_cond)
  per_member_mean = x.reshape(M, -1, 5).mean(1)[:, None, None, None]
  per_member_var = x.reshape(M, -1, 5).var(1)[:, None, None, None]
  np.testing.assert_allclose(y_vmap, (x - per_member_mean) / np.sqrt(per_member_var + 1e-5),
                             rtol=1e-4, atol=1e-5)


# --- small pieces -------------------------------------------------------------------------------


def test_pad_shortcut_subsamples_and_zero_pads_channels():
  x = jnp.arange(2 * 4 * 4 * 3, dtype=jnp.float32).reshape(2, 4, 4, 3)
  y = resnet20.pad_shortcut(x, 8, 2)
  assert y.shape == (2, 2, 2, 8)
  np.testing.assert_array_equal(y[..., 2:5], x[:, ::2, ::2, :])
  assert not np.any(y[..., :2]) and not np.any(y[..., 5:])


def test_wide_resnet_rejects_depth_not_6n_plus_4():
  model = wide_resnet.WideResNet(make_kit('plain'), 10, depth=12, width=1)
  with pytest.raises(ValueError, match='6n \\+ 4'):
    shapes_of(model, 'plain')


def test_registry_builds_from_config_sections_and_names_missing_ones():
  import ml_collections

  from hyper_ensembles.models.registry import create_model, get_architecture

  assert get_architecture('resnet20').hparams == resnet20.HPARAMS
  assert get_architecture('wrn28_10').hparams == resnet20.HPARAMS
  cfg = ml_collections.ConfigDict({'wrn': {'depth': 10, 'width': 2}})
  model = create_model(cfg, 'wrn28_10', make_kit('plain'), 10)
  assert (model.depth, model.width) == (10, 2)
  with pytest.raises(ValueError, match=r'configs/resnet20\.py'):
    create_model(cfg, 'resnet20', make_kit('plain'), 10)
