"""ncap where people already train: Lightning, Hugging Face ``Trainer``, Optuna and Ray Tune.

One module per framework, each behind an optional extra, each importing its framework when it is
imported itself (``import ncap`` and ``import ncap.integrations`` import none of them):

- :mod:`ncap.integrations.lightning` (``ncap[lightning]``): ``NcapCallback``, a Lightning
  ``Callback``;
- :mod:`ncap.integrations.transformers` (``ncap[transformers]``): ``NcapTrainerCallback``, a
  ``transformers.TrainerCallback``;
- :mod:`ncap.integrations.optuna` (``ncap[optuna]``): ``NcapPruner`` and ``report``;
- :mod:`ncap.integrations.ray` (``ncap[ray]``): ``NcapStopper``, a ``ray.tune.Stopper``.

The framework-free parts: :mod:`~ncap.integrations.curve` (a trial's learning curve and its
predicted final accuracy, by default LO with bench-v3's residuals), :mod:`~ncap.integrations.rule`
(the equal-budget pruning rule) and :mod:`~ncap.integrations.tap` (the probe read on a user's
feature layer).
"""
