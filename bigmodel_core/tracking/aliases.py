"""The aliases a newly registered version gets: challenger always, champion by compare-and-set when the gate
passed, and the decision in the promotion ledger (a retried version keeps the decision made about it before)."""

from __future__ import annotations

from pathlib import Path

from bigmodel_core.config import Params


def set_aliases(
    params: Params,
    root: Path,
    client,
    name: str,
    version: str,
    exp_id: str,
    run_id: str | None,
    decision: dict,
    eval_metrics: dict,
    promote: bool,
    experiment: str | None,
    why_not: str | None,
    retried: bool = False,
    context: str | None = None,
) -> dict:
    """Challenger always; champion by compare-and-set when `promote`; the ledger records the decision.

    retried: the version existed already. If the pipeline decided about it before, that decision stands (the
    evaluation it rests on may be stale: the champion may have been rolled back since), with one exception: a
    version the gate kept out that now passes it (its thresholds were changed, say evaluate.allow_label_change)
    is promoted when the champion is still the one this evaluation compared it with.
    """
    from bigmodel_core.tracking.registry import (
        alias_version,
        append_ledger,
        champion_seen,
        ledger,
        move_champion,
        registry_lock,
    )

    d = params.deploy
    client.set_registered_model_alias(name, d.challenger_alias, version)
    aliases = [d.challenger_alias]
    figures = {"test_accuracy": round(eval_metrics["accuracy"], 6), "test_macro_f1": round(eval_metrics["macro_f1"], 6)}
    expected = champion_seen(decision)
    note = None
    earlier = [r for r in ledger(client, name) if r["to"] == version and r["who"] == "pipeline"] if retried else []
    current = alias_version(client, name, d.champion_alias)
    if current == version:
        aliases.append(d.champion_alias)
        note = f"v{version} is already {d.champion_alias}"
    elif earlier and not (promote and earlier[-1]["action"] == "kept" and current == expected):
        note = (
            f"v{version} was decided on before ({earlier[-1]['action']} at {earlier[-1]['at']}: "
            f"{earlier[-1]['why']}); not deciding again"
        )
    elif promote:
        vacant = None  # said when there is no champion to replace: the registry's first, or one taken away
        if expected is None:
            had_one = any(r["action"] in ("promote", "rollback") for r in ledger(client, name))
            vacant = f"{name} had no {d.champion_alias}" if had_one else f"first {d.champion_alias} of {name}"
        moved, note = move_champion(
            client,
            root,
            name,
            d.champion_alias,
            version,
            expected,
            why="gate passed"
            + (f" ({experiment})" if experiment else "")
            + "".join(f"; {x}" for x in (vacant, context) if x)
            + (" on a re-evaluation, after it was kept out before" if earlier else ""),
            who="pipeline",
            metrics=figures,
        )
        if moved:
            aliases.append(d.champion_alias)
            # the summary and the run card say why: "first champion of <name>", and what let the policy promote
            note = "; ".join(x for x in (vacant or note, context) if x)
    else:
        note = why_not or "not promoted"
        with registry_lock(root, client):
            append_ledger(
                client,
                name,
                {
                    "action": "kept",
                    "from": alias_version(client, name, d.champion_alias),
                    "to": version,
                    "why": note,
                    "who": "pipeline",
                    "metrics": figures,
                },
            )
    promoted = d.champion_alias in aliases
    return {
        "champion": alias_version(client, name, d.champion_alias),
        "run_id": run_id,
        "experiment_id": exp_id,
        "model_name": name,
        "version": version,
        "aliases": aliases,
        "promoted": promoted,
        "note": note,
        "experiment": experiment,
        "model_uri": f"models:/{name}@{d.champion_alias}" if promoted else f"models:/{name}/{version}",
    }
