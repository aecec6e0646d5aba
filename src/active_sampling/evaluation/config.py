"""What the evaluation runs: data sets, models, strategies, seeds and each data set's labeling budget."""

from typing import Dict, List, NamedTuple, Optional, Tuple

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from active_sampling.scripts import active_sample_selection as script

RANDOM = "random"
ACTIVE_LEARNING_STRATEGIES: Tuple[str, ...] = (
    (RANDOM,)
    + script.UNCERTAINTY_MODES
    + tuple(name for name in script.ACTIVE_LEARNING_STRATEGIES if name != "uncertainty")
)
DATASETS = ("digits", "breast_cancer", "wine")
MODELS = ("logistic_regression", "gradient_boosting")


class DatasetSetting(BaseModel):
    """The labeling budget of one data set: where the learning curve starts, its step and its length."""

    model_config = ConfigDict(frozen=True)

    test_fraction: float = Field(0.3, gt=0.0, lt=1.0, description="Share of rows held out for testing (stratified).")
    initial_size: int = Field(..., ge=2, description="Labeled rows before the first selection (at least one per class).")
    batch_size: int = Field(..., ge=1, description="Rows labeled per round (BATCH_SIZE).")
    rounds: int = Field(10, ge=1, description="Selection rounds per learning curve.")
    ssl_labeled: int = Field(..., ge=2, description="Labeled rows of the model whose predictions are pseudo-labeled.")

    @property
    def final_size(self) -> int:
        return self.initial_size + self.rounds * self.batch_size


DEFAULT_SETTINGS: Dict[str, DatasetSetting] = {
    "digits": DatasetSetting(initial_size=20, batch_size=20, ssl_labeled=50),
    "breast_cancer": DatasetSetting(initial_size=10, batch_size=10, ssl_labeled=20),
    "wine": DatasetSetting(initial_size=6, batch_size=4, ssl_labeled=12),
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

    datasets: Tuple[str, ...] = Field(DATASETS, min_length=1, description="Data sets shipped with scikit-learn.")
    models: Tuple[str, ...] = Field(MODELS, min_length=1, description="Models retrained every round.")
    strategies: Tuple[str, ...] = Field(
        ACTIVE_LEARNING_STRATEGIES, min_length=1, description="Active-learning strategies; random is the baseline."
    )
    seeds: int = Field(10, ge=1, description="Seeds 0..seeds-1: the split, initial labeled set and model seed.")
    rounds: Optional[int] = Field(None, ge=1, description="Override every data set's number of rounds.")
    ssl_thresholds: Tuple[float, ...] = Field((0.8, 0.9, 0.95, 0.99), description="CONFIDENCE_THRESHOLD values.")
    run_ssl: bool = Field(True, description="Also measure the SSL strategies.")
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
    def _random_is_the_baseline(self) -> "EvaluationConfig":
        if RANDOM not in self.strategies:
            raise ValueError("strategies must include 'random': every other strategy is compared with it")
        return self

    def setting(self, dataset: str) -> DatasetSetting:
        base = DEFAULT_SETTINGS[dataset]
        return base if self.rounds is None else base.model_copy(update={"rounds": self.rounds})

    @property
    def jobs(self) -> List[Job]:
        return [
            Job(dataset, model, seed, self.setting(dataset), self.strategies, self.ssl_thresholds, self.run_ssl)
            for dataset in self.datasets
            for model in self.models
            for seed in range(self.seeds)
        ]


def _check_choices(values: Tuple[str, ...], allowed: Tuple[str, ...], what: str) -> Tuple[str, ...]:
    unknown = [value for value in values if value not in allowed]
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; allowed: {list(allowed)}")
    if len(set(values)) != len(values):
        raise ValueError(f"duplicate {what} in {list(values)}")
    return values
