"""Write `-S key=value` overrides into params.yaml, keeping its comments and layout."""

from __future__ import annotations

from pathlib import Path

from bigmodel_core.config import keys_left_by_kind_switch, parse_override
from bigmodel_core.errors import ConfigError
from bigmodel_core.io import atomic_path


def persist_overrides(path: Path, overrides: list[str], shown: str | None = None) -> list[str]:
    """Apply overrides to the file in place (atomically); return one line per change for the user
    (naming the file as `shown`, default: the path as given)."""
    from ruamel.yaml import YAML

    yaml = YAML()
    yaml.preserve_quotes = True
    doc = yaml.load(path.read_text())
    changes = []
    paths = []
    for item in overrides:
        keys, value = parse_override(item)
        paths.append(keys)
        node = doc
        for k in keys[:-1]:
            try:
                node = node[k]
            except (KeyError, IndexError, TypeError):
                node[k] = {}
                node = node[k]
        last = keys[-1]
        try:
            old = node[last]
        except (KeyError, IndexError, TypeError):
            old = "<unset>"
        try:
            node[last] = value
        except (TypeError, IndexError) as e:
            raise ConfigError(f"override {item!r}: cannot set: {e}") from None
        changes.append(f"{'.'.join(map(str, keys))} = {value!r} (was {old!r}) written to {shown or path}")
    model = doc.get("model") if isinstance(doc, dict) else None
    if ["model", "kind"] in paths and isinstance(model, dict):
        # a switched kind: the settings of the kind the file had go (the parser refuses a key of another kind)
        overridden = {str(k[1]) for k in paths if len(k) > 1 and k[0] == "model"}
        kind = model.get("kind")
        for key in keys_left_by_kind_switch(kind, list(model.keys()), overridden):
            changes.append(f"model.{key} removed from {shown or path} (model.kind {kind} takes no {key})")
            del model[key]
    with atomic_path(path, keep_mode=True) as tmp, open(tmp, "w") as f:
        yaml.dump(doc, f)
    return changes
