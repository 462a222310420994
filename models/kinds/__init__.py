"""What a spec may say of a model, without torch: each kind's pydantic config and its
declaration (description, the spec settings it honours, how its dry run may shorten a
sequence), one module per kind, listed in `models.registry`. The builders that turn a
config into a torch module are in `models.builders`."""
