"""Hyper-deep ensembles (docs/design.md §5): the paper's whole procedure as one resumable pipeline.

This package owns the pipeline's stages, the seeds and hyperparameters of every network it trains,
and the layout of its directory DIR; one file per stage, and `pipeline.run_pipeline` calls them in
order. Every network is trained by the ordinary training loop: a group of pool members is one `deep`
run (`train.train_and_evaluate`) whose members carry their own hyperparameters
(`config.member_hparams`, one value per member) and seeds (member k of a run with seed s is seeded
s + k: init, dropout and data order). So a pool member trained inside a vectorised chunk is exactly
the single model trained alone with its seed and setting, each chunk resumes from its own
checkpoints, and its config.json records every member's hyperparameters. Runs are handed to a
launcher (hyper_ensembles/launching/registry.py): in this process one after another (`local`, the
default) or
as parallel subprocesses on Ray (`ray`); a stage's runs never depend on each other.

Stage contract: what each stage reads and writes in DIR (a re-run skips what is done and resumes
what is not; every stage appends its line to stages.jsonl):

  plan          plan.py. Reads the config and plan.json when present (the κ settings are drawn
                once); writes config.json (the workdir guard compares it on re-runs), plan.json and
                sweep.json.
  pool          pool.py. Trains pool/members_AAAA_BBBB/: κ settings — the config's default first,
                then `hparams.random_search` with `hyper_deep.sampling_seed` — each with its own
                init, as runs of `hyper_deep.chunk_size` members (chunk_size 1: one run per member).
  select        selection.py. Reads pool/*/predictions/validation.npz; greedy selection with
                replacement on validation NLL (hyper_ensembles/maths/greedy_selection.py) → writes
                selection/hyper_ens.json (the hyper ens).
  stratify      stratification.py. Reads the hyper ens; trains stratify/setting_IIII/members_*:
                every distinct selected setting with K − 1 further inits (the pool member is the
                K-th); greedy selection again over these ≤ K² networks → selection/hyper_deep.json.
  retrain       retraining.py (hyper_deep.retrain_on_train_plus_val). Reads the hyper-deep ensemble;
                trains retrain/seeds_*/: every distinct member again, same seed and setting, on
                train ∪ validation (`config.data.train_on_validation`; the paper's final models see
                100 % of the training data). The final ensemble is the retrained networks with the
                weights the selection gave the originals; selection itself only ever sees held-out
                validation predictions of networks trained on train alone.
  fixed_init    baselines.py (hyper_deep.fixed_init_baseline). Trains fixed_init_pool/members_*: the
                same κ settings and data orders, every member from one shared init
                (`config.init_seed`); selection → selection/fixed_init_hyper_ens.json.
  deep_baseline baselines.py. Trains deep_baseline/: the default setting with K inits, exactly what
                `method=deep` trains.
  evaluate      scoring.py. Reads the chosen runs' predictions/<set>.npz and the runs'
                metrics.json (train_seconds); writes metrics.json, selection.json and
                predictions/<set>.npz of the weighted ensembles (duplicates = weights).

Retraining (step 4) keeps the number of epochs, so a retrained network takes more steps, and its
L2 penalty ν·‖θ‖²/N uses the larger N (the loss's usual convention). Member k of a run seeded s is
seeded s + k, so only members with consecutive seeds share a vectorised retraining run: the distinct
members, sorted by seed, are cut into runs of consecutive seeds of at most `chunk_size`. A run is
named by its seeds, not by its position among the chosen, so its directory always holds the same
config whichever other members a selection picks. The baselines are not retrained: compare the final
ensemble with `hyper_deep_before_retrain` for the effect of retraining alone. The retrained
ensemble's validation metrics are not held out (its networks trained on validation).

Seeds, with s = config.seed, κ = pool size, K = ensemble size: pool member i has seed s + i; the
j-th extra init (j = 0..K−2) of pool setting i has seed s + κ + i·(K−1) + j, so stratification
never reuses a pool seed and does not depend on which other settings were chosen; the fixed-init
pool's member i has seed s + i (its data order and dropout) and init seed s; the deep baseline has
seeds s .. s + K − 1 (its member 0 is pool member 0); a retrained member keeps its seed.

Layout of DIR:

  config.json                      the pipeline config (the workdir guard compares it on re-runs)
  plan.json                        the κ settings, seeds and search space
  sweep.json                       every run that does not depend on a selection, as config
                                   overrides (scripts/sweep.py prints or runs them)
  pool/members_AAAA_BBBB/          pool members [AAAA, BBBB): an ordinary `deep` run directory
                                   (with the Ray launcher also its launch.log)
  stratify/setting_IIII/members_*  the extra inits of pool setting IIII
  retrain/seeds_AAAA_BBBB/         (retrain_on_train_plus_val) the chosen members with seeds
                                   [AAAA, BBBB) trained on train ∪ validation; `_init_IIII` added
                                   when they share the init of seed IIII
  fixed_init_pool/members_*        the fixed-init random search
  deep_baseline/                   the deep ensemble of the default setting
  selection/<ensemble>.json        each selection: its candidate pool and the greedy result
  metrics.json                     docs/design.md §9 for the final hyper-deep ensemble (retrained
  when
                                   retrain_on_train_plus_val), `retrained_on_train_plus_val`, and
                                   `baselines`: {best_single, hyper_ens, fixed_init_hyper_ens,
                                   deep_ens, hyper_deep_before_retrain (when retrained)}, each with
                                   the same keys (eval sets, num_params, train_seconds)
  predictions/<set>.npz            the final ensemble's picks (duplicates repeated), so their
                                   uniform average is the weighted ensemble
  selection.json                   chosen members: hyperparameters, seeds, weights, NLL history;
                                   when retrained, each hyper-deep member's `retrained` {run, index}
                                   and the list `retrain_runs`
  stages.jsonl                     one line per stage per invocation: ran or skipped

Selection and evaluation read only the saved `predictions/<set>.npz` of the runs, so runs made by
`scripts/sweep.py` on other machines count as done once their directories are copied into DIR.
"""

from hyper_ensembles.hyper_deep.context import STAGE_LOG_FILE, read_stage_log
from hyper_ensembles.hyper_deep.pipeline import STAGES, run_pipeline
from hyper_ensembles.hyper_deep.plan import (
    PLAN_FILE,
    SWEEP_FILE,
    Member,
    Plan,
    Run,
    Settings,
    default_setting,
    hparam_names,
    make_plan,
    plan_pipeline,
    population_runs,
    random_settings,
    read_settings,
)
from hyper_ensembles.hyper_deep.predictions import Predictions
from hyper_ensembles.hyper_deep.retraining import retrain_runs
from hyper_ensembles.hyper_deep.runs import (
    apply_overrides,
    ensure_run,
    is_complete,
    run_config,
)
from hyper_ensembles.hyper_deep.scoring import SELECTION_FILE
from hyper_ensembles.hyper_deep.selection import (
    BEST_SINGLE,
    DEEP_ENS,
    FIXED_INIT_HYPER_ENS,
    HYPER_DEEP,
    HYPER_DEEP_BEFORE_RETRAIN,
    HYPER_ENS,
    SELECTION_DIR,
    Ensemble,
    best_single,
    select,
)
from hyper_ensembles.hyper_deep.stratification import stratify_runs

__all__ = [
    'BEST_SINGLE', 'DEEP_ENS', 'FIXED_INIT_HYPER_ENS', 'HYPER_DEEP', 'HYPER_DEEP_BEFORE_RETRAIN',
    'HYPER_ENS', 'PLAN_FILE', 'SELECTION_DIR', 'SELECTION_FILE', 'STAGES', 'STAGE_LOG_FILE',
    'SWEEP_FILE', 'Ensemble', 'Member', 'Plan', 'Predictions', 'Run', 'Settings',
    'apply_overrides', 'best_single', 'default_setting', 'ensure_run', 'hparam_names',
    'is_complete', 'make_plan', 'plan_pipeline', 'population_runs', 'random_settings',
    'read_settings', 'read_stage_log', 'retrain_runs', 'run_config', 'run_pipeline', 'select',
    'stratify_runs',
]
