"""Per-class effects of pruning: accuracy drops, the intensification fit, Hooker et al.'s test and PIEs.

==========  ==========================================================================================
module      holds
==========  ==========================================================================================
drops       :func:`class_drops`: per level and class, the drop beside the overall drop
fit         :func:`intensification_fit`: OLS of class accuracy on dense class accuracy, per level, and the
            slope noise alone gives (:func:`dense_reliability`, :func:`noise_null_slope`)
hooker      :func:`hooker_test` and the :data:`SHIFTS` registry, with the caveat of each test
power       what Welch's test can detect from n runs: :func:`welch_power`, :func:`minimum_detectable_effect`,
            :func:`runs_needed`
pies        pruning-identified exemplars: votes, modal labels (:data:`TIES` registry), PIE counts
population  :class:`FairnessRun` and :func:`fairness_analysis`, every section of a population of runs
inputs      checks of the arrays the analyses take
==========  ==========================================================================================

Pruning can cost some classes much more than the overall accuracy suggests (Paganini 2020, *Prune
Responsibly*, arXiv:2009.09936, documents such per-class imbalances; Hooker et al. 2019, *What Do Compressed
Deep Neural Networks Forget?*, arXiv:1911.05248). This module measures that from test-set evaluations. Every
function takes arrays and returns a tidy :class:`pandas.DataFrame` (one row per observation); none opens a
file. ``ticketlab fairness`` reads ticket files and calls :func:`fairness_analysis`.

Definitions (all accuracies are fractions in [0, 1], never percentages):

- *class accuracy* of class c = recall of c = correct predictions of c / test examples of c
  (``Evaluation.per_class_accuracy``); *accuracy* = overall top-1 accuracy.
- *drop* = dense class accuracy (level 0) − class accuracy at the level; positive means the class lost
  accuracy. *relative drop* = drop / dense class accuracy. *overall drop* = dense accuracy − accuracy.
  *excess drop* = drop − overall drop: how much more (> 0) or less (< 0) the class lost than the model did.
- *intensification fit* (a ticketlab design choice, not a definition taken from Paganini 2020, whose text we
  could not read): per level, ordinary least squares of the class accuracy a'_c on the dense class accuracy a_c
  across classes, a'_c = intercept + slope · a_c. slope = 1 is a uniform shift; slope > 1 means classes that
  were weak before pruning lose more (the "intensification effect" hypothesis of Good et al. 2022). Standard
  errors are those of :func:`scipy.stats.linregress`; confidence intervals use Student's t with C − 2 degrees
  of freedom (C = classes with a finite accuracy at both levels).
- *attenuation of the fit*: one run's dense class accuracies are noisy measurements (seed-to-seed noise) of the
  classes' accuracies, and noise in the regressor biases an OLS slope towards 0 (errors in variables). A uniform
  shift therefore gives a slope of about the *reliability* var(true) / var(observed) of the dense class accuracies,
  not 1, when the pruned network's noise is independent of its parent's (between that and 1 when it shares
  some). From two runs or more of a method :func:`fairness_analysis` estimates the reliability
  (:func:`dense_reliability`: 1 − two-way residual mean square of the dense class accuracies (runs × classes) /
  mean across-class variance of a run) and per level the slope a uniform shift gives, ``null_slope``
  (:func:`noise_null_slope`), and tests the slope against it (``p_slope_null``). ``p_slope_1`` (H0: slope = 1)
  stays in the table but can reject for noise alone: compare the slope with ``null_slope``. A one-run fit has no
  ``null_slope`` and a ``caveat`` saying so.
- *Hooker et al.'s test*, as coded in their ``per_class_accuracy/gen_tstatistic.py``: for each class, the
  dense sample is {recall_c − accuracy shift} over the dense models (level 0 of every run), the pruned sample
  the same over the pruned models; Welch's unequal-variance t-test compares them; p ≤ alpha flags the class as
  *disparately impacted*, i.e. it moved differently from the overall accuracy. Hooker's script subtracts the
  population's mean top-1 accuracy (``shift="population"``, the default); ``shift="model"`` subtracts each
  model's own accuracy instead.
- *pruning-identified exemplar* (PIE, Hooker et al.): a test example whose modal (most frequent) predicted
  label over the pruned models differs from its modal label over the dense models. Ties between labels are
  broken by the **largest** label, as Hooker's ``pie_dataset_gen/aggregate_predictions.py`` does
  (``predictions.mode().max()``); ``ties="smallest"`` takes the smallest instead.
- *caveats*: a population statistic from few runs says so beside the result. Hooker et al.'s test carries the
  smallest change it detects with 80% power (``mde``), its power for a change of 0.01 and the runs per side that
  change needs, computed from the observed seed-to-seed spread (:mod:`~ticketlab.analysis.fairness.power`), and
  a ``caveat`` sentence when either side has fewer than 3 runs, Welch's df is below 3 or the power is below 80%.
  PIE counts carry how many PIEs rest on a tie between labels and a ``caveat`` below 5 models per population.

Examples
--------
>>> drops = class_drops(per_class, accuracy, levels=[0, 1, 2])                # doctest: +SKIP
>>> fit = intensification_fit(per_class[0], per_class[1:], levels=[1, 2])     # doctest: +SKIP
"""

from ticketlab.analysis.fairness.drops import DROP_COLUMNS, class_drops  # noqa: F401
from ticketlab.analysis.fairness.fit import (FIT_COLUMNS, ONE_RUN_CAVEAT, attenuation_caveat,  # noqa: F401
                                             dense_reliability, intensification_fit, noise_null_slope)
from ticketlab.analysis.fairness.hooker import (EFFECT, HOOKER_COLUMNS, MIN_RUNS, SHIFTS,  # noqa: F401
                                                hooker_test, welch_caveat)
from ticketlab.analysis.fairness.pies import (MIN_PIE_MODELS, PIE_COUNT_COLUMNS, PIE_EXAMPLE_COLUMNS,  # noqa: F401
                                              TIES, modal_predictions, pie_caveat, pie_counts,
                                              pruning_identified_exemplars, vote_counts)
from ticketlab.analysis.fairness.power import (POWER, minimum_detectable_effect, runs_needed,  # noqa: F401
                                               welch_dof, welch_power)
from ticketlab.analysis.fairness.population import (SECTIONS, FairnessRun, check_same_test_set,  # noqa: F401
                                                    fairness_analysis, fit_noise)

__all__ = ["TIES", "SHIFTS", "SECTIONS", "DROP_COLUMNS", "FIT_COLUMNS", "HOOKER_COLUMNS", "PIE_EXAMPLE_COLUMNS",
           "PIE_COUNT_COLUMNS", "EFFECT", "POWER", "MIN_RUNS", "MIN_PIE_MODELS", "class_drops",
           "intensification_fit", "hooker_test", "welch_caveat", "vote_counts", "modal_predictions",
           "pruning_identified_exemplars", "pie_counts", "pie_caveat", "check_same_test_set", "FairnessRun",
           "fairness_analysis", "welch_dof", "welch_power", "minimum_detectable_effect", "runs_needed",
           "dense_reliability", "noise_null_slope", "attenuation_caveat", "ONE_RUN_CAVEAT", "fit_noise"]
