"""The imagegen CDK app, and the blueprint both stacks (CDK and local) are built from."""
