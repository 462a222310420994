"""Submission-time checks that run worker code in the API process: the dry run of an experiment
(its data, its model on the meta device, one small step) and the checks of a sweep's space."""
