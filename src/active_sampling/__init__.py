"""active-sampling: a SageMaker processing step that selects rows from a prediction table."""
