-- Run once by the postgres image on an empty volume: MLflow's backend store lives in a
-- database of its own, beside the job store (MLflow 3 has a `jobs` table of its own too).
CREATE DATABASE mlflow OWNER layerwise;
