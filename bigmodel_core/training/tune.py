"""train.tune: search a candidate's main settings on the validation split with Optuna.

    study = search(candidate_kind, written, objective, trials=20, seconds=None, seed=42, augmented=True)

`objective(model_overrides, train_overrides)` trains one model and returns its validation macro-F1.
The sampler is Optuna's TPE with a fixed seed, and every trial trains with train.seed, so on a CPU
the same trials give the same scores and the same settings are chosen again. The first trial is the
candidate's settings as written (each choice below includes them), so tuning never ends with a model
worse on validation than the untuned one.

What is searched, per kind (docs/models.md, "Tuning", lists the same):
- linear: C (0.1-100, log), word n-grams 1-3, min_df 1-3, sublinear tf on/off, character n-grams
  none / 2-4 / 3-5, augmented rows on/off;
- bag: lr (0.001-0.1, log), epochs 2-10, d_model 16/32/64, word n-grams 1-3, character n-grams
  none / 2-4 / 3-5, augmented rows on/off;
- transformer: lr (1e-4-5e-3, log), epochs 2-8, size (as written, 64x1, 128x2, 256x4: d_model x layers),
  augmented rows on/off;
- pretrained: lr (1e-5-1e-4, log), epochs 1-4, augmented rows on/off.
Augmented rows are searched only where the train split has some.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

#: size name -> (d_model, n_layers, n_heads, d_ff) for the transformer
SIZES = {"64x1": (64, 1, 2, 128), "128x2": (128, 2, 4, 256), "256x4": (256, 4, 4, 512)}
_CHAR = {"none": None, "2-4": [2, 4], "3-5": [3, 5]}


def _char_name(value) -> str:
    return "none" if not value else f"{value[0]}-{value[1]}"


def _with(choices: list, written) -> list:
    """The choices with the written value among them, in a fixed order."""
    return choices if written in choices else [*choices, written]


def _log_range(low: float, high: float, value: float):
    from optuna.distributions import FloatDistribution

    return FloatDistribution(min(low, value), max(high, value), log=True)


def _int_range(low: int, high: int, value: int):
    from optuna.distributions import IntDistribution

    return IntDistribution(min(low, value), max(high, value))


def _among(choices: list, written):
    from optuna.distributions import CategoricalDistribution

    return CategoricalDistribution(_with(choices, written))


def _char_ngrams(model: dict) -> dict:
    char = _char_name(model["char_ngrams"])
    return {"char_ngrams": (_among(list(_CHAR), char), char)}


def _linear_space(model: dict, train: dict) -> dict:
    return {
        "C": (_log_range(0.1, 100.0, model["C"]), model["C"]),
        "ngrams": (_among([1, 2, 3], model["ngrams"]), model["ngrams"]),
        "min_df": (_among([1, 2, 3], model["min_df"]), model["min_df"]),
        "sublinear_tf": (_among([True, False], model["sublinear_tf"]), model["sublinear_tf"]),
        **_char_ngrams(model),
    }


def _bag_space(model: dict, train: dict) -> dict:
    return {
        "lr": (_log_range(1e-3, 0.1, train["lr"]), train["lr"]),
        "epochs": (_int_range(2, 10, train["epochs"]), train["epochs"]),
        "d_model": (_among([16, 32, 64], model["d_model"]), model["d_model"]),
        "ngrams": (_among([1, 2, 3], model["ngrams"]), model["ngrams"]),
        **_char_ngrams(model),
    }


def _transformer_space(model: dict, train: dict) -> dict:
    return {
        "lr": (_log_range(1e-4, 5e-3, train["lr"]), train["lr"]),
        "epochs": (_int_range(2, 8, train["epochs"]), train["epochs"]),
        "size": (_among(["as written", *SIZES], "as written"), "as written"),
    }


def _pretrained_space(model: dict, train: dict) -> dict:
    return {
        "lr": (_log_range(1e-5, 1e-4, train["lr"]), train["lr"]),
        "epochs": (_int_range(1, 4, train["epochs"]), train["epochs"]),
    }


#: what tuning searches per model kind: (model keys, train keys) -> {name: (distribution, written value)}
SPACES: dict[str, Callable[[dict, dict], dict]] = {
    "linear": _linear_space,
    "bag": _bag_space,
    "transformer": _transformer_space,
    "pretrained": _pretrained_space,
}


def space(kind: str, model: dict, train: dict, augmented: bool) -> tuple[dict, dict]:
    """(the distributions, the written settings as a trial's parameters) for a candidate of `kind` whose
    resolved settings are `model` (ModelParams fields) and `train` (TrainParams fields)."""
    from optuna.distributions import CategoricalDistribution

    found = SPACES[kind](model, train)
    dist = {name: d for name, (d, _) in found.items()}
    written = {name: w for name, (_, w) in found.items()}
    if augmented:
        if model["augmented_rows"] is not None:
            written["augmented_rows"] = model["augmented_rows"]
        else:
            from bigmodel_core.models.registry import kind_of

            written["augmented_rows"] = kind_of(kind).augmented_by_default
        dist["augmented_rows"] = CategoricalDistribution([False, True])
    return dist, written


def overrides(kind: str, trial_params: dict) -> tuple[dict, dict]:
    """A trial's parameters as (model keys, train keys) for config.candidate_params."""
    model: dict[str, Any] = {}
    train: dict[str, Any] = {}
    for key, value in trial_params.items():
        if key in ("lr", "epochs"):
            train[key] = value
        elif key == "char_ngrams":
            model[key] = _CHAR.get(value) if value in _CHAR else [int(x) for x in value.split("-")]
        elif key == "size":
            if value != "as written":
                model.update(zip(("d_model", "n_layers", "n_heads", "d_ff"), SIZES[value], strict=True))
        else:
            model[key] = value
    return model, train


def search(
    kind: str,
    model: dict,
    train: dict,
    objective: Callable[[int, dict, dict], float],
    *,
    trials: int,
    seconds: float | None,
    seed: int,
    augmented: bool,
):
    """Run the study; returns it (study.best_trial, study.trials). objective(number, model_keys, train_keys).
    trials: most trials (0: no limit); seconds: no new trial starts after this long (None: no limit)."""
    if not trials and seconds is None:
        raise ValueError("a search needs a number of trials or a time budget")
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dist, written = space(kind, model, train, augmented)
    # TPE models the scores after 5 seeded random trials (Optuna's default waits for 10: most budgets here are smaller)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=5))
    study.enqueue_trial(written)

    def suggest(trial, name: str, d):
        if isinstance(d, optuna.distributions.FloatDistribution):
            return trial.suggest_float(name, d.low, d.high, log=d.log)
        if isinstance(d, optuna.distributions.IntDistribution):
            return trial.suggest_int(name, d.low, d.high)
        return trial.suggest_categorical(name, d.choices)

    def run(trial) -> float:
        params = {name: suggest(trial, name, d) for name, d in dist.items()}
        m, t = overrides(kind, params)
        return objective(trial.number, m, t)

    started = time.monotonic()
    study.optimize(run, n_trials=1, catch=())  # the settings as written, whatever the budget
    if trials != 1:
        left = None if seconds is None else max(0.0, seconds - (time.monotonic() - started))
        if left is None or left > 0:
            study.optimize(run, n_trials=trials - 1 if trials else None, timeout=left, catch=())
    study.set_user_attr("seconds", time.monotonic() - started)
    return study
