"""The architecture zoo. Torch-free to import: the kinds' configs and declarations are in
`models.kinds`, their torch builders in `models.builders`."""
