"""evaluate, deploy, tracking, flow and notify: what happens after training."""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, Field, field_validator, model_validator

from bigmodel_core.config.base import _Section


class EvaluateParams(_Section):
    min_accuracy: float = Field(default=0.5, ge=0, le=1, description="Gate: lowest test accuracy that may be promoted.")
    min_macro_f1: float = Field(default=0.5, ge=0, le=1, description="Gate: lowest test macro-F1 that may be promoted.")
    max_regression: float = Field(
        default=0.01,
        ge=0,
        le=1,
        description="Gate: the lower bound of the bootstrap interval of macro-F1(challenger) - macro-F1(champion), on "
        "the same test rows, must be >= -max_regression (not worse by more than this, with `confidence`).",
    )
    min_gain: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Gate: if set, that lower bound must be >= min_gain instead "
        "(better than the champion by this much).",
    )
    confidence: float = Field(
        default=0.95, gt=0.5, lt=1, description="Confidence of the bootstrap interval and of McNemar's test."
    )
    bootstrap_samples: int = Field(default=1000, ge=100, description="Paired bootstrap resamples of the test rows.")
    batch_size: int = Field(default=128, ge=1, description="Rows per inference batch.")
    slice_columns: list[str] = Field(
        default_factory=list,
        description="Test-split columns to slice by (one slice per value), "
        "besides the text-length quartiles and source.",
    )
    min_slice_rows: int = Field(
        default=30, ge=1, description="Gate: slices with fewer test rows are reported, not judged."
    )
    max_slice_regression: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Gate: on every slice, macro-F1(challenger) must be >= macro-F1(champion) - this; "
        "null = report only.",
    )
    baseline: bool = Field(
        default=True,
        description="Train the reference TF-IDF + logistic regression (model.kind linear with its default "
        "settings: word 1-2 grams, sublinear tf, min_df 2, C 10) on the non-augmented train rows and score it on the "
        "same test rows.",
    )
    min_gain_over_baseline: float | None = Field(
        default=-0.005,
        ge=-1,
        le=1,
        description="Gate: macro-F1(model) - macro-F1(baseline) must be >= this. The default, a small negative "
        "tolerance, closes the gate on a model clearly worse than the baseline; null = report only.",
    )
    max_latency_p95_ms: float | None = Field(
        default=None, gt=0, description="Gate: highest p95 latency of a one-text prediction, in ms; null = report only."
    )
    allow_label_change: bool = Field(
        default=False,
        description="Gate: a model whose label set differs from the champion's cannot be compared with it and is not "
        "promoted unless this is true (then the absolute thresholds alone decide).",
    )
    max_model_mb: float | None = Field(
        default=None, gt=0, description="Gate: largest model bundle on disk, in MB (10^6 bytes); null = report only."
    )

    @field_validator("slice_columns")
    @classmethod
    def _distinct_columns(cls, v: list[str]) -> list[str]:
        if any(not c for c in v) or len(set(v)) != len(v):
            raise ValueError(f"slice_columns must be distinct, non-empty column names, got {v}")
        return v

    @model_validator(mode="after")
    def _baseline_for_its_rule(self) -> EvaluateParams:
        if (
            self.min_gain_over_baseline is not None
            and not self.baseline
            and "min_gain_over_baseline" in self.model_fields_set
        ):  # its default bows to baseline: false
            raise ValueError("min_gain_over_baseline is set but baseline is false: the rule needs the baseline")
        return self


class DeployParams(_Section):
    model_name: str = Field(default="bigmodel-text-classifier", min_length=1, description="Registered model name.")
    champion_alias: str = Field(default="champion", description="Alias moved to a version that passes the gate.")
    challenger_alias: str = Field(default="challenger", description="Alias given to every newly registered version.")
    promote: Literal["auto", "never"] = Field(
        default="auto",
        description="auto: move the champion alias when the gate passes; never: only register (move it "
        "with `bigmodel promote`).",
    )
    promote_experiments: bool = Field(
        default=False,
        description="Experiments (runs under `dvc exp run`, or from a workspace whose code or params differ from the "
        "last git commit) register a version tagged as an experiment and never move the champion, unless this is true.",
    )
    allow_new_registry: bool = Field(
        default=False,
        description="Start a new, empty registry when the tracking database (sqlite) is missing although "
        "reports/deploy.json records a version registered in it (a deleted or moved mlflow.db). "
        "Off: stop with an error.",
    )
    git_commit: bool = Field(
        default=False,
        description="After a `bigmodel run` that registered a version: `dvc push` the data and model, commit "
        "dvc.yaml, dvc.lock, params.yaml, metrics/ and plots/, tag the commit model/<name>/v<version>, and record "
        "commit, tag and remote on the version (what `bigmodel verify-repro` reads). Needs a git repository whose "
        "inputs are committed.",
    )
    dvc_remote: str | None = Field(
        default=None,
        min_length=1,
        description="The DVC remote deploy.git_commit pushes to; null: the repository's default remote, or with none, "
        "a local folder remote at deploy.local_remote.",
    )
    local_remote: str = Field(
        default=".bigmodel/dvc-storage",
        min_length=1,
        description="Folder of the local DVC remote used when the repository has no default remote (relative: to the "
        "workspace). For storage that outlives this machine configure one: `dvc remote add -d store s3://bucket/path`.",
    )


class TrackingParams(_Section):
    uri: str = Field(
        default="sqlite:///mlflow.db", description="MLflow tracking URI; the MLFLOW_TRACKING_URI variable overrides it."
    )
    experiment: str = Field(default="bigmodel", description="MLflow experiment name.")
    artifact_root: str = Field(
        default="mlartifacts",
        description="Where a new experiment keeps artifacts (local path) "
        "with a local store (SQLite); a tracking server (http/https) uses its own artifact root.",
    )


class FlowParams(_Section):
    retries: int = Field(
        default=1, ge=0, description="Retries of a stage that failed for a reason other than bad input or a gate."
    )
    retry_delay_seconds: float = Field(default=5, ge=0, description="Wait between retries.")


def _apprise_url(url: str) -> str:
    # Apprise is imported only when a URL is configured: loading its plugins costs about half a second.
    from bigmodel_core.reporting.notify import url_problem

    problem = url_problem(url)
    if problem:
        raise ValueError(problem)
    return url


NotifyEvent = Literal["gate_closed", "failure", "promotion"]


class NotifyParams(_Section):
    urls: list[Annotated[str, AfterValidator(_apprise_url)]] = Field(
        default_factory=list,
        description="Apprise URLs that get a message (json://host:port/path, slack://..., mailto://...); ${VAR} is "
        "read from the environment when sending, so secrets stay out of params.yaml; empty = no notifications.",
    )
    on: list[NotifyEvent] = Field(
        default_factory=lambda: list(get_args(NotifyEvent)),
        description="Events that send a message: a quality gate stopped the run, a run failed, a model was promoted.",
    )
    timeout_seconds: float = Field(
        default=10, gt=0, description="Per URL: longest wait to connect, and again for the reply (Apprise cto/rto)."
    )

    @model_validator(mode="before")
    @classmethod
    def _bare_on_key(cls, v: Any) -> Any:
        # YAML 1.1 (PyYAML) reads an unquoted `on:` key as the boolean true. Take it as `on`; if both are there,
        # the string key came from an override (-S notify.on=...) and wins.
        if isinstance(v, dict) and True in v:
            v = dict(v)
            bare = v.pop(True)
            v.setdefault("on", bare)
        return v
