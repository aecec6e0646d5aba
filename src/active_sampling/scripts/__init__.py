"""Entry scripts uploaded to SageMaker on their own."""
