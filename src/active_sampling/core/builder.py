"""Turn a config, a step specification and its script contract into a SageMaker ProcessingStep."""

import logging
import re
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from . import sdk
from .config import ProcessingStepConfigBase
from .spec import DependencySpec, OutputSpec, StepSpecification, resolve_property_path

logger = logging.getLogger(__name__)

SPEC_ATTRIBUTE = "_spec"


def spec_of(step: Any) -> Optional[StepSpecification]:
    """The specification a builder attached to a step, or None for steps built elsewhere."""
    spec = getattr(step, SPEC_ATTRIBUTE, None)
    return spec if isinstance(spec, StepSpecification) else None


def kebab_case(text: str) -> str:
    """ActiveSampleSelection -> active-sample-selection; ssl_selection -> ssl-selection."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", text)
    return re.sub(r"-+", "-", re.sub(r"[^A-Za-z0-9]", "-", spaced)).strip("-").lower()


def format_env_value(value: Any) -> str:
    """Text of one environment variable; floats keep every digit so the script parses the same number."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _match_rank(dependency: DependencySpec, source_type: str, output: OutputSpec) -> Optional[Tuple[int, int]]:
    """How well an output fits a dependency (lower is better), or None when it does not fit.

    Rank 0: same logical name; 1: one of the output's aliases; 2: the upstream step type is a
    compatible source and a semantic keyword occurs in the output's names (more keywords, better).
    """
    if output.output_type != dependency.dependency_type or output.data_type != dependency.data_type:
        return None
    if output.logical_name == dependency.logical_name:
        return (0, 0)
    if dependency.logical_name in output.aliases:
        return (1, 0)
    if source_type in dependency.compatible_sources:
        names = [name.lower() for name in output.names]
        hits = sum(any(keyword.lower() in name for name in names) for keyword in dependency.semantic_keywords)
        if hits:
            return (2, -hits)
    return None


def resolve_dependency(dependency: DependencySpec, steps: Sequence[Any]) -> Optional[Any]:
    """The property of the upstream output that best fits ``dependency``, or None if no step offers one.

    Only steps that carry a specification take part. Two equally good candidates are an error, since
    picking one silently could wire the wrong data.
    """
    candidates = []
    for step in steps:
        spec = spec_of(step)
        if spec is None:
            continue
        for output in spec.outputs.values():
            rank = _match_rank(dependency, spec.step_type, output)
            if rank is not None:
                candidates.append((rank, step, output))
    if not candidates:
        return None
    candidates.sort(key=lambda candidate: candidate[0])
    best_rank = candidates[0][0]
    best = [(step, output) for rank, step, output in candidates if rank == best_rank]
    if len(best) > 1:
        offers = ", ".join(f"{step.name}.{output.logical_name}" for step, output in best)
        raise ValueError(
            f"input '{dependency.logical_name}' could come from any of {offers}; "
            f"pass it explicitly with inputs={{'{dependency.logical_name}': ...}}"
        )
    step, output = best[0]
    logger.info("input '%s' <- %s.%s", dependency.logical_name, step.name, output.logical_name)
    return resolve_property_path(step, output.property_path)


class ProcessingStepBuilderBase:
    """Builds one ProcessingStep from a config whose script is described by ``spec.script_contract``.

    The processor is a ScriptProcessor running ``python3`` on the SageMaker scikit-learn image of the
    config's framework version (what SDK v2's SKLearnProcessor runs); subclasses may override
    ``image_uri`` or ``_create_processor``. Everything else (environment, arguments,
    channels, names, caching, dependency resolution) follows from the spec, the contract and the config.
    """

    def __init__(
        self,
        config: ProcessingStepConfigBase,
        spec: StepSpecification,
        sagemaker_session: Optional[Any] = None,
        role: Optional[str] = None,
    ):
        if spec.script_contract is None:
            raise ValueError(f"the {spec.step_type} specification has no script contract to build from")
        self.config = config
        self.spec = spec
        self.contract = spec.script_contract
        self.session = sagemaker_session
        self.role = role or config.role

    def pipeline_session(self):
        """The session jobs are described with; a PipelineSession so that nothing starts running."""
        if self.session is None:
            self.session = sdk.pipeline_session(self.config.aws_region, self.config.bucket)
        if not isinstance(self.session, sdk.PipelineSession):
            raise TypeError(
                f"sagemaker_session must be a PipelineSession (got {type(self.session).__name__}); "
                "a plain Session would start the job instead of adding it to a pipeline"
            )
        return self.session

    def _config_field(self, env_var: str) -> str:
        """Config field that holds the value of ``env_var``."""
        return env_var.lower()

    def environment_variables(self) -> Dict[str, str]:
        """The job's environment: every contract variable whose config value is set.

        An optional variable whose value is None is left out so the script applies its own default;
        it is never sent as the text "None".
        """
        environment = {}
        for name in self.contract.env_var_names:
            field = self._config_field(name)
            value = getattr(self.config, field, None)
            if value is None:
                if name in self.contract.required_env_vars:
                    raise ValueError(
                        f"{type(self.config).__name__}.{field} is required: it sets {name}, "
                        f"which the {self.contract.entry_point} contract requires"
                    )
                continue
            environment[name] = format_env_value(value)
        return environment

    def job_type(self) -> Optional[str]:
        """The job type named in the step and job names, or None when the step has none."""
        return getattr(self.config, "job_type", None)

    def argument_values(self) -> Dict[str, Any]:
        """Value of each command-line argument the contract expects, read from the config field of that name."""
        return {name: getattr(self.config, name) for name in self.contract.expected_arguments}

    def job_arguments(self) -> List[str]:
        arguments = []
        for name, value in self.argument_values().items():
            if value is None:
                raise ValueError(f"argument --{name} has no value; set {type(self.config).__name__}.{name}")
            arguments += [f"--{name}", format_env_value(value)]
        return arguments

    def step_name(self) -> str:
        """Step type, then the job type once (e.g. ActiveSampleSelection-ssl_selection)."""
        job_type = self.job_type()
        return f"{self.spec.step_type}-{job_type}" if job_type else self.spec.step_type

    def base_job_name(self) -> str:
        """Prefix of the processing job name: the step name in kebab case (job type once)."""
        return kebab_case(self.step_name())

    def cache_config(self, enable_caching: bool = False):
        return sdk.CacheConfig(enable_caching=enable_caching, expire_after=self.config.cache_expire_after)

    def default_output_parts(self, logical_name: str) -> List[Any]:
        """Pieces of an output's default S3 URI: pipeline prefix, step type, job type, the execution id
        (``sdk.EXECUTION_ID``), then the output name."""
        parts: List[Any] = [self.config.pipeline_s3_loc, kebab_case(self.spec.step_type)]
        job_type = self.job_type()
        if job_type:
            parts.append(job_type)
        return parts + [sdk.EXECUTION_ID, logical_name]

    def default_output_destination(self, logical_name: str) -> Any:
        """``<pipeline_s3_loc>/<step-type>/<job_type>/<execution id>/<output>``, a pipeline ``Join``.

        SageMaker neither clears a prefix before uploading nor tells executions apart: with a fixed prefix a
        second execution's files land beside the first one's, and a downstream step reads both.
        """
        return sdk.execution_prefix(*self.default_output_parts(logical_name))

    def property_files(self) -> list:
        """PropertyFiles the step declares (JSON outputs that JsonGet may read); none by default."""
        return []

    def resolve_inputs(self, dependencies: Iterable[Any], skip: Iterable[str] = ()) -> Dict[str, Any]:
        """Inputs found on upstream steps through their specifications, by our logical names.

        Inputs named in ``skip`` (those given explicitly) and ``explicit_only`` inputs are not looked up at all.
        """
        steps = list(dependencies)
        skip = set(skip)
        resolved = {}
        for dependency in self.spec.dependencies.values():
            if dependency.logical_name in skip or dependency.explicit_only:
                continue
            value = resolve_dependency(dependency, steps)
            if value is not None:
                resolved[dependency.logical_name] = value
        return resolved

    def input_distribution(self, logical_name: str) -> str:
        """How an input reaches several instances: every instance gets all of it (FullyReplicated).

        A builder whose script reads a share of its input overrides this with ``sdk.SHARDED_BY_S3_KEY``.
        """
        return sdk.FULLY_REPLICATED

    def instance_count(self) -> Any:
        """Number of processing instances: an int, or a ``sdk.ParameterInteger`` set per execution."""
        return self.config.processing_instance_count

    def processing_inputs(self, inputs: Mapping[str, Any]) -> list:
        self._reject_unknown("input", inputs, self.spec.dependencies)
        processing_inputs = []
        for dependency in self.spec.dependencies.values():
            name = dependency.logical_name
            if name not in inputs:
                if dependency.required:
                    raise ValueError(
                        f"{self.spec.step_type} needs input '{name}': pass inputs={{'{name}': 's3://...'}} "
                        f"or a dependency step whose specification offers '{name}'"
                    )
                continue
            processing_inputs.append(sdk.processing_input(
                name, inputs[name], self.contract.expected_input_paths[name],
                distribution=self.input_distribution(name),
            ))
        return processing_inputs

    def output_names(self) -> List[str]:
        """The spec's outputs this configuration writes; all of them unless a subclass leaves optional ones out."""
        return list(self.spec.outputs)

    def processing_outputs(self, outputs: Mapping[str, Any]) -> list:
        written = self.output_names()
        self._reject_unknown("output", outputs, {name: self.spec.outputs[name] for name in written})
        return [
            sdk.processing_output(
                name,
                self.contract.expected_output_paths[name],
                outputs.get(name, self.default_output_destination(name)),
            )
            for name in written
        ]

    def _reject_unknown(self, kind: str, given: Mapping[str, Any], known: Mapping[str, Any]) -> None:
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise ValueError(f"{self.spec.step_type} has no {kind} named {unknown}; its {kind}s are {sorted(known)}")

    def code_path(self) -> Optional[str]:
        """Local script uploaded as the job's code, or None for a processor that needs none."""
        path = Path(self.config.script_path)
        if not path.is_file():
            raise ValueError(
                f"script {path} does not exist; check processing_source_dir and processing_entry_point"
            )
        return str(path)

    def image_uri(self) -> str:
        """The SageMaker scikit-learn image of the config's framework version, in the session's region."""
        return sdk.sklearn_image_uri(
            self.config.processing_framework_version,
            region=self.pipeline_session().boto_region_name,
            instance_type=self.config.effective_instance_type,
        )

    def _create_processor(self):
        return sdk.script_processor(
            image_uri=self.image_uri(),
            role=self.role,
            instance_type=self.config.effective_instance_type,
            instance_count=self.instance_count(),
            volume_size_in_gb=self.config.processing_volume_size,
            base_job_name=self.base_job_name(),
            sagemaker_session=self.pipeline_session(),
            env=self.environment_variables() or None,
        )

    def create_step(
        self,
        inputs: Optional[Mapping[str, Any]] = None,
        outputs: Optional[Mapping[str, Any]] = None,
        dependencies: Optional[Sequence[Any]] = None,
        enable_caching: bool = False,
    ):
        """A ProcessingStep; inputs not given explicitly are resolved from ``dependencies``.

        Caching is off unless ``enable_caching``: SageMaker keys its cache on the step's arguments (input
        URIs included), not on the data behind them, so an upstream step that writes to a fixed prefix
        would get last execution's result back. Turn it on only when every input URI changes per execution.
        """
        dependencies = list(dependencies or [])
        explicit = dict(inputs or {})
        resolved = self.resolve_inputs(dependencies, skip=explicit)
        run_arguments = dict(
            inputs=self.processing_inputs({**resolved, **explicit}),
            outputs=self.processing_outputs(dict(outputs or {})),
            arguments=self.job_arguments(),
        )
        code = self.code_path()
        if code is not None:
            run_arguments["code"] = code
        step = sdk.ProcessingStep(
            name=self.step_name(),
            step_args=self._create_processor().run(**run_arguments),
            depends_on=dependencies or None,
            cache_config=self.cache_config(enable_caching),
            property_files=self.property_files() or None,
        )
        setattr(step, SPEC_ATTRIBUTE, self.spec)
        return step
