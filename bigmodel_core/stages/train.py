"""train: fit the tokenizer on the train split only, then train the classifier; keep the best epoch."""

from __future__ import annotations

import numpy as np

from bigmodel_core.config import Params
from bigmodel_core.data import schemas
from bigmodel_core.io import atomic_dir, atomic_path, read_table, write_json
from bigmodel_core.paths import Paths


def class_labels(params: Params, train_labels) -> list[str]:
    return list(params.data.labels) if params.data.labels is not None else sorted(set(train_labels))


def run(params: Params, paths: Paths) -> dict:
    from bigmodel_core.models import build_model
    from bigmodel_core.models.bundle import save_bundle
    from bigmodel_core.text.tokenizer import encode, pad_id, train_tokenizer
    from bigmodel_core.training.loop import fit, seed_everything

    train = read_table(paths.split / "train.parquet", schemas.SPLIT)
    val = read_table(paths.split / "val.parquet", schemas.SPLIT)
    labels = class_labels(params, train["label"])
    index = {lab: i for i, lab in enumerate(labels)}
    seed_everything(params.train.seed)
    tok = train_tokenizer(train["text"].tolist(), params.tokenizer)
    train_ids, val_ids = encode(tok, train["text"].tolist()), encode(tok, val["text"].tolist())
    y_train = train["label"].map(index).to_numpy(dtype=np.int64)
    y_val = val["label"].map(index).to_numpy(dtype=np.int64)
    model = build_model(params.model, tok.get_vocab_size(), len(labels), params.tokenizer.max_length, pad_id(tok))
    n_params = sum(p.numel() for p in model.parameters())
    print(f"train: {len(train_ids)} rows, val: {len(val_ids)} rows, {len(labels)} classes, "
          f"vocab {tok.get_vocab_size()}, {n_params:,} parameters", flush=True)

    def show(epoch: int, row: dict) -> None:
        print(f"epoch {epoch}: train_loss {row['train_loss']:.4f}  val_loss {row['val_loss']:.4f}  "
              f"val_acc {row['val_accuracy']:.4f}  val_macro_f1 {row['val_macro_f1']:.4f}  "
              f"({row['rows_per_second']:.0f} rows/s)", flush=True)

    model, result = fit(model, train_ids, y_train, val_ids, y_val, params.train, pad_id(tok), len(labels), callbacks=[show])
    with atomic_dir(paths.model) as out:
        save_bundle(out, model, tok, labels, params.model, params.tokenizer, params.clean)
    metrics = {
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "stopped_early": result.stopped_early,
        "val_accuracy": result.best_val.get("accuracy"),
        "val_macro_f1": result.best_val.get("macro_f1"),
        "val_loss": result.best_val.get("loss"),
        "train_rows": len(train_ids),
        "parameters": n_params,
        "vocab_size": tok.get_vocab_size(),
        "device": result.device,
        "precision": result.precision,
        "seconds": round(result.seconds, 3),
        "history": result.history,
    }
    write_json(metrics, paths.train_metrics)
    with atomic_path(paths.training_plot) as tmp:
        cols = ["epoch", "train_loss", "val_loss", "val_accuracy", "val_macro_f1"]
        lines = [",".join(cols)] + [",".join(f"{h[c]:.6g}" if c != "epoch" else str(h[c]) for c in cols) for h in result.history]
        tmp.write_text("\n".join(lines) + "\n")
    return {k: v for k, v in metrics.items() if k != "history"}
