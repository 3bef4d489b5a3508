"""What runs inside SageMaker jobs, above training, evaluation and inference.

- `training`: a training job's run: resume, train, score the test split, export the model.
- `processing`: a Processing job's share of `meldctl analyze --remote`: analyse this instance's videos.
"""
